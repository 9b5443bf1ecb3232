"""What a job type is: it lists a date's work items and processes them, one item at a time."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd
    import pyarrow as pa

    from ..store import Store

__all__ = ["JobType", "JobContext", "ItemInput"]


@dataclass(frozen=True)
class JobContext:
    """Where a job runs: the execution's client, schedule and run date, and the job's params."""

    client: str
    schedule: str
    run_date: dt.date
    job: str
    params: dict[str, Any] = field(default_factory=dict)
    store: "Store | None" = None  # read access for job types that list items from the workspace


class ItemInput(NamedTuple):
    """One work item as its handler gets it (immutable; a named tuple because one is built per item)."""

    item_no: int
    account_id: str
    batch_id: int
    payload: Any  # the decoded JSON payload


class JobType:
    """Base class of job types. Subclasses set ``name`` and override the two methods.

    ``process_item`` fails a work item by raising WorkItemError(code, reason); any other
    exception becomes the error code UNHANDLED with the exception's text. It runs in worker
    threads (or Dask workers), so it must not touch the database: whatever it needs from the
    workspace comes from ``prepare``, which runs once per job run in the coordinating process.

    ``process_item`` may be ``async def`` (a handler that awaits an internal API): the job's work
    items then run on one event loop with at most ``concurrency`` calls in flight (allegro_ops.aio).
    Such a handler must never block (use ``await asyncio.to_thread(...)`` for blocking work), a
    timeout cancels its call, and a loop-bound client (an HTTP session) is made inside the
    handler, lazily, not in ``prepare``, which runs off the loop: ``aio.loop_resource(key, make)``
    shares one per loop and closes it when the job run ends (the ``http`` job type does so).
    """

    name: ClassVar[str] = ""

    def list_work_items(self, ctx: JobContext) -> "pa.Table | pd.DataFrame | list[tuple[str, Any]] | Iterator[Any]":
        """The date's work items: account_id and a JSON-serializable payload each.

        Fastest for large listings: a ``pa.Table`` whose ``payload`` column is already JSON
        text (e.g. built by a DuckDB query with ``to_json``); it is stored without a Python step
        per item, and its first batches run while it is stored. Python objects as payloads are
        encoded with the standard library's json.

        A listing too large to hold in memory is streamed: return an iterator (e.g. a generator)
        of Arrow tables or record batches, a ``pa.RecordBatchReader`` (DuckDB's
        ``relation.to_arrow_reader()``), or an iterator of (account_id, payload) pairs. The engine
        stores it part by part (30,720 items each) and then runs it from the store, so that the
        run's memory does not grow with the listing. A part that fails (a payload that is not
        JSON, or the iterator raising) refuses the whole listing, and nothing of it is kept."""
        raise NotImplementedError

    def prepare(self, ctx: JobContext) -> Any:
        """State shared by every item of this job run (reference data, a client session)."""
        return None

    def process_item(self, item: ItemInput, state: Any, ctx: JobContext) -> None:
        raise NotImplementedError
