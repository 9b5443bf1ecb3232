"""Hanging and failing handlers: a per-item or per-batch timeout turns a hung call into the error
TIMEOUT and the run goes on; a handler that raises anything, returns garbage, or kills its worker
ends as errored work items with codes, never as a stuck execution."""
from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from allegro_ops import ExecutionStatus, ItemInput, JobContext, JobType, Workspace, WorkItemError, register
from allegro_ops.batches import Limits, process_batch

DAY = dt.date(2026, 11, 24)
ACCOUNTS = [f"A-{i:03d}" for i in range(20)]
RELEASE = threading.Event()  # set by a test to let hung calls return


@register
class Behaving(JobType):
    """Each account's payload says what its call does: ok, hang, slow, garbage, bad-code, exit, …"""

    name = "test.behaving"

    def list_work_items(self, ctx: JobContext) -> list[tuple[str, Any]]:
        plan = ctx.params.get("plan", {})
        return [(a, {"do": plan.get(a, "ok")}) for a in ctx.params.get("accounts", ACCOUNTS)]

    def process_item(self, item: ItemInput, state: Any, ctx: JobContext) -> Any:
        do = item.payload["do"]
        if do == "hang":
            RELEASE.wait(60)
        elif do == "slow":
            time.sleep(0.15)
        elif do == "garbage":
            return {"unexpected": 42}
        elif do == "bad-code":
            raise WorkItemError("TWO\nLINES " + "x" * 200, "a code of two lines and 206 characters")
        elif do == "none-code":
            raise WorkItemError(None, "no code at all")  # type: ignore[arg-type]
        elif do == "exit":
            raise SystemExit(3)
        elif do == "surrogate":
            raise WorkItemError("ODD_TEXT", "lone surrogate \ud800 and " + "x" * 10_000)
        elif do == "unprintable":
            raise Unprintable()
        elif do == "kill-worker":
            os._exit(17)  # the process running the batch dies on the spot
        return None


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def workspace(home: Path, clock, **job: Any) -> Workspace:
    ws = Workspace(home, clock=clock, actor="tester", role="operator")
    doc = {"client": "acme", "name": "faults", "mode": "manual", "calendar": {"cron": "0 2 * * *"},
           "jobs": [{"name": "calls", "type": "test.behaving", "batch_size": 5, "concurrency": 2, **job},
                    {"name": "after", "type": "test.behaving", "batch_size": 10, "concurrency": 1}]}
    path = home / "faults.yaml"
    path.write_text(yaml.safe_dump(doc))
    ws.apply_config(path)
    ws.create("acme", "faults", DAY)
    return ws


def codes(ws: Workspace) -> dict[str, str | None]:
    return dict(ws.store.read(lambda con: con.execute(
        "SELECT w.account_id, w.error_code FROM work_items w JOIN jobs j USING (job_id) "
        "WHERE j.name = 'calls'").fetchall()))


@pytest.fixture(autouse=True)
def _release_hung_calls():
    RELEASE.clear()
    yield
    RELEASE.set()  # the abandoned daemon threads return and end


def test_a_hung_call_becomes_timeout_and_the_run_goes_on(home: Path, clock) -> None:
    ws = workspace(home, clock, item_timeout_s=0.3, params={"plan": {"A-003": "hang", "A-011": "hang"}})
    e = ws.process("acme", "faults", DAY)
    assert e.status is ExecutionStatus.ERRORED and e.job("calls").error == 2 and e.job("calls").processed == 18
    got = codes(ws)
    assert got["A-003"] == got["A-011"] == "TIMEOUT" and got["A-004"] is None
    item = next(i for i in ws.job_errors("acme", "faults", DAY, "calls") if i.account_id == "A-003")
    assert "no answer within 0.3s (the work item timeout)" in item.reason and "idempotent" in item.reason
    # The hang is over (the API answers again): Reprocess finishes the schedule.
    RELEASE.set()
    assert ws.reprocess("acme", "faults", DAY).status is ExecutionStatus.COMPLETED


def test_a_batch_timeout_ends_the_batch_and_times_out_what_did_not_run(home: Path, clock) -> None:
    plan = {a: "slow" for a in ACCOUNTS}
    ws = workspace(home, clock, batch_timeout_s=0.4, concurrency=1, batch_size=10, params={"plan": plan})
    e = ws.process("acme", "faults", DAY)
    job = e.job("calls")
    assert job.total == 20 and job.processed + job.error == 20 and 0 < job.processed < 20
    reasons = [i.reason for i in ws.job_errors("acme", "faults", DAY, "calls", limit=100)]
    assert all(r.startswith("not started: the batch's 0.4s timeout ran out") or "the batch timeout" in r
               for r in reasons)
    assert set(codes(ws).values()) == {None, "TIMEOUT"}


def test_garbage_from_handlers_becomes_error_codes_with_plain_reasons(home: Path, clock) -> None:
    plan = {"A-001": "garbage", "A-002": "bad-code", "A-003": "none-code", "A-004": "exit", "A-005": "surrogate",
            "A-006": "unprintable"}
    ws = workspace(home, clock, params={"plan": plan})
    e = ws.process("acme", "faults", DAY)
    assert e.status is ExecutionStatus.ERRORED and e.job("calls").error == 6
    got = codes(ws)
    assert [got[a] for a in sorted(plan)] == ["BAD_RESULT", "BAD_ERROR_CODE", "BAD_ERROR_CODE", "UNHANDLED",
                                              "ODD_TEXT", "UNHANDLED"]
    reasons = {i.account_id: i.reason for i in ws.job_errors("acme", "faults", DAY, "calls", limit=100)}
    assert reasons["A-001"].startswith("handler returned dict {'unexpected': 42}")
    assert "'TWO\\nLINES xxx" in reasons["A-002"] and "None" in reasons["A-003"]
    assert reasons["A-004"] == "SystemExit: 3"
    assert len(reasons["A-005"]) == 4000 and "\\ud800" in reasons["A-005"]
    assert reasons["A-006"].startswith("Unprintable: <unprintable Unprintable>")
    stats = ws.job_stats("acme", "faults", DAY, "calls")
    assert {c.error_code for c in stats.errors_by_code} == {"BAD_RESULT", "BAD_ERROR_CODE", "UNHANDLED", "ODD_TEXT"}


def test_process_batch_without_limits_and_with_them_give_the_same_outcomes(clock) -> None:
    rows = [(i, 1, a, f'{{"do": "{d}"}}') for i, (a, d) in
            enumerate([("A", "ok"), ("B", "garbage"), ("C", "bad-code"), ("D", "exit")], 1)]
    ctx = JobContext("acme", "faults", DAY, "calls")
    plain = process_batch(Behaving(), rows, None, ctx, clock)
    timed = process_batch(Behaving(), rows, None, ctx, clock, Limits(item_timeout_s=5))
    pick = ("item_no", "status", "error_code", "reason")
    assert plain.select(list(pick)).to_pylist() == timed.select(list(pick)).to_pylist()
    assert plain.column("status").to_pylist() == ["PROCESSED", "ERROR", "ERROR", "ERROR"]


def test_a_worker_that_dies_turns_its_batch_into_worker_lost_errors(home: Path, clock, monkeypatch) -> None:
    distributed = pytest.importorskip("distributed")
    import dask

    monkeypatch.delenv("ALLEGRO_OPS_DASK_ADDRESS", raising=False)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster:
        ws = workspace(home, clock, batch_size=5, concurrency=1,
                       params={"plan": {"A-007": "kill-worker"}, "executor": "dask",
                               "dask_address": cluster.scheduler_address})
        e = ws.process("acme", "faults", DAY)
    job = e.job("calls")
    assert e.status is ExecutionStatus.ERRORED and job.processed + job.error == 20
    lost = {i.account_id: i for i in ws.job_errors("acme", "faults", DAY, "calls", limit=100)}
    assert "A-007" in lost and lost["A-007"].error_code == "WORKER_LOST"
    assert "the worker running this batch was lost" in lost["A-007"].reason
    # Only batches the dead worker held (running, queued, or done but not yet fetched) are lost.
    assert set(lost) <= {f"A-{i:03d}" for i in range(0, 10)}
    assert job.processed >= 10 and {f"A-{i:03d}" for i in range(10, 20)}.isdisjoint(lost)
