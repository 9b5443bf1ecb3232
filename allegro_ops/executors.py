"""Where batches run. The local pool (threads) is the default; each executor takes callables
and gives futures, so the engine does not care where a batch runs."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

__all__ = ["Executor", "LocalExecutor", "make_executor"]


class Executor(Protocol):
    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future: ...

    def close(self, cancel: bool = False) -> None: ...


class LocalExecutor:
    """A thread pool: right for handlers that wait on I/O (internal API calls)."""

    def __init__(self, concurrency: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="allegro-batch")

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        return self._pool.submit(fn, *args)

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)


def make_executor(kind: str, concurrency: int) -> Executor:
    if kind == "local":
        return LocalExecutor(concurrency)
    raise ValueError(f"unknown executor {kind!r} (known: local)")
