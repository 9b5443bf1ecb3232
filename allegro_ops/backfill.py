"""Backfill: bring a schedule's run dates in a date range to a processed state, oldest first.

The dates are the schedule's calendar run dates in the range (cron days after the business-day
rules, the named holiday set included), manual schedules as well. For each date:

* NOT_CREATED — Create, then Process;
* PENDING — Process;
* RUNNING (a live run owns it) — left alone;
* STALLED (owner lost) — Process resumes it; with ``reprocess="all"`` Reset, then Process;
* COMPLETED — left alone; with ``reprocess="all"`` Reset, then Process;
* ERRORED — left alone with ``reprocess="none"``; Reprocess with ``"errored"``; Reset, then
  Process with ``"all"``.

An action whose execution ends ERRORED, is refused or raises stops the backfill there unless
``keep_going``. Dates left alone never stop it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import calendars
from .errors import ActionRefused, AllegroOpsError, BadInput
from .holiday_sets import holidays_of
from .service import Workspace, parse_date
from .states import Phase

__all__ = ["REPROCESS_MODES", "BackfillStep", "BackfillReport", "BackfillStopped", "backfill_dates", "backfill"]

REPROCESS_MODES = ("none", "errored", "all")
MAX_DATES = 3660


class BackfillStopped(AllegroOpsError):
    """A backfill stopped at an errored, refused or failed date (without --keep-going)."""

    def __init__(self, report: "BackfillReport") -> None:
        self.report = report
        step = report.steps[-1]
        rest = len(report.dates) - len(report.steps)
        super().__init__(f"backfill stopped at {step.run_date}: {step.action} {step.result}"
                         + (f" ({step.reason})" if step.reason else "")
                         + f"; {rest} later date(s) not run (--keep-going runs past errors)")


@dataclass(frozen=True)
class BackfillStep:
    run_date: dt.date
    action: str  # "create+process", "process", "resume", "reprocess", "reset+process", "none"
    result: str  # the execution's status after the step, or "refused" / "failed"
    reason: str = ""

    @property
    def is_error(self) -> bool:
        return self.action != "none" and self.result in ("ERRORED", "refused", "failed")

    def to_dict(self) -> dict[str, Any]:
        return {"run_date": self.run_date.isoformat(), "action": self.action, "result": self.result,
                "reason": self.reason}


@dataclass(frozen=True)
class BackfillReport:
    client: str
    schedule: str
    reprocess: str
    dates: tuple[dt.date, ...]
    steps: tuple[BackfillStep, ...]
    stopped: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "schedule": self.schedule,
            "reprocess": self.reprocess,
            "dates": [d.isoformat() for d in self.dates],
            "steps": [s.to_dict() for s in self.steps],
            "stopped": self.stopped,
            "errors": sum(s.is_error for s in self.steps),
        }


def backfill_dates(ws: Workspace, client: str, schedule: str, first: str | dt.date, last: str | dt.date) -> list[dt.date]:
    """The schedule's calendar run dates from first to last inclusive."""
    start, end = parse_date(first), parse_date(last)
    if end < start:
        raise BadInput(f"bad range: --to {end} is before --from {start}")
    if (end - start).days > MAX_DATES:
        raise BadInput(f"bad range: at most {MAX_DATES} days per backfill")
    config = ws.config(client, schedule)
    return calendars.run_dates_between(config.calendar, start, end, holidays_of(ws.home, config))


def backfill(
    ws: Workspace,
    client: str,
    schedule: str,
    first: str | dt.date,
    last: str | dt.date,
    *,
    reprocess: str = "none",
    keep_going: bool = False,
    on_step: Callable[[BackfillStep], None] = lambda step: None,
) -> BackfillReport:
    """Run the range's dates in order (see the module doc); stops at the first error unless keep_going."""
    if reprocess not in REPROCESS_MODES:
        raise BadInput(f"unknown reprocess mode {reprocess!r}; one of {', '.join(REPROCESS_MODES)}")
    dates = backfill_dates(ws, client, schedule, first, last)
    steps: list[BackfillStep] = []
    stopped = False
    for day in dates:
        step = _step(ws, client, schedule, day, reprocess)
        steps.append(step)
        on_step(step)
        if step.is_error and not keep_going:
            stopped = True
            break
    return BackfillReport(client, schedule, reprocess, tuple(dates), tuple(steps), stopped)


def _step(ws: Workspace, client: str, schedule: str, day: dt.date, reprocess: str) -> BackfillStep:
    phase = ws.execution(client, schedule, day).phase
    plan = _plan(phase, reprocess)
    if not plan:
        why = "a live run owns it" if phase is Phase.RUNNING else f"--reprocess {reprocess} leaves it"
        return BackfillStep(day, "none", phase.value, why)
    try:
        for action in plan:
            execution = getattr(ws, action)(client, schedule, day)
    except ActionRefused as exc:
        return BackfillStep(day, _name(plan, phase), "refused", exc.reason)
    except Exception as exc:  # noqa: BLE001 - a job that crashes is this date's result
        return BackfillStep(day, _name(plan, phase), "failed", f"{type(exc).__name__}: {exc}")
    return BackfillStep(day, _name(plan, phase), execution.status.value)


def _plan(phase: Phase, reprocess: str) -> tuple[str, ...]:
    if phase is Phase.NOT_CREATED:
        return ("create", "process")
    if phase is Phase.RUNNING:
        return ()
    if phase is Phase.PENDING:
        return ("process",)
    if reprocess == "all":
        return ("reset", "process")
    if phase is Phase.STALLED:
        return ("process",)
    if reprocess == "errored" and phase is Phase.ERRORED:
        return ("reprocess",)
    return ()


def _name(plan: tuple[str, ...], phase: Phase) -> str:
    if plan == ("process",) and phase is Phase.STALLED:
        return "resume"
    return "+".join(plan)
