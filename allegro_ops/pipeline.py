"""The two ends of a job run that work on the store, each on a thread of its own, so that the run
keeps its workers busy while DuckDB reads and writes (DuckDB works without the GIL; the handlers
need it): ``Prefetched`` reads (or cuts from the listed table) the next batches while the current
ones run, and ``ResultWriter`` writes finished batches' outcomes, in order, while later ones run.

Both hand over every error to the run's thread (the next call that waits on them raises it), and
both hold a bounded amount: the prefetcher a few chunks of items, the writer ``limit_rows`` outcomes.
"""
from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import pyarrow as pa

__all__ = ["Prefetched", "ResultWriter", "quick_switches", "SWITCH_INTERVAL_S"]

T = TypeVar("T")
_DONE = object()


class Prefetched(Generic[T]):
    """Iterate ``items`` on a thread of its own, at most ``depth`` items ahead of the consumer.

    An exception of the iterator is raised to the consumer where it would have been; ``close()``
    (also on leaving a ``with`` block) stops the thread and closes the iterator there."""

    def __init__(self, items: Iterator[T], depth: int, name: str = "allegro-read-items") -> None:
        self._items = items
        self._depth = max(1, depth)
        self._queue: deque[Any] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._fill, name=name, daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        items = self._items
        try:
            for item in items:
                with self._cond:
                    while len(self._queue) >= self._depth and not self._stop:
                        self._cond.wait()
                    if self._stop:
                        return
                    self._queue.append(item)
                    self._cond.notify_all()
            end: Any = _DONE
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            end = _Raised(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            self._items = None
        with self._cond:
            self._queue.append(end)
            self._cond.notify_all()

    def __iter__(self) -> Iterator[T]:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
                self._cond.notify_all()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._queue.clear()
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ResultWriter:
    """Write outcome tables with ``write`` on a thread of its own, in the order they are put,
    after ``before_first()`` returned (the engine waits there until the listing is stored).

    ``put`` waits while ``limit_rows`` outcomes are not yet written, and raises the error of a
    failed write (or of before_first); so does ``check``. ``close`` waits until everything put is
    written and raises such an error; ``close(abandon=True)`` stops after the write under way."""

    def __init__(self, write: Callable[[pa.Table], None], before_first: Callable[[], None] = lambda: None,
                 limit_rows: int = 1_000_000) -> None:
        self._write, self._before_first = write, before_first
        self._limit = limit_rows
        self._queue: deque[pa.Table] = deque()
        self._rows = 0  # outcomes put and not yet written
        self._cond = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="allegro-write-results", daemon=True)
        self._thread.start()

    def put(self, results: pa.Table) -> None:
        with self._cond:
            while self._rows >= self._limit and self._error is None:
                self._cond.wait()
            self._raise()
            self._queue.append(results)
            self._rows += results.num_rows
            self._cond.notify_all()

    def check(self) -> None:
        """Raise the error of a failed write, if any."""
        with self._cond:
            self._raise()

    def close(self, abandon: bool = False) -> None:
        """Wait until everything put is written, and raise the error of a failed write; with
        ``abandon``, drop what is not being written yet, and raise nothing."""
        with self._cond:
            self._closing = True
            if abandon:
                self._queue.clear()
            self._cond.notify_all()
        self._thread.join()
        if not abandon:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        first = True
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if not self._queue:
                        return
                    results = self._queue[0]
                if first:
                    self._before_first()
                    first = False
                self._write(results)
                with self._cond:
                    if self._queue and self._queue[0] is results:
                        self._queue.popleft()
                    self._rows -= results.num_rows
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the run's thread
            with self._cond:
                self._error = exc
                self._queue.clear()
                self._cond.notify_all()


# How often the interpreter asks the thread holding the GIL to hand it over, while runs go on
# (Python's default: every 5 ms). A thread that hands work to DuckDB gives the GIL up for each
# call and needs it back when the call returns; with CPU-bound handlers holding it, each of a
# transaction's ~10 calls waited up to a whole interval, which stretched the listing's insert and
# the result writes 2-4x on a busy run. Handing over 10x as often costs the handlers little.
SWITCH_INTERVAL_S = 0.0005
_switch_guard = threading.Lock()
_switch_users = 0
_switch_before = 0.0


@contextmanager
def quick_switches() -> Iterator[None]:
    """While at least one run is inside, the interpreter's switch interval is at most
    SWITCH_INTERVAL_S; the last one out puts back what was there before the first came in."""
    global _switch_users, _switch_before
    with _switch_guard:
        if _switch_users == 0:
            _switch_before = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_before, SWITCH_INTERVAL_S))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_guard:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_before)
