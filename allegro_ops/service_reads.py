"""The service's reads of one job and of the history: stats, errored work items, an account's
attempts, a schedule's history and the audit log. Mixed into ``Workspace`` (service.py), whose
``store``, ``_config`` and ``_refused`` they use; no read changes anything."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .dates import parse_date
from .errors import BadInput, NotFound
from .models import AuditEntry, ErrorCount, JobStats, WorkItem
from .states import ExecutionStatus, JobAction, JobStatus, Phase, job_refusal
from .store import accounts as acc_sql
from .store import catalog as cat_sql
from .store import executions as ex_sql
from .store import work_items as wi_sql

__all__ = ["WorkspaceReads", "name_of"]


def name_of(client: str, schedule: str, day: dt.date) -> str:
    """How refusals name an execution."""
    return f"execution {client}/{schedule} {day.isoformat()}"


class WorkspaceReads:
    def job_stats(self, client: str, schedule: str, run_date: str | dt.date, job: str) -> JobStats:
        """Total, pending, processed and error counts, and the errors grouped by error code."""
        day = parse_date(run_date)

        def read(con):
            found = self._job_in(con, client, schedule, day, job)
            return found, wi_sql.errors_by_code(con, found.job_id)

        found, codes = self.store.read(read)
        return JobStats(found.total, found.pending, found.processed, found.error,
                        tuple(ErrorCount(c or "UNKNOWN", n) for c, n in codes))

    def job_errors(self, client: str, schedule: str, run_date: str | dt.date, job: str, *,
                   code: str | None = None, limit: int = 50, offset: int = 0, after: int = 0) -> list[WorkItem]:
        """One page of the job's errored work items (of one error code when given)."""
        if limit < 1 or limit > 10_000 or offset < 0 or after < 0:
            raise BadInput("bad paging: limit lies between 1 and 10000, offset and after are >= 0")
        day = parse_date(run_date)

        def read(con):
            job_id = self._job_in(con, client, schedule, day, job).job_id
            rows = wi_sql.errored_items(con, job_id, code, limit, offset, after)
            # An empty page of a code: past its last item, or a code the job does not have (only then
            # is the errors-by-code scan worth its cost).
            if not rows and code is not None and code not in {c for c, _ in wi_sql.errors_by_code(con, job_id)}:
                raise NotFound("error code", code, f"job {job} has no errored work item with it")
            return rows

        rows = self.store.read(read)
        return [WorkItem(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7]) for r in rows]

    def _job_in(self, con, client, schedule, day: dt.date, job) -> ex_sql.JobRow:
        """The job of the date's current generation, read in the caller's unit of work. One
        statement when it exists; the schedule's config is read only to say what is missing
        (an execution exists only for a schedule that has a config)."""
        created, found = ex_sql.find_job(con, client, schedule, day, job)
        if found is not None:
            return found
        self._config(con, client, schedule)  # NotFound for an unknown client or schedule
        if not created:
            reason = job_refusal(JobAction.STATS, JobStatus.PENDING, Phase.NOT_CREATED, name_of(client, schedule, day))
            raise self._refused(JobAction.STATS, reason, client, schedule, day, job,
                                ExecutionStatus.NOT_CREATED.value)
        raise NotFound("job", job, f"not a job of {client}/{schedule} {day}")

    # ----------------------------------------------------------------- history and audit
    def account_history(self, client: str, account_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """Every attempt at the account's work items, newest date first, archived generations included."""
        rows = self.store.read(lambda con: acc_sql.account_history(con, client, account_id, limit))
        keys = ("schedule", "run_date", "generation", "current_generation", "job", "attempt", "batch_id",
                "status", "error_code", "reason", "finished_at", "payload")
        out = []
        for r in rows:
            d = dict(zip(keys, r))
            d["archived"] = d.pop("current_generation") != d["generation"]
            d["payload"] = json.loads(d["payload"])
            out.append(d)
        return out

    def history(self, client: str, schedule: str, last: int = 14) -> list[dict[str, Any]]:
        """Per run date and job (last N dates): statuses, counts, start and finish times."""
        rows = self.store.read(lambda con: (self._config(con, client, schedule),
                                            ex_sql.execution_history(con, client, schedule, last))[1])
        keys = ("run_date", "execution_status", "sequence", "job", "job_status", "total", "processed", "error",
                "started_at", "finished_at")
        return [dict(zip(keys, r)) for r in rows]

    def audit(self, client: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        return [AuditEntry(*r) for r in self.store.read(lambda con: cat_sql.read_audit(con, client, limit))]

    def _raise_unknown(self, client: str, schedule: str) -> None:
        known = {s.client for s in self.schedules()}
        if client not in known:
            raise NotFound("client", client, f"known: {', '.join(sorted(known)) or 'none (apply a config first)'}")
        names = [s.schedule for s in self.schedules(client)]
        raise NotFound("schedule", f"{client}/{schedule}", f"schedules of {client}: {', '.join(names)}")
