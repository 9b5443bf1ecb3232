"""Run leases: which process owns an execution's run, and whether that owner still lives.

An owner on this host is alive while its process exists (and, for this very process, while
the run is registered here); an owner on another host is alive while its heartbeat is fresh.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from collections.abc import Callable

from .store import Store
from .store import executions as ex_sql

__all__ = ["HOST", "new_token", "owner_alive", "register", "unregister", "Heartbeat", "HEARTBEAT_TIMEOUT"]

HOST = socket.gethostname()
HEARTBEAT_TIMEOUT = dt.timedelta(seconds=float(os.environ.get("ALLEGRO_OPS_HEARTBEAT_TIMEOUT", "60")))
_active: set[str] = set()
_lock = threading.Lock()


def new_token() -> str:
    return uuid.uuid4().hex


def register(token: str) -> None:
    with _lock:
        _active.add(token)


def unregister(token: str) -> None:
    with _lock:
        _active.discard(token)


def owner_alive(
    token: str | None, host: str | None, pid: int | None, heartbeat: dt.datetime | None, now: dt.datetime
) -> bool:
    if not token:
        return False
    if host == HOST and pid is not None:
        if pid == os.getpid():
            with _lock:
                return token in _active
        return _pid_exists(pid)
    return heartbeat is not None and now - heartbeat <= HEARTBEAT_TIMEOUT


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


class Heartbeat:
    """Refreshes a run's lease (every ``every`` seconds, on a thread of its own) while handlers
    run long between writes; a missed beat is retried at the next tick."""

    def __init__(self, store: Store, execution_id: int, token: str, clock: Callable[[], dt.datetime],
                 every: float = 10.0) -> None:
        self._store, self._execution_id, self._token, self._clock, self._every = store, execution_id, token, clock, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="allegro-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._store.write(lambda con: ex_sql.heartbeat(con, self._execution_id, self._token, self._clock()))
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next tick
                pass
