"""One batch in a worker: call the job type's handler for each work item and turn whatever it did
into an outcome (status, error code, reason). Nothing a handler does stops the run:

- raises WorkItemError(code, reason): ERROR with that code (a code that is not one line of text
  of 1 to 100 characters becomes BAD_ERROR_CODE, keeping what was given in the reason);
- raises anything else (SystemExit included): ERROR ``UNHANDLED`` with the exception's text;
- returns something other than None/True: ERROR ``BAD_RESULT`` (handlers fail an item by raising);
- does not return within the job's ``item_timeout_s``, or the batch's ``batch_timeout_s`` runs
  out: ERROR ``TIMEOUT``; the hung call is abandoned on a daemon thread and the batch goes on.

The engine maps a batch that never came back (its worker died) to ``WORKER_LOST`` (lost_batch).
Reasons are plain text of at most 4,000 characters, made encodable (lone surrogates escaped).
"""
from __future__ import annotations

import datetime as dt
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import faults
from .errors import WorkItemError
from .jobs import ItemInput, JobContext, JobType
from .states import WorkItemStatus
from .store import work_items as wi_sql

__all__ = ["Limits", "Rows", "loads", "outcome_of", "process_batch", "lost_batch", "TIMEOUT", "WORKER_LOST", "BAD_RESULT",
           "BAD_ERROR_CODE", "UNHANDLED"]

Clock = Callable[[], dt.datetime]
TIMEOUT, WORKER_LOST, BAD_RESULT, BAD_ERROR_CODE, UNHANDLED = (
    "TIMEOUT", "WORKER_LOST", "BAD_RESULT", "BAD_ERROR_CODE", "UNHANDLED")
MAX_REASON = 4000
_CODE = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")  # one line of text, at most 100 characters
_ERROR, _PROCESSED = WorkItemStatus.ERROR.value, WorkItemStatus.PROCESSED.value
_TS = wi_sql.RESULT_SCHEMA.field("started_at").type
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

# The payload decoder. orjson decodes these payloads ~3x faster here but turns integers beyond
# 64 bits into floats without a word, and spotting them first costs most of the gain; so the
# standard library's, which the benchmarks' floor uses too.
loads = json.loads


@dataclass(frozen=True)
class Limits:
    """How long a work item's call and a whole batch may take (None: no limit)."""

    item_timeout_s: float | None = None
    batch_timeout_s: float | None = None

    @property
    def any(self) -> bool:
        return self.item_timeout_s is not None or self.batch_timeout_s is not None

    def wait(self, left: float | None) -> tuple[float | None, str]:
        """How long a call may run, with ``left`` seconds left in the batch, and which timeout that
        is ("work item" or "batch"; None, "" without a limit)."""
        if self.item_timeout_s is None and left is None:
            return None, ""
        if self.item_timeout_s is not None and (left is None or self.item_timeout_s <= left):
            return self.item_timeout_s, "work item"
        return left, "batch"

    def not_started(self) -> tuple[str, str, str]:
        """The outcome of an item the batch's timeout left no time to start."""
        return _ERROR, TIMEOUT, f"not started: the batch's {self.batch_timeout_s:g}s timeout ran out"

    @staticmethod
    def timed_out(wait: float, which: str) -> tuple[str, str, str]:
        """The outcome of a call that did not answer in time (it is abandoned or cancelled)."""
        return _ERROR, TIMEOUT, (f"no answer within {wait:.3g}s (the {which} timeout); the call was abandoned "
                                 "and may still complete, so handlers should be idempotent")


class Rows:
    """A batch of work items (or a piece of one), column by column: item numbers, batch ids, account
    ids and payloads (JSON text), each a sequence of the same length (item numbers may be a range).

    Read as a sequence of (item_no, batch_id, account_id, payload) tuples; the worker's loop reads
    the columns instead, so that no tuple is made per item on the way from the listing to the
    handler (making them cost ~1.1 us of each item's ~5). Pickled as they are (to Dask workers)."""

    __slots__ = ("item_nos", "batch_ids", "account_ids", "payloads")

    def __init__(self, item_nos: Sequence[int], batch_ids: Sequence[int], account_ids: Sequence[str],
                 payloads: Sequence[str]) -> None:
        self.item_nos, self.batch_ids, self.account_ids, self.payloads = item_nos, batch_ids, account_ids, payloads

    @classmethod
    def of(cls, rows: Sequence[tuple[int, int, str, str]] | Rows) -> Rows:
        """Rows from (item_no, batch_id, account_id, payload) tuples (Rows are taken as they are)."""
        if isinstance(rows, Rows):
            return rows
        columns = [list(c) for c in zip(*rows)] or [[], [], [], []]
        return cls(*columns)

    def __len__(self) -> int:
        return len(self.item_nos)

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return Rows(self.item_nos[i], self.batch_ids[i], self.account_ids[i], self.payloads[i])
        return self.item_nos[i], self.batch_ids[i], self.account_ids[i], self.payloads[i]

    def __iter__(self) -> Iterator[tuple[int, int, str, str]]:
        return zip(self.item_nos, self.batch_ids, self.account_ids, self.payloads)


def _text(value: Any) -> str:
    """Plain, encodable text of at most MAX_REASON characters, whatever a handler handed over."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # noqa: BLE001 - a __str__ that fails is still an outcome
        text = f"<unprintable {type(value).__name__}>"
    text = text[: 2 * MAX_REASON]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:MAX_REASON]


def outcome_of(exc: BaseException | None) -> tuple[str, str | None, str | None]:
    """The one mapping from what a handler raised to a work item outcome: (status, code, reason)."""
    if exc is None:
        return _PROCESSED, None, None
    if isinstance(exc, WorkItemError):
        code = exc.error_code
        if isinstance(code, str) and code.strip() and _CODE.match(code) and code == _text(code):
            return _ERROR, code, _text(exc.reason)
        return _ERROR, BAD_ERROR_CODE, _text(f"handler raised WorkItemError with error code {_text(repr(code))[:200]}"
                                             f": {_text(exc.reason)}")
    text = _text(exc) or type(exc).__name__
    return _ERROR, UNHANDLED, _text(f"{type(exc).__name__}: {text}")


def _result_outcome(result: Any) -> tuple[str, str | None, str | None]:
    if result is None or result is True:
        return _PROCESSED, None, None
    return _ERROR, BAD_RESULT, _text(f"handler returned {type(result).__name__} {_text(repr(result))[:200]}; "
                                     "a handler returns None and fails a work item by raising WorkItemError")


def _call(process: Callable[..., Any], args: tuple) -> tuple[str, str | None, str | None]:
    try:
        return _result_outcome(process(*args))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure of an item is an outcome
        return outcome_of(exc)


class _Caller:
    """Runs handler calls on a daemon thread so that the worker can give up on a hung one. After a
    timeout the caller is discarded (its thread may never come back) and a new one takes over."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="allegro-item", daemon=True).start()

    def _loop(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            self._results.put(_call(*call))

    def call(self, process: Callable[..., Any], args: tuple, timeout: float) -> tuple | None:
        """The outcome, or None when the call did not return within ``timeout`` seconds."""
        self._calls.put((process, args))
        try:
            return self._results.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def close(self) -> None:
        self._calls.put(None)


def process_batch(job_type: JobType, rows: Rows | Sequence[tuple[int, int, str, str]], state: Any, ctx: JobContext,
                  clock: Clock, limits: Limits | None = None) -> pa.Table:
    """Run one batch (Rows, or (item_no, batch_id, account_id, payload JSON) tuples) in a worker;
    never raises for an item's failure.

    The hot loop keeps per item only a monotonic mark and, for a failed item, its outcome: the
    clock is read once per batch and each item's started/finished times are the clock's reading
    plus the marks' offsets, turned into timestamps in one vectorised step."""
    rows = Rows.of(rows)
    if limits is not None and limits.any:
        out: tuple[list, ...] = ([], [], [], [], [])
        _timed(job_type.process_item, loads, rows, state, ctx, clock, limits, out)
        faults.point("item-done")
        return _table(rows.item_nos, rows.batch_ids, *out)
    process, mark, new, item = job_type.process_item, time.perf_counter, tuple.__new__, ItemInput
    failed: list[tuple[int, tuple[str, str | None, str | None]]] = []  # (index, outcome) of failed items
    marks: list[float] = []
    marked = marks.append
    begun, first = clock(), mark()
    for item_no, batch_id, account_id, payload in rows:
        marked(mark())
        try:
            result = process(new(item, (item_no, account_id, batch_id, loads(payload))), state, ctx)
            if result is not None and result is not True:
                failed.append((len(marks) - 1, _result_outcome(result)))
        except Exception as exc:  # noqa: BLE001 - every failure of an item is an outcome
            failed.append((len(marks) - 1, outcome_of(exc)))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit and the like
            failed.append((len(marks) - 1, outcome_of(exc)))
    marks.append(mark())
    faults.point("item-done")
    n = len(rows)
    if failed:
        status, codes, reasons = [_PROCESSED] * n, [None] * n, [None] * n
        for index, (state_, code, reason) in failed:
            status[index], codes[index], reasons[index] = state_, code, reason
        columns = [pa.array(status, pa.string()), pa.array(codes, pa.string()), pa.array(reasons, pa.string())]
    else:
        columns = [pa.repeat(pa.scalar(_PROCESSED, pa.string()), n), pa.nulls(n, pa.string()), pa.nulls(n, pa.string())]
    offsets = pc.cast(pc.multiply(pc.subtract(pa.array(marks, pa.float64()), first), 1e6), pa.int64(), safe=False)
    base = pa.scalar(_micros(begun), pa.int64())
    stamps = pc.add(offsets, base).cast(_TS)
    return pa.Table.from_arrays(
        [pa.array(rows.item_nos, pa.int32()), pa.array(rows.batch_ids, pa.int32()), *columns,
         stamps.slice(0, n), stamps.slice(1, n)],
        schema=wi_sql.RESULT_SCHEMA,
    )


def _micros(moment: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime (naive ones are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _timed(process, loads, rows, state, ctx, clock, limits: Limits, out) -> None:
    status, codes, reasons, started, finished = out
    caller = _Caller()
    deadline = time.monotonic() + limits.batch_timeout_s if limits.batch_timeout_s else None
    try:
        for item_no, batch_id, account_id, payload in rows:
            started.append(clock())
            left = None if deadline is None else deadline - time.monotonic()
            wait, which = limits.wait(left)
            if left is not None and left <= 0:
                outcome = limits.not_started()
            else:
                try:
                    args = (ItemInput(item_no, account_id, batch_id, loads(payload)), state, ctx)
                except Exception as exc:  # noqa: BLE001 - a payload that does not decode fails its item, as without limits
                    outcome = outcome_of(exc)
                else:
                    outcome = caller.call(process, args, wait)
                if outcome is None:
                    caller = _Caller()  # the old one is stuck in the hung call; it stays behind
                    outcome = limits.timed_out(wait, which)
            status.append(outcome[0])
            codes.append(outcome[1])
            reasons.append(outcome[2])
            finished.append(clock())
    finally:
        caller.close()


def lost_batch(rows: Rows | Sequence[tuple], exc: BaseException, now: dt.datetime) -> pa.Table:
    """The outcomes of a batch whose worker never answered (it died, or the batch could not be sent)."""
    reason = _text(f"the worker running this batch was lost: {type(exc).__name__}: {_text(exc)}")
    rows = Rows.of(rows)
    n = len(rows)
    return _table(rows.item_nos, rows.batch_ids, [_ERROR] * n, [WORKER_LOST] * n, [reason] * n,
                  [now] * n, [now] * n)


def _table(item_nos, batch_ids, status, codes, reasons, started, finished) -> pa.Table:
    ts = wi_sql.RESULT_SCHEMA.field("started_at").type
    return pa.Table.from_arrays(
        [pa.array(item_nos, pa.int32()), pa.array(batch_ids, pa.int32()), pa.array(status, pa.string()),
         pa.array(codes, pa.string()), pa.array(reasons, pa.string()), pa.array(started, ts),
         pa.array(finished, ts)],
        schema=wi_sql.RESULT_SCHEMA,
    )
