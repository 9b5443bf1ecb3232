"""Fault points: named places in a run where a crash test may kill the process.

``ALLEGRO_OPS_FAULT=<point>[:<n>]`` makes the n-th arrival (default the first) at that point
send SIGKILL to this very process, the way an OOM killer or a pulled plug would: no cleanup,
no ``finally``. Unset (always, outside tests) a point costs one dict lookup.
"""
from __future__ import annotations

import os
import signal
import threading

__all__ = ["POINTS", "point", "FAULT_ENV"]

FAULT_ENV = "ALLEGRO_OPS_FAULT"
POINTS = (
    "run-begun",  # the lease is taken and the execution is IN_PROGRESS; no job started
    "items-listed",  # a job's work items are generated, not yet stored
    "items-stored",  # inside the transaction that stores them, before its commit
    "job-started",  # the job is IN_PROGRESS with its items stored; no batch submitted
    "batch-submitted",  # a batch's pieces are on the executor
    "item-done",  # a piece of a batch ran its handlers in a worker; its results are not yet written
    "results-writing",  # inside a result transaction, before its commit
    "results-written",  # right after a result transaction committed
    "job-finishing",  # inside the transaction that finishes a job, before its commit
    "job-finished",  # a job's final status is committed; the next job has not started
    "settling",  # inside the transaction that settles the execution, before its commit
    "settled",  # the execution is settled and its lease released
)

_lock = threading.Lock()
_seen: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    return name, int(nth or 1)


_TARGET = _target()


def point(name: str) -> None:
    """Mark a fault point; kills the process when ALLEGRO_OPS_FAULT names it (and its count)."""
    if _TARGET is None or _TARGET[0] != name:
        return
    with _lock:
        _seen[name] = _seen.get(name, 0) + 1
        hit = _seen[name] == _TARGET[1]
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
