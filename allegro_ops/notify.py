"""Notifications: an execution that is ERRORED, LATE, or COMPLETED after errors tells its client,
by webhook and email (allegro_ops/notify_channels.py), once per execution generation, event and
channel target, however often it is retried or checked and by however many processes.

Generation: Reset and Recreate keep the date's execution and start a new generation of it, a new
run whose ERRORED is news again; Reprocess and Retry stay in their generation and send nothing new.
LATE is about the run date: once per execution, whatever its generations. COMPLETED after errors
closes the last ERRORED notice of the date, also when the generation that completed is a later
one (ERRORED, Reset, Process: COMPLETED), and only once.

Once: the notice is *claimed* first, by inserting its row (outcome ``sending``) in the store's
write path, where the table's primary key lets only one claimer through; the message is then
sent outside the transaction and the row settled ``sent`` or ``failed``. A failed delivery is
tried again only by ``check_due(..., retry_failed=True)`` (``allegro-ops notify check
--retry-failed``), never by the next run: no storm. Every delivery is audited (action
``notify``).

Who calls: the service after every Process, Reprocess and Retry (``after_run``, which never
raises), and the scheduler once per pass and ``allegro-ops notify check`` (``check_due``: the
LATE executions, and ERRORED or COMPLETED-after-errors ones not yet notified).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import config as config_mod
from .deadlines import deadline_at, is_late
from .errors import AllegroOpsError, BadInput
from .models import Execution
from .notify_channels import (
    EVENTS, NOTIFICATIONS_FILE, ClientNotifications, DeliveryFailed, load_notifications, send_email, send_webhook,
)
from .store import notifications as sql

if TYPE_CHECKING:
    from .service import Workspace

__all__ = [
    "EVENTS",
    "NOTIFICATIONS_FILE",
    "DEFAULT_WINDOW",
    "STALE_SENDING",
    "Delivery",
    "events_of",
    "after_run",
    "check_due",
    "notifications",
    "load_notifications",
    "message_body",
    "message_text",
]

AUDIT_ACTION = "notify"
# Events sent once per execution, whatever its generation (the others: once per generation).
ONCE_PER_EXECUTION = frozenset({"LATE"})
# check_due looks back this far: at deadlines and at finished runs (a client whose notifications
# are configured today is not sent the whole history of its ERRORED dates).
DEFAULT_WINDOW = dt.timedelta(days=7)
# A notice still ``sending`` after this long was claimed by a process that died; --retry-failed
# takes it over.
STALE_SENDING = dt.timedelta(minutes=10)
MAX_DEADLINE_DAYS = 99  # "+N HH:MM" has at most two digits


@dataclass(frozen=True)
class Delivery:
    """One notice to one channel target, as it went (or, in a listing, as it stands)."""

    client: str
    schedule: str
    run_date: dt.date
    event: str
    channel: str  # webhook | email
    target: str  # the webhook's URL, the email recipients
    outcome: str  # sent | failed (| sending, in a listing)
    detail: str
    sent_at: dt.datetime
    status: str = ""  # the execution's status when it was sent
    generation: int = 0  # the execution's generation it was sent for

    @property
    def subject(self) -> str:
        return f"{self.client}/{self.schedule} {self.run_date.isoformat()} {self.event} -> {self.channel} {self.target}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "schedule": self.schedule,
            "run_date": self.run_date.isoformat(),
            "event": self.event,
            "channel": self.channel,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
            "sent_at": self.sent_at.isoformat(),
            "generation": self.generation,
        }


def events_of(execution: Execution, now: dt.datetime, errored_notified: bool = False) -> list[str]:
    """The events an execution calls for now: ERRORED; LATE (created, not COMPLETED, past its
    deadline); COMPLETED_AFTER_ERRORS (COMPLETED, and an ERRORED notice went out for it or a job
    completed with accepted errors)."""
    status = execution.status.value
    out = []
    if status == "ERRORED":
        out.append("ERRORED")
    if is_late(execution.config, execution.run_date, status, now):
        out.append("LATE")
    if status == "COMPLETED" and (errored_notified or any(j.error > 0 for j in execution.jobs)):
        out.append("COMPLETED_AFTER_ERRORS")
    return out


def after_run(ws: Workspace, execution: Execution) -> list[Delivery]:
    """Notify what the execution calls for after a run (Process, Reprocess, Retry). Never raises:
    a failure is a ``failed`` delivery, or an audit entry when there was nothing to deliver to."""
    try:
        client_cfg = load_notifications(ws.home).get(execution.client)
        if client_cfg is None or not client_cfg.targets():
            return []
        now = ws.clock()
        allowed = set(EVENTS)
        if execution.deadline is not None and execution.deadline <= now - DEFAULT_WINDOW:
            allowed.discard("LATE")  # e.g. a backfilled old date: its deadline is not news
        if not _wanted(client_cfg, execution, {}, now, allowed, errored_notified=True):
            return []  # nothing it could call for, whatever went out before: no need to read the notices
        ex_id, notices = ws.store.read(lambda con: _notices_of(con, execution))
        if ex_id is None:
            return []
        return _notify(ws, client_cfg, ex_id, execution, notices, now, allowed)
    except Exception as exc:  # noqa: BLE001 - a notice must never fail the operator's action
        reason = str(exc) if isinstance(exc, AllegroOpsError) else f"{type(exc).__name__}: {_one_line(exc)}"
        _record(ws, execution.client, _name(execution), "failed", reason)
        return []


def check_due(ws: Workspace, now: dt.datetime, retry_failed: bool = False,
              window: dt.timedelta = DEFAULT_WINDOW) -> list[Delivery]:
    """Notify the LATE executions (deadline within ``window`` before ``now``) and the ERRORED or
    COMPLETED-after-errors ones (finished within ``window``) not yet notified; with
    ``retry_failed`` also try the failed deliveries again. Raises InvalidConfig for a bad
    notifications.yaml; a delivery that fails is a ``failed`` Delivery, not an exception."""
    if window <= dt.timedelta(0):
        raise BadInput("bad window: it must be positive")
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    configs = {c: cfg for c, cfg in load_notifications(ws.home).items() if cfg.targets()}
    if not configs:
        return []
    ws.authorize("notify check", str(ws.home))
    since = now - window
    clients = sorted(configs)

    def read(con):
        # A deadline is at most 99 days after its run date ("+N HH:MM"): older dates cannot be due.
        rows = sql.candidates(con, clients, since, since.date() - dt.timedelta(days=MAX_DEADLINE_DAYS + 1))
        return rows, sql.notices_of(con, [r[0] for r in rows])

    rows, notices = ws.store.read(read)
    out: list[Delivery] = []
    for ex_id, client, schedule, run_date, status, snapshot, version, finished_at in rows:
        allowed = set()
        if finished_at is not None and finished_at >= since:
            allowed |= {"ERRORED", "COMPLETED_AFTER_ERRORS"}
        due = deadline_at(config_mod.from_snapshot(snapshot, version), run_date)
        if due is not None and since < due < now:
            allowed.add("LATE")  # a deadline before the window is not news any more
        if not allowed:
            continue
        execution = ws.execution(client, schedule, run_date)
        wanted = _wanted(configs[client], execution, notices.get(ex_id, {}), now, allowed)
        if wanted:
            claimed = _claim(ws, ex_id, execution.generation, wanted, now)
            out += _deliver_claimed(ws, configs[client], ex_id, execution, claimed, now)
    if retry_failed:
        out += _retry(ws, configs, now)
    return out


def notifications(ws: Workspace, client: str | None = None, limit: int = 1000) -> list[Delivery]:
    """The notifications table, newest first (outcome ``sending``, ``sent`` or ``failed``)."""
    if not 1 <= limit <= 1_000_000:
        raise BadInput("bad limit: it lies between 1 and 1000000")
    if client is not None:
        ws.schedules(client)  # NotFound for an unknown client
    rows = ws.store.read(lambda con: sql.list_notifications(con, client, limit))
    return [Delivery(c, s, day, event, channel, target, outcome, detail, sent_at, generation=generation)
            for c, s, day, event, channel, target, sent_at, outcome, detail, generation in rows]


# ------------------------------------------------------------------ claiming and delivering
def _notices_of(con, execution: Execution) -> tuple[int | None, dict[sql.Notice, str]]:
    ex_id = sql.execution_id(con, execution.client, execution.schedule, execution.run_date)
    if ex_id is None:
        return None, {}
    return ex_id, sql.notices_of(con, [ex_id])[ex_id]


def _wanted(cfg: ClientNotifications, execution: Execution, notices: dict[sql.Notice, str], now: dt.datetime,
            allowed: set[str] | None = None, errored_notified: bool = False) -> list[sql.Key]:
    """The (event, channel, target) this execution's generation calls for (among ``allowed``
    events) that nobody has claimed yet (``errored_notified``: as if an ERRORED notice went out,
    whatever ``notices`` say)."""
    generation = execution.generation
    claimed = {(e, ch, t) for g, e, ch, t in notices if g == generation or e in ONCE_PER_EXECUTION}
    errored_notified = errored_notified or _errored_open(notices, generation)
    events = [e for e in events_of(execution, now, errored_notified)
              if e in cfg.events and (allowed is None or e in allowed)]
    return [(e, ch, t) for e in events for ch, t in cfg.targets() if (e, ch, t) not in claimed]


def _errored_open(notices: dict[sql.Notice, str], generation: int) -> bool:
    """Whether the date's last ERRORED notice (up to this generation) still waits for its
    COMPLETED_AFTER_ERRORS: it is this generation's, or none went out from its generation on."""
    errored = [g for g, e, _, _ in notices if e == "ERRORED" and g <= generation]
    if not errored:
        return False
    last = max(errored)
    return last == generation or not any(e == "COMPLETED_AFTER_ERRORS" and last <= g < generation
                                         for g, e, _, _ in notices)


def _notify(ws: Workspace, cfg: ClientNotifications, ex_id: int, execution: Execution,
            notices: dict[sql.Notice, str], now: dt.datetime, allowed: set[str]) -> list[Delivery]:
    wanted = _wanted(cfg, execution, notices, now, allowed)
    if not wanted:
        return []
    claimed = _claim(ws, ex_id, execution.generation, wanted, now)
    return _deliver_claimed(ws, cfg, ex_id, execution, claimed, now)


def _claim(ws: Workspace, ex_id: int, generation: int, wanted: list[sql.Key], now: dt.datetime) -> list[sql.Key]:
    """Claim the notices for this generation in one transaction; only those this call inserted are
    returned."""
    def write(con):
        return [key for key in wanted
                if sql.claim(con, ex_id, generation, *key, now, any_generation=key[0] in ONCE_PER_EXECUTION)]

    return ws.store.write(write)


def _deliver_claimed(ws: Workspace, cfg: ClientNotifications, ex_id: int, execution: Execution,
                     claimed: list[sql.Key], now: dt.datetime) -> list[Delivery]:
    return [_deliver(ws, cfg, ex_id, execution.generation, execution, event, channel, target, now)
            for event, channel, target in claimed]


def _deliver(ws: Workspace, cfg: ClientNotifications, ex_id: int, generation: int, execution: Execution,
             event: str, channel: str, target: str, now: dt.datetime) -> Delivery:
    """Send one claimed notice (of that generation), settle its row, audit it."""
    body = message_body(execution, event, now)
    try:
        if channel == "webhook" and cfg.webhook is not None:
            detail = send_webhook(cfg.webhook, body)
        elif channel == "email" and cfg.email is not None:
            subject = f"[allegro-ops] {event} {execution.client}/{execution.schedule} {execution.run_date.isoformat()}"
            detail = send_email(cfg.email, subject, message_text(body), {"X-Allegro-Ops-Event": event})
        else:
            raise DeliveryFailed(f"no {channel} configured for {execution.client} any more")
        outcome = "sent"
    except DeliveryFailed as exc:
        outcome, detail = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever a channel raises is a failed delivery
        outcome, detail = "failed", f"{type(exc).__name__}: {_one_line(exc)}"
    finished = ws.clock()
    ws.store.write(lambda con: sql.settle(con, ex_id, generation, event, channel, target, outcome, detail, finished))
    delivery = Delivery(execution.client, execution.schedule, execution.run_date, event, channel, target, outcome,
                        detail, finished, execution.status.value, generation)
    _record(ws, execution.client, delivery.subject, outcome, detail)
    return delivery


def _retry(ws: Workspace, configs: dict[str, ClientNotifications], now: dt.datetime) -> list[Delivery]:
    rows = ws.store.read(lambda con: sql.retryable(con, sorted(configs), now - STALE_SENDING))
    out = []
    for ex_id, generation, client, schedule, run_date, event, channel, target in rows:
        cfg = configs[client]
        if event not in cfg.events or (channel, target) not in cfg.targets():
            continue  # the client no longer wants it there
        if not ws.store.write(lambda con: sql.reclaim(con, ex_id, generation, event, channel, target, now,
                                                      now - STALE_SENDING)):
            continue  # another process is trying it, or it went out meanwhile
        execution = ws.execution(client, schedule, run_date)
        out.append(_deliver(ws, cfg, ex_id, generation, execution, event, channel, target, now))
    return out


# ------------------------------------------------------------------ what is sent
def message_body(execution: Execution, event: str, now: dt.datetime) -> dict[str, Any]:
    """The facts a notice carries: the webhook's JSON body, and the email's text."""
    return {
        "event": event,
        "client": execution.client,
        "schedule": execution.schedule,
        "run_date": execution.run_date.isoformat(),
        "status": execution.status.value,
        "late": is_late(execution.config, execution.run_date, execution.status.value, now),
        "deadline": execution.deadline.isoformat() if execution.deadline else None,
        "jobs": [{"name": j.name, "status": j.status.value, "total": j.total, "processed": j.processed,
                  "error": j.error} for j in execution.jobs],
        "sent_at": now.isoformat(),
    }


def message_text(body: dict[str, Any]) -> str:
    """The email's plain text: the same facts as the webhook body, as data."""
    lines = [
        f"{body['event']}: job schedule {body['client']}/{body['schedule']}, run date {body['run_date']}",
        "",
        f"status:   {body['status']}",
        f"late:     {'yes' if body['late'] else 'no'}",
        f"deadline: {body['deadline'] or 'none'}",
        "",
        "jobs:",
    ]
    for j in body["jobs"]:
        lines.append(f"  {j['name']:<24} {j['status']:<11} total {j['total']:>7}  processed {j['processed']:>7}  "
                     f"error {j['error']:>6}")
    lines += ["", f"sent at: {body['sent_at']}", "", "As JSON:", json.dumps(body, ensure_ascii=False)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ helpers
def _record(ws: Workspace, client: str, target: str, outcome: str, reason: str) -> None:
    try:
        ws.record(AUDIT_ACTION, client, target, outcome, reason)
    except Exception:  # noqa: BLE001 - the row in notifications is the record that matters
        pass


def _name(execution: Execution) -> str:
    return f"{execution.client}/{execution.schedule} {execution.run_date.isoformat()}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
