"""Notifications once per execution *generation*: Reset and Recreate keep the date's execution (its
id) and start a new generation, so a recreated date that fails again is news and is notified once
more; a Reprocess or Retry stays in its generation and sends nothing new (no storm). LATE is about
the run date: once, whatever the generation. Migration 8 re-keys the notices of a database made
before it, keeps every row, and sends none of them again.

Every notice goes to a real local webhook server (tests/notify_support.py). The demo's
acme/daily-billing gets the deadline "+1 06:00" (2026-11-25 11:00 UTC; the clock starts at 09:00 UTC).
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest
import yaml

from allegro_ops import ExecutionStatus, Workspace
from allegro_ops.demo import resolve
from allegro_ops.notify import check_due, notifications
from allegro_ops.store import DB_FILENAME, Store, migrations

from conftest import init_small_demo
from notify_support import WebhookServer

C, S, DAY, OTHER_DAY = "acme", "daily-billing", "2026-11-24", "2026-11-23"
DEADLINE_UTC = dt.datetime(2026, 11, 25, 11, 0, tzinfo=dt.timezone.utc)
GENERATIONS = 8  # the migration that keys notices by generation


def _with_deadline(ws: Workspace, description: str | None = None) -> None:
    doc = yaml.safe_load(ws.export_config(C, S))
    doc["deadline"] = "+1 06:00"
    if description is not None:
        doc["description"] = description
    path = ws.home / "edited.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    ws.apply_config(path)


def _build(ws: Workspace) -> None:
    init_small_demo(ws)
    _with_deadline(ws)


@pytest.fixture
def ws(prepared) -> Workspace:
    return prepared("notify-generations", _build)


@pytest.fixture
def hooks():
    with WebhookServer() as server:
        yield server


def configure(home, url: str) -> None:
    (home / "notifications.yaml").write_text(yaml.safe_dump({C: {"webhook": {"url": url, "timeout_s": 2}}}))


def received(hooks: WebhookServer) -> list[tuple[str, str, str]]:
    """(run date, event, execution status) of every POST the webhook got, in arrival order."""
    return [(h.json["run_date"], h.json["event"], h.json["status"]) for h in hooks.requests]


def new_generation(ws: Workspace, how: str) -> None:
    """From ERRORED to a fresh PENDING generation: Reset, or Reset then Recreate from a newer config
    version (Recreate needs a PENDING execution)."""
    generation = ws.execution(C, S, DAY).generation
    ws.clock.advance(minutes=10)
    ws.reset(C, S, DAY)
    if how == "recreate":
        _with_deadline(ws, description=f"Daily billing, edited at {ws.clock().isoformat()}")
        ws.clock.advance(minutes=10)
        ws.recreate(C, S, DAY)
    e = ws.execution(C, S, DAY)
    assert e.status is ExecutionStatus.PENDING
    assert e.generation == generation + (2 if how == "recreate" else 1)
    ws.clock.advance(minutes=10)


# ------------------------------------------------------------------ within one generation
def test_an_errored_date_notifies_once_however_often_reprocess_and_retry_error_again(ws, hooks):
    configure(ws.home, hooks.url())
    ws.create(C, S, DAY)
    assert ws.process(C, S, DAY).status is ExecutionStatus.ERRORED
    assert received(hooks) == [(DAY, "ERRORED", "ERRORED")]
    for _ in range(2):
        ws.clock.advance(minutes=5)
        assert ws.reprocess(C, S, DAY).status is ExecutionStatus.ERRORED
        assert ws.retry_job(C, S, DAY, "bill-run").status is ExecutionStatus.ERRORED
        assert check_due(ws, ws.clock()) == []
    assert len(hooks.requests) == 1
    assert [(d.event, d.generation, d.outcome) for d in notifications(ws)] == [("ERRORED", 1, "sent")]


# ------------------------------------------------------------------ a new generation
@pytest.mark.parametrize("how", ["recreate", "reset"])
def test_a_new_generation_that_errors_again_notifies_once_more(ws, hooks, how):
    configure(ws.home, hooks.url())
    ws.create(C, S, DAY)
    ws.process(C, S, DAY)
    new_generation(ws, how)
    generation = ws.execution(C, S, DAY).generation
    assert ws.process(C, S, DAY).status is ExecutionStatus.ERRORED
    assert received(hooks) == [(DAY, "ERRORED", "ERRORED")] * 2
    # ... once: its own Reprocess, Retry and checks send nothing more
    ws.clock.advance(minutes=5)
    assert ws.reprocess(C, S, DAY).status is ExecutionStatus.ERRORED
    assert ws.retry_job(C, S, DAY, "bill-run").status is ExecutionStatus.ERRORED
    assert check_due(ws, ws.clock(), retry_failed=True) == []
    assert len(hooks.requests) == 2
    assert sorted((d.event, d.generation) for d in notifications(ws)) == [("ERRORED", 1), ("ERRORED", generation)]


def test_completed_after_errors_closes_the_last_errored_notice_once_across_generations(ws, hooks):
    configure(ws.home, hooks.url())
    ws.create(C, S, DAY)
    ws.process(C, S, DAY)  # generation 1 ERRORED: notified
    new_generation(ws, "reset")
    resolve(ws, C)
    e = ws.process(C, S, DAY)  # generation 2 COMPLETED without errors: the client last heard ERRORED
    assert e.status is ExecutionStatus.COMPLETED and all(j.error == 0 for j in e.jobs)
    assert received(hooks) == [(DAY, "ERRORED", "ERRORED"), (DAY, "COMPLETED_AFTER_ERRORS", "COMPLETED")]
    new_generation(ws, "reset")
    assert ws.process(C, S, DAY).status is ExecutionStatus.COMPLETED  # nothing errored since: no news
    assert check_due(ws, ws.clock()) == []
    assert len(hooks.requests) == 2


def test_late_is_sent_once_per_run_date_whatever_its_generations(ws, hooks):
    configure(ws.home, hooks.url())
    ws.clock.now = DEADLINE_UTC + dt.timedelta(minutes=1)
    ws.create(C, S, DAY)
    ws.process(C, S, DAY)
    assert sorted(received(hooks)) == [(DAY, "ERRORED", "ERRORED"), (DAY, "LATE", "ERRORED")]
    new_generation(ws, "reset")  # PENDING again, still past the deadline: not news
    assert check_due(ws, ws.clock()) == []
    assert ws.process(C, S, DAY).status is ExecutionStatus.ERRORED
    assert [event for _, event, _ in received(hooks)[2:]] == ["ERRORED"]
    assert sorted((d.event, d.generation) for d in notifications(ws)) == [("ERRORED", 1), ("ERRORED", 2),
                                                                          ("LATE", 1)]


# ------------------------------------------------------------------ migration 8
def _notices(ws: Workspace) -> list[tuple]:
    return ws.store.read(lambda con: con.execute(
        "SELECT e.run_date, n.event, n.channel, n.target, n.sent_at, n.outcome, n.detail "
        "FROM notifications n JOIN executions e USING (execution_id) ORDER BY ALL").fetchall())


def _schema_version(ws: Workspace) -> int:
    return ws.store.read(lambda con: con.execute("SELECT max(version) FROM schema_migrations").fetchall()[0][0])


def test_migration_keeps_the_notices_of_an_older_database_and_sends_none_again(home, clock, hooks, cli_env,
                                                                              cli_cmd, monkeypatch):
    # A database made by migrations 1-7 (the file is made under them, so that no read of a missing
    # file builds the process's empty workspace without migration 8), used as the code before
    # migration 8 used it: one notice per execution, event and target, whatever the generation.
    monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in migrations.MIGRATIONS if m[0] < GENERATIONS])
    Store(home / DB_FILENAME).write(lambda con: None)
    old = Workspace(home, clock=clock, actor="tester")
    init_small_demo(old)  # no deadline: nothing is LATE here
    url = hooks.url()

    def notice_sent(day: str) -> None:  # what the code before migration 8 wrote (no notifications.yaml here)
        old.store.write(lambda con: con.execute(
            "INSERT INTO notifications (execution_id, event, channel, target, sent_at, outcome, detail) "
            "SELECT execution_id, 'ERRORED', 'webhook', ?, ?, 'sent', 'HTTP 200' FROM executions "
            "WHERE client = ? AND schedule = ? AND run_date = ?", [url, clock(), C, S, day]))

    for day in (OTHER_DAY, DAY):
        old.create(C, S, day)
        assert old.process(C, S, day).status is ExecutionStatus.ERRORED
        notice_sent(day)
        clock.advance(minutes=10)
    old.reset(C, S, DAY)  # generation 2 of DAY errors too: the old code kept it quiet (the bug)
    clock.advance(minutes=10)
    assert old.process(C, S, DAY).status is ExecutionStatus.ERRORED
    before = _notices(old)
    assert len(before) == 2 and _schema_version(old) == GENERATIONS - 1
    monkeypatch.undo()
    env = {**cli_env, "HOME": str(home.parent)}

    # The CLI (a process of its own) migrates the file, then checks what is due.
    configure(home, url)
    clock.advance(minutes=10)
    check = subprocess.run([*cli_cmd, "notify", "check", "--now", clock().isoformat(), "--json"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    # Neither old notice went out again; DAY's generation 2, never notified, is (once).
    assert [(d["run_date"], d["event"], d["generation"]) for d in json.loads(check.stdout)] == [(DAY, "ERRORED", 2)]
    assert received(hooks) == [(DAY, "ERRORED", "ERRORED")]

    ws = Workspace(home, clock=clock, actor="tester")
    assert _schema_version(ws) == GENERATIONS
    after = _notices(ws)
    assert set(before) <= set(after) and len(after) == 3  # every old row kept as it was, one new
    # each old notice carries the generation it was sent for (DAY's was sent before its Reset)
    old_sent = {(r[0], r[4]) for r in before}
    assert sorted((d.run_date.isoformat(), d.generation) for d in notifications(ws)
                  if (d.run_date, d.sent_at) in old_sent) == [(OTHER_DAY, 1), (DAY, 1)]
    assert check_due(ws, clock(), retry_failed=True) == []
    listing = subprocess.run([*cli_cmd, "notify", "list", "--json"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert sorted((d["run_date"], d["generation"]) for d in json.loads(listing.stdout)) == [
        (OTHER_DAY, 1), (DAY, 1), (DAY, 2)]
    assert len(hooks.requests) == 1
