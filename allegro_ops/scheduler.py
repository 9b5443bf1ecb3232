"""The scheduler: creates and processes the executions of automatic schedules when their run
dates come due (calendars.py says when), catching up missed dates within a window.

Safety comes from the service and the store, not from the scheduler being alone: a date has at
most one execution (the store refuses a second), only one process can start a run (the lease is
taken in the same transaction that checks the state table), and a run whose owner died is
STALLED, which Process resumes. So two schedulers, or a restarted one, never duplicate work: the
loser of a race gets ActionRefused, which is recorded as a "lost race" decision.

Decisions that are actions (create, process) are audited by the service under the actor
``scheduler``; decisions that are not (a date skipped, moved or left ERRORED for an operator, a
failure outside an action) are appended once each under action ``scheduler``.
"""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import calendars, notify
from .errors import ActionRefused, AllegroOpsError
from .holiday_sets import holidays_of
from .models import ScheduleConfig
from .service import Workspace, utc_now
from .states import Phase
from .store import catalog as cat_sql
from .store import scheduling as sched_sql

__all__ = [
    "SCHEDULER_ACTOR",
    "DEFAULT_CATCH_UP",
    "Decision",
    "PassReport",
    "run_pass",
    "run_forever",
    "note",
]

SCHEDULER_ACTOR = "scheduler"
DEFAULT_CATCH_UP = dt.timedelta(days=3)
AUDIT_ACTION = "scheduler"
# Decisions: processed, resumed (a STALLED run), done (COMPLETED), left (ERRORED: reprocessing is
# an operator's call), running (a live run owns it), lost race, failed, skipped (non-business day),
# planned (dry run), not due, manual, not started (the scheduler was stopping); notified and
# notify failed (a notification of an execution: LATE, or one not sent after its run).
ACTED = frozenset({"processed", "resumed"})


@dataclass(frozen=True)
class Decision:
    client: str
    schedule: str
    run_date: dt.date | None
    decision: str
    status: str = ""
    reason: str = ""
    notebook: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "schedule": self.schedule,
            "run_date": self.run_date.isoformat() if self.run_date else None,
            "decision": self.decision,
            "status": self.status,
            "reason": self.reason,
            "notebook": self.notebook,
        }


@dataclass(frozen=True)
class PassReport:
    """What one pass saw and did, and when the next run date comes due."""

    now: dt.datetime
    window_start: dt.datetime
    decisions: tuple[Decision, ...]
    next_due: tuple[str, str, dt.date, dt.datetime] | None = None  # client, schedule, run date, due

    @property
    def failed(self) -> list[Decision]:
        return [d for d in self.decisions if d.decision == "failed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.decisions:
            out[d.decision] = out.get(d.decision, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        nxt = None
        if self.next_due:
            c, s, day, due = self.next_due
            nxt = {"client": c, "schedule": s, "run_date": day.isoformat(), "due": due.isoformat()}
        return {
            "now": self.now.isoformat(),
            "window_start": self.window_start.isoformat(),
            "decisions": [d.to_dict() for d in self.decisions],
            "counts": self.counts(),
            "next_due": nxt,
        }


@dataclass
class _Plan:
    due: list[tuple[ScheduleConfig, calendars.RunSlot]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    next_due: tuple[str, str, dt.date, dt.datetime] | None = None


def run_pass(
    ws: Workspace,
    now: dt.datetime,
    *,
    catch_up: dt.timedelta = DEFAULT_CATCH_UP,
    via_notebook: bool = False,
    dry_run: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> PassReport:
    """One pass: every run date of an automatic schedule due in ``(now - catch_up, now]``, oldest
    due first, is created if needed and processed (or resumed). ``dry_run`` only reports."""
    if catch_up <= dt.timedelta(0):
        raise ValueError("catch_up must be positive")
    start = now - catch_up
    plan = _plan(ws, start, now, record=not dry_run)
    decisions = list(plan.decisions)
    for config, slot in plan.due:
        if should_stop is not None and should_stop():
            decisions.append(Decision(config.client, config.name, slot.run_date, "not started",
                                      reason="the scheduler is stopping"))
            continue
        decisions.append(_handle(ws, config, slot, via_notebook, dry_run))
    if not dry_run and not (should_stop is not None and should_stop()):
        decisions += _notifications(ws, now)
    return PassReport(now, start, tuple(decisions), plan.next_due)


def run_forever(
    ws: Workspace,
    stop: threading.Event,
    *,
    clock: Callable[[], dt.datetime] = utc_now,
    catch_up: dt.timedelta = DEFAULT_CATCH_UP,
    via_notebook: bool = False,
    max_sleep: float = 60.0,
    on_report: Callable[[PassReport], None] = lambda report: None,
    on_error: Callable[[Exception], None] = lambda exc: None,
) -> int:
    """Pass, sleep until the next run date is due (at most ``max_sleep`` seconds, so config
    changes are seen), repeat until ``stop`` is set. A pass that is under way finishes the
    execution it is running, starts no other, and returns. Returns the number of passes."""
    passes = 0
    while not stop.is_set():
        wait = max_sleep
        try:
            report = run_pass(ws, clock(), catch_up=catch_up, via_notebook=via_notebook, should_stop=stop.is_set)
        except Exception as exc:  # noqa: BLE001 - a foreground scheduler reports and tries again
            on_error(exc)
        else:
            on_report(report)
            if report.next_due is not None:
                wait = min(max_sleep, max(0.0, (report.next_due[3] - clock()).total_seconds()))
        passes += 1
        stop.wait(wait)
    return passes


def note(ws: Workspace, client: str | None, target: str, outcome: str, reason: str = "", once: bool = True) -> None:
    """Append a scheduler decision to the audit log (once per target and outcome by default)."""
    entry = dict(time=ws.clock(), actor=ws.actor, action=AUDIT_ACTION, client=client, target=target,
                 outcome=outcome, reason=reason)
    if once:
        ws.store.write(lambda con: sched_sql.append_audit_once(con, **entry))
    else:
        ws.store.write(lambda con: cat_sql.append_audit(con, **entry))


def _plan(ws: Workspace, start: dt.datetime, now: dt.datetime, record: bool) -> _Plan:
    plan = _Plan()
    for summary in ws.schedules():
        c, s = summary.client, summary.schedule
        if summary.mode != "automatic":
            plan.decisions.append(Decision(c, s, None, "manual", reason="manual schedules are never started "
                                           "by the scheduler"))
            continue
        try:
            config = ws.config(c, s)
            extra = holidays_of(ws.home, config)
            due, skipped = calendars.occurrences(config.calendar, start, now, extra)
            upcoming = calendars.next_run(config.calendar, now, extra)
        except AllegroOpsError as exc:
            plan.decisions.append(Decision(c, s, None, "failed", reason=str(exc)))
            if record:
                note(ws, c, f"{c}/{s}", "failed", str(exc))
            continue
        for fire in skipped:
            reason = f"{fire.fire_date} is a {fire.reason}; non_business_day: skip"
            plan.decisions.append(Decision(c, s, fire.fire_date, "skipped", reason=reason))
            if record:
                note(ws, c, f"{c}/{s} {fire.fire_date}", "skipped", reason)
        plan.due += [(config, slot) for slot in due]
        if not due and not skipped:
            when = f"; next: {upcoming.run_date} at {upcoming.due.isoformat()}" if upcoming else ""
            plan.decisions.append(Decision(c, s, None, "not due", reason=f"no run date due in the window{when}"))
        if upcoming and (plan.next_due is None or upcoming.due < plan.next_due[3]):
            plan.next_due = (c, s, upcoming.run_date, upcoming.due)
    plan.due.sort(key=lambda item: (item[1].due, item[0].client, item[0].name))
    return plan


def _handle(ws: Workspace, config: ScheduleConfig, slot: calendars.RunSlot, via_notebook: bool,
            dry_run: bool) -> Decision:
    """Bring one due run date forward: create and process, resume, or say why not."""
    c, s, day = config.client, config.name, slot.run_date
    target = f"{c}/{s} {day}"
    try:
        execution = ws.execution(c, s, day)
    except AllegroOpsError as exc:
        return Decision(c, s, day, "failed", reason=str(exc))
    phase = execution.phase
    if phase is Phase.COMPLETED:
        return Decision(c, s, day, "done", "COMPLETED")
    if phase is Phase.ERRORED:
        reason = "left for an operator: Reprocess once the errors are resolved"
        if not dry_run:
            note(ws, c, target, "left", reason)
        return Decision(c, s, day, "left", "ERRORED", reason)
    if phase is Phase.RUNNING:
        owner = execution.lease
        who = f" ({owner.host} pid {owner.pid})" if owner else ""
        return Decision(c, s, day, "running", "IN_PROGRESS", f"a live run owns it{who}")
    verb = {Phase.NOT_CREATED: "create and process", Phase.PENDING: "process", Phase.STALLED: "resume"}[phase]
    if dry_run:
        return Decision(c, s, day, "planned", execution.status.value, f"would {verb}")
    if slot.moved_from is not None:
        note(ws, c, target, "moved", f"run date moved from {slot.moved_from} ({slot.reason}; "
                                     f"non_business_day: {config.calendar.non_business_day})")
    kind = "resumed" if phase is Phase.STALLED else "processed"
    try:
        if phase is Phase.NOT_CREATED:
            ws.create(c, s, day)
        if via_notebook:
            return _via_notebook(ws, c, s, day, kind)
        execution = ws.process(c, s, day)
    except ActionRefused as exc:
        return Decision(c, s, day, "lost race", exc.status, exc.reason)
    except Exception as exc:  # noqa: BLE001 - one schedule's failure must not stop the others
        return Decision(c, s, day, "failed", _status(ws, c, s, day), f"{type(exc).__name__}: {exc}")
    return Decision(c, s, day, kind, execution.status.value)


def _notifications(ws: Workspace, now: dt.datetime) -> list[Decision]:
    """Once per pass: LATE executions, and ERRORED or COMPLETED-after-errors ones not notified yet
    (allegro_ops/notify.py); each delivery is a decision ``notified`` or ``notify failed``."""
    try:
        deliveries = notify.check_due(ws, now)
    except Exception as exc:  # noqa: BLE001 - a bad notifications.yaml must not stop the scheduler
        reason = str(exc) if isinstance(exc, AllegroOpsError) else f"{type(exc).__name__}: {exc}"
        note(ws, None, notify.NOTIFICATIONS_FILE, "failed", reason)
        return [Decision("-", "notifications", None, "failed", reason=reason)]
    return [Decision(d.client, d.schedule, d.run_date, "notified" if d.outcome == "sent" else "notify failed",
                     d.status, f"{d.event} -> {d.channel} {d.target}: {d.detail}") for d in deliveries]


def _via_notebook(ws: Workspace, c: str, s: str, day: dt.date, kind: str) -> Decision:
    from .notebook_runs import NotebookFailed, run_notebook

    try:
        run = run_notebook(ws.home, c, s, day, "process", now=ws.clock(), actor=ws.actor)
    except NotebookFailed as exc:
        note(ws, c, f"{c}/{s} {day}", "failed", str(exc), once=False)
        return Decision(c, s, day, "failed", _status(ws, c, s, day), exc.error, str(exc.path))
    out = run.outcome
    if out["outcome"] == "refused":
        return Decision(c, s, day, "lost race", out["status"], out["reason"], str(run.path))
    return Decision(c, s, day, kind, out["status"], notebook=str(run.path))


def _status(ws: Workspace, c: str, s: str, day: dt.date) -> str:
    try:
        return ws.execution(c, s, day).status.value
    except Exception:  # noqa: BLE001 - only for the report
        return ""
