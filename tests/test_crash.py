"""Crash mid-run: ``allegro-ops process`` is killed (SIGKILL, via ALLEGRO_OPS_FAULT) at every fault
point of a run, in work-item generation, batch execution, result writing and job transition.
An operator then recovers with the CLI (status, Process, demo resolve, Reprocess) and the final
state must hold: every work item PROCESSED exactly once, no committed batch redone, and the demo's
side effects (invoices e-mailed, cards charged; keyed by account and date) with no gap and no
duplicate effect.

The demo is small (60 accounts, batches of 10, concurrency 2: six batches per job) and its
bill-run and invoice-delivery data defects are repaired before the killed run, so that run
crosses all four jobs, both side-effect jobs included, and pauses at payment collection on the
seeded CARD_EXPIRED error code.
"""
from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass

import pytest

from allegro_ops import Workspace
from allegro_ops.cli import main
from allegro_ops.demo import init_demo, resolve
from allegro_ops.faults import FAULT_ENV, POINTS
from allegro_ops.jobs.demo import effective_side_effects, read_side_effects

pytestmark = pytest.mark.slow  # a CLI subprocess per case

C, S, DAY = "acme", "daily-billing", "2026-11-24"
ACCOUNTS, BATCH = 60, 10
JOBS = ("usage-rating", "bill-run", "invoice-delivery", "payment-collection")
EFFECT_JOBS = ("invoice-delivery", "payment-collection")
LETTER = {"PENDING": "P", "IN_PROGRESS": "I", "COMPLETED": "C", "ERRORED": "E"}


@dataclass(frozen=True)
class Case:
    fault: str  # ALLEGRO_OPS_FAULT: <point>[:<n-th arrival>]
    jobs: str | None  # the jobs' statuses right after the kill (P, I, C, E), when the point fixes them
    owner_lost: bool = True  # the kill left the execution IN_PROGRESS with no live owner
    in_flight: bool | None = False  # side-effect calls were made whose results were never committed
    # (None: timing decides)

    def __str__(self) -> str:
        return self.fault


# Per job: 1 listing, 6 batch-submitted, 12 item-done (pieces of 8 and 2 items), 1 to 3 result
# writes (timing decides; at least one per job, so arrival 4 is always reached). About 3-5 s a case.
CASES = [
    Case("run-begun", "PPPP"),
    Case("items-listed", "PPPP"),
    Case("items-stored", "PPPP"),
    Case("job-started", "IPPP"),
    Case("batch-submitted", "IPPP"),
    Case("item-done", "IPPP"),
    Case("results-writing", "IPPP"),
    Case("results-written", "IPPP"),
    Case("job-finishing", "IPPP"),
    Case("job-finished", "CPPP"),
    Case("settling", "CCCE"),
    Case("settled", "CCCE", owner_lost=False),
    # later arrivals: in the side-effect jobs, or late in a job
    Case("items-stored:4", "CCCP"),
    Case("job-started:3", "CCIP"),
    Case("batch-submitted:21", "CCCI", in_flight=None),
    Case("item-done:30", "CCIP", in_flight=True),
    Case("item-done:44", "CCCI", in_flight=True),
    Case("results-writing:4", None, in_flight=None),
    Case("results-written:4", None, in_flight=None),
    Case("job-finishing:3", "CCIP"),
    Case("job-finished:4", "CCCE"),
]


def test_the_cases_cover_every_fault_point():
    assert {c.fault.partition(":")[0] for c in CASES} == set(POINTS)


def _build(ws: Workspace) -> None:
    init_demo(ws, accounts=ACCOUNTS, seed=7, batch_size=BATCH, concurrency=2, side_effects=True)
    for code in ("RATE_PLAN_NOT_FOUND", "TAX_RULE_MISSING", "INVALID_EMAIL"):
        resolve(ws, C, code)
    ws.create(C, S, DAY)


def _rows(ws: Workspace, sql: str, *params) -> list[tuple]:
    return ws.store.read(lambda con: con.execute(sql, list(params)).fetchall())


def _items(ws: Workspace) -> dict[tuple[str, str], tuple[str, int]]:
    """(job, account) -> (status, attempts) of the current generation's work items; one row each."""
    rows = _rows(ws, "SELECT j.name, w.account_id, w.status, w.attempts FROM work_items w "
                     "JOIN jobs j USING (job_id) JOIN executions e USING (execution_id) "
                     "WHERE j.generation = e.generation AND e.client = ? AND e.run_date = ?", C, DAY)
    keys = Counter((job, account) for job, account, _, _ in rows)
    assert [k for k, n in keys.items() if n > 1] == [], "a work item is stored twice"
    return {(job, account): (status, attempts) for job, account, status, attempts in rows}


def _attempts(ws: Workspace) -> dict[tuple[str, str], list[tuple]]:
    """(job, account) -> its attempt rows (attempt, status, batch_id, run_token), in order."""
    out: dict[tuple[str, str], list[tuple]] = {}
    for job, account, *attempt in _rows(
            ws, "SELECT j.name, w.account_id, a.attempt, a.status, a.batch_id, a.run_token FROM attempts a "
                "JOIN work_items w ON w.job_id = a.job_id AND w.item_no = a.item_no "
                "JOIN jobs j ON j.job_id = a.job_id JOIN executions e USING (execution_id) "
                "WHERE j.generation = e.generation AND e.client = ? AND e.run_date = ? "
                "ORDER BY j.name, w.account_id, a.attempt", C, DAY):
        out.setdefault((job, account), []).append(tuple(attempt))
    return out


def _check_counters(ws: Workspace) -> None:
    """Each job's counters equal the counts of its work items; a finished job has none pending."""
    items = _items(ws)
    for job in ws.execution(C, S, DAY).jobs:
        statuses = Counter(status for (name, _), (status, _) in items.items() if name == job.name)
        assert (job.total, job.processed, job.error) == (
            sum(statuses.values()), statuses["PROCESSED"], statuses["ERROR"]), job.name
        if job.status.value in ("COMPLETED", "ERRORED"):
            assert job.processed + job.error == job.total == ACCOUNTS, job.name


def _check_history(items, attempts) -> None:
    """Each item's attempt rows are its history: numbered 1..n, n = its attempts, the last one its
    status, every earlier one an ERROR (only errored items run again)."""
    assert set(attempts) <= set(items)
    for key, (status, count) in items.items():
        rows = attempts.get(key, [])
        assert [r[0] for r in rows] == list(range(1, count + 1)), key
        if rows:
            assert rows[-1][1] == status, key
            assert all(r[1] == "ERROR" for r in rows[:-1]), f"{key} ran again after it was PROCESSED"
        else:
            assert status == "PENDING", key


def _effects(home) -> dict[str, list[dict]]:
    return {job: read_side_effects(home, C, job) for job in EFFECT_JOBS}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_run_killed_at_a_fault_point_is_recovered_with_every_item_processed_once(
        case: Case, prepared, cli_cmd, cli_env, capsys):
    ws = prepared("crash", _build)
    home = ws.home
    audit_before = _audit_log(ws)
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(home), FAULT_ENV: case.fault}
    run = subprocess.Popen([*cli_cmd, "process", C, S, DAY], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == -signal.SIGKILL, f"not killed at {case.fault}: {run.returncode} {err}"

    # ---- right after the kill: what the killed run committed, and what it did outside
    e = ws.execution(C, S, DAY)
    if case.jobs is not None:
        assert "".join(LETTER[j.status.value] for j in e.jobs) == case.jobs
    _check_counters(ws)
    items_at_kill, attempts_at_kill = _items(ws), _attempts(ws)
    _check_history(items_at_kill, attempts_at_kill)
    assert len({rows[-1][3] for rows in attempts_at_kill.values()}) <= 1  # all written by the killed run
    effects_at_kill = _effects(home)
    assert {c["pid"] for calls in effects_at_kill.values() for c in calls} <= {run.pid}
    in_flight = set()
    for job, calls in effects_at_kill.items():
        assert len({c["key"] for c in calls}) == len(calls)  # one run calls once per key
        for c in calls:
            status, _ = items_at_kill[(job, c["account_id"])]
            if status != "PROCESSED":
                assert status == "PENDING"  # the call succeeded; only its result was never committed
                in_flight.add(c["key"])
    if case.in_flight is not None:
        assert bool(in_flight) is case.in_flight, sorted(in_flight)

    # ---- the operator's view: the run's owner is lost, Process resumes it
    capsys.readouterr()
    assert main(["--home", str(home), "status", C, S, DAY]) == 0
    text = capsys.readouterr().out
    state = _cli(capsys, home, "status", C, S, DAY)
    if case.owner_lost:
        assert state["status"] == "IN_PROGRESS" and state["owner_lost"] is True
        assert "IN_PROGRESS" in text and "owner lost" in text
    else:
        assert state["status"] == "ERRORED" and state["owner_lost"] is False and "owner lost" not in text

    recovery = []  # (action, outcome), as the audit log should have them
    while state["actions"]["process"] or (state["status"] == "IN_PROGRESS" and state["actions"]["reprocess"]):
        action = "process" if state["actions"]["process"] else "reprocess"
        state = _cli(capsys, home, action, C, S, DAY)
        recovery.append((action, state["status"]))
        assert len(recovery) <= 2, f"no end to recovery: {recovery}"
    assert state["status"] == "ERRORED" and state["owner_lost"] is False
    assert [j["status"] for j in state["jobs"]] == ["COMPLETED", "COMPLETED", "COMPLETED", "ERRORED"]
    assert _cli(capsys, home, "demo", "resolve", C) == {"RATE_PLAN_NOT_FOUND": 0, "TAX_RULE_MISSING": 0,
                                                        "INVALID_EMAIL": 0, "CARD_EXPIRED": 1}
    recovery.append(("demo resolve", "done"))
    while state["status"] != "COMPLETED":
        assert state["actions"]["reprocess"], state
        state = _cli(capsys, home, "reprocess", C, S, DAY)
        recovery.append(("reprocess", state["status"]))
        assert len(recovery) <= 5, f"no end to Reprocess: {recovery}"

    # ---- the final state: every work item PROCESSED exactly once; counters add up
    e = ws.execution(C, S, DAY)
    assert [j.status.value for j in e.jobs] == ["COMPLETED"] * 4
    _check_counters(ws)
    items, attempts = _items(ws), _attempts(ws)
    assert set(items) == {(job, f"ACME-{i:06d}") for job in JOBS for i in range(1, ACCOUNTS + 1)}
    assert {status for status, _ in items.values()} == {"PROCESSED"}
    _check_history(items, attempts)
    # every item ran once, and the one CARD_EXPIRED item once more after demo resolve
    assert sum(len(rows) for rows in attempts.values()) == len(JOBS) * ACCOUNTS + 1

    # ---- no committed batch is redone: committed history stays as it was, and is only appended to
    for key, rows in attempts_at_kill.items():
        assert attempts[key][: len(rows)] == rows, key
        if items_at_kill[key][0] == "PROCESSED":
            assert attempts[key] == rows, f"{key} was PROCESSED by the killed run and ran again"
    assert max(sum(r[1] == "PROCESSED" for r in rows) for rows in attempts.values()) == 1

    # ---- side effects: no gap, no duplicate effect; only the in-flight calls were repeated
    effects = _effects(home)
    for job, calls in effects.items():
        assert calls[: len(effects_at_kill[job])] == effects_at_kill[job]  # the ledger is append-only
        processed = {f"{C}/{account}/{DAY}/{job}" for (name, account), (status, _) in items.items()
                     if name == job and status == "PROCESSED"}
        assert set(effective_side_effects(calls)) == processed
        for key, n in Counter(c["key"] for c in calls).items():
            done = sum(r[1] == "PROCESSED" for r in attempts[(job, key.split("/")[1])])
            assert n == done + (key in in_flight), f"{key}: {n} calls"
    repeated = {k for calls in effects.values() for k, n in Counter(c["key"] for c in calls).items() if n > 1}
    assert repeated == in_flight

    # ---- the audit log: the killed Process left no entry at all (an action is audited when it
    # ends); the recovery actions are there, in order, with their outcomes
    assert _audit_log(ws) == audit_before + recovery


def _audit_log(ws: Workspace) -> list[tuple[str, str]]:
    """(action, outcome) of the run actions and demo resolves for the client, oldest first."""
    return [(a.action, a.outcome) for a in reversed(ws.audit(C))
            if a.action in ("process", "reprocess", "demo resolve")]


def _cli(capsys, home, *args) -> dict:
    """Run one CLI command in this process (the killed process is gone; the file is free) with --json."""
    capsys.readouterr()
    code = main(["--home", str(home), *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)
