"""Runs an execution that the service has leased: lists work items, runs them in batches on an
executor, writes each batch's outcomes in one transaction, and pauses after an errored job.

The service decides whether a run may start (states.py) and takes the lease; the engine only
runs, checks on every write that it still holds the lease, and settles the final status.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from enum import Enum

import pyarrow as pa

from . import aio, faults, lease, listing
from .batches import Limits, Rows, lost_batch, outcome_of, process_batch
from .errors import AllegroOpsError, BadInput
from .executors import LocalExecutor, make_executor
from .jobs import JobContext, registry
from .models import JobConfig
from .pipeline import Prefetched, ResultWriter, quick_switches
from .states import JobStatus, WorkItemStatus, derive_execution_status
from .store import Store
from .store import accounts as acc_sql
from .store import executions as ex_sql
from .store import work_items as wi_sql
from .store.db import ROW_GROUP_ROWS

__all__ = ["Engine", "RunMode", "Selection", "LeaseLost", "outcome_of", "process_batch"]

Clock = Callable[[], dt.datetime]


# Listings are stored, and results written, one row group at a time (ROW_GROUP_ROWS, 30,720): DuckDB
# writes an insert of whole row groups straight to the file, compressed, so that nothing of it is
# left in the write-ahead log for a checkpoint to redo (smaller or unaligned transactions cost
# 1.5-2.5x as much in checkpoints, which another process that wants the file has to wait for), and
# one transaction takes ~50-100 ms, so such a process gets the file soon. Results that make less
# than a row group are written once the oldest waited _WRITE_EVERY_S (fresh Stats), or at the end.
_WRITE_ROWS = ROW_GROUP_ROWS
_WRITE_EVERY_S = 0.25
_READ_ROWS = ROW_GROUP_ROWS  # items read from the store (or turned into Python rows) at a time, at least
# outcomes waiting for the writer at most (~40 bytes each): while a large listing is being stored,
# its first million outcomes wait in memory, and the workers do not
_UNWRITTEN_ROWS = 32 * ROW_GROUP_ROWS
_LET_GO_PARTS = 8  # parts of a listing stored before the file is let go (DuckDB caches ~60 MB of blocks meanwhile)
_OVERLAP_FROM = 20_000  # items: a fresh listing this large runs from memory while it is stored
_MIN_PIECE = 8  # items: below this, a piece's own cost (~0.3 ms) outweighs spreading it over workers
_MIN_REMOTE_PIECE = 64  # items: on Dask a piece should carry well over a task's own ~3-4 ms


class RunMode(str, Enum):
    PROCESS = "process"
    REPROCESS = "reprocess"
    JOB_PROCESS = "job process"
    JOB_RETRY = "job retry"


@dataclass(frozen=True)
class Selection:
    """Which errored work items a Retry re-runs: those of one error code, or one item (None: all)."""

    error_code: str | None = None
    item_no: int | None = None


class LeaseLost(AllegroOpsError):
    """Another process took this run over; this one stops writing."""


@dataclass(frozen=True)
class _Run:
    execution_id: int
    generation: int
    client: str
    schedule: str
    run_date: dt.date
    token: str


class Engine:
    def __init__(self, store: Store, clock: Clock, executor: str = "local") -> None:
        self.store = store
        self.clock = clock
        self.executor = executor

    def run(self, row: ex_sql.ExecutionRow, token: str, mode: RunMode, job_name: str | None = None,
            selection: Selection = Selection(), jobs: list[ex_sql.JobRow] | None = None) -> None:
        """Run the leased execution; always settles its status and releases the lease. ``jobs``: the
        execution's jobs as read in the transaction that took the lease (else they are read here)."""
        run = _Run(row.execution_id, row.generation, row.client, row.schedule, row.run_date, token)
        lease.register(token)
        faults.point("run-begun")
        beat = lease.Heartbeat(self.store, run.execution_id, token, self.clock)
        beat.start()
        try:
            with self.store.held(), quick_switches():  # one connection across the run's writes, given up when asked
                try:
                    self._run_plan(run, mode, job_name, selection, jobs)
                finally:
                    beat.stop()
                    self._settle(run)
        finally:
            # Only now: until the lease is released, readers in this process must see a live run.
            lease.unregister(token)

    def _run_plan(self, run: _Run, mode: RunMode, job_name: str | None, selection: Selection,
                  jobs: list[ex_sql.JobRow] | None) -> None:
        if jobs is None:
            jobs = self.store.read(lambda con: ex_sql.jobs_of(con, run.execution_id, run.generation))
        rerun = (WorkItemStatus.ERROR.value, WorkItemStatus.PENDING.value)
        fresh = (WorkItemStatus.PENDING.value,)
        if mode is RunMode.PROCESS:
            self._run_in_sequence(run, jobs, 0)
            return
        if mode is RunMode.REPROCESS:
            index = next(i for i, j in enumerate(jobs) if j.status == JobStatus.ERRORED.value)
            if self._run_job(run, jobs[index], rerun):
                self._run_in_sequence(run, jobs, index + 1, reprocess=True)
            return
        index = next(i for i, j in enumerate(jobs) if j.name == job_name)
        if mode is RunMode.JOB_PROCESS:
            self._run_job(run, jobs[index], fresh)
            return
        chosen = selection != Selection()
        if self._run_job(run, jobs[index], (WorkItemStatus.ERROR.value,) if chosen else rerun, selection):
            if all(j.status == JobStatus.COMPLETED.value for j in jobs[:index]):
                self._run_in_sequence(run, jobs, index + 1, reprocess=True)

    def _run_in_sequence(self, run: _Run, jobs: list[ex_sql.JobRow], start: int, reprocess: bool = False) -> None:
        """Run the PENDING (or interrupted) jobs from ``start`` on; pause at the first error.

        When reprocessing, a later job that errored earlier (run by hand) has its errored items
        run again too, so that a successful Reprocess completes the remaining schedule."""
        for job in jobs[start:]:
            if job.status == JobStatus.COMPLETED.value:
                continue
            statuses = (WorkItemStatus.PENDING.value,)
            if job.status == JobStatus.ERRORED.value:
                if not reprocess:
                    return
                statuses = (WorkItemStatus.ERROR.value, WorkItemStatus.PENDING.value)
            if not self._run_job(run, job, statuses):
                return

    def _run_job(self, run: _Run, job: ex_sql.JobRow, statuses: tuple[str, ...],
                 selection: Selection = Selection()) -> bool:
        """Run one job's items of the given statuses (and selection); True when the job ends COMPLETED.

        A fresh listing of at least _OVERLAP_FROM items is stored on another thread while its
        first batches run from memory (DuckDB works without the GIL, so the two overlap); a
        streamed listing is stored part by part first, and then run from the store, so that it is
        never in memory whole. No outcome is written before the items are, and a listing with a
        payload that is not JSON is refused before anything runs (nothing of it is kept)."""
        config = JobConfig(**json.loads(job.config_json))
        job_type = registry.get(job.type)
        ctx = JobContext(run.client, run.schedule, run.run_date, job.name, dict(config.params), self.store)
        now = self.clock()
        listed: pa.Table | None = None  # the items, when this run lists them
        storing: Future | None = None  # their insert, when it overlaps the first batches
        last_item = job.total  # items are numbered 1..last_item
        started = False  # the job is IN_PROGRESS (a streamed listing's last transaction did that)
        try:
            if not job.items_listed:
                items = job_type.list_work_items(ctx)
                faults.point("items-listed")
                if listing.is_streamed(items):
                    parts = self._checked(listing.stream(items, job.name, _WRITE_ROWS), job.name)
                    last_item, started = self._store_items(run, job, parts, config.batch_size, now), True
                else:
                    listed, checked = listing.normalize(items, job.name)
                    if not checked:
                        self._check_json(listed, job.name)
                    last_item = listed.num_rows
                items = None
            if listed is None and not started:

                def start(con):
                    self._check_lease(con, run)
                    ex_sql.set_job(con, job.job_id, status="IN_PROGRESS", started_at=job.started_at or now,
                                   finished_at=None)

                self.store.write(start)
            elif listed is not None and listed.num_rows >= _OVERLAP_FROM and selection == Selection():
                storing = listing.in_background(self._store_items, run, job, _parts(listed), config.batch_size, now)
            elif listed is not None:
                self._store_items(run, job, _parts(listed), config.batch_size, now)
                listed = None  # stored: run from the store as usual
            state = job_type.prepare(ctx)
            faults.point("job-started")
        except Exception:
            # Listing or preparing failed: nothing of this job ran. Put it back as it was, without
            # what a listing that failed part of the way stored.
            if storing is not None:
                wait([storing])

            def put_back(con):
                if ex_sql.lease_token(con, run.execution_id) != run.token:
                    return  # another process took the run over (LeaseLost): the job is its own now
                wi_sql.delete_unlisted_items(con, job.job_id)
                ex_sql.set_job(con, job.job_id, status=job.status)

            self.store.write(put_back)
            raise
        source = listing.Source(listed, storing, last_item)
        listed = None  # the source holds the table, and lets it go once the store holds the items
        self._run_batches(run, job, config, job_type, state, ctx, statuses, selection, source)
        completed = self.store.write(lambda con: self._finish_job(con, run, job.job_id, config))
        faults.point("job-finished")
        return completed

    def _store_items(self, run: _Run, job: ex_sql.JobRow, parts: Iterator[pa.Table], batch_size: int,
                     now: dt.datetime) -> int:
        """Insert a listing's parts (of one row group each: see _WRITE_ROWS), one transaction each,
        so that another process that asks for the file gets it between them; the last one indexes
        the listing's accounts and marks the job listed. Items left by an interrupted listing (never
        run: nothing is written before the job is listed) are deleted first. Returns how many items
        were stored; the next part is taken before a part is stored, so that the last one is known."""
        stored = 0
        part = next(parts, None)
        while True:
            following = next(parts, None) if part is not None else None
            last = following is None

            def store(con, part=part, first=stored, last=last):
                self._check_lease(con, run)
                if first == 0:
                    wi_sql.delete_unlisted_items(con, job.job_id)
                if part is not None:
                    wi_sql.insert_items(con, job.job_id, part, batch_size, now, first_item=first + 1)
                if last:
                    acc_sql.index_listing(con, job.job_id)  # the listing's accounts, sorted, for account history
                    ex_sql.set_job(con, job.job_id, status="IN_PROGRESS", items_listed=True,
                                   total=first + (part.num_rows if part is not None else 0), started_at=now,
                                   finished_at=None)
                    faults.point("items-stored")

            self.store.write(store)
            stored += part.num_rows if part is not None else 0
            if last:
                return stored
            if stored % (_LET_GO_PARTS * _WRITE_ROWS) == 0:
                self.store.let_go()  # DuckDB keeps the blocks it wrote while the file stays attached
            part = following

    def _check_json(self, items: pa.Table, job_name: str) -> None:
        """Refuse listed items whose payload is not JSON text (checked by DuckDB, in C)."""
        invalid = self.store.read(lambda con: wi_sql.first_invalid_payload(con, items))
        if invalid is not None:
            raise BadInput(f"job {job_name}: work item {invalid!r}: payload is not valid JSON text")

    def _checked(self, parts: Iterator[tuple[pa.Table, bool]], job_name: str) -> Iterator[pa.Table]:
        """A streamed listing's parts, each refused when a payload is not JSON text."""
        for part, checked in parts:
            if not checked:
                self._check_json(part, job_name)
            yield part

    def _run_batches(self, run, job, config: JobConfig, job_type, state, ctx, statuses, selection,
                     source: listing.Source) -> None:
        """Run the items in pieces of about batch_size / concurrency (at least 64 items on a
        remote executor), so that every worker is busy even when there are fewer batches than
        workers. Outcomes are written once a batch's pieces are all done, in whole row groups of
        results as soon as there are some, the rest once it waited _WRITE_EVERY_S, or at the end.

        This thread only submits: the items are read ahead (Prefetched) and the outcomes written
        (ResultWriter, after the listing is stored) on threads of their own, so that the workers
        go on while DuckDB reads and writes."""
        async_job = aio.is_async(job_type)
        executor = make_executor(self.executor, config.concurrency, config.params, async_job=async_job)
        workers = max(1, config.concurrency)
        piece = max(-(-config.batch_size // workers), min(config.batch_size, _MIN_PIECE))
        run_piece = process_batch
        if isinstance(executor, aio.AsyncExecutor):  # one event loop: whole batches, its gate spreads the calls
            piece, run_piece = config.batch_size, aio.process_batch_async
        elif not isinstance(executor, LocalExecutor):
            ctx = replace(ctx, store=None)  # remote workers get no handle on the workspace's file
            piece = max(piece, min(config.batch_size, _MIN_REMOTE_PIECE))  # a remote task costs ~3-4 ms
        groups: deque[list[_Piece]] = deque()  # the pieces of each submitted, unwritten batch
        limits = Limits(config.item_timeout_s, config.batch_timeout_s)
        # no earlier outcome to take off the counters (listed by this run: every item is PENDING)
        fresh = statuses == (WorkItemStatus.PENDING.value,) or source.listed
        # pieces submitted and not yet finished (async: enough whole batches to fill the gate twice)
        slots = threading.Semaphore(-(-2 * workers // piece) + 1 if run_piece is not process_batch else 2 * workers)
        unwritten: list[pa.Table] = []  # outcomes of finished batches, not yet handed to the writer
        since = time.monotonic()  # when the oldest of them was collected
        storing = source.storing
        writer = ResultWriter(lambda results: self._write_results(run, job.job_id, results, fresh),
                              before_first=storing.result if storing is not None else lambda: None,
                              limit_rows=_UNWRITTEN_ROWS)  # no outcome is written before the items are

        def flush(final: bool) -> None:
            nonlocal groups, since
            writer.check()
            done = [g for g in groups if all(p.future.done() for p in g)]
            if done:
                finished = {id(g) for g in done}
                groups = deque(g for g in groups if id(g) not in finished)
                if not unwritten:
                    since = time.monotonic()
                unwritten.extend(p.outcomes(self.clock) for g in done for p in g)
            waiting = sum(t.num_rows for t in unwritten)
            due = final or time.monotonic() - since >= _WRITE_EVERY_S
            write = waiting if due else waiting - waiting % _WRITE_ROWS  # whole row groups, until the rest is due
            if not write:
                return
            results = pa.concat_tables(unwritten)
            unwritten[:] = [results.slice(write)] if write < waiting else []
            writer.put(results.slice(0, write))
            since = time.monotonic()

        def submit(rows: Rows, siblings: list[_Piece]) -> _Piece:
            while not slots.acquire(blocking=False):
                _wait_for_one(groups, siblings)
                flush(final=False)
            args = (job_type, rows, state, ctx, self.clock) + ((limits,) if limits.any else ())
            if async_job and run_piece is process_batch:  # an async job type on Dask: a loop per batch
                future = executor.submit(aio.run_batch, job_type, rows, state, ctx, self.clock, limits, workers)
            else:
                future = executor.submit(run_piece, *args)
            future.add_done_callback(lambda _: slots.release())
            return _Piece(future, rows)

        ok = False
        ahead = _chunk(config) // config.batch_size + 1  # batches: a chunk
        try:
            with Prefetched(self._batches(job.job_id, statuses, config, selection, source), ahead) as batches:
                for batch in batches:
                    pieces: list[_Piece] = []
                    for i in range(0, len(batch), piece):
                        pieces.append(submit(batch[i : i + piece], pieces))
                    groups.append(pieces)
                    faults.point("batch-submitted")
            while groups:
                _wait_for_one(groups)
                flush(final=all(p.future.done() for g in groups for p in g))
            flush(final=True)
            writer.close()
            if storing is not None:
                storing.result()  # also when nothing was written (no items)
            ok = True
        finally:
            if not ok:
                writer.close(abandon=True)
            executor.close(cancel=not ok)

    def _batches(self, job_id: int, statuses: tuple[str, ...], config: JobConfig,
                 selection: Selection, source: listing.Source) -> Iterator[Rows]:
        """The items to run, batch by batch, in chunks: from memory when this run listed them, until
        the store holds them (then the listed table is let go, so that a run's memory does not grow
        with its listing, and the rest is read by ranges of item numbers, which gives the same
        batches); else by ranges in a fresh run (its PENDING items are nearly all there), else by
        keyset (few among many)."""
        chunk = _chunk(config)
        after, last_item = 0, source.last_item
        listed, source.items = source.items, None  # from here on only this generator holds the table
        ranged = source.listed or (statuses == (WorkItemStatus.PENDING.value,) and selection == Selection())
        while listed is not None and after < last_item and not source.stored():
            yield from listing.batches(listed, config.batch_size, after, after + chunk)
            after += chunk
        listed = None
        ranged = ranged and last_item > 0
        while not ranged or after < last_item:
            upto = after + chunk if ranged else None
            table = self.store.read(lambda con: wi_sql.read_items(con, job_id, statuses, after, chunk,
                                                                  selection.error_code, selection.item_no, upto))
            if table.num_rows == 0 and not ranged:
                return
            rows = Rows(*(table.column(n).to_pylist() for n in ("item_no", "batch_id", "account_id", "payload")))
            after = upto if ranged else rows.item_nos[-1]
            for i in range(0, len(rows), config.batch_size):
                yield rows[i : i + config.batch_size]
            if not ranged and len(rows) < chunk:
                return  # a short keyset page is the last one: no scan for an empty one

    def _write_results(self, run: _Run, job_id: int, results: pa.Table, fresh: bool) -> None:
        """Write these outcomes, one row group per transaction (the last one may be smaller)."""
        for first in range(0, results.num_rows, _WRITE_ROWS):
            part, now = results.slice(first, _WRITE_ROWS), self.clock()

            def write(con, part=part, now=now):
                self._check_lease(con, run)
                wi_sql.write_results(con, job_id, part, run.token, fresh=fresh)
                ex_sql.heartbeat(con, run.execution_id, run.token, now)
                faults.point("results-writing")

            self.store.write(write)
        faults.point("results-written")

    def _finish_job(self, con, run: _Run, job_id: int, config: JobConfig) -> bool:
        """The job's final status: COMPLETED when every item ran and its errors (if any) are within
        the accepted ones ("COMPLETED with errors"), ERRORED when there are more. From the job's
        counters, which every result write updates in its own transaction (no scan of its items)."""
        self._check_lease(con, run)
        job = next(j for j in ex_sql.jobs_of(con, run.execution_id, run.generation) if j.job_id == job_id)
        status = _final_status(config, job.total, job.pending, job.error)
        ex_sql.set_job(con, job_id, status=status.value, finished_at=self.clock())
        faults.point("job-finishing")
        return status is JobStatus.COMPLETED

    def _settle(self, run: _Run) -> None:
        def settle(con):
            if ex_sql.lease_token(con, run.execution_id) != run.token:
                return  # someone took the run over; it is theirs to settle
            jobs = ex_sql.jobs_of(con, run.execution_id, run.generation)
            stuck = [j for j in jobs if j.status == JobStatus.IN_PROGRESS.value and j.pending == 0 and j.items_listed]
            for j in stuck:  # fully written but not finished (e.g. interrupted between the two writes)
                status = _final_status(JobConfig(**json.loads(j.config_json)), j.total, 0, j.error)
                ex_sql.set_job(con, j.job_id, status=status.value, finished_at=self.clock())
            jobs = ex_sql.jobs_of(con, run.execution_id, run.generation)
            status = derive_execution_status([JobStatus(j.status) for j in jobs])
            finished = self.clock() if status.value in ("COMPLETED", "ERRORED") else None
            ran = any(j.started_at is not None for j in jobs)  # e.g. not when listing the first job failed
            ex_sql.set_execution(con, run.execution_id, status=status.value, finished_at=finished,
                                 **({} if ran else {"started_at": None}))
            ex_sql.release_lease(con, run.execution_id, run.token)
            faults.point("settling")

        self.store.write(settle)
        faults.point("settled")

    @staticmethod
    def _check_lease(con, run: _Run) -> None:
        if ex_sql.lease_token(con, run.execution_id) != run.token:
            raise LeaseLost(
                f"run of {run.client}/{run.schedule} {run.run_date} was taken over by another process"
            )


def _chunk(config: JobConfig) -> int:
    """Items read (or cut from a listed table) at a time: enough for every worker, at least
    _READ_ROWS, in whole batches."""
    return -(-max(config.batch_size * max(1, config.concurrency), _READ_ROWS) // config.batch_size) * config.batch_size


def _parts(listed: pa.Table) -> Iterator[pa.Table]:
    """A listed table in parts of one row group each (an empty listing has none)."""
    return (listed.slice(first, _WRITE_ROWS) for first in range(0, listed.num_rows, _WRITE_ROWS))


def _final_status(config: JobConfig, total: int, pending: int, error: int) -> JobStatus:
    if pending:
        return JobStatus.ERRORED if error and not config.accepts(error, total) else JobStatus.IN_PROGRESS
    return JobStatus.COMPLETED if config.accepts(error, total) else JobStatus.ERRORED


@dataclass(frozen=True)
class _Piece:
    """A part of a batch on the executor, and its rows (for when its worker never answers)."""

    future: Future
    rows: Rows

    def outcomes(self, clock: Clock) -> pa.Table:
        try:
            return self.future.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker is an outcome of its work items
            return lost_batch(self.rows, exc, clock())


def _wait_for_one(groups: deque[list[_Piece]], also: list[_Piece] = ()) -> None:
    """Wait until one running piece of these batches (or of ``also``, a batch being submitted) is done."""
    running = [p.future for g in (*groups, also) for p in g if not p.future.done()]
    if running:
        wait(running, return_when=FIRST_COMPLETED)
