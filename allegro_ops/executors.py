"""Where batches run. The local pool (threads) is the default; the Dask executor sends batches
to a ``distributed`` cluster. Each executor takes callables and gives concurrent.futures
futures, so the engine does not care where a batch runs.

Choosing one: a job's ``params.executor`` (``local`` or ``dask``) wins over the workspace's
default (``Workspace(executor=...)``). The Dask scheduler address comes from
``params.dask_address``, else the environment variable ``ALLEGRO_OPS_DASK_ADDRESS``; with
neither, a LocalCluster of worker processes is started for the job run and closed after it.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

__all__ = ["Executor", "LocalExecutor", "DaskExecutor", "make_executor", "executor_kind", "DASK_ADDRESS_ENV"]

DASK_ADDRESS_ENV = "ALLEGRO_OPS_DASK_ADDRESS"
KINDS = ("local", "dask")


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


class DaskExecutor:
    """Batches on a Dask cluster: right for CPU-bound handlers. Workers get pickled arguments and
    never open the workspace's DuckDB file; the coordinating process writes every result."""

    def __init__(self, concurrency: int, address: str | None = None) -> None:
        from distributed import Client, LocalCluster  # optional dependency: pip install allegro-ops[dask]

        self._cluster = None
        if address is None:
            threads = max(1, concurrency // 2)
            self._cluster = LocalCluster(n_workers=2, threads_per_worker=threads, processes=True,
                                         dashboard_address=None)
            address = self._cluster.scheduler_address
        self._client = Client(address, set_as_default=False)
        self._futures: list[Any] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        remote = self._client.submit(fn, *args, pure=False)
        self._futures.append(remote)
        local: Future = Future()
        local.set_running_or_notify_cancel()

        def settle(f: Any) -> None:
            try:
                local.set_result(f.result())
            except BaseException as exc:  # noqa: BLE001 - handed to the engine through the future
                local.set_exception(exc)

        remote.add_done_callback(settle)
        return local

    def close(self, cancel: bool = False) -> None:
        try:
            if cancel and self._futures:
                self._client.cancel(self._futures)
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()


def executor_kind(params: Mapping[str, Any], default: str) -> str:
    kind = str(params.get("executor") or default)
    if kind not in KINDS:
        raise ValueError(f"unknown executor {kind!r} (known: {', '.join(KINDS)})")
    return kind


def make_executor(kind: str, concurrency: int, params: Mapping[str, Any] | None = None, *,
                  async_job: bool = False) -> Executor:
    """The executor for one job run; ``params`` are the job's params (executor, dask_address);
    ``async_job``: the job type's process_item is ``async def`` (local runs go on one event loop)."""
    params = params or {}
    kind = executor_kind(params, kind)
    if kind == "dask":
        return DaskExecutor(concurrency, params.get("dask_address") or os.environ.get(DASK_ADDRESS_ENV) or None)
    if async_job:
        from .aio import AsyncExecutor
        return AsyncExecutor(concurrency)
    return LocalExecutor(concurrency)
