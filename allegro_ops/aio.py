"""Async job types: a job type whose ``process_item`` is ``async def`` has its work items run on
one event loop, thousands of waits at once, with at most the job's ``concurrency`` handler calls
in flight (one ``asyncio.Semaphore``, the gate, shared by every batch of the job run).

The outcomes are those of batches.process_batch, item for item: the same table, the same error
codes (WorkItemError's code, UNHANDLED, BAD_RESULT, BAD_ERROR_CODE, TIMEOUT) and the same wording.
What differs is how a timeout ends a call: the handler's task is *cancelled* (it sees
``CancelledError`` at its current ``await``), and the batch goes on without waiting for it, so a
handler that swallows the cancellation is abandoned like a hung thread would be.

A handler that blocks the loop (``time.sleep``, a blocking client, heavy CPU work inside an
``async def``) stalls every work item of the job run and defeats the timeouts until it yields;
that is the job type's bug, not detected here. Such work belongs in a plain ``process_item``
(the thread pool) or behind ``await asyncio.to_thread(...)``.

Memory stays flat as a job grows: a work item's payload is decoded and its task created only when
it gets a place at the gate, so a run holds at most ``concurrency`` item tasks, whatever the
number of work items; a batch keeps only its own outcome lists, as process_batch does.

A client bound to the loop (an HTTP session and its pool of keep-alive connections) is shared by
the calls of a job run through ``loop_resource``; whoever owns the loop closes it when the job run
ends: AsyncExecutor.close, and run_batch after its batch (a Dask worker's loop lives for one batch).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import threading
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from concurrent.futures import Future
from functools import partial
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from . import faults
from .batches import Limits, _result_outcome, _table, loads, outcome_of
from .jobs import ItemInput, JobContext, JobType

__all__ = ["is_async", "process_batch_async", "run_batch", "AsyncExecutor", "loop_resource", "close_loop_resources"]

Clock = Callable[[], dt.datetime]
Outcome = tuple[str, "str | None", "str | None"]
_OK: Outcome = outcome_of(None)
_GRACE_S = 0.5  # on close, how long calls abandoned after a timeout get to end once cancelled again


class Closable(Protocol):
    async def close(self) -> Any: ...


R = TypeVar("R", bound=Closable)
_resources: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Closable]] = weakref.WeakKeyDictionary()
_resources_lock = threading.Lock()  # Dask runs a loop per worker thread


def loop_resource(key: Hashable, make: Callable[[], R]) -> R:
    """The running loop's resource ``key`` (e.g. an HTTP session), made by ``make()`` on first use and
    shared by every call of the job run; its ``close()`` is awaited by close_loop_resources."""
    loop = asyncio.get_running_loop()
    with _resources_lock:
        resources = _resources.setdefault(loop, {})
        if key not in resources:
            resources[key] = make()
        return resources[key]  # type: ignore[return-value]


async def close_loop_resources() -> None:
    """Close the running loop's resources (when its job run ends); a failing close does not stop the others."""
    with _resources_lock:
        resources = _resources.pop(asyncio.get_running_loop(), {})
    for resource in resources.values():
        try:
            await resource.close()
        except Exception:  # noqa: BLE001 - the run is over; a close that fails loses nothing of it
            pass


def is_async(job_type: JobType) -> bool:
    """Whether the job type's process_item is ``async def`` (its items then run on an event loop)."""
    return inspect.iscoroutinefunction(getattr(job_type, "process_item", None))


async def _call(process: Callable[..., Any], row: tuple, state: Any, ctx: JobContext) -> Outcome | BaseException:
    """One work item's outcome. Never raises but for its own cancellation; a KeyboardInterrupt is
    handed back (raising it in a task would stop the event loop) and re-raised by the batch."""
    item_no, batch_id, account_id, payload = row
    try:
        result = process(ItemInput(item_no, account_id, batch_id, loads(payload)), state, ctx)
        if inspect.isawaitable(result):
            result = await result
    except asyncio.CancelledError as exc:
        if asyncio.current_task().cancelling():  # a timeout or the batch being dropped
            raise
        return outcome_of(exc)  # the handler raised it itself: an outcome like any other exception
    except KeyboardInterrupt as exc:
        return exc
    except BaseException as exc:  # noqa: BLE001 - SystemExit included: every failure of an item is an outcome
        return outcome_of(exc)
    return _OK if result is None else _result_outcome(result)


class _Batch:
    """One batch on the loop: its outcome lists by row, the calls running now, and its end.

    A call's deadline is its start plus min(item timeout, time left in the batch), so deadlines come
    in the order calls start: one queue and one timer on its head serve the whole batch."""

    def __init__(self, job_type: JobType, rows: list[tuple], state: Any, ctx: JobContext, clock: Clock,
                 gate: asyncio.Semaphore) -> None:
        n = len(rows)
        self.rows, self.state, self.ctx, self.clock, self.gate = rows, state, ctx, clock, gate
        self.process = job_type.process_item
        self.status: list[str | None] = [None] * n
        self.codes: list[str | None] = [None] * n
        self.reasons: list[str | None] = [None] * n
        self.started: list[dt.datetime | None] = [None] * n
        self.finished: list[dt.datetime | None] = [None] * n
        self.running: dict[int, asyncio.Task] = {}
        self.interrupt: BaseException | None = None
        self._deadlines: deque[tuple[float, int, float, str]] = deque()  # (when, row, wait, which) by start
        self._watch: asyncio.TimerHandle | None = None
        self._idle: asyncio.Future | None = None
        self._loop = asyncio.get_running_loop()

    def start(self, i: int, wait: float | None, which: str) -> None:
        """Start row i's call (the gate is already held for it), to be ended after ``wait`` seconds."""
        self.started[i] = self.clock()
        task = self._loop.create_task(_call(self.process, self.rows[i], self.state, self.ctx))
        self.running[i] = task
        task.add_done_callback(partial(self._ended, i))
        if wait is not None:
            self._deadlines.append((self._loop.time() + wait, i, wait, which))
            if self._watch is None:
                self._watch = self._loop.call_at(self._deadlines[0][0], self._expire_due)

    def not_started(self, first: int, limits: Limits) -> None:
        for i in range(first, len(self.rows)):
            self.started[i] = self.clock()
            self._record(i, limits.not_started())

    async def settled(self) -> None:
        """Wait until no call of this batch is running (or a handler raised KeyboardInterrupt)."""
        if self.running and self.interrupt is None:
            self._idle = self._loop.create_future()
            await self._idle

    def cancel(self) -> None:
        """Drop the running calls: the batch was cancelled from outside or interrupted."""
        for task in self.running.values():
            task.cancel()
        if self._watch is not None:
            self._watch.cancel()

    def table(self) -> pa.Table:
        rows = self.rows
        return _table([r[0] for r in rows], [r[1] for r in rows], self.status, self.codes, self.reasons,
                      self.started, self.finished)

    def _ended(self, i: int, task: asyncio.Task) -> None:
        if self.running.pop(i, None) is None:  # it timed out before; the abandoned call has ended now
            return
        deadlines = self._deadlines
        while deadlines and deadlines[0][1] not in self.running:  # calls end about in the order they start
            deadlines.popleft()
        outcome = outcome_of(asyncio.CancelledError("cancelled")) if task.cancelled() else task.result()
        if isinstance(outcome, BaseException):
            self.interrupt = outcome
            outcome = outcome_of(outcome)
        self._settle(i, outcome)

    def _expire_due(self) -> None:
        """Time out the calls whose deadline has come; watch the next one."""
        self._watch, now, deadlines = None, self._loop.time(), self._deadlines
        while deadlines and (deadlines[0][1] not in self.running or deadlines[0][0] <= now):
            _, i, wait, which = deadlines.popleft()
            task = self.running.pop(i, None)
            if task is not None:
                task.cancel()
                self._settle(i, Limits.timed_out(wait, which))
        if deadlines:
            self._watch = self._loop.call_at(deadlines[0][0], self._expire_due)

    def _settle(self, i: int, outcome: Outcome) -> None:
        self._record(i, outcome)
        self.gate.release()
        if self._idle is not None and not self._idle.done() and (not self.running or self.interrupt is not None):
            self._idle.set_result(None)

    def _record(self, i: int, outcome: Outcome) -> None:
        self.status[i], self.codes[i], self.reasons[i] = outcome
        self.finished[i] = self.clock()


async def process_batch_async(job_type: JobType, rows: list[tuple[int, int, str, str]], state: Any,
                              ctx: JobContext, clock: Clock, limits: Limits | None = None, *,
                              gate: asyncio.Semaphore) -> pa.Table:
    """Run one batch (item_no, batch_id, account_id, payload JSON) of an async job type on the
    running loop, each call holding ``gate`` while it runs; the same table as process_batch."""
    loop = asyncio.get_running_loop()
    limits = limits if limits is not None else Limits()
    batch_s = limits.batch_timeout_s
    deadline = None if batch_s is None else loop.time() + batch_s
    batch = _Batch(job_type, rows, state, ctx, clock, gate)
    try:
        i = 0
        try:
            async with asyncio.timeout_at(deadline) as feeding:  # one timer for the batch; it can only
                for i in range(len(rows)):                      # fire while waiting for the gate
                    await gate.acquire()
                    left = None if deadline is None else deadline - loop.time()
                    if batch.interrupt is not None or (left is not None and left <= 0):
                        gate.release()
                        if batch.interrupt is None:
                            batch.not_started(i, limits)
                        break
                    batch.start(i, *limits.wait(left))
        except TimeoutError:
            if not feeding.expired():
                raise
            batch.not_started(i, limits)
        await batch.settled()
    except BaseException:  # cancelled from outside: the calls still running go with the batch
        batch.cancel()
        raise
    if batch.interrupt is not None:
        batch.cancel()
        raise batch.interrupt
    faults.point("item-done")
    return batch.table()


def run_batch(job_type: JobType, rows: list[tuple[int, int, str, str]], state: Any, ctx: JobContext,
              clock: Clock, limits: Limits | None = None, concurrency: int = 1) -> pa.Table:
    """process_batch_async on an event loop of its own, for a worker that has none (a Dask worker,
    a thread of the local pool): at most ``concurrency`` calls of this batch in flight."""

    async def main() -> pa.Table:
        try:
            return await process_batch_async(job_type, rows, state, ctx, clock, limits,
                                             gate=asyncio.Semaphore(max(1, concurrency)))
        finally:
            await close_loop_resources()

    return asyncio.run(main())


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (its timers wake closer to their time: ~10 points of
    benchmark 2), asyncio's own otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class AsyncExecutor:
    """One event loop on a daemon thread runs every batch of a job run; its Semaphore(concurrency)
    is the gate of every batch. Same protocol as executors.Executor: submit() gives a
    concurrent.futures.Future (cancelling it cancels the batch), close() ends the loop."""

    def __init__(self, concurrency: int) -> None:
        self._loop = _new_loop()
        self._gate = asyncio.Semaphore(max(1, concurrency))  # binds to the loop on first use
        self._tasks: set[asyncio.Task] = set()  # touched on the loop's thread only
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop.run_forever, name="allegro-aio", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Coroutine[Any, Any, Any]], /, *args: Any) -> Future:
        """Run ``fn(*args, gate=<the executor's gate>)`` (process_batch_async) on the loop."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"AsyncExecutor runs coroutine functions (process_batch_async), not {fn!r}")
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a closed AsyncExecutor")
            self._loop.call_soon_threadsafe(self._start, future, fn, args)
        return future

    def close(self, cancel: bool = False) -> None:
        """Wait for the submitted batches (or cancel them when ``cancel``), stop the loop and join its thread."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("an AsyncExecutor cannot be closed from its own event loop")
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._drain(cancel), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _start(self, future: Future, fn: Callable[..., Any], args: tuple) -> None:
        if future.cancelled():
            return
        task = self._loop.create_task(self._run(future, fn, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: t.cancelled() and future.cancel())  # even if cancelled before it ran
        future.add_done_callback(partial(self._cancelled, task))

    def _cancelled(self, task: asyncio.Task, future: Future) -> None:
        if future.cancelled() and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed meanwhile; the task is gone with it
                pass

    async def _run(self, future: Future, fn: Callable[..., Any], args: tuple) -> None:
        try:
            result = await fn(*args, gate=self._gate)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt too: handed over, never stops the loop
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)
        else:
            if future.set_running_or_notify_cancel():
                future.set_result(result)

    async def _drain(self, cancel: bool) -> None:
        while self._tasks:
            if cancel:
                for task in self._tasks:
                    task.cancel()
            await asyncio.wait(set(self._tasks))
        me = asyncio.current_task()
        abandoned = [t for t in asyncio.all_tasks() if t is not me]  # calls left behind after a timeout
        for task in abandoned:
            task.cancel()
        if abandoned:
            await asyncio.wait(abandoned, timeout=_GRACE_S)
        await close_loop_resources()
