"""SQL for work items and their attempts: bulk insert, keyset reads, batch result writes, stats.

Two tables hold a work item (migration 5): ``listed_items``, every item as listed with its first
outcome, and ``item_states``, the state of every item that has errored, from its first error on,
which wins over the listed row. Errored items are few: what reads or rewrites them (errors by
code, errored pages, Reprocess, Retry, payload corrections) works on ``item_states`` alone and
never scans or updates a job's millions of listed rows. The view ``work_items`` is the current
state of every item."""
from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "insert_items",
    "first_invalid_payload",
    "delete_unlisted_items",
    "read_items",
    "write_results",
    "errors_by_code",
    "errored_items",
    "find_item",
    "edit_payload",
    "payload_edits",
    "RESULT_SCHEMA",
]

RESULT_SCHEMA = pa.schema(
    [
        ("item_no", pa.int32()),
        ("batch_id", pa.int32()),
        ("status", pa.string()),
        ("error_code", pa.string()),
        ("reason", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
    ]
)


def insert_items(
    con: duckdb.DuckDBPyConnection, job_id: int, items: pa.Table, batch_size: int, now: dt.datetime,
    first_item: int = 1,
) -> int:
    """Insert a job's work items (columns account_id, payload as JSON text) in one statement.

    Items are numbered from ``first_item`` in the given order and cut into batches of batch_size
    counted from item 1 (numbered here, not by the database, so that the engine can run a
    listing from memory by the same numbers)."""
    numbers = np.arange(first_item, first_item + items.num_rows, dtype=np.int32)
    numbered = pa.table({"item_no": numbers, "batch_id": (numbers - 1) // batch_size + 1,
                         "account_id": items.column("account_id"), "payload": items.column("payload")})
    con.register("_new_items", numbered)
    try:
        con.execute(
            "INSERT INTO listed_items (job_id, item_no, account_id, batch_id, payload, status, attempts, updated_at, "
            "account_key) SELECT ?, item_no, account_id, batch_id, payload, 'PENDING', 0, ?, account_key(account_id) "
            "FROM _new_items",
            [job_id, now],
        )
    finally:
        con.unregister("_new_items")
    return items.num_rows


def delete_unlisted_items(con: duckdb.DuckDBPyConnection, job_id: int) -> int:
    """Delete the items an interrupted listing left (only for a job not marked listed, whose
    items never ran); returns how many."""
    rows = con.execute(
        "DELETE FROM listed_items WHERE job_id = ? AND NOT (SELECT items_listed FROM jobs WHERE job_id = ?) "
        "RETURNING item_no", [job_id, job_id]).fetchall()
    return len(rows)


def first_invalid_payload(con: duckdb.DuckDBPyConnection, items: pa.Table) -> str | None:
    """The account id of the first listed item whose payload is not JSON text (None: all are).

    DuckDB's check is done in C; it is more lenient than Python's json (e.g. a trailing comma
    passes), and what passes here but does not decode fails that work item when it runs."""
    con.register("_listed_items", items)
    try:
        rows = con.execute("SELECT account_id FROM _listed_items WHERE NOT json_valid(payload) LIMIT 1").fetchall()
    finally:
        con.unregister("_listed_items")
    return rows[0][0] if rows else None


def read_items(
    con: duckdb.DuckDBPyConnection, job_id: int, statuses: tuple[str, ...], after: int, limit: int,
    error_code: str | None = None, item_no: int | None = None, upto: int | None = None,
) -> pa.Table:
    """Work items of these statuses (PENDING, ERROR; of one error code, or one item, when given) with
    after < item_no (<= upto, when given), in item order, with their current payload: keyset paging,
    or range paging when the caller knows the items are mostly there (a fresh run reads its PENDING
    items by ranges).

    PENDING items are listed rows that never ran; they are looked for only while the job's counters
    say some are left, so that a Reprocess of a finished job reads its errored items alone."""
    unknown = set(statuses) - {"PENDING", "ERROR"}
    if not statuses or unknown:
        raise ValueError(f"read_items reads PENDING and ERROR work items, not {sorted(unknown) or statuses!r}")
    params: dict[str, Any] = {"job": job_id, "after": after, "upto": upto, "item": item_no, "limit": limit}
    match = ("job_id = $job AND item_no > $after AND ($upto IS NULL OR item_no <= $upto) "
             "AND ($item IS NULL OR item_no = $item)")
    parts = []
    if "PENDING" in statuses and error_code is None and _pending_left(con, job_id):
        parts.append(f"SELECT item_no, batch_id, account_id, payload FROM listed_items WHERE {match} "
                     "AND status = 'PENDING'")
    if "ERROR" in statuses:
        params["code"] = error_code
        parts.append(f"SELECT item_no, batch_id, account_id, payload FROM item_states WHERE {match} "
                     "AND status = 'ERROR' AND ($code IS NULL OR error_code = $code)")
    if not parts:
        return _ITEMS_SCHEMA.empty_table()
    return con.sql(" UNION ALL ".join(parts) + " ORDER BY item_no LIMIT $limit", params=params).to_arrow_table()


_ITEMS_SCHEMA = pa.schema([("item_no", pa.int32()), ("batch_id", pa.int32()), ("account_id", pa.string()),
                          ("payload", pa.string())])


def _pending_left(con: duckdb.DuckDBPyConnection, job_id: int) -> bool:
    """Whether the job's counters leave PENDING items (each result write updates them with its outcomes)."""
    rows = con.execute("SELECT total - processed - error FROM jobs WHERE job_id = ?", [job_id]).fetchall()
    return bool(rows) and rows[0][0] > 0


def find_item(con: duckdb.DuckDBPyConnection, job_id: int, account_id: str) -> tuple[Any, ...] | None:
    """(item_no, status, error_code, payload) of the job's work item for an account, now (found by its
    integer account_key first, as account_history does: integers compare far faster than ids)."""
    rows = con.execute(
        "SELECT item_no, status, error_code, payload FROM listed_items WHERE job_id = ? "
        "AND account_key = account_key(?) AND account_id = ? ORDER BY item_no LIMIT 1",
        [job_id, account_id, account_id]).fetchall()
    if not rows:
        return None
    state = con.execute("SELECT item_no, status, error_code, payload FROM item_states WHERE job_id = ? AND item_no = ?",
                        [job_id, rows[0][0]]).fetchall()
    return (state or rows)[0]


def edit_payload(con: duckdb.DuckDBPyConnection, job_id: int, item_no: int, payload: str, now: dt.datetime,
                 actor: str) -> int:
    """Give a work item a corrected payload; the earlier one stays in payload_edits. Returns the edit's
    number. The correction goes to the item's state (one is made for an item without), never to
    the listed row."""
    edit_no = con.execute(
        "SELECT coalesce(max(edit_no), 0) + 1 FROM payload_edits WHERE job_id = ? AND item_no = ?",
        [job_id, item_no]).fetchall()[0][0]
    con.execute(
        "INSERT INTO payload_edits SELECT job_id, item_no, ?, ?, ?, payload, ? FROM work_items "
        "WHERE job_id = ? AND item_no = ?", [edit_no, now, actor, payload, job_id, item_no])
    con.execute(
        "INSERT INTO item_states SELECT job_id, item_no, account_id, batch_id, payload, status, error_code, reason, "
        "attempts, updated_at FROM listed_items l WHERE job_id = ? AND item_no = ? "
        "AND NOT EXISTS (SELECT 1 FROM item_states s WHERE s.job_id = l.job_id AND s.item_no = l.item_no)",
        [job_id, item_no])
    con.execute("UPDATE item_states SET payload = ?, updated_at = ? WHERE job_id = ? AND item_no = ?",
                [payload, now, job_id, item_no])
    return edit_no


def payload_edits(con: duckdb.DuckDBPyConnection, job_id: int, item_no: int) -> list[tuple[Any, ...]]:
    """(edit_no, edited_at, edited_by, old_payload, new_payload) of a work item, oldest first."""
    return con.execute(
        "SELECT edit_no, edited_at, edited_by, old_payload, new_payload FROM payload_edits "
        "WHERE job_id = ? AND item_no = ? ORDER BY edit_no", [job_id, item_no]).fetchall()


def write_results(
    con: duckdb.DuckDBPyConnection, job_id: int, results: pa.Table, run_token: str, *, fresh: bool = False
) -> tuple[int, int]:
    """Record batches' outcomes: an attempt row per item, the items' current state, and the
    job's counters. Returns the (processed, error) deltas applied to the job's counters.

    ``fresh`` says every item was PENDING, i.e. never ran (an item only is PENDING from its
    insert until its first outcome is written): there is no earlier outcome to take off the
    counters, its attempt is number 1, and its error code and reason are still empty. Then the
    attempts are appended as they are, and when the items are one unbroken range the processed
    ones are updated by that range (their updated_at: the group's last finish) and only the
    failed ones by a join. Otherwise the items that have a state (they errored before) are
    written to item_states alone, and only the others touch listed_items."""
    bounds = pc.min_max(results.column("item_no"))
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    statuses = results.column("status")
    new_processed = pc.sum(pc.equal(statuses, "PROCESSED")).as_py() or 0
    new_error = pc.sum(pc.equal(statuses, "ERROR")).as_py() or 0
    con.register("_results", results)
    try:
        if fresh:
            _write_first_outcomes(con, job_id, results, run_token, lo, hi, new_processed)
            old = (0, 0)
        else:
            old = _write_later_outcomes(con, job_id, results, run_token, lo, hi)
    finally:
        con.unregister("_results")
    d_processed, d_error = new_processed - old[0], new_error - old[1]
    con.execute(
        "UPDATE jobs SET processed = processed + ?, error = error + ? WHERE job_id = ?",
        [d_processed, d_error, job_id],
    )
    return d_processed, d_error


def _write_first_outcomes(con: duckdb.DuckDBPyConnection, job_id: int, results: pa.Table, run_token: str,
                          lo: int, hi: int, processed: int) -> None:
    """write_results for items that never ran (``_results`` is registered)."""
    con.execute(
        "INSERT INTO attempts SELECT ?, item_no, 1, batch_id, status, error_code, reason, started_at, "
        "finished_at, ? FROM _results", [job_id, run_token])
    unbroken = results.num_rows == hi - lo + 1  # item numbers are unique: every number in [lo, hi] is here
    if unbroken and processed:
        last = pc.max(results.column("finished_at"))
        con.execute(
            "UPDATE listed_items SET status = 'PROCESSED', attempts = 1, updated_at = ? "
            "WHERE job_id = ? AND item_no BETWEEN ? AND ? AND status = 'PENDING'", [last.as_py(), job_id, lo, hi])
    if unbroken and processed == results.num_rows:
        return
    con.execute(  # the failed items (all of them when the range is broken)
        "UPDATE listed_items w SET status = r.status, error_code = r.error_code, reason = r.reason, attempts = 1, "
        "updated_at = r.finished_at FROM _results r WHERE w.job_id = ? AND w.item_no BETWEEN ? AND ? "
        "AND w.item_no = r.item_no AND (? OR r.status <> 'PROCESSED')", [job_id, lo, hi, not unbroken])
    con.execute(
        "INSERT INTO item_states SELECT w.job_id, w.item_no, w.account_id, w.batch_id, w.payload, r.status, "
        "r.error_code, r.reason, 1, r.finished_at FROM _results r JOIN listed_items w ON w.item_no = r.item_no "
        "WHERE w.job_id = ? AND w.item_no BETWEEN ? AND ? AND r.status = 'ERROR' ORDER BY w.item_no",
        [job_id, lo, hi])


def _write_later_outcomes(con: duckdb.DuckDBPyConnection, job_id: int, results: pa.Table, run_token: str,
                          lo: int, hi: int) -> tuple[int, int]:
    """write_results for items that may have run before (``_results`` is registered); returns the
    (processed, error) counts of the outcomes they had."""
    known = con.execute(
        "SELECT s.item_no, s.status FROM item_states s JOIN _results r ON s.item_no = r.item_no "
        "WHERE s.job_id = ? AND s.item_no BETWEEN ? AND ?", [job_id, lo, hi]).fetchall()
    old = [sum(1 for _, status in known if status == "PROCESSED"), sum(1 for _, status in known if status == "ERROR")]
    if known:
        con.execute(
            "INSERT INTO attempts SELECT ?, r.item_no, s.attempts + 1, r.batch_id, r.status, r.error_code, r.reason, "
            "r.started_at, r.finished_at, ? FROM _results r JOIN item_states s ON s.item_no = r.item_no "
            "WHERE s.job_id = ? AND s.item_no BETWEEN ? AND ?", [job_id, run_token, job_id, lo, hi])
        con.execute(
            "UPDATE item_states s SET status = r.status, error_code = r.error_code, reason = r.reason, "
            "attempts = s.attempts + 1, updated_at = r.finished_at FROM _results r "
            "WHERE s.job_id = ? AND s.item_no BETWEEN ? AND ? AND s.item_no = r.item_no", [job_id, lo, hi])
    if len(known) == results.num_rows:
        return old[0], old[1]
    rest = results.filter(pc.invert(pc.is_in(results.column("item_no"), pa.array([n for n, _ in known], pa.int32()))))
    con.register("_rest", rest)
    try:
        bounds = pc.min_max(rest.column("item_no"))
        where = "WHERE w.job_id = ? AND w.item_no BETWEEN ? AND ? AND w.item_no = r.item_no"
        keys = [job_id, bounds["min"].as_py(), bounds["max"].as_py()]
        before = con.execute(
            "SELECT count(*) FILTER (WHERE w.status = 'PROCESSED'), count(*) FILTER (WHERE w.status = 'ERROR') "
            f"FROM listed_items w, _rest r {where}", keys).fetchall()[0]
        con.execute(
            "INSERT INTO attempts SELECT ?, r.item_no, w.attempts + 1, r.batch_id, r.status, r.error_code, r.reason, "
            f"r.started_at, r.finished_at, ? FROM listed_items w, _rest r {where}", [job_id, run_token, *keys])
        # an error, or an outcome after the first: from now on the item's state is in item_states
        con.execute(
            "INSERT INTO item_states SELECT w.job_id, w.item_no, w.account_id, w.batch_id, w.payload, r.status, "
            f"r.error_code, r.reason, w.attempts + 1, r.finished_at FROM listed_items w, _rest r {where} "
            "AND (r.status = 'ERROR' OR w.status <> 'PENDING') ORDER BY w.item_no", keys)
        con.execute(  # the first outcome of items that never ran
            "UPDATE listed_items w SET status = r.status, error_code = r.error_code, reason = r.reason, "
            f"attempts = w.attempts + 1, updated_at = r.finished_at FROM _rest r {where} AND w.status = 'PENDING'",
            keys)
    finally:
        con.unregister("_rest")
    return old[0] + before[0], old[1] + before[1]


def errors_by_code(con: duckdb.DuckDBPyConnection, job_id: int) -> list[tuple[str, int]]:
    """(error_code, count), largest count first."""
    return con.execute(
        "SELECT error_code, count(*) AS n FROM item_states WHERE job_id = ? AND status = 'ERROR' "
        "GROUP BY error_code ORDER BY n DESC, error_code",
        [job_id],
    ).fetchall()


def errored_items(
    con: duckdb.DuckDBPyConnection,
    job_id: int,
    error_code: str | None,
    limit: int,
    offset: int = 0,
    after: int = 0,
) -> list[tuple[Any, ...]]:
    """One page of errored items: item_no, account_id, batch_id, status, error_code, reason,
    payload, attempts. Keyset paging with ``after`` (an item_no); ``offset`` also works."""
    return con.execute(
        "SELECT item_no, account_id, batch_id, status, error_code, reason, payload, attempts "
        "FROM item_states WHERE job_id = ? AND status = 'ERROR' AND (? IS NULL OR error_code = ?) "
        "AND item_no > ? ORDER BY item_no LIMIT ? OFFSET ?",
        [job_id, error_code, error_code, after, limit, offset],
    ).fetchall()
