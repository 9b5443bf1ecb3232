"""Synthetic executions for benchmarks: millions of work items written set-based in SQL.

Used by benchmarks/ to measure operator queries on large histories without running the engine
for hours. The rows look exactly like the engine's (same tables, same current generation)."""
from __future__ import annotations

import datetime as dt

import duckdb

from . import accounts

__all__ = ["seed_executions"]

_SHIFT = 7_919  # how far each job's listing order is rotated from the previous job's
ERROR_CODES = ["RATE_PLAN_NOT_FOUND", "TAX_RULE_MISSING", "INVALID_EMAIL", "CARD_EXPIRED", "HTTP_503"]


def seed_executions(
    con: duckdb.DuckDBPyConnection,
    *,
    client: str,
    schedule: str,
    config_version: int,
    snapshot_json: str,
    jobs: list[tuple[str, str, str]],
    dates: list[dt.date],
    items_per_job: int,
    batch_size: int,
    error_every: int,
    now: dt.datetime,
) -> int:
    """COMPLETED-or-ERRORED executions for each date; every ``error_every``-th work item of the
    last job is ERROR (codes cycle through ERROR_CODES). Returns the work items written.

    Every job lists the same accounts (ACC-00000001 ...), each in another order, as a real
    listing's order moves when accounts come and go: the k-th job seeded starts at account
    1 + k * _SHIFT (mod items_per_job), so an account's item number differs from job to job."""
    written = seeded = 0
    for day in dates:
        execution_id = con.execute("SELECT nextval('seq_execution')").fetchall()[0][0]
        errored_job = len(jobs)
        status = "ERRORED" if error_every else "COMPLETED"
        con.execute(
            "INSERT INTO executions (execution_id, client, schedule, run_date, generation, config_version, "
            "snapshot_json, status, created_at, started_at, finished_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
            [execution_id, client, schedule, day, config_version, snapshot_json, status, now, now, now],
        )
        for sequence, (name, type_, config_json) in enumerate(jobs, start=1):
            job_id = con.execute("SELECT nextval('seq_job')").fetchall()[0][0]
            seeded += 1
            shift = _SHIFT * (seeded - 1) % max(items_per_job, 1)  # this job's listing order (see the docstring)
            fails = error_every if sequence == errored_job else 0
            con.execute(
                "INSERT INTO listed_items (job_id, item_no, account_id, batch_id, payload, status, error_code, reason, "
                "attempts, updated_at, account_key) "
                "SELECT ?, n, acc, ((n - 1) // ?) + 1, "
                "'{\"account_id\":\"' || acc || '\",\"run_date\":\"' || ? || "
                "'\",\"plan\":{\"id\":\"standard\"},\"currency\":\"USD\",\"amount\":' || (n % 997) || '.25}', "
                "CASE WHEN ? > 0 AND n % ? = 0 THEN 'ERROR' ELSE 'PROCESSED' END, "
                "CASE WHEN ? > 0 AND n % ? = 0 THEN ?[1 + (n // ?) % ?] END, "
                "CASE WHEN ? > 0 AND n % ? = 0 THEN 'synthetic failure of item ' || n END, 1, ?, "
                "account_key(acc) "
                "FROM (SELECT n, 'ACC-' || lpad(CAST((n - 1 + ?) % ? + 1 AS VARCHAR), 8, '0') AS acc "
                "      FROM range(1, ? + 1) r(n))",
                [job_id, batch_size, day.isoformat(), fails, fails, fails, fails, ERROR_CODES, max(fails, 1),
                 len(ERROR_CODES), fails, fails, now, shift, max(items_per_job, 1), items_per_job],
            )
            accounts.index_listing(con, job_id)  # as the engine does when it marks a job listed
            con.execute(
                "INSERT INTO attempts SELECT job_id, item_no, 1, batch_id, status, error_code, reason, ?, ?, 'synthetic' "
                "FROM listed_items WHERE job_id = ?",
                [now, now, job_id],
            )
            con.execute(
                "INSERT INTO item_states SELECT job_id, item_no, account_id, batch_id, payload, status, error_code, "
                "reason, attempts, updated_at FROM listed_items WHERE job_id = ? AND status = 'ERROR'", [job_id])
            errors = items_per_job // fails if fails else 0
            con.execute(
                "INSERT INTO jobs (job_id, execution_id, generation, sequence, name, type, config_json, status, "
                "items_listed, total, processed, error, started_at, finished_at) "
                "VALUES (?, ?, 1, ?, ?, ?, ?, ?, true, ?, ?, ?, ?, ?)",
                [job_id, execution_id, sequence, name, type_, config_json, "ERRORED" if errors else "COMPLETED",
                 items_per_job, items_per_job - errors, errors, now, now],
            )
            written += items_per_job
    return written
