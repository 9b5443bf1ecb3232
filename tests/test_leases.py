"""Stale leases: a run whose owner died is detected — on this host by its process, on another
host by its heartbeat — and reported as "owner lost" (status, CLI, dashboard); the next Process
takes it over, and the old owner, should it wake up, can write nothing more."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import threading

import pytest

from allegro_ops import ActionRefused, ExecutionStatus, Phase, Workspace, lease
from allegro_ops.engine import Engine, LeaseLost, _Run
from allegro_ops.store import executions as ex_sql
from conftest import init_small_demo
from widgets.views import activity_view

C, S = "acme", "daily-billing"
DAY = dt.date(2026, 11, 24)
OTHER_HOST = "worker-7.billing.internal"


def lease_of_other_host(ws: Workspace, beat: dt.datetime) -> str:
    """The execution IN_PROGRESS, leased by a process on another host that last beat at ``beat``."""
    token = lease.new_token()

    def write(con):
        row = ex_sql.find_execution(con, C, S, DAY)
        ex_sql.take_lease(con, row.execution_id, token, OTHER_HOST, 4242, beat)
        ex_sql.set_execution(con, row.execution_id, status="IN_PROGRESS", started_at=beat)

    ws.store.write(write)
    return token


@pytest.fixture
def created(prepared) -> Workspace:
    def build(ws: Workspace) -> None:
        init_small_demo(ws)
        ws.create(C, S, DAY)

    return prepared("leases-created", build)


def test_a_fresh_heartbeat_from_another_host_is_a_live_run(created: Workspace, clock) -> None:
    lease_of_other_host(created, clock() - dt.timedelta(seconds=5))
    e = created.execution(C, S, DAY)
    assert e.phase is Phase.RUNNING and e.lease.host == OTHER_HOST and e.lease.alive
    with pytest.raises(ActionRefused, match=r"is IN_PROGRESS \(a live run owns it\)"):
        created.process(C, S, DAY)


def test_a_stale_heartbeat_is_owner_lost_everywhere_and_process_takes_the_run_over(created: Workspace, clock,
                                                                                   cli_cmd, cli_env) -> None:
    old = lease_of_other_host(created, clock() - lease.HEARTBEAT_TIMEOUT - dt.timedelta(seconds=1))
    e = created.execution(C, S, DAY)
    assert e.phase is Phase.STALLED and not e.lease.alive and e.to_dict()["owner_lost"] is True
    assert activity_view(e).status.text == "IN_PROGRESS (owner lost)"
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(created.home)}
    text = subprocess.run([*cli_cmd, "status", C, S, str(DAY)], env=env, capture_output=True, text=True)
    assert "owner lost: Process resumes it" in text.stdout
    as_json = subprocess.run([*cli_cmd, "status", C, S, str(DAY), "--json"], env=env, capture_output=True, text=True)
    assert json.loads(as_json.stdout)["owner_lost"] is True
    # Process takes over: a new lease, the run goes to its end, the lease is released.
    e = created.process(C, S, DAY)
    assert e.status is ExecutionStatus.ERRORED and e.lease is None
    entry = created.audit(limit=1)[0]  # the lost run left no entry of its own; the takeover says whose it was
    assert (entry.action, entry.outcome) == ("process", "ERRORED")
    assert entry.reason.startswith(f"took over a run whose owner was lost ({OTHER_HOST} pid 4242, last heartbeat")
    # The old owner wakes up: every write it tries is refused, nothing of it lands.
    row = created.store.read(lambda con: ex_sql.find_execution(con, C, S, DAY))
    ghost = _Run(row.execution_id, row.generation, C, S, DAY, old)
    with pytest.raises(LeaseLost, match="was taken over by another process"):
        created.store.write(lambda con: Engine._check_lease(con, ghost))
    assert not created.store.write(lambda con: ex_sql.heartbeat(con, row.execution_id, old, clock()))


def test_the_heartbeat_keeps_a_slow_run_alive_for_other_hosts(prepared, clock, monkeypatch) -> None:
    """While handlers run longer than the write pace, the heartbeat thread refreshes the lease."""

    beats: list[dt.datetime] = []
    real = ex_sql.heartbeat

    def counting(con, execution_id, token, now):
        if threading.current_thread().name == "allegro-heartbeat":
            beats.append(now)
        return real(con, execution_id, token, now)

    original_init = lease.Heartbeat.__init__

    def fast_init(self, store, execution_id, token, clock, every=10.0):
        original_init(self, store, execution_id, token, clock, every=0.05)

    monkeypatch.setattr(lease.Heartbeat, "__init__", fast_init)
    monkeypatch.setattr(ex_sql, "heartbeat", counting)
    ws = prepared("leases-slow", lambda w: (init_small_demo(w, item_delay_ms=15), w.create(C, S, DAY)))
    ticking = iter(clock() + dt.timedelta(milliseconds=i) for i in range(10**6))
    ws.clock = ws.engine.clock = lambda: next(ticking)
    ws.process(C, S, DAY)
    assert len(beats) >= 5 and beats == sorted(beats)
