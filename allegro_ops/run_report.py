"""What the dated-run notebook (notebooks/run_schedule.ipynb) calls: perform one schedule action
and turn the outcome into a summary document and pandas tables.

No notebook machinery here (no IPython, papermill or plotly): the notebook displays what these
functions return, and tests call them directly.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .errors import ActionRefused, BadInput
from .models import Execution
from .service import Workspace, parse_date
from .states import ScheduleAction

__all__ = ["ACTIONS", "Outcome", "perform", "summary", "jobs_frame", "errors_frame", "first_errors"]

ACTIONS = tuple(a.value for a in (ScheduleAction.PROCESS, ScheduleAction.REPROCESS, ScheduleAction.CREATE,
                                  ScheduleAction.RESET, ScheduleAction.RECREATE))


@dataclass(frozen=True)
class Outcome:
    """An action's outcome: ``done`` or ``refused`` (with the state table's reason)."""

    action: str
    outcome: str
    reason: str
    execution: Execution


def perform(ws: Workspace, client: str | None, schedule: str | None, run_date: str | dt.date | None,
            action: str = "process") -> Outcome:
    """Run one schedule action. A refusal by the state rules is an outcome, not an error; anything
    else (unknown names, a job that crashes) raises."""
    for name, value in (("client", client), ("schedule", schedule), ("run_date", run_date)):
        if not value:
            raise BadInput(f"parameter {name} is missing: run the notebook with -p {name} VALUE")
    if action not in ACTIONS:
        raise BadInput(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    day = parse_date(run_date)  # type: ignore[arg-type]
    try:
        execution = getattr(ws, action)(client, schedule, day)
    except ActionRefused as exc:
        return Outcome(action, "refused", exc.reason, ws.execution(client, schedule, day))  # type: ignore[arg-type]
    return Outcome(action, "done", "", execution)


def summary(ws: Workspace, outcome: Outcome) -> dict[str, Any]:
    """One JSON document: the action, its outcome and the execution's status, jobs and error codes."""
    e = outcome.execution
    return {
        "action": outcome.action,
        "outcome": outcome.outcome,
        "reason": outcome.reason,
        **e.to_dict(),
        "errors_by_code": {row.error_code: int(row.count) for row in errors_frame(ws, e).itertuples()},
    }


def jobs_frame(execution: Execution) -> pd.DataFrame:
    """One row per job in sequence: status and work item counts."""
    columns = ["sequence", "job", "status", "total", "pending", "processed", "error"]
    rows = [(j.sequence, j.name, j.status.value, j.total, j.pending, j.processed, j.error) for j in execution.jobs]
    return pd.DataFrame(rows, columns=columns)


def errors_frame(ws: Workspace, execution: Execution) -> pd.DataFrame:
    """Errored work items counted by job and error code."""
    rows = []
    for job in execution.jobs:
        if job.error:
            stats = ws.job_stats(execution.client, execution.schedule, execution.run_date, job.name)
            rows += [(job.name, c.error_code, c.count) for c in stats.errors_by_code]
    return pd.DataFrame(rows, columns=["job", "error_code", "count"])


def first_errors(ws: Workspace, execution: Execution, limit: int = 10) -> pd.DataFrame:
    """The first errored work items of each errored job: account, batch, code, reason, payload."""
    rows = []
    for job in execution.jobs:
        if job.error:
            for item in ws.job_errors(execution.client, execution.schedule, execution.run_date, job.name, limit=limit):
                rows.append((job.name, item.account_id, item.batch_id, item.error_code, item.reason, item.payload))
    return pd.DataFrame(rows, columns=["job", "account_id", "batch_id", "error_code", "reason", "payload"])
