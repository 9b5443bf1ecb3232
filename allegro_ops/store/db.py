"""The DuckDB file: short-lived connections, lock retry with backoff, one write path.

DuckDB lets one process hold a database file at a time. Every process here (CLI, dashboard
kernel, papermill run, scheduler) therefore opens the file only for one unit of work and closes
it again; a caller that meets another process's lock waits with backoff up to ``lock_timeout``
before it gives up with StoreBusy.

Opening is cheap because the file is not opened as a DuckDB instance of its own: each process
keeps one in-memory instance and ATTACHes the file to it for a unit of work, DETACHing it after
(~2 ms at 10M work items, where a new instance costs ~20 ms, almost all of it building the
instance and its built-in extensions, whatever the file). Between units of work the file is
free, to other processes and to raw DuckDB clients alike.

Handing the file over quickly (a dashboard refreshes every second while a run writes): files are
attached with row groups of ROW_GROUP_ROWS (30,720) rows, and a writer that inserts whole row
groups per transaction has DuckDB write them straight to the file, ~50-100 ms each, with nothing
left for a checkpoint to redo. A unit of work that wrote checkpoints the file when it lets it go, so
that the next opener finds everything in the file itself, unless another process is waiting for
the file: then the file goes as it is, its write-ahead log with it (DuckDB's own recovery log,
which the next opener replays: a few ms per MB, and commits checkpoint beyond 4 MB), and the
waiter gets in at once instead of after the checkpoint. Units that wrote nothing through
``write()`` (reads) never checkpoint.

A missing file is never made by a read: ``read()`` then answers from an empty workspace (an
in-memory DuckDB instance of its own, migrated, so that no catalog of a file lists it; built once
per process in ~60 ms, a read of it ~0.7 ms, in a transaction that is always rolled back), so a
dashboard left open on a deleted workspace, or ``allegro-ops status`` on an empty home, leaves no
file, log or folder behind. ``write()`` makes the file and migrates it, also when it was deleted
after this Store had migrated an earlier one.

Memory: the process's instance may use ``ALLEGRO_OPS_DUCKDB_MEMORY_LIMIT`` (DuckDB's notation:
``2GB``, ``512MB``, ``10%``), by default a quarter of the machine's memory and at most 2 GB. Our
own units of work stay far below it (a run of 1M work items: under 50 MB); it bounds an
analyst's large query, which DuckDB spills to a temporary folder beyond the limit.
"""
from __future__ import annotations

import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from ..errors import BadInput, StoreBusy
from . import migrations
from .migrations import migrate

__all__ = ["Store", "DB_FILENAME", "ROW_GROUP_ROWS", "rolled_back"]

DB_FILENAME = "allegro_ops.duckdb"
T = TypeVar("T")

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
_CONFLICT_MARKERS = ("Conflict on", "conflict", "Write-write conflict")
# The row group size of every file this process attaches (DuckDB's default is 122,880). An insert of
# whole row groups goes straight to the file, compressed, with nothing left for a checkpoint to
# redo; at this size such an insert takes ~50-100 ms, so a writer that stores and writes in whole
# row groups lets another process have the file soon, and no checkpoint of it is long. Every
# process attaches with the same size (a checkpoint merges row groups smaller than the size it was
# attached with, so a file attached by DuckDB's default would have these merged, once).
ROW_GROUP_ROWS = 30_720
# A commit that leaves more than this in the write-ahead log checkpoints (DuckDB's default: 16 MB).
# With whole row groups written straight to the file, the log holds little more than updates of
# items' states; a small log is quick to checkpoint (~10-60 ms) and, when the file is handed over
# without a checkpoint, quick for the next opener to replay (~10-20 ms instead of up to ~100 ms).
_CHECKPOINT_WAL = "4MB"
_WAITING_STALE_S = 5.0  # a waiter re-marks on every failed try; an older mark is from a waiter gone
_WAITER_POLL_S = 0.005  # how often a process that marked .waiting tries the file again
MEMORY_LIMIT_ENV = "ALLEGRO_OPS_DUCKDB_MEMORY_LIMIT"
_DEFAULT_MEMORY_SHARE, _DEFAULT_MEMORY_CAP = "25%", 2 * 2**30


# One lock per database file and process: a unit of work holds it from attach to detach, so
# that threads of one process (a run's heartbeat next to its batch writes, a dashboard refresh
# next to a run) never race one file's attach and detach. Units of work are short, so
# serializing them costs little.
_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> threading.RLock:
    key = str(path.resolve())
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


class _Attachment:
    """A file attached to the process's instance: its catalog name and the units of work using it.
    Two Store objects on one file (two Workspaces of one home) share it, as two duckdb.connect()
    calls share an instance; the per-file lock keeps their units of work apart."""

    def __init__(self, name: str) -> None:
        self.name, self.users = name, 0
        self.wrote = False  # a unit of work wrote since the file was attached: checkpoint it when it goes


# The process's one in-memory DuckDB instance (made on first use) and the files attached to it
# now, by resolved path.
_INSTANCE: duckdb.DuckDBPyConnection | None = None
_ATTACHED: dict[str, _Attachment] = {}
_INSTANCE_GUARD = threading.Lock()
_ORPHANED: list[duckdb.DuckDBPyConnection] = []
_RESERVED_NAMES = {"memory", "system", "temp", "main"}
# What reads of a missing file see: a migrated in-memory instance, and the migrations it has.
_EMPTY: tuple[duckdb.DuckDBPyConnection, tuple[int, ...]] | None = None
_EMPTY_GUARD = threading.Lock()


def _spill_folder() -> str:
    """Where DuckDB spills: a folder of this process (made when it spills, removed at exit), not
    ./.tmp of whatever the working directory is."""
    return os.path.join(tempfile.gettempdir(), f"allegro-ops-duckdb-{os.getpid()}")


def _instance() -> duckdb.DuckDBPyConnection:
    global _INSTANCE
    if _INSTANCE is None:
        instance = duckdb.connect(":memory:", config={"temp_directory": _spill_folder()})
        instance.execute("SET GLOBAL TimeZone = 'UTC'")
        instance.execute("SET GLOBAL checkpoint_on_detach = 'DISABLED'")  # _detach checkpoints when it should
        instance.execute("SET GLOBAL checkpoint_threshold = $1", [_CHECKPOINT_WAL])
        _set_memory_limit(instance)
        _INSTANCE = instance
    return _INSTANCE


def _set_memory_limit(instance: duckdb.DuckDBPyConnection) -> None:
    """ALLEGRO_OPS_DUCKDB_MEMORY_LIMIT, else a quarter of the memory DuckDB sees (a container's
    limit included), at most 2 GB. A value DuckDB refuses is a BadInput naming the variable."""
    wanted = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    try:
        instance.execute("SET GLOBAL memory_limit = $1", [wanted or _DEFAULT_MEMORY_SHARE])
    except duckdb.Error as exc:
        raise BadInput(f"{MEMORY_LIMIT_ENV}={wanted!r} is not a memory size DuckDB understands "
                       f"(e.g. 2GB, 512MB, 10%): {str(exc).splitlines()[0]}") from None
    if not wanted and (_memory_limit_bytes(instance) or 0) > _DEFAULT_MEMORY_CAP:
        instance.execute("SET GLOBAL memory_limit = $1", [f"{_DEFAULT_MEMORY_CAP // 2**20}MiB"])


_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}


def _memory_limit_bytes(instance: duckdb.DuckDBPyConnection) -> int | None:
    """The instance's memory limit in bytes (DuckDB shows it as text such as '5.8 GiB'), None if unreadable."""
    text = instance.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    found = re.fullmatch(r"\s*([\d.]+)\s*(bytes|[KMGTP]iB)\s*", str(text))
    return int(float(found[1]) * _UNITS[found[2]]) if found else None


def _forget_parent_instance() -> None:
    """In a forked child the parent's instance is unusable (its threads did not come along) and
    must not be closed either: keep it referenced and start afresh."""
    global _INSTANCE, _INSTANCE_GUARD, _EMPTY, _EMPTY_GUARD
    _ORPHANED.extend(i for i in (_INSTANCE, _EMPTY and _EMPTY[0]) if i is not None)
    _INSTANCE, _INSTANCE_GUARD, _EMPTY, _EMPTY_GUARD = None, threading.Lock(), None, threading.Lock()
    _ATTACHED.clear()


os.register_at_fork(after_in_child=_forget_parent_instance)


def _catalog_name(path: Path) -> str:
    """The file's name without suffix (what DuckDB itself calls it), unique among attached files."""
    base = re.sub(r"\W", "_", path.stem) or "db"
    if base.lower() in _RESERVED_NAMES or base[0].isdigit():
        base = "db_" + base
    taken = {a.name for a in _ATTACHED.values()}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _attach(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the file; DuckDB's lock error when another process has it."""
    key = str(path.resolve())
    with _INSTANCE_GUARD:
        instance = _instance()
        attachment = _ATTACHED.get(key)
        if attachment is None:
            name = _catalog_name(path)
            instance.execute(f'ATTACH ? AS "{name}" (ROW_GROUP_SIZE ?)', [key, ROW_GROUP_ROWS])
            attachment = _ATTACHED[key] = _Attachment(name)
        attachment.users += 1
        con = instance.cursor()
    try:
        con.execute(f'USE "{attachment.name}"')
    except BaseException:
        _detach(path, con)
        raise
    return con


def _empty_workspace() -> duckdb.DuckDBPyConnection:
    """A connection to the process's empty workspace, what reads of a file that does not exist see:
    an in-memory instance with every migration applied, made on first use and again when the
    migrations changed (a test that patches them)."""
    global _EMPTY
    versions = tuple(version for version, _, _ in migrations.MIGRATIONS)
    with _EMPTY_GUARD:
        if _EMPTY is None or _EMPTY[1] != versions:
            instance = duckdb.connect(":memory:", config={"threads": 1, "temp_directory": _spill_folder()})
            instance.execute("SET GLOBAL TimeZone = 'UTC'")
            migrate(instance)
            _EMPTY = instance, versions  # one replaced stays alive while a read still uses it
        return _EMPTY[0].cursor()


@contextmanager
def rolled_back(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction on ``con`` that is always rolled back: every statement in it sees one
    snapshot, and nothing it might change is kept."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    finally:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file is at path now (device, inode); None when there is none."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _wrote(path: Path) -> None:
    """Note that a unit of work wrote to the attached file (it is checkpointed when it goes)."""
    attachment = _ATTACHED.get(str(path.resolve()))
    if attachment is not None:
        attachment.wrote = True


def _detach(path: Path, con: duckdb.DuckDBPyConnection, checkpoint: bool = True) -> None:
    """Close a connection of _attach(); the last one of a file detaches it (a transaction left open
    is rolled back), which frees the file for other processes. What units of work wrote is
    checkpointed first, unless ``checkpoint`` is False (a process waits: the next opener replays
    the write-ahead log instead)."""
    con.close()
    key = str(path.resolve())
    with _INSTANCE_GUARD:
        attachment = _ATTACHED.get(key)
        if attachment is None:  # attached before a fork, in the parent
            return
        attachment.users -= 1
        if attachment.users <= 0:
            del _ATTACHED[key]
            try:
                if checkpoint and attachment.wrote:
                    _instance().execute(f'CHECKPOINT "{attachment.name}"')
            finally:
                _instance().execute(f'DETACH "{attachment.name}"')


def _is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and any(m in str(exc) for m in _LOCK_MARKERS)


def _not_utf8(exc: BaseException) -> BadInput | None:
    """Text that cannot be UTF-8 (a lone surrogate from non-UTF-8 bytes) handed to DuckDB as a value."""
    if isinstance(exc, duckdb.InvalidInputException) and "cannot encode str as UTF-8" in str(exc):
        return BadInput("bad text: a value is not valid UTF-8 (" + str(exc).rsplit(": ", 1)[-1] + ")")
    return None


def _is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.TransactionException) and any(m in str(exc) for m in _CONFLICT_MARKERS)


class Store:
    """A workspace's DuckDB file. Thread-safe; every call attaches the file, works and detaches it
    (or, inside ``held()``, keeps it attached for the next call for at most a second)."""

    def __init__(self, path: str | Path, *, lock_timeout: float | None = None) -> None:
        self.path = Path(path)
        if lock_timeout is None:
            lock_timeout = float(os.environ.get("ALLEGRO_OPS_LOCK_TIMEOUT", "30"))
        self.lock_timeout = lock_timeout
        self._migrated: tuple[int, int] | None = None  # the file (device, inode) this Store migrated
        self._held: duckdb.DuckDBPyConnection | None = None  # kept open between units of work by held()
        self._holders = 0
        self._hold = 0.0
        self._give_way_s = 0.0
        self._waiting_path = self.path.with_name(self.path.name + ".waiting")
        self._opened_at = 0.0
        self._released_at = 0.0

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one unit of work, waiting out other threads and other processes' locks.

        Inside ``held()`` the connection stays open between units of work until another process
        asks for the file (or ``hold`` seconds have passed), then it is closed and this process
        gives way before it opens the file again. What ``write()`` committed (and migrations) is
        checkpointed when the file is let go, unless another process waits for it. A file that does
        not exist is made (reads that must not make it go through ``read()``)."""
        with _file_lock(self.path):
            con, self._held = self._held, None
            fresh, existed = con is None, True
            if fresh:
                self._give_way()
                existed = self.path.exists()
                con = self._open()
                self._opened_at = time.monotonic()
            ok = False
            try:
                if fresh:
                    self._migrate(con, existed)
                yield con
                ok = True
            finally:
                # keep it for the next unit of work, unless one is kept already (this unit was nested
                # in another, which keeps its own)
                if ok and self._holders and self._held is None and not self._must_release():
                    self._held = con
                else:
                    _detach(self.path, con, checkpoint=not self._someone_waits())
                    if self._holders:
                        self._released_at = time.monotonic()

    @contextmanager
    def held(self, hold: float = 1.0, give_way: float = 0.5) -> Iterator[None]:
        """Reuse one connection across the consecutive units of work of a run (a run writes many
        batches) instead of attaching and detaching the file for each one (~2-5 ms, and DuckDB's
        cache of the file's blocks goes with the detach).

        Fair to other processes: one that finds the file locked says so in ``<file>.waiting``;
        the holder then closes the file within ~10 ms and does not open it again until the waiter
        got in (up to ``give_way`` seconds). The file is also closed after ``hold`` seconds."""
        with _file_lock(self.path):
            self._holders += 1
            self._hold, self._give_way_s = hold, give_way
        stop = threading.Event()
        closer = threading.Thread(target=self._close_when_asked, args=(stop,), name="allegro-store-closer",
                                  daemon=True)
        closer.start()
        try:
            yield
        finally:
            stop.set()
            closer.join()
            with _file_lock(self.path):
                self._holders -= 1
                if not self._holders:
                    self._release()
                    self._released_at = 0.0

    def _must_release(self) -> bool:
        return time.monotonic() - self._opened_at >= self._hold or self._someone_waits()

    def _someone_waits(self) -> bool:
        try:
            return time.time() - self._waiting_path.stat().st_mtime < _WAITING_STALE_S
        except OSError:
            return False

    def _give_way(self) -> None:
        """After releasing the file to a waiting process, let it in before opening the file again."""
        if not self._holders or not self._released_at:
            return
        deadline = self._released_at + self._give_way_s
        while time.monotonic() < deadline and self._someone_waits():
            time.sleep(0.005)

    def _close_when_asked(self, stop: threading.Event) -> None:
        while not stop.wait(0.01):
            if self._held is None or not self._must_release():
                continue
            with _file_lock(self.path):
                if self._held is not None and self._must_release():
                    self._release()

    def let_go(self) -> None:
        """Inside ``held()``: close the connection kept between units of work now (what was written is
        checkpointed, and DuckDB's cache of the file's blocks goes with it); the next unit of work
        attaches the file again. A run that writes a large listing does this every few parts, so
        that its memory does not grow with the listing."""
        with _file_lock(self.path):
            self._release()

    def _release(self) -> None:
        if self._held is not None:
            _detach(self.path, self._held, checkpoint=not self._someone_waits())
            self._held = None
            self._released_at = time.monotonic()

    def _migrate(self, con: duckdb.DuckDBPyConnection, existed: bool) -> None:
        """Migrate a file this Store has not migrated: the first one, or one made since (deleted and
        made again, restored). A file this unit of work made is always migrated, as a new file may
        get the inode of a deleted one."""
        identity = _identity(self.path)
        if existed and identity is not None and identity == self._migrated:
            return
        _wrote(self.path)
        migrate(con)
        self._migrated = identity

    def read(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """``fn`` in one unit of work. A file that does not exist is not made: ``fn`` reads the
        process's empty workspace instead, and what it might change there is rolled back."""
        with _file_lock(self.path):
            missing = self._held is None and not self.path.exists()
            if missing:
                self._migrated = None  # whatever file comes next is a new one
        with (self._empty() if missing else self.connect()) as con:
            try:
                return fn(con)
            except duckdb.InvalidInputException as exc:
                raise (_not_utf8(exc) or exc) from None

    @staticmethod
    @contextmanager
    def _empty() -> Iterator[duckdb.DuckDBPyConnection]:
        con = _empty_workspace()
        try:
            with rolled_back(con):
                yield con
        finally:
            con.close()

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
                    _wrote(self.path)
                    return result
                except BaseException as exc:
                    try:
                        con.execute("ROLLBACK")
                    except duckdb.Error:
                        pass
                    if (bad := _not_utf8(exc)) is not None:
                        raise bad from None
                    if not _is_conflict(exc) or time.monotonic() > deadline:
                        raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.2)

    def _open(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        delay = 0.005
        marked = False
        try:
            while True:
                try:
                    return _attach(self.path)
                except duckdb.Error as exc:
                    if not _is_lock_error(exc):
                        raise
                    waited = time.monotonic() - start
                    if waited >= self.lock_timeout:
                        raise StoreBusy(str(self.path), waited) from None
                    marked = self._mark_waiting() or marked
                    time.sleep(min(delay * (1 + random.random()), max(0.0, self.lock_timeout - waited)))
                    # A holder that honours the mark lets go within ~10 ms: look again soon.
                    delay = min(delay * 2, _WAITER_POLL_S if marked else 0.1)
        finally:
            if marked:
                self._waiting_path.unlink(missing_ok=True)

    def _mark_waiting(self) -> bool:
        """Tell a process that holds the file open between units of work that this one waits."""
        try:
            self._waiting_path.touch()
            return True
        except OSError:
            return False
