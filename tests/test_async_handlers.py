"""Async job types (allegro_ops/aio.py): an ``async def process_item`` gives, item for item, the
outcomes a plain one gives through batches.process_batch; at most ``concurrency`` calls are in
flight; timeouts cancel the calls; the AsyncExecutor closes with work pending. Real handlers on a
real event loop; waits are asyncio.sleep."""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import CancelledError as FutureCancelled

import pytest

from allegro_ops.aio import AsyncExecutor, is_async, process_batch_async, run_batch
from allegro_ops.batches import Limits, process_batch
from allegro_ops.errors import WorkItemError
from allegro_ops.jobs import JobContext, JobType
from conftest import RUN_DATE

CTX = JobContext("acme", "daily-billing", RUN_DATE, "charge")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def act(kind: str):
    """What a handler does for a work item whose payload says ``{"do": kind}``."""
    results = {"none": None, "true": True, "false": False, "dict": {"a": 1}, "string": "done"}
    if kind in results:
        return results[kind]
    raise {
        "code": WorkItemError("CARD_DECLINED", "card declined by issuer"),
        "multiline_code": WorkItemError("two\nlines", "bad code"),
        "int_code": WorkItemError(7, "not text"),
        "long_reason": WorkItemError("E1", "x" * 10_000),
        "value": ValueError("boom"),
        "exit": SystemExit(3),
        "timeout_error": TimeoutError("upstream said so"),
        "cancelled": asyncio.CancelledError(),
        "unprintable": Unprintable(),
        "interrupt": KeyboardInterrupt(),
    }[kind]


KINDS = ["none", "true", "false", "dict", "string", "code", "multiline_code", "int_code", "long_reason",
         "value", "exit", "timeout_error", "cancelled", "unprintable"]


class Tracker:
    """Shared state of a job run: calls in flight now and at most, tasks alive at most, cancellations seen."""

    def __init__(self) -> None:
        self.now = self.peak = self.peak_tasks = self.calls = 0
        self.cancelled = 0


class SyncJob(JobType):
    name = "sync-test"

    def process_item(self, item, state, ctx):
        if item.payload["do"] == "hang":
            time.sleep(3)
        return act(item.payload["do"])


class AsyncJob(JobType):
    name = "async-test"

    async def process_item(self, item, state, ctx):
        tracker = state if isinstance(state, Tracker) else Tracker()
        tracker.calls += 1
        tracker.now += 1
        tracker.peak = max(tracker.peak, tracker.now)
        tracker.peak_tasks = max(tracker.peak_tasks, len(asyncio.all_tasks()))
        try:
            do = item.payload["do"]
            await asyncio.sleep(item.payload.get("wait", 0))
            if do == "hang":
                await asyncio.sleep(30)
            elif do == "stubborn":  # swallows the first cancellation and goes on a while
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    tracker.cancelled += 1
                    await asyncio.sleep(0.6)
                    return None
            return act(do)
        except asyncio.CancelledError:
            tracker.cancelled += 1
            raise
        finally:
            tracker.now -= 1


def outcomes(table) -> list[tuple]:
    """A result table without its timestamps (process_batch derives them from one clock reading)."""
    return list(zip(*(table.column(n).to_pylist() for n in ("item_no", "batch_id", "status", "error_code", "reason"))))


def rows_of(kinds, first=1, **payload) -> list[tuple[int, int, str, str]]:
    return [(first + i, (first + i - 1) // 4 + 1, f"acct-{first + i:04d}", json.dumps({"do": k, **payload}))
            for i, k in enumerate(kinds)]


def bounded(coro, seconds: float = 10):
    """asyncio.run with a limit, so that a batch that never ends fails the test instead of hanging it
    (asyncio.timeout, not wait_for: no extra task for a KeyboardInterrupt to escape the loop from)."""

    async def within():
        async with asyncio.timeout(seconds):
            return await coro

    return asyncio.run(within())


def close_within(executor: AsyncExecutor, seconds: float = 10, cancel: bool = False) -> None:
    closer = threading.Thread(target=executor.close, kwargs={"cancel": cancel}, daemon=True)
    closer.start()
    closer.join(seconds)
    assert not closer.is_alive(), "close() did not return"


def run_async(rows, state=None, clock=None, limits=None, concurrency=4):
    async def main():
        gate = asyncio.Semaphore(concurrency)
        table = await process_batch_async(AsyncJob(), rows, state, CTX, clock, limits, gate=gate)
        places = 0
        while not gate.locked():  # every place at the gate was given back
            await gate.acquire()
            places += 1
        assert places == concurrency
        return table

    return bounded(main())


def test_is_async_tells_async_job_types_from_plain_ones():
    assert is_async(AsyncJob()) and not is_async(SyncJob()) and not is_async(JobType())


@pytest.mark.parametrize("limits", [None, Limits(item_timeout_s=5.0, batch_timeout_s=30.0)], ids=["plain", "timed"])
def test_every_outcome_is_the_one_process_batch_gives(clock, limits):
    rows = rows_of(KINDS)
    expected = process_batch(SyncJob(), rows, None, CTX, clock, limits)
    got = run_async(rows, clock=clock, limits=limits)
    assert got.schema == expected.schema
    assert outcomes(got) == outcomes(expected)
    assert outcomes(run_batch(AsyncJob(), rows, None, CTX, clock, limits, concurrency=3)) == outcomes(expected)
    assert set(got.column("started_at").to_pylist() + got.column("finished_at").to_pylist()) == {clock.now}
    by_kind = dict(zip(KINDS, zip(got.column("status").to_pylist(), got.column("error_code").to_pylist())))
    assert by_kind["none"] == by_kind["true"] == ("PROCESSED", None)
    assert {by_kind[k][1] for k in ("false", "dict", "string")} == {"BAD_RESULT"}
    assert by_kind["code"] == ("ERROR", "CARD_DECLINED")
    assert by_kind["multiline_code"][1] == by_kind["int_code"][1] == "BAD_ERROR_CODE"
    assert {by_kind[k][1] for k in ("value", "exit", "timeout_error", "cancelled", "unprintable")} == {"UNHANDLED"}
    reasons = dict(zip(KINDS, got.column("reason").to_pylist()))
    assert reasons["cancelled"].startswith("CancelledError") and len(reasons["long_reason"]) == 4000


def test_keyboard_interrupt_in_a_handler_stops_the_batch_as_it_does_process_batch(clock):
    rows = rows_of(["none", "interrupt", "hang", "hang"])
    with pytest.raises(KeyboardInterrupt):
        process_batch(SyncJob(), rows[:2], None, CTX, clock)
    tracker = Tracker()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_async(rows, state=tracker, clock=clock)
    assert time.monotonic() - started < 2 and tracker.cancelled == 2  # the hanging calls were cancelled


def test_at_most_concurrency_calls_are_in_flight_across_the_batches_of_a_run(clock):
    tracker = Tracker()
    executor = AsyncExecutor(6)
    try:
        futures = [executor.submit(process_batch_async, AsyncJob(),
                                   rows_of(["none"] * 50, first=1 + 50 * b, wait=0.002), tracker, CTX, clock)
                   for b in range(4)]
        tables = [f.result(timeout=20) for f in futures]
    finally:
        close_within(executor, cancel=True)
    assert tracker.peak == 6 and tracker.calls == 200
    # memory stays flat: one task per call in flight and one per batch, never one per work item
    assert tracker.peak_tasks <= 6 + 4  # + one task per batch
    assert [t.column("status").to_pylist().count("PROCESSED") for t in tables] == [50] * 4
    assert sorted(n for t in tables for n in t.column("item_no").to_pylist()) == list(range(1, 201))


def test_a_large_batch_keeps_only_the_calls_in_flight_alive(clock):
    tracker = Tracker()
    table = run_async(rows_of(["none"] * 3000), state=tracker, clock=clock, concurrency=16)
    assert table.num_rows == 3000 and set(table.column("status").to_pylist()) == {"PROCESSED"}
    assert tracker.peak == 16 and tracker.peak_tasks <= 16 + 1  # + asyncio.run's task


def test_an_item_timeout_cancels_the_call_with_process_batchs_wording(clock):
    rows = rows_of(["none", "hang", "code", "hang", "none"])
    limits = Limits(item_timeout_s=0.05)
    expected = process_batch(SyncJob(), rows, None, CTX, clock, limits)
    tracker = Tracker()
    started = time.monotonic()
    got = run_async(rows, state=tracker, clock=clock, limits=limits, concurrency=2)
    assert time.monotonic() - started < 2
    assert outcomes(got) == outcomes(expected)
    assert got.column("error_code").to_pylist() == [None, "TIMEOUT", "CARD_DECLINED", "TIMEOUT", None]
    assert got.column("reason")[1].as_py().startswith("no answer within 0.05s (the work item timeout)")
    assert tracker.cancelled == 2 and tracker.now == 0  # cancelled, not left running


def test_a_handler_that_ignores_cancellation_is_abandoned_at_its_timeout(clock):
    tracker = Tracker()

    async def main():
        began = time.monotonic()
        table = await process_batch_async(AsyncJob(), rows_of(["stubborn", "none"]), tracker, CTX, clock,
                                          Limits(item_timeout_s=0.05), gate=asyncio.Semaphore(1))
        return table, time.monotonic() - began, tracker.cancelled, tracker.now

    table, elapsed, cancelled, running = bounded(main())
    assert elapsed < 0.5  # the stubborn call goes on for 0.6 s after its cancellation
    assert table.column("error_code").to_pylist() == ["TIMEOUT", None]
    assert cancelled == 1 and running == 1  # cancelled once, and still running when the batch came back


def _normalised(table) -> list[tuple]:
    return [(r["item_no"], r["status"], r["error_code"], re.sub(r"within [0-9.]+s", "within Ns", r["reason"] or ""))
            for r in table.to_pylist()]


def test_a_batch_timeout_ends_running_calls_and_leaves_the_rest_not_started(clock):
    rows = rows_of(["none", "none", "hang", "none", "none"])
    limits = Limits(batch_timeout_s=0.3)
    expected = process_batch(SyncJob(), rows, None, CTX, clock, limits)  # one call at a time
    got = run_async(rows, clock=clock, limits=limits, concurrency=1)
    assert _normalised(got) == _normalised(expected)
    assert [r[2] for r in _normalised(got)] == [None, None, "TIMEOUT", "TIMEOUT", "TIMEOUT"]
    assert "(the batch timeout)" in got.column("reason")[2].as_py()
    assert got.column("reason")[4].as_py() == "not started: the batch's 0.3s timeout ran out"


def test_a_batch_timeout_with_calls_side_by_side(clock):
    rows = rows_of(["none", "none", "hang", "hang", "hang", "none", "none"])
    tracker = Tracker()
    started = time.monotonic()
    got = run_async(rows, state=tracker, clock=clock, limits=Limits(item_timeout_s=5, batch_timeout_s=0.3),
                    concurrency=3)
    assert 0.25 < time.monotonic() - started < 2
    reasons = got.column("reason").to_pylist()
    assert got.column("status").to_pylist()[:2] == ["PROCESSED"] * 2
    assert all(re.match(r"no answer within 0\.[0-9]+s \(the batch timeout\)", r) for r in reasons[2:5])
    assert reasons[5:] == ["not started: the batch's 0.3s timeout ran out"] * 2
    assert tracker.cancelled == 3 and tracker.now == 0


def _wait_until(condition, timeout=5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def test_close_with_cancel_ends_pending_work_promptly(clock):
    tracker = Tracker()
    before = set(threading.enumerate())
    executor = AsyncExecutor(4)
    futures = [executor.submit(process_batch_async, AsyncJob(), rows_of(["hang"] * 10, first=1 + 10 * b), tracker,
                               CTX, clock) for b in range(3)]
    _wait_until(lambda: tracker.now == 4)
    started = time.monotonic()
    close_within(executor, cancel=True)
    assert time.monotonic() - started < 2
    assert all(f.cancelled() for f in futures) and tracker.cancelled == 4 and tracker.now == 0
    assert set(threading.enumerate()) <= before  # the loop's thread is joined
    with pytest.raises(RuntimeError):
        executor.submit(process_batch_async, AsyncJob(), rows_of(["none"]), None, CTX, clock)


def test_the_executor_takes_only_coroutine_functions(clock):
    executor = AsyncExecutor(1)
    try:
        with pytest.raises(TypeError, match="coroutine functions"):
            executor.submit(process_batch, SyncJob(), rows_of(["none"]), None, CTX, clock)
    finally:
        close_within(executor, cancel=True)


def test_close_without_cancel_waits_for_the_submitted_batches(clock):
    executor = AsyncExecutor(4)
    future = executor.submit(process_batch_async, AsyncJob(), rows_of(["none"] * 20, wait=0.01), None, CTX, clock)
    close_within(executor)
    assert future.done() and future.result().column("status").to_pylist() == ["PROCESSED"] * 20


def test_cancelling_one_batch_gives_its_places_to_the_others(clock):
    tracker = Tracker()
    executor = AsyncExecutor(2)
    try:
        hung = executor.submit(process_batch_async, AsyncJob(), rows_of(["hang"] * 5), tracker, CTX, clock)
        _wait_until(lambda: tracker.now == 2)
        quick = executor.submit(process_batch_async, AsyncJob(), rows_of(["none"] * 5, first=6), tracker, CTX, clock)
        assert hung.cancel()
        assert quick.result(timeout=5).column("status").to_pylist() == ["PROCESSED"] * 5
        with pytest.raises(FutureCancelled):
            hung.result()
        assert tracker.cancelled == 2
    finally:
        close_within(executor, cancel=True)


def test_the_executor_hands_over_a_keyboard_interrupt_and_keeps_running(clock):
    executor = AsyncExecutor(2)
    try:
        bad = executor.submit(process_batch_async, AsyncJob(), rows_of(["interrupt"]), None, CTX, clock)
        with pytest.raises(KeyboardInterrupt):
            bad.result(timeout=5)
        good = executor.submit(process_batch_async, AsyncJob(), rows_of(["code"]), None, CTX, clock)
        assert good.result(timeout=5).column("error_code").to_pylist() == ["CARD_DECLINED"]
    finally:
        close_within(executor, cancel=True)


# --- through the engine: Process, Retry and timeouts of an async job type in a workspace ----------

class AwaitingJob(JobType):
    """An async job type for the engine: waits ``wait_ms`` per item; fails every ``fail_every``-th
    item until the workspace's ``fixed`` params say so; ``hang_every``-th items never answer."""

    name = "test.awaiting"
    in_flight = 0
    peak = 0

    def list_work_items(self, ctx):
        n = int(ctx.params["count"])
        return [(f"A{i:04d}", {"n": i}) for i in range(1, n + 1)]

    async def process_item(self, item, state, ctx):
        cls = type(self)
        cls.in_flight += 1
        cls.peak = max(cls.peak, cls.in_flight)
        try:
            n = item.payload["n"]
            hang = int(ctx.params.get("hang_every", 0))
            if hang and n % hang == 0:
                await asyncio.sleep(30)
            await asyncio.sleep(float(ctx.params.get("wait_ms", 1)) / 1000)
            every = int(ctx.params.get("fail_every", 0))
            if every and n % every == 0 and not ctx.params.get("fixed"):
                raise WorkItemError("DECLINED", f"item {n} declined")
        finally:
            cls.in_flight -= 1


def _awaiting_workspace(home, clock, **params):
    import yaml

    from allegro_ops import Workspace, register

    register(AwaitingJob)
    job = {"name": "await", "type": "test.awaiting", "batch_size": 25, "concurrency": 16, "params": params}
    job.update({k: params.pop(k) for k in ("item_timeout_s",) if k in params})
    cfg = {"client": "lab", "name": "s", "mode": "manual", "calendar": {"cron": "0 0 * * *", "timezone": "UTC"},
           "jobs": [job]}
    (home / "s.yaml").write_text(yaml.safe_dump(cfg))
    ws = Workspace(home, clock=clock, actor="tester")
    ws.apply_config(home / "s.yaml")
    ws.create("lab", "s", RUN_DATE)
    return ws


def test_an_async_job_type_runs_on_one_loop_with_its_concurrency_and_its_errors_retry(home, clock):
    AwaitingJob.peak = 0
    ws = _awaiting_workspace(home, clock, count=300, wait_ms=5, fail_every=10)
    job = ws.process("lab", "s", RUN_DATE).jobs[0]
    assert (job.total, job.processed, job.error, job.status.value) == (300, 270, 30, "ERRORED")
    assert 8 < AwaitingJob.peak <= 16  # many waits at once, never more than the job's concurrency
    stats = ws.job_stats("lab", "s", RUN_DATE, "await")
    assert [(e.error_code, e.count) for e in stats.errors_by_code] == [("DECLINED", 30)]
    ws.store.write(lambda con: con.execute(
        "UPDATE jobs SET config_json = json_merge_patch(config_json, '{\"params\": {\"fixed\": true}}')"))
    job = ws.retry_job("lab", "s", RUN_DATE, "await").jobs[0]
    assert (job.processed, job.error, job.status.value) == (300, 0, "COMPLETED")
    attempts = ws.store.read(lambda con: con.execute(
        "SELECT count(*), count(DISTINCT item_no), max(attempt) FROM attempts").fetchall())
    assert attempts == [(330, 300, 2)]


def test_an_async_item_that_never_answers_times_out_and_the_run_goes_on(home, clock):
    ws = _awaiting_workspace(home, clock, count=40, wait_ms=1, hang_every=13, item_timeout_s=0.2)
    started = time.monotonic()
    job = ws.process("lab", "s", RUN_DATE).jobs[0]
    assert time.monotonic() - started < 10
    assert (job.processed, job.error) == (37, 3)
    codes = ws.store.read(lambda con: con.execute(
        "SELECT item_no, error_code FROM work_items WHERE status = 'ERROR' ORDER BY 1").fetchall())
    assert codes == [(13, "TIMEOUT"), (26, "TIMEOUT"), (39, "TIMEOUT")]
