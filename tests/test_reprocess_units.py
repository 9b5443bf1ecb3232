"""A Reprocess's units of work (issue 6, benchmark 3): every unit of work is one ``Store.connect``,
and outside a held run each one attaches the DuckDB file (~2-5 ms at 10M work items) and, when it
wrote, checkpoints it. The service spends two units of its own on a Reprocess (begin: config,
state check and lease; then the audit entry, written with the status read after the run), and the
whole action attaches the file once. Counted here with wrappers around the real ``Store.connect``,
``Engine.run`` and the store's attach, on a real DuckDB file, so that a unit added back shows."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml

from allegro_ops import NotFound, Workspace
from allegro_ops.engine import Engine
from allegro_ops.store import Store, db

C, S, DAY = "units", "nightly", "2026-11-24"
ITEMS, FAIL_EVERY = 200, 20  # 10 errored work items, which fail again when reprocessed


def _errored(ws: Workspace) -> None:
    """One job of ITEMS work items, every FAIL_EVERY-th of them ERROR: the execution is ERRORED."""
    config = {"client": C, "name": S, "mode": "manual", "calendar": {"cron": "0 2 * * *", "timezone": "UTC"},
              "jobs": [{"name": "rating", "type": "demo.noop", "batch_size": 50,
                        "params": {"count": ITEMS, "fail_every": FAIL_EVERY, "error_code": "RATE_PLAN_NOT_FOUND"}}]}
    path = ws.home / "units.yaml"
    path.write_text(yaml.safe_dump(config))
    ws.apply_config(path)
    ws.create(C, S, DAY)
    assert ws.process(C, S, DAY).status.value == "ERRORED"


@pytest.fixture
def ws(prepared) -> Workspace:
    return prepared("reprocess-units", _errored)


class Units:
    """Counts units of work (``Store.connect`` entries) of the service and of the engine's run
    apart, and the times the store attached a database file."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.service: list[str] = []
        self.engine = 0
        self.attaches: list[str] = []
        self._in_engine = 0
        connect, run, attach = Store.connect, Engine.run, db._attach

        @contextlib.contextmanager
        def counted_connect(store: Store):
            if self._in_engine:
                self.engine += 1
            else:
                self.service.append(store.path.name)
            with connect(store) as con:
                yield con

        def counted_run(engine: Engine, *args, **kwargs):
            self._in_engine += 1
            try:
                return run(engine, *args, **kwargs)
            finally:
                self._in_engine -= 1

        def counted_attach(path: Path):
            self.attaches.append(Path(path).name)
            return attach(path)

        monkeypatch.setattr(Store, "connect", counted_connect)
        monkeypatch.setattr(Engine, "run", counted_run)
        monkeypatch.setattr(db, "_attach", counted_attach)


def _attempts(ws: Workspace) -> int:
    return ws.store.read(lambda con: con.execute("SELECT count(*) FROM attempts").fetchall()[0][0])


def test_a_reprocess_takes_two_units_of_work_of_the_service_and_attaches_the_file_once(ws, monkeypatch):
    before_attempts = _attempts(ws)
    units = Units(monkeypatch)
    execution = ws.reprocess(C, S, DAY)
    assert execution.status.value == "ERRORED"  # the same items fail again
    assert execution.jobs[0].error == ITEMS // FAIL_EVERY
    # begin (config, check, lease) and the audit entry with the status after the run: nothing else
    assert len(units.service) == 2, units.service
    assert units.engine >= 1  # the run itself wrote its outcomes
    assert units.attaches == [db.DB_FILENAME], units.attaches  # one attachment for the whole action
    assert str(ws.store.path.resolve()) not in db._ATTACHED  # and the file is let go when it returns
    monkeypatch.undo()
    entry = ws.audit(limit=1)[0]
    assert (entry.action, entry.target, entry.outcome, entry.reason) == ("reprocess", f"{C}/{S} {DAY}", "ERRORED", "")
    assert _attempts(ws) == before_attempts + ITEMS // FAIL_EVERY  # the errored items ran again, only they


def test_notifications_that_cannot_apply_cost_no_unit_of_work(ws, monkeypatch):
    # Only LATE notices, and the date has no deadline: after_run has nothing to read or send.
    (ws.home / "notifications.yaml").write_text(yaml.safe_dump(
        {C: {"events": ["LATE"], "webhook": {"url": "http://127.0.0.1:9/never", "timeout_s": 1}}}))
    units = Units(monkeypatch)
    assert ws.reprocess(C, S, DAY).status.value == "ERRORED"
    assert len(units.service) == 2, units.service
    monkeypatch.undo()
    assert [e.action for e in ws.audit(limit=2)] == ["reprocess", "process"]  # no notify entry: nothing sent
    assert ws.store.read(lambda con: con.execute("SELECT count(*) FROM notifications").fetchall()[0][0]) == 0


def test_an_unknown_client_or_schedule_is_not_found_and_not_audited(ws, monkeypatch):
    entries = len(ws.audit())
    for client, schedule, kind in (("nobody", S, "client"), (C, "weekly", "schedule")):
        with pytest.raises(NotFound) as info:
            ws.reprocess(client, schedule, DAY)
        assert info.value.kind == kind
    assert len(ws.audit()) == entries  # not an action on anything: no audit entry
    assert ws.execution(C, S, DAY).status.value == "ERRORED"  # and no lease was left behind
