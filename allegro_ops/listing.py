"""A job's listed work items: whatever the job type's ``list_work_items`` gave, as one Arrow
table of account_id and payload (JSON text), and that table cut into batches in memory; or, for
a streamed listing (an iterator: of Arrow tables or record batches, a ``pa.RecordBatchReader``, or
of (account_id, payload) pairs), the same tables part by part, so that a listing of millions of
items is never in memory at once.

A fresh run of a large listing runs its first batches straight from this table while the store
inserts it (engine.py; ``Source``, ``in_background``), instead of reading the items back from the
file, and lets the table go once the store holds every item.
"""
from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

import pandas as pd
import pyarrow as pa

from .batches import Rows
from .errors import BadInput

__all__ = ["normalize", "batches", "is_streamed", "stream", "Source", "in_background"]


def batches(items: pa.Table, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[Rows]:
    """The rows of a listed table from row ``start`` (a multiple of batch_size) to ``stop`` (or the
    end), batch by batch, numbered as the store numbers them (items from 1 in the table's order,
    batches of batch_size from item 1)."""
    part = items.slice(start, (items.num_rows if stop is None else stop) - start)
    accounts, payloads = part.column("account_id").to_pylist(), part.column("payload").to_pylist()
    for i in range(0, part.num_rows, batch_size):
        first = start + i  # the batch's first row: item first + 1 of batch first // batch_size + 1
        n = min(batch_size, part.num_rows - i)
        yield Rows(range(first + 1, first + n + 1), [first // batch_size + 1] * n, accounts[i : i + n],
                   payloads[i : i + n])


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)  # built once: json.dumps(**kw) builds one per call


def normalize(items: Any, job_name: str) -> tuple[pa.Table, bool]:
    """account_id (text) and payload (JSON text) columns from whatever the job type listed, and
    whether every payload is known to be JSON already.

    An Arrow table whose payload column is already text is taken as it is, without a Python
    step per item (False: the engine has the store check its JSON, in C, before anything runs);
    other payloads are checked or encoded here, one by one (True)."""
    if isinstance(items, pa.Table) and {"account_id", "payload"} <= set(items.column_names) \
            and _is_text(items.schema.field("payload").type) and _is_key(items.schema.field("account_id").type):
        return _text_items(items, job_name), False
    if isinstance(items, pa.Table):
        accounts, payloads = items.column("account_id").to_pylist(), items.column("payload").to_pylist()
    elif isinstance(items, pd.DataFrame):
        accounts, payloads = items["account_id"].tolist(), items["payload"].tolist()
    else:
        pairs = list(items)
        accounts, payloads = [a for a, _ in pairs], [p for _, p in pairs]
    encoded = []
    encode, loads = _ENCODER.encode, json.loads
    for account, payload in zip(accounts, payloads):
        if isinstance(payload, str):
            try:
                loads(payload)
            except ValueError:
                raise BadInput(f"job {job_name}: work item {account!r}: payload is not valid JSON text") from None
            encoded.append(payload)
            continue
        try:
            encoded.append(encode(payload))
        except (TypeError, ValueError) as exc:
            raise BadInput(f"job {job_name}: work item {account!r}: payload is not JSON-serializable ({exc})") from None
    accounts = [str(a) for a in accounts]
    try:
        return pa.table({"account_id": pa.array(accounts, pa.string()), "payload": pa.array(encoded, pa.string())}), True
    except UnicodeEncodeError:  # a lone surrogate somewhere: find it (the slow path only runs then)
        pass
    for account in accounts:
        if not _encodable(account):
            raise BadInput(f"job {job_name}: work item {account!r}: account id is not valid UTF-8 text") from None
    encoded = [p if _encodable(p) else json.dumps(json.loads(p), ensure_ascii=True) for p in encoded]
    return pa.table({"account_id": pa.array(accounts, pa.string()), "payload": pa.array(encoded, pa.string())}), True


def is_streamed(items: Any) -> bool:
    """Whether a listing comes as a stream (a RecordBatchReader or an iterator, e.g. a generator),
    not as one table, data frame or list."""
    return isinstance(items, (pa.RecordBatchReader, Iterator))


def stream(items: Iterable[Any], job_name: str, rows: int) -> Iterator[tuple[pa.Table, bool]]:
    """A streamed listing as normalized parts of ``rows`` items (the last may be smaller), each with
    whether its payloads are known to be JSON (see ``normalize``). Arrow parts are cut and joined to
    that size; (account_id, payload) pairs are taken ``rows`` at a time."""
    items = iter(items)
    first = next(items, None)
    if first is None:
        return
    items = itertools.chain([first], items)
    if not isinstance(first, (pa.Table, pa.RecordBatch)):
        while part := list(itertools.islice(items, rows)):
            yield normalize(part, job_name)
        return
    waiting: list[pa.Table] = []
    count = 0
    for got in items:
        if not isinstance(got, (pa.Table, pa.RecordBatch)):
            raise BadInput(f"job {job_name}: a streamed listing mixes Arrow parts with {type(got).__name__}")
        table = pa.Table.from_batches([got]) if isinstance(got, pa.RecordBatch) else got
        waiting.append(table)
        count += table.num_rows
        while count >= rows:
            joined = pa.concat_tables(waiting, promote_options="permissive")
            yield normalize(joined.slice(0, rows), job_name)
            rest = joined.slice(rows)
            waiting, count = [rest], rest.num_rows
    if count:
        yield normalize(pa.concat_tables(waiting, promote_options="permissive"), job_name)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_key(kind: pa.DataType) -> bool:
    return _is_text(kind) or pa.types.is_integer(kind)


def _text_items(items: pa.Table, job_name: str) -> pa.Table:
    """The account_id and payload columns of a listed Arrow table, as text; no id may be missing."""
    accounts = items.column("account_id")
    if accounts.null_count:
        raise BadInput(f"job {job_name}: {accounts.null_count} listed work item(s) have no account id")
    if not _is_text(accounts.type):
        accounts = accounts.cast(pa.string())
    payloads = items.column("payload").fill_null("null")  # as a missing Python payload is encoded: JSON null
    return pa.table({"account_id": accounts.cast(pa.string()), "payload": payloads.cast(pa.string())})


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


class Source:
    """Where a job run's items come from: the listed table (stored meanwhile by ``storing``), or the store."""

    def __init__(self, items: pa.Table | None, storing: Future | None, last_item: int) -> None:
        self.items = items
        self.listed = items is not None  # this run listed the items: every one is PENDING until it runs
        self.storing = storing
        self.last_item = last_item  # the items are numbered 1..last_item

    def stored(self) -> bool:
        """Whether the store holds every listed item (a failed insert is not: it is raised at the next write)."""
        return self.storing is None or (self.storing.done() and self.storing.exception() is None)


def in_background(fn: Callable[..., Any], *args: Any) -> Future:
    """Run fn(*args) on a thread of its own; its future. The thread lets go of fn and its arguments
    before the future is done (the engine drops a listed table once it is stored)."""
    future: Future = Future()
    call = [fn, args]

    def run() -> None:
        fn_, args_ = call.pop(0), call.pop(0)
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn_(*args_)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
            error = exc
        del fn_, args_
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    threading.Thread(target=run, name="allegro-store-items", daemon=True).start()
    return future
