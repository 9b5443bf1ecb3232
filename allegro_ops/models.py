"""Frozen records the service hands out: configs, executions, jobs, stats, work items."""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from .states import ExecutionStatus, JobAction, JobStatus, Phase, Role, ScheduleAction

__all__ = [
    "JobConfig",
    "Calendar",
    "ScheduleConfig",
    "ScheduleSummary",
    "JobRun",
    "Execution",
    "Lease",
    "JobStats",
    "ErrorCount",
    "WorkItem",
    "AuditEntry",
]


@dataclass(frozen=True)
class JobConfig:
    name: str
    type: str
    batch_size: int = 100
    concurrency: int = 4
    params: dict[str, Any] = field(default_factory=dict)
    item_timeout_s: float | None = None  # a hung work item becomes the error TIMEOUT
    batch_timeout_s: float | None = None  # a batch's unfinished work items become TIMEOUT
    max_errors: int | None = None  # accepted errors: within them the job is COMPLETED with errors
    max_error_rate: float | None = None  # accepted errors as a fraction of the job's work items

    def to_dict(self) -> dict[str, Any]:
        """The fields, each optional one only when set, so that older configs keep their hash."""
        d: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "batch_size": self.batch_size,
            "concurrency": self.concurrency,
            "params": dict(self.params),
        }
        for key in ("item_timeout_s", "batch_timeout_s", "max_errors", "max_error_rate"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    def accepts(self, errors: int, total: int) -> bool:
        """Whether this many errored work items are within the job's accepted errors."""
        if errors == 0:
            return True
        if self.max_errors is None and self.max_error_rate is None:
            return False
        within_count = self.max_errors is None or errors <= self.max_errors
        within_rate = self.max_error_rate is None or (total > 0 and errors / total <= self.max_error_rate)
        return within_count and within_rate


@dataclass(frozen=True)
class Calendar:
    """When a schedule runs: cron in an IANA timezone, plus optional business-day rules
    (see allegro_ops/calendars.py and docs/automation.md)."""

    cron: str
    timezone: str
    holidays: tuple[dt.date, ...] = ()
    holiday_set: str | None = None  # a named set in <home>/holidays.yaml
    non_business_day: str = "run"  # skip | next | previous | run
    weekend: tuple[str, ...] = ()  # e.g. ("sat", "sun")

    def to_dict(self) -> dict[str, Any]:
        """cron and timezone, plus each business-day rule only when set, so that configs
        without rules keep their content hash."""
        d: dict[str, Any] = {"cron": self.cron, "timezone": self.timezone}
        if self.holidays:
            d["holidays"] = [h.isoformat() for h in self.holidays]
        if self.holiday_set:
            d["holiday_set"] = self.holiday_set
        if self.non_business_day != "run":
            d["non_business_day"] = self.non_business_day
        if self.weekend:
            d["weekend"] = list(self.weekend)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calendar":
        return cls(
            cron=d["cron"],
            timezone=d["timezone"],
            holidays=tuple(dt.date.fromisoformat(h) for h in d.get("holidays", ())),
            holiday_set=d.get("holiday_set"),
            non_business_day=d.get("non_business_day", "run"),
            weekend=tuple(d.get("weekend", ())),
        )


@dataclass(frozen=True)
class ScheduleConfig:
    """One immutable version of a schedule configuration."""

    client: str
    name: str
    description: str
    mode: str  # "automatic" | "manual"
    calendar: Calendar
    jobs: tuple[JobConfig, ...]
    version: int = 0
    deadline: str | None = None  # "HH:MM" on the run date or "+N HH:MM", in the calendar's timezone

    def to_dict(self) -> dict[str, Any]:
        d = {
            "client": self.client,
            "name": self.name,
            "description": self.description,
            "mode": self.mode,
            "calendar": self.calendar.to_dict(),
            "jobs": [j.to_dict() for j in self.jobs],
        }
        if self.deadline:
            d["deadline"] = self.deadline
        return d


@dataclass(frozen=True)
class ScheduleSummary:
    client: str
    schedule: str
    mode: str
    calendar: str
    timezone: str
    version: int
    jobs: tuple[str, ...]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "schedule": self.schedule,
            "mode": self.mode,
            "calendar": self.calendar,
            "version": self.version,
            "jobs": list(self.jobs),
        }


@dataclass(frozen=True)
class Lease:
    host: str
    pid: int
    heartbeat: dt.datetime
    alive: bool


@dataclass(frozen=True)
class JobRun:
    name: str
    sequence: int
    type: str
    status: JobStatus
    total: int
    pending: int
    processed: int
    error: int
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    actions: dict[JobAction, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sequence": self.sequence,
            "status": self.status.value,
            "total": self.total,
            "pending": self.pending,
            "processed": self.processed,
            "error": self.error,
        }


@dataclass(frozen=True)
class Execution:
    """A schedule's execution for one run date, as it stands now (NOT_CREATED included)."""

    client: str
    schedule: str
    run_date: dt.date
    status: ExecutionStatus
    phase: Phase
    config_version: int | None
    config: ScheduleConfig | None  # the snapshot this date runs with (current config if NOT_CREATED)
    jobs: tuple[JobRun, ...]
    actions: dict[ScheduleAction, bool]
    generation: int = 0
    lease: Lease | None = None
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    role: Role = Role.OPERATOR  # the reader's role, for which ``actions`` were computed
    deadline: dt.datetime | None = None  # when the schedule's config sets one (allegro_ops/deadlines.py)
    late: bool = False  # created, not COMPLETED, and past its deadline
    current_version: int | None = None  # the schedule's current config version when this was read

    @property
    def runs_current_config(self) -> bool:
        """Created from the current config version (a Recreate would rebuild the same jobs)."""
        return self.config_version is not None and self.config_version == self.current_version

    def job(self, name: str) -> JobRun:
        for j in self.jobs:
            if j.name == name:
                return j
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "schedule": self.schedule,
            "run_date": self.run_date.isoformat(),
            "status": self.status.value,
            "config_version": self.config_version,
            "jobs": [j.to_dict() for j in self.jobs],
            "actions": {a.value: bool(v) for a, v in self.actions.items()},
            "owner_lost": self.phase is Phase.STALLED,
            "role": self.role.value,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "late": self.late,
        }


@dataclass(frozen=True)
class ErrorCount:
    error_code: str
    count: int


@dataclass(frozen=True)
class JobStats:
    total: int
    pending: int
    processed: int
    error: int
    errors_by_code: tuple[ErrorCount, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "pending": self.pending,
            "processed": self.processed,
            "error": self.error,
            "errors_by_code": [asdict(e) for e in self.errors_by_code],
        }


@dataclass(frozen=True)
class WorkItem:
    item_no: int
    account_id: str
    batch_id: int
    status: str
    error_code: str | None
    reason: str | None
    payload: Any
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "batch_id": self.batch_id,
            "reason": self.reason,
            "status": self.status,
            "error_code": self.error_code,
            "payload": self.payload,
            "attempts": self.attempts,
        }


@dataclass(frozen=True)
class AuditEntry:
    time: dt.datetime
    actor: str
    action: str
    target: str
    outcome: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "reason": self.reason,
        }
