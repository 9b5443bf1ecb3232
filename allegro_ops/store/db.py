"""The DuckDB file: short-lived connections, lock retry with backoff, one write path.

DuckDB lets one process hold a database file at a time. Every process here (CLI, dashboard
kernel, papermill run, scheduler) therefore opens the file only for one unit of work and closes
it again; a caller that meets another process's lock waits with backoff up to ``lock_timeout``
before it gives up with StoreBusy.
"""
from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from ..errors import StoreBusy
from .migrations import migrate

__all__ = ["Store", "DB_FILENAME"]

DB_FILENAME = "allegro_ops.duckdb"
T = TypeVar("T")

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
_CONFLICT_MARKERS = ("Conflict on", "conflict", "Write-write conflict")


# One lock per database file and process: a unit of work holds it from open to close.
# DuckDB shares one database instance among a process's connections to a file and drops it
# when the last one closes; threads opening and closing connections to the same file at once
# (a run's heartbeat next to its batch writes, a dashboard refresh next to a run) then race the
# instance's teardown and get a half-built instance ("python_arrow_scan does not exist") or
# two instances on one file. Units of work are short, so serializing them costs little.
_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> threading.RLock:
    key = str(path.resolve())
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


def _is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and any(m in str(exc) for m in _LOCK_MARKERS)


def _is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.TransactionException) and any(m in str(exc) for m in _CONFLICT_MARKERS)


class Store:
    """A workspace's DuckDB file. Thread-safe; every call opens, works and closes."""

    def __init__(self, path: str | Path, *, lock_timeout: float | None = None) -> None:
        self.path = Path(path)
        if lock_timeout is None:
            lock_timeout = float(os.environ.get("ALLEGRO_OPS_LOCK_TIMEOUT", "30"))
        self.lock_timeout = lock_timeout
        self._migrated = False
        self._migrate_lock = threading.Lock()

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one unit of work, waiting out other threads and other processes' locks."""
        with _file_lock(self.path):
            con = self._open()
            try:
                if not self._migrated:
                    with self._migrate_lock:
                        if not self._migrated:
                            migrate(con)
                            self._migrated = True
                yield con
            finally:
                con.close()

    def read(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        with self.connect() as con:
            return fn(con)

    def write(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """The one write path: ``fn`` runs in a transaction, retried on a write-write conflict."""
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            with self.connect() as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    result = fn(con)
                    con.execute("COMMIT")
                    return result
                except BaseException as exc:
                    try:
                        con.execute("ROLLBACK")
                    except duckdb.Error:
                        pass
                    if not _is_conflict(exc) or time.monotonic() > deadline:
                        raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.2)

    def _open(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        delay = 0.005
        while True:
            try:
                con = duckdb.connect(str(self.path))
                con.execute("SET TimeZone = 'UTC'")
                return con
            except duckdb.Error as exc:
                if not _is_lock_error(exc):
                    raise
                waited = time.monotonic() - start
                if waited >= self.lock_timeout:
                    raise StoreBusy(str(self.path), waited) from None
                time.sleep(min(delay * (1 + random.random()), max(0.0, self.lock_timeout - waited)))
                delay = min(delay * 2, 0.1)
