"""Concurrent operators and readers during a write (issue 7).

Operators: N CLI processes (2, then 8), started together behind a barrier, issue the same action
(Create, Process, Reprocess, Reset) on one date: exactly one wins, the others are refused with one
line, and the database holds one execution, one set of jobs per generation, one work item per
(job, account), and each work item ran as often as the winner alone would have run it.

Readers: while a long Process writes, another process refreshes `status --json` and `job stats
--json` (through the CLI's own entry point) and runs analyst queries: every answer comes, none
shows a half-written batch, and no counter goes backwards.

Both kinds of tests accept any arrival order: a loser that checks while the winner runs and one
that checks after it ended are both refused, with different (both correct) reasons.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from allegro_ops import Workspace
from allegro_ops.demo import init_demo, resolve

pytestmark = pytest.mark.slow

C, S, DAY = "acme", "daily-billing", "2026-11-24"
TARGET = f"{C}/{S} {DAY}"
ACCOUNTS, BATCH, DELAY_MS = 60, 10, 20  # a Process of this demo runs for about a second
JOBS = ["usage-rating", "bill-run", "invoice-delivery", "payment-collection"]

# A racer: imports the CLI, says it is ready, waits for the go file, then runs the command
# exactly as `python -m allegro_ops.cli ...` would (the same main(): exit codes and messages).
_RACER = r"""
import os, sys, time
from allegro_ops.cli import main
ready, go = sys.argv[1], sys.argv[2]
open(ready, "w").close()
deadline = time.monotonic() + 120
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit(99)
    time.sleep(0.002)
sys.exit(main(sys.argv[3:]))
"""


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def race(cli_env: dict[str, str], ws: Workspace, tmp_path: Path, n: int, *args: str) -> list[Outcome]:
    """Start n processes running the same CLI command on ws and release them at the same moment."""
    env, gate = env_for(cli_env, ws.home, tmp_path), tmp_path / "gate"
    gate.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(gate / f"ready-{i}"), str(gate / "go"), *args],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    try:
        deadline = time.monotonic() + 120
        while len(list(gate.glob("ready-*"))) < n:
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
            assert time.monotonic() < deadline, "the racers did not get ready"
            time.sleep(0.02)
        (gate / "go").touch()
        outputs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [Outcome(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def one_winner(outcomes: list[Outcome], action: str) -> tuple[dict, list[str]]:
    """The winner's JSON and the losers' reasons, after checking that exactly one won and every
    other one was refused with one clear line (never a lock timeout, never a traceback)."""
    summary = [(o.code, o.err.strip()[:300]) for o in outcomes]
    assert sorted(o.code for o in outcomes) == [0] + [3] * (len(outcomes) - 1), summary
    (winner,) = [o for o in outcomes if o.code == 0]
    assert winner.err == ""
    reasons = []
    for o in (o for o in outcomes if o.code == 3):
        assert o.out == "" and o.err.count("\n") == 1 and "Traceback" not in o.err, o.err
        assert "locked" not in o.err, o.err  # the store waited; the refusal comes from the state rules
        prefix = f"error: {action} refused: execution {TARGET} is "
        assert o.err.startswith(prefix), o.err
        reasons.append(o.err[len(prefix):].strip())
    return json.loads(winner.out), reasons


def rows(ws: Workspace, sql: str, *params) -> list[tuple]:
    return ws.store.read(lambda con: con.execute(sql, list(params)).fetchall())


def attempts_per_item(ws: Workspace) -> dict[tuple[int, str, str], tuple[int, int]]:
    """(generation, job, account) -> (work_items.attempts, attempt rows), every generation; no
    (generation, job, account) has two work items."""
    found = rows(ws, (
        "SELECT j.generation, j.name, w.account_id, w.attempts, (SELECT count(*) FROM attempts a "
        "  WHERE a.job_id = w.job_id AND a.item_no = w.item_no) "
        "FROM work_items w JOIN jobs j USING (job_id) JOIN executions e USING (execution_id) "
        "WHERE e.client = ? AND e.schedule = ? AND e.run_date = ?"), C, S, DAY)
    per_item = {(g, job, acc): (n, a) for g, job, acc, n, a in found}
    assert len(per_item) == len(found), "a work item is listed twice"
    return per_item


def jobs_per_generation(ws: Workspace) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for g, name in rows(ws, "SELECT j.generation, j.name FROM jobs j JOIN executions e USING (execution_id) "
                            "WHERE e.client = ? AND e.schedule = ? AND e.run_date = ? ORDER BY j.generation, "
                            "j.sequence", C, S, DAY):
        out.setdefault(g, []).append(name)
    return out


def audit_of(ws: Workspace, action: str) -> list[str]:
    return sorted(a.outcome for a in ws.audit(C) if a.action == action and a.target == TARGET)


def env_for(cli_env: dict[str, str], home: Path, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment for this workspace: a temporary HOME, and a wait of up to 30 s (the
    default) for another process's file lock."""
    user_home = tmp_path / "user-home"
    user_home.mkdir(exist_ok=True)
    return {**cli_env, "HOME": str(user_home), "ALLEGRO_OPS_HOME": str(home), "ALLEGRO_OPS_LOCK_TIMEOUT": "30"}


# ----------------------------------------------------------------------------- workspace states
def _demo(ws: Workspace) -> Workspace:
    init_demo(ws, accounts=ACCOUNTS, seed=7, batch_size=BATCH, item_delay_ms=DELAY_MS)
    return ws


def _created(ws: Workspace) -> None:
    _demo(ws).create(C, S, DAY)


def _errored(ws: Workspace) -> None:
    _created(ws)
    ws.process(C, S, DAY)


def _errored_then_resolved(ws: Workspace) -> None:
    _errored(ws)
    resolve(ws, C)  # the data behind every error code is repaired: Reprocess completes the schedule


# ----------------------------------------------------------------------------- operators racing
N_PROCESSES = [2, 8]


@pytest.mark.parametrize("n", N_PROCESSES)
def test_n_operators_creating_one_date_make_one_execution(n, prepared, cli_env, tmp_path):
    ws = prepared("races-configured", _demo)
    winner, reasons = one_winner(race(cli_env, ws, tmp_path, n, "create", C, S, DAY, "--json"), "create")

    assert winner["status"] == "PENDING" and [j["name"] for j in winner["jobs"]] == JOBS
    assert set(reasons) == {"PENDING; create needs NOT_CREATED"}
    assert rows(ws, "SELECT count(*), min(generation) FROM executions WHERE client = ? AND run_date = ?",
                C, DAY) == [(1, 1)]
    assert jobs_per_generation(ws) == {1: JOBS}
    assert attempts_per_item(ws) == {}
    assert audit_of(ws, "create") == ["done"] + ["refused"] * (n - 1)


@pytest.mark.parametrize("n", N_PROCESSES)
def test_n_operators_processing_one_execution_run_every_work_item_once(n, prepared, cli_env, tmp_path):
    ws = prepared("races-created", _created)
    winner, reasons = one_winner(race(cli_env, ws, tmp_path, n, "process", C, S, DAY, "--json"), "process")

    assert winner["status"] == "ERRORED"
    assert set(reasons) <= {"IN_PROGRESS (a live run owns it); process needs PENDING, or IN_PROGRESS with its "
                            "owner lost", "ERRORED; process needs PENDING, or IN_PROGRESS with its owner lost"}
    print(f"\nprocess x{n}: {sum('live run' in r for r in reasons)} of {n - 1} refused while the run was live")
    per_item = attempts_per_item(ws)
    assert sorted({(g, job) for g, job, _ in per_item}) == [(1, "bill-run"), (1, "usage-rating")]
    assert len(per_item) == 2 * ACCOUNTS  # one work item per (job, account)
    assert set(per_item.values()) == {(1, 1)}  # each ran once, by the winner
    assert len(rows(ws, "SELECT DISTINCT run_token FROM attempts")) == 1
    assert jobs_per_generation(ws) == {1: JOBS}
    assert audit_of(ws, "process") == ["ERRORED"] + ["refused"] * (n - 1)


@pytest.mark.parametrize("n", N_PROCESSES)
def test_n_operators_reprocessing_one_execution_rerun_each_errored_item_once(n, prepared, cli_env, tmp_path):
    ws = prepared("races-resolved", _errored_then_resolved)
    before = attempts_per_item(ws)
    errored = {(generation, job, account) for generation, job, account in rows(
        ws, "SELECT generation, job, account_id FROM v_errors WHERE client = ? AND schedule = ? AND run_date = ?",
        C, S, DAY)}
    assert errored and {job for _, job, _ in errored} == {"bill-run"} and set(before.values()) == {(1, 1)}
    audited = audit_of(ws, "reprocess")

    winner, reasons = one_winner(race(cli_env, ws, tmp_path, n, "reprocess", C, S, DAY, "--json"), "reprocess")

    assert winner["status"] == "COMPLETED"
    assert set(reasons) <= {
        "IN_PROGRESS (a live run owns it); reprocess needs ERRORED, or an errored job and no live run",
        "COMPLETED; reprocess needs ERRORED, or an errored job and no live run"}
    print(f"\nreprocess x{n}: {sum('live run' in r for r in reasons)} of {n - 1} refused while the run was live")
    after = attempts_per_item(ws)
    assert len(after) == len(JOBS) * ACCOUNTS  # the paused jobs were listed once
    expected = {key: (2, 2) if key in errored else (1, 1) for key in after}
    assert after == expected  # the errored items ran again once, the rest (old and new) once in all
    assert len(rows(ws, "SELECT DISTINCT run_token FROM attempts")) == 2  # the first Process and one Reprocess
    assert jobs_per_generation(ws) == {1: JOBS}
    assert audit_of(ws, "reprocess") == sorted(audited + ["COMPLETED"] + ["refused"] * (n - 1))


@pytest.mark.parametrize("n", N_PROCESSES)
def test_n_operators_resetting_one_execution_make_one_new_generation(n, prepared, cli_env, tmp_path):
    ws = prepared("races-errored", _errored)
    before = attempts_per_item(ws)

    winner, reasons = one_winner(race(cli_env, ws, tmp_path, n, "reset", C, S, DAY, "--json"), "reset")

    assert winner["status"] == "PENDING" and {j["status"] for j in winner["jobs"]} == {"PENDING"}
    assert all(r.startswith("PENDING") for r in reasons), reasons
    assert rows(ws, "SELECT generation FROM executions WHERE client = ? AND run_date = ?", C, DAY) == [(2,)]
    assert rows(ws, "SELECT generation, status, action FROM archived_generations") == [(1, "ERRORED", "reset")]
    assert jobs_per_generation(ws) == {1: JOBS, 2: JOBS}
    assert attempts_per_item(ws) == before  # the archived generation's work items and attempts are kept
    assert audit_of(ws, "reset") == ["done"] + ["refused"] * (n - 1)


@pytest.mark.parametrize("n", N_PROCESSES)
def test_n_operators_recreating_one_execution_make_one_new_generation(n, prepared, cli_env, tmp_path):
    """Recreate after a config change: the winner takes the new version; the others are told the
    execution already runs it (a second Recreate would rebuild the same jobs)."""
    import yaml

    ws = prepared("races-created", _created)
    doc = yaml.safe_load(ws.export_config(C, S))
    doc["jobs"] = doc["jobs"][:2]
    (tmp_path / "two-jobs.yaml").write_text(yaml.safe_dump(doc))
    ws.apply_config(tmp_path / "two-jobs.yaml")

    winner, reasons = one_winner(race(cli_env, ws, tmp_path, n, "recreate", C, S, DAY, "--json"), "recreate")

    assert winner["config_version"] == 2 and [j["name"] for j in winner["jobs"]] == JOBS[:2]
    assert all(r.endswith("recreate needs a newer config version (config apply)") for r in reasons), reasons
    assert rows(ws, "SELECT generation, config_version FROM executions WHERE client = ? AND run_date = ?",
                C, DAY) == [(2, 2)]
    assert rows(ws, "SELECT generation, action FROM archived_generations") == [(1, "recreate")]
    assert audit_of(ws, "recreate") == ["done"] + ["refused"] * (n - 1)


# ----------------------------------------------------------------------------- readers during a write
READER_ACCOUNTS, READER_BATCH, READER_DELAY_MS = 1000, 20, 4  # 2000 work items, about 3 s alone

# A reader: loops over `status --json`, `job stats --json` (the CLI's main(), in process, so that a
# refresh costs what it costs a dashboard and not a Python start-up) and one analyst snapshot,
# recording every answer and its latency, until the stop file appears; then one last round.
# The test starts the run once the ready file shows that a first round was read.
_READER = r"""
import contextlib, io, json, os, sys, time
from allegro_ops import query
from allegro_ops.cli import main

home, ready, stop, out, C, S, DAY = sys.argv[1:8]
where = "client = ? AND schedule = ? AND run_date = ?"

def cli(kind, *args):
    so, se = io.StringIO(), io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        code = main(["--home", home, *args])
    return {"kind": kind, "code": code, "err": se.getvalue(), "s": time.perf_counter() - t,
            "data": json.loads(so.getvalue()) if code == 0 else None}

def analyst():
    t = time.perf_counter()
    try:
        with query.session(home) as s:
            jobs = s.sql(f"SELECT job, total, processed, error, pending FROM v_jobs WHERE {where} "
                         "ORDER BY job_sequence", [C, S, DAY])
            items = s.sql("SELECT job, count(*) AS total, count(*) FILTER (WHERE status = 'PROCESSED') AS processed, "
                          f"count(*) FILTER (WHERE status = 'ERROR') AS error FROM v_work_items WHERE {where} "
                          "GROUP BY job", [C, S, DAY])
            mixed = s.sql(f"SELECT job, batch_id FROM v_work_items WHERE {where} GROUP BY ALL "
                          "HAVING count(*) FILTER (WHERE status = 'PENDING') NOT IN (0, count(*))", [C, S, DAY])
            errored = query.errors(s, client=C, schedule=S, date_from=DAY, date_to=DAY)
        data = {"jobs": jobs.to_dict("records"), "items": items.to_dict("records"),
                "mixed": mixed.to_dict("records"), "errored": len(errored)}
        return {"kind": "analyst", "code": 0, "err": "", "s": time.perf_counter() - t, "data": data}
    except Exception as exc:
        return {"kind": "analyst", "code": 1, "err": f"{type(exc).__name__}: {exc}", "s": time.perf_counter() - t,
                "data": None}

records = []
last = False
while True:
    last = os.path.exists(stop)
    records.append(cli("status", "status", C, S, DAY, "--json"))
    for job in ("usage-rating", "bill-run"):
        records.append(cli("stats " + job, "job", "stats", C, S, DAY, job, "--json"))
    records.append(analyst())
    if not os.path.exists(ready):
        open(ready, "w").close()  # one round read before the run starts
    if last:
        break
with open(out, "w") as f:
    json.dump(records, f, default=str)
"""


def _half_written(done: int, pending: int) -> bool:
    """Whether job counters show part of a batch: every batch is READER_BATCH items (the total is a
    multiple of it), so until a job has no pending item its done count is a whole number of batches."""
    return pending > 0 and done % READER_BATCH != 0


def _check_answer(r: dict) -> dict[str, tuple[int, int, int]]:
    """Check one answer for a half-written batch; return (total, processed, error) per job."""
    data, seen = r["data"], {}
    if r["kind"] == "status":
        for j in data["jobs"]:
            assert j["processed"] + j["error"] + j["pending"] == j["total"], r
            assert not _half_written(j["processed"] + j["error"], j["pending"]), r
            seen[j["name"]] = (j["total"], j["processed"], j["error"])
    elif r["kind"].startswith("stats "):
        assert data["pending"] == data["total"] - data["processed"] - data["error"], r
        assert sum(e["count"] for e in data["errors_by_code"]) == data["error"], r  # counters match the items
        assert not _half_written(data["processed"] + data["error"], data["pending"]), r
        seen[r["kind"][6:]] = (data["total"], data["processed"], data["error"])
    else:
        assert data["mixed"] == [], r  # no batch is partly written
        items = {i["job"]: (i["total"], i["processed"], i["error"]) for i in data["items"]}
        for j in data["jobs"]:
            assert not _half_written(j["processed"] + j["error"], j["pending"]), r
            assert items.get(j["job"], (0, 0, 0)) == (j["total"], j["processed"], j["error"]), r
            seen[j["job"]] = (j["total"], j["processed"], j["error"])
        assert data["errored"] == sum(j["error"] for j in data["jobs"]), r
    return seen


def test_readers_during_a_long_process_always_answer_and_never_see_a_half_written_batch(home, clock, cli_cmd,
                                                                                          cli_env, tmp_path):
    ws = Workspace(home, clock=clock, actor="tester")
    init_demo(ws, accounts=READER_ACCOUNTS, seed=7, batch_size=READER_BATCH, item_delay_ms=READER_DELAY_MS)
    ws.create(C, S, DAY)
    ready, stop, out = tmp_path / "ready", tmp_path / "stop", tmp_path / "answers.json"
    env = env_for(cli_env, home, tmp_path)
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(home), str(ready), str(stop), str(out), C, S, DAY],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runner = None
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():  # the reader has started and read the PENDING execution once
            assert reader.poll() is None, reader.communicate()
            assert time.monotonic() < deadline, "the reader did not start"
            time.sleep(0.02)
        started = time.monotonic()
        runner = subprocess.Popen([*cli_cmd, "process", C, S, DAY, "--json"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        run_out, run_err = runner.communicate(timeout=180)
        run_s = time.monotonic() - started
        stop.touch()
        _, reader_err = reader.communicate(timeout=120)
    finally:
        for p in (reader, runner):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert runner.returncode == 0, run_err
    assert json.loads(run_out)["status"] == "ERRORED"
    assert reader.returncode == 0, reader_err
    answers = json.loads(out.read_text())

    failed = [r for r in answers if r["code"] != 0 or r["err"]]
    assert failed == []  # every refresh and query answered, none gave up on the lock
    last: dict[str, tuple[int, int, int]] = {}  # job -> (total, processed, error) at the previous answer
    statuses = []
    for r in answers:  # in the order they were read, whatever their kind
        for job, counts in _check_answer(r).items():
            before = last.get(job, (0, 0, 0))
            assert all(now >= then for now, then in zip(counts, before)), (r["kind"], job, before, counts)
            last[job] = counts
        if r["kind"] == "status":
            statuses.append(r["data"]["status"])
    # the status only moves forward, and the reads really happened while the run was writing
    order = ["PENDING", "IN_PROGRESS", "ERRORED"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)
    assert statuses[-1] == "ERRORED"
    progress = {(r["data"]["jobs"][0]["processed"], r["data"]["jobs"][1]["processed"])
                for r in answers if r["kind"] == "status" and r["data"]["status"] == "IN_PROGRESS"}
    assert len(progress) >= 5, progress
    assert last["usage-rating"] == (READER_ACCOUNTS, READER_ACCOUNTS, 0)

    report = []
    for kind in sorted({r["kind"] for r in answers}):
        lat = sorted(r["s"] for r in answers if r["kind"] == kind)
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        report.append(f"{kind}: n={len(lat)} p50={statistics.median(lat) * 1000:.0f}ms p95={p95 * 1000:.0f}ms "
                      f"max={lat[-1] * 1000:.0f}ms")
        assert lat[-1] < 10.0, report[-1]  # waiting for the writer is brief, far from the lock timeout
    print(f"\nreaders during a write ({2 * READER_ACCOUNTS} work items, run {run_s:.1f}s):\n  " + "\n  ".join(report))
