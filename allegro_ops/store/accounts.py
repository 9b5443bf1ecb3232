"""SQL for an account's work items across schedules, dates and jobs: its history of attempts."""
from __future__ import annotations

from typing import Any

import duckdb

__all__ = ["account_history"]


def account_history(
    con: duckdb.DuckDBPyConnection, client: str, account_id: str, limit: int = 500
) -> list[tuple[Any, ...]]:
    """Every attempt at this account's work items across schedules, dates, generations and jobs,
    newest first: schedule, run_date, generation, current generation, job, attempt, batch_id,
    status, error_code, reason, finished_at, payload.

    Steps: the account's newest listed work items (a scan of the 32-bit account_key, far faster
    than of the ids), then their attempts and corrected payloads (item_states) by job and item
    number, which DuckDB's zone maps narrow to a few row groups (a join would scan every row)."""
    items = con.execute(
        "SELECT w.job_id, w.item_no, e.schedule, e.run_date, j.generation, e.generation, j.name, j.sequence, "
        "w.payload FROM listed_items w "
        "JOIN jobs j ON j.job_id = w.job_id "
        "JOIN executions e ON e.execution_id = j.execution_id "
        "WHERE e.client = ? AND w.account_key = account_key(?) AND w.account_id = ? "
        "ORDER BY e.run_date DESC, e.schedule, j.generation DESC, j.sequence LIMIT ?",
        [client, account_id, account_id, limit],
    ).fetchall()
    if not items:
        return []
    job_ids = sorted({r[0] for r in items})
    item_nos = sorted({r[1] for r in items})
    in_items = (f"WHERE job_id IN ({', '.join('?' * len(job_ids))}) AND item_no IN ({', '.join('?' * len(item_nos))})",
            [*job_ids, *item_nos])
    attempts = con.execute(
        "SELECT job_id, item_no, attempt, batch_id, status, error_code, reason, finished_at "
        f"FROM attempts {in_items[0]}",
        in_items[1]).fetchall()
    payloads = {(j, n): p for j, n, p in con.execute(f"SELECT job_id, item_no, payload FROM item_states {in_items[0]}",
                                                     in_items[1]).fetchall()}
    by_item: dict[tuple[int, int], list[tuple[Any, ...]]] = {}
    for a in attempts:
        by_item.setdefault((a[0], a[1]), []).append(a)
    out: list[tuple[Any, ...]] = []
    for job_id, item_no, schedule, run_date, generation, current, job, _seq, payload in items:
        for a in sorted(by_item.get((job_id, item_no), ()), key=lambda a: -a[2]):
            out.append((schedule, run_date, generation, current, job, a[2], a[3], a[4], a[5], a[6], a[7],
                        payloads.get((job_id, item_no), payload)))
            if len(out) == limit:
                return out
    return out
