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
    listed rows (the id itself: ids that share a key are dropped here), attempts and corrected
    payloads (item_states) by job and item number, which DuckDB's zone maps narrow to a few row
    groups (a join would scan every row)."""
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
        in_items = _in_items(found)
        # The id compared here, not in the WHERE: a filter on the id reads every id of the row groups.
        listed = {(j, n): p for j, n, a, p in con.execute(
            f"SELECT job_id, item_no, account_id, payload FROM listed_items {in_items[0]}", in_items[1]).fetchall()
            if a == account_id}
        items = [r for r in found if (r[0], r[1]) in listed]
        if len(items) >= limit or len(found) < wanted:  # else ids that share the key took places: look further
            break
        wanted += limit
    items = items[:limit]
    in_items = _in_items(items)
    attempts = con.execute(
        "SELECT job_id, item_no, attempt, batch_id, status, error_code, reason, finished_at "
        f"FROM attempts {in_items[0]}", in_items[1]).fetchall()
    payloads = dict(listed)
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


def _in_items(items: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """A WHERE of fixed text for these (job_id, item_no, ...) rows, its values as parameters: the
    jobs and item numbers as two IN lists (a superset of the pairs; callers match the pairs)."""
    job_ids = sorted({r[0] for r in items})
    item_nos = sorted({r[1] for r in items})
    return (f"WHERE job_id IN ({', '.join('?' * len(job_ids))}) AND item_no IN ({', '.join('?' * len(item_nos))})",
            [*job_ids, *item_nos])
