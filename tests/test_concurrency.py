"""Several OS processes on one workspace: one run per execution, a killed run resumes without
redoing committed batches, and readers wait for the writer instead of failing on the lock."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from allegro_ops import ExecutionStatus, Phase, Workspace
from allegro_ops.cli import main
from allegro_ops.demo import init_demo

pytestmark = pytest.mark.slow

C, S, DAY = "acme", "daily-billing", "2026-11-24"


def rows(ws: Workspace, sql: str, *params):
    return ws.store.read(lambda con: con.execute(sql, list(params)).fetchall())


def attempts_per_item(ws: Workspace) -> dict[tuple[str, int], tuple[int, int]]:
    """(job, item_no) -> (work_items.attempts, attempt rows)."""
    return {(job, n): (attempts, rows_) for job, n, attempts, rows_ in rows(ws, (
        "SELECT j.name, w.item_no, w.attempts, (SELECT count(*) FROM attempts a "
        "  WHERE a.job_id = w.job_id AND a.item_no = w.item_no) "
        "FROM work_items w JOIN jobs j USING (job_id)"))}


def start(cli_cmd, cli_env, *args) -> subprocess.Popen:
    return subprocess.Popen([*cli_cmd, *args], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def prepare(home, clock, *, accounts: int, delay_ms: float) -> Workspace:
    ws = Workspace(home, clock=clock, actor="tester")
    init_demo(ws, accounts=accounts, seed=7, batch_size=10, item_delay_ms=delay_ms)
    ws.create(C, S, DAY)
    return ws


def test_two_processes_processing_one_execution_run_it_once(home, clock, cli_cmd, cli_env):
    ws = prepare(home, clock, accounts=60, delay_ms=10)
    first = start(cli_cmd, cli_env, "process", C, S, DAY, "--json")
    second = start(cli_cmd, cli_env, "process", C, S, DAY, "--json")
    results = [(p.wait(timeout=180), *p.communicate()) for p in (first, second)]

    assert sorted(code for code, _, _ in results) == [0, 3]
    (_, ran_out, _), = [r for r in results if r[0] == 0]
    (_, refused_out, refused_err), = [r for r in results if r[0] == 3]
    assert json.loads(ran_out)["status"] == "ERRORED"
    assert refused_out == "" and refused_err.count("\n") == 1 and "Traceback" not in refused_err
    assert refused_err.startswith(f"error: process refused: execution {C}/{S} {DAY} is ")

    per_item = attempts_per_item(ws)
    assert len(per_item) == 2 * 60  # usage-rating and bill-run listed once each
    assert set(per_item.values()) == {(1, 1)}
    assert len({t for (t,) in rows(ws, "SELECT DISTINCT run_token FROM attempts")}) == 1
    outcomes = sorted(a.outcome for a in ws.audit(C) if a.action == "process")
    assert outcomes == ["ERRORED", "refused"]


def test_a_killed_run_is_resumed_by_process_without_redoing_committed_batches(home, clock, cli_cmd, cli_env,
                                                                                capsys):
    ws = prepare(home, clock, accounts=160, delay_ms=20)
    runner = start(cli_cmd, cli_env, "process", C, S, DAY)
    deadline = time.monotonic() + 120
    try:
        while True:  # wait until some batches are committed, then kill the run mid-way
            assert runner.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline
            jobs = ws.execution(C, S, DAY).jobs
            if jobs[0].processed >= 30:
                break
            time.sleep(0.1)
        os.kill(runner.pid, signal.SIGKILL)
    finally:
        runner.wait(timeout=30)
    assert runner.returncode == -signal.SIGKILL

    capsys.readouterr()
    assert main(["--home", str(home), "status", C, S, DAY, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "IN_PROGRESS"
    assert status["actions"]["process"] is True and status["actions"]["reset"] is True
    assert ws.execution(C, S, DAY).phase is Phase.STALLED

    before = attempts_per_item(ws)
    committed = {key for key, (attempts, _) in before.items() if attempts}
    assert committed and set(before[k] for k in committed) == {(1, 1)}
    assert len(committed) < len(before) or ws.execution(C, S, DAY).jobs[1].total == 0
    killed_tokens = {t for (t,) in rows(ws, "SELECT DISTINCT run_token FROM attempts")}

    e = ws.process(C, S, DAY)  # resume
    assert e.status is ExecutionStatus.ERRORED
    assert [j.status.value for j in e.jobs] == ["COMPLETED", "ERRORED", "PENDING", "PENDING"]
    assert e.jobs[0].processed == 160 and e.jobs[1].total == 160

    after = attempts_per_item(ws)
    assert len(after) == 2 * 160
    assert set(after.values()) == {(1, 1)}  # nothing ran twice
    assert rows(ws, "SELECT count(*) FROM attempts") == [(len(after),)]
    still_theirs = rows(ws, "SELECT count(*) FROM attempts WHERE list_contains(?, run_token)", sorted(killed_tokens))
    assert still_theirs == [(len(committed),)]  # committed batches kept the killed run's attempt


def test_status_answers_while_another_process_is_writing(home, clock, cli_cmd, cli_env):
    ws = prepare(home, clock, accounts=80, delay_ms=20)
    runner = start(cli_cmd, cli_env, "process", C, S, DAY)
    seen = []
    reader = None
    try:
        while runner.poll() is None:
            e = ws.execution(C, S, DAY)  # opens the file between the writer's transactions
            seen.append((e.status, e.jobs[0].processed))
            if e.status is ExecutionStatus.IN_PROGRESS and reader is None:
                reader = start(cli_cmd, cli_env, "status", C, S, DAY, "--json")
            time.sleep(0.15)
        assert runner.wait(timeout=120) == 0, runner.stderr.read()
    finally:
        if runner.poll() is None:
            runner.kill()
    assert reader is not None, "the run ended before it was seen IN_PROGRESS"
    code = reader.wait(timeout=120)
    out, err = reader.communicate()
    assert code == 0 and err == ""
    assert json.loads(out)["status"] in ("IN_PROGRESS", "ERRORED")
    in_progress = [p for status, p in seen if status is ExecutionStatus.IN_PROGRESS]
    assert len(in_progress) >= 2 and in_progress == sorted(in_progress)  # progress is visible, never backwards
    assert ws.execution(C, S, DAY).status is ExecutionStatus.ERRORED


def test_threads_of_one_process_racing_to_process_run_it_once_and_refuse_the_others(prepared, monkeypatch):
    """A double click in the dashboard: the losers are refused (the run is live), never told the
    run was taken over from them. The engine is made slow to start, so that the others check the
    execution while the winner holds the lease but has not begun to run."""
    import threading

    from allegro_ops import ActionRefused
    from allegro_ops.engine import Engine

    from conftest import init_small_demo

    slow_start = Engine.run

    def run(self, *args, **kwargs):
        time.sleep(0.3)
        return slow_start(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "run", run)
    ws = prepared("threads-pending", lambda w: (init_small_demo(w, accounts=20), w.create(C, S, DAY)))
    outcomes: list[str] = []

    def click() -> None:
        try:
            outcomes.append(ws.process(C, S, DAY).status.value)
        except ActionRefused as exc:
            outcomes.append("refused" if "is IN_PROGRESS (a live run owns it)" in str(exc) else str(exc))
        except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
            outcomes.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=click) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["ERRORED", "refused", "refused"]
    assert set(attempts_per_item(ws).values()) == {(1, 1)}


def test_threads_sharing_the_workspace_file_during_a_run_break_nothing(prepared, monkeypatch):
    """A run's heartbeat thread writes between its batch writes, and the dashboard refreshes the
    execution from other threads of the same process: every read answers and the run completes.
    (The heartbeat beats every 10 ms here instead of every 10 s, as in a long run.)"""
    import threading

    from allegro_ops import lease

    from conftest import init_small_demo

    beat = lease.Heartbeat.__init__
    monkeypatch.setattr(lease.Heartbeat, "__init__", lambda self, store, execution_id, token, clock, every=10.0:
                        beat(self, store, execution_id, token, clock, every=0.01))

    ws = prepared("threads-pending", lambda w: (init_small_demo(w, accounts=20), w.create(C, S, DAY)))
    reader = Workspace(ws.home, clock=ws.clock, actor="refresh")
    stop, seen, failures = threading.Event(), [], []

    def refresh() -> None:
        while not stop.is_set():
            try:
                seen.append(reader.execution(C, S, DAY).status)
            except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
                failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.01)

    threads = [threading.Thread(target=refresh)]
    for t in threads:
        t.start()
    try:
        e = ws.process(C, S, DAY)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert failures == []
    assert e.status is ExecutionStatus.ERRORED and e.jobs[1].total == 20
    assert ExecutionStatus.IN_PROGRESS in seen
    assert set(attempts_per_item(ws).values()) == {(1, 1)}
