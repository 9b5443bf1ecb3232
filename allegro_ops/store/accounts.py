"""SQL for an account's work items across schedules, dates and jobs: its history of attempts, and
the account index that finds them (migration 7).

The index is derived data (listed_items stays the truth): one row (account_key, job_id, item_no)
per listed work item, in runs sorted by key, so that DuckDB's zone maps find an account in one or
two row groups per run instead of scanning the 32-bit key of every listed item (10M items: ~40 MB).

- ``account_items``: the runs. A listing of at least ROW_GROUP_ROWS items is one run of its own.
  A run below ~120,000 rows fills up the last run's partly filled row group first (measured with
  DuckDB 2.0; larger runs start a row group of their own), so runs alternate between ascending and
  descending key order: the row group two runs share then holds one end of the key range only
  (the high keys of both, or the low keys of both), not keys from end to end that every lookup
  would have to scan.
- ``account_items_recent``: smaller listings (a demo's 50 items a job, thousands of dates), until
  they add up to RECENT_ROWS items; then they move into ``account_items`` as one sorted run.
  A lookup scans this table whole (at most RECENT_ROWS keys).

A job's work items are indexed once, in the transaction that marks the job listed (the engine's
last write of a listing), so items of a job not marked listed (what ``delete_unlisted_items``
deletes) are never indexed, and a job's listed items never change after (Reset and Recreate make
new jobs).
"""
from __future__ import annotations

from typing import Any

import duckdb

from .db import ROW_GROUP_ROWS

__all__ = ["account_history", "index_listing", "RECENT_ROWS"]

# Small listings gathered before they are sorted into a run: what each lookup scans whole (4 row
# groups, ~0.5 MB of keys), and the size of the runs small listings make (an account in 1-2 row groups).
RECENT_ROWS = 4 * ROW_GROUP_ROWS
# Up to this many work items, an account's rows are found by one small scan each (see _rows_of).
_ONE_SCAN_EACH = 64
# The tables whose rows of given work items _rows_of reads, and the columns it reads of each.
_COLUMNS = {"listed_items": "account_id, payload",
            "attempts": "attempt, batch_id, status, error_code, reason, finished_at"}


def index_listing(con: duckdb.DuckDBPyConnection, job_id: int) -> int:
    """Index a job's listed work items by account (call once per job, in the transaction that marks
    it listed); returns how many were indexed."""
    rows = con.execute("SELECT count(*) FROM listed_items WHERE job_id = ?", [job_id]).fetchall()[0][0]
    if rows >= ROW_GROUP_ROWS:
        _append_run(con, job_id)
    elif rows:
        con.execute("INSERT INTO account_items_recent SELECT account_key, job_id, item_no FROM listed_items "
                    "WHERE job_id = ?", [job_id])
        if con.execute("SELECT count(*) FROM account_items_recent").fetchall()[0][0] >= RECENT_ROWS:
            _append_run(con, None)
            con.execute("DELETE FROM account_items_recent")
    return rows


def _append_run(con: duckdb.DuckDBPyConnection, job_id: int | None) -> None:
    """One sorted run at the end of account_items: the job's listed items, or (None) the small listings
    gathered in account_items_recent; sorted in the direction that starts where the last run ended."""
    params = {"job": job_id, "desc": _ends_high(con)}
    if job_id is None:
        con.execute("INSERT INTO account_items SELECT account_key, job_id, item_no FROM account_items_recent "
                    "WHERE $job IS NULL ORDER BY CASE WHEN $desc THEN -CAST(account_key AS BIGINT) "
                    "ELSE account_key END, job_id, item_no", params)
    else:
        con.execute("INSERT INTO account_items SELECT account_key, job_id, item_no FROM listed_items "
                    "WHERE job_id = $job ORDER BY CASE WHEN $desc THEN -CAST(account_key AS BIGINT) "
                    "ELSE account_key END, job_id, item_no", params)


def _ends_high(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the last row of account_items has a key in the upper half of the range. Rows are
    never deleted from it, so the last committed row is at rowid count - 1; rows this transaction
    added have row ids of their own, above all others."""
    last = con.execute("SELECT account_key FROM account_items WHERE rowid = "
                       "(SELECT count(*) - 1 FROM account_items)").fetchall()
    if not last:
        last = con.execute("SELECT account_key FROM account_items ORDER BY rowid DESC LIMIT 1").fetchall()
    return bool(last) and last[0][0] >= 2**31


def account_history(
    con: duckdb.DuckDBPyConnection, client: str, account_id: str, limit: int = 500
) -> list[tuple[Any, ...]]:
    """Every attempt at this account's work items across schedules, dates, generations and jobs,
    newest first: schedule, run_date, generation, current generation, job, attempt, batch_id,
    status, error_code, reason, finished_at, payload.

    Steps: the account's newest work items from the account index (a few row groups), then their
    listed rows (the id itself: ids that share a key are dropped here) and attempts by row id
    (``_rows_of``), and corrected payloads (item_states) by job and item number, which DuckDB's
    zone maps narrow to a few row groups (a join would scan every row)."""
    wanted = limit
    while True:
        found = con.execute(
            "WITH a AS (SELECT job_id, item_no FROM account_items WHERE account_key = account_key($account) "
            "UNION ALL SELECT job_id, item_no FROM account_items_recent WHERE account_key = account_key($account)) "
            "SELECT a.job_id, a.item_no, e.schedule, e.run_date, j.generation, e.generation, j.name "
            "FROM a JOIN jobs j ON j.job_id = a.job_id JOIN executions e ON e.execution_id = j.execution_id "
            "WHERE e.client = $client "
            "ORDER BY e.run_date DESC, e.schedule, j.generation DESC, j.sequence, a.item_no LIMIT $limit",
            {"account": account_id, "client": client, "limit": wanted}).fetchall()
        if not found:
            return []
        # The id compared here, not in the WHERE: a filter on the id reads every id of the row groups.
        listed = {(j, n): p for j, n, a, p in _rows_of(con, "listed_items", found)
                  if a == account_id}
        items = [r for r in found if (r[0], r[1]) in listed]
        if len(items) >= limit or len(found) < wanted:  # else ids that share the key took places: look further
            break
        wanted += limit
    items = items[:limit]
    attempts = _rows_of(con, "attempts", items)
    payloads = dict(listed)
    in_items = _in_items(items)
    payloads.update({(j, n): p for j, n, p in con.execute(
        f"SELECT job_id, item_no, payload FROM item_states {in_items[0]}", in_items[1]).fetchall()})
    by_item: dict[tuple[int, int], list[tuple[Any, ...]]] = {}
    for a in attempts:
        by_item.setdefault((a[0], a[1]), []).append(a)
    out: list[tuple[Any, ...]] = []
    for job_id, item_no, schedule, run_date, generation, current, job in items:
        for a in sorted(by_item.get((job_id, item_no), ()), key=lambda a: -a[2]):
            out.append((schedule, run_date, generation, current, job, a[2], a[3], a[4], a[5], a[6], a[7],
                        payloads[(job_id, item_no)]))
            if len(out) == limit:
                return out
    return out


def _rows_of(con: duckdb.DuckDBPyConnection, table: str, items: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """(job_id, item_no, *_COLUMNS[table]) of the table's rows of exactly these (job_id, item_no, ...) items.

    Two steps: the rows' ids, read from the job and item-number columns alone; then the rows by
    row id, whose zone maps narrow the read to the items' own row groups. An account's item number
    differs from job to job, so no one filter on the two columns finds just its rows: up to
    _ONE_SCAN_EACH items, one small scan per item (UNION ALL; each one's zone maps admit a row group
    or two, ~0.6-0.9 ms); beyond, one scan of the jobs' item numbers under two IN lists (a superset,
    every job's rows of every number, kept for the exact pairs; it reads every row group of those
    jobs). Reading the columns of that superset directly (payloads: a vector decompressed per row)
    made an account's history in 40 jobs of 250,000 items take ~700-950 ms; ~120-150 ms now."""
    pairs = sorted({(r[0], r[1]) for r in items})
    if len(pairs) <= _ONE_SCAN_EACH:
        sql = " UNION ALL ".join(f"SELECT rowid FROM {table} WHERE job_id = ? AND item_no = ?" for _ in pairs)
        ids = [i for (i,) in con.execute(sql, [v for pair in pairs for v in pair]).fetchall()]
    else:
        where, params = _in_items(items)
        wanted = set(pairs)
        ids = [i for i, j, n in con.execute(f"SELECT rowid, job_id, item_no FROM {table} {where}", params).fetchall()
               if (j, n) in wanted]
    return _rows_by_id(con, table, items, ids) if ids else []


def _rows_by_id(con: duckdb.DuckDBPyConnection, table: str, items: list[tuple[Any, ...]],
                ids: list[int]) -> list[tuple[Any, ...]]:
    """The rows of these row ids, checked: DuckDB moves row ids when a checkpoint merges row groups
    after deletes, which may happen between two statements. They moved when a row of another item
    came back, or fewer rows; then the rows are read by job and item number instead. (A moved id
    that lands on another row of the same items is ruled out: listed_items holds one row per item,
    and attempts are never deleted, so their ids never move.)"""
    pairs = {(r[0], r[1]) for r in items}
    got = con.execute(f"SELECT job_id, item_no, {_COLUMNS[table]} FROM {table} WHERE rowid = ANY(?)", [ids]).fetchall()
    if len(got) == len(ids) and all((r[0], r[1]) in pairs for r in got):
        return got
    where, params = _in_items(items)
    return [r for r in con.execute(f"SELECT job_id, item_no, {_COLUMNS[table]} FROM {table} {where}", params).fetchall()
            if (r[0], r[1]) in pairs]


def _in_items(items: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """A WHERE of fixed text for these (job_id, item_no, ...) rows, its values as parameters: the
    jobs and item numbers as two IN lists (a superset of the pairs; callers match the pairs)."""
    job_ids = sorted({r[0] for r in items})
    item_nos = sorted({r[1] for r in items})
    return (f"WHERE job_id IN ({', '.join('?' * len(job_ids))}) AND item_no IN ({', '.join('?' * len(item_nos))})",
            [*job_ids, *item_nos])
