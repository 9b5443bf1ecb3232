"""SQL for executions, their generations, jobs and run leases."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import duckdb

__all__ = [
    "ExecutionRow",
    "JobRow",
    "find_execution",
    "insert_execution",
    "jobs_of",
    "find_job",
    "insert_jobs",
    "set_execution",
    "set_job",
    "take_lease",
    "release_lease",
    "heartbeat",
    "lease_token",
    "archive_generation",
    "execution_history",
]

_EXEC_COLS = (
    "execution_id, client, schedule, run_date, generation, config_version, snapshot_json, status, "
    "created_at, started_at, finished_at, lease_token, lease_host, lease_pid, lease_heartbeat"
)
_JOB_COLS = (
    "job_id, execution_id, generation, sequence, name, type, config_json, status, items_listed, "
    "total, processed, error, started_at, finished_at"
)


@dataclass(frozen=True)
class ExecutionRow:
    execution_id: int
    client: str
    schedule: str
    run_date: dt.date
    generation: int
    config_version: int
    snapshot_json: str
    status: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    lease_token: str | None
    lease_host: str | None
    lease_pid: int | None
    lease_heartbeat: dt.datetime | None


@dataclass(frozen=True)
class JobRow:
    job_id: int
    execution_id: int
    generation: int
    sequence: int
    name: str
    type: str
    config_json: str
    status: str
    items_listed: bool
    total: int
    processed: int
    error: int
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @property
    def pending(self) -> int:
        return self.total - self.processed - self.error


def find_execution(
    con: duckdb.DuckDBPyConnection, client: str, schedule: str, run_date: dt.date
) -> ExecutionRow | None:
    rows = con.execute(
        f"SELECT {_EXEC_COLS} FROM executions WHERE client = ? AND schedule = ? AND run_date = ?",
        [client, schedule, run_date],
    ).fetchall()
    return ExecutionRow(*rows[0]) if rows else None


def insert_execution(
    con: duckdb.DuckDBPyConnection,
    client: str,
    schedule: str,
    run_date: dt.date,
    config_version: int,
    snapshot_json: str,
    now: dt.datetime,
) -> int | None:
    """The new execution's id, or None when the date already has one (a lost race)."""
    rows = con.execute(
        "INSERT INTO executions (execution_id, client, schedule, run_date, generation, config_version, "
        "snapshot_json, status, created_at) "
        "VALUES (nextval('seq_execution'), ?, ?, ?, 1, ?, ?, 'PENDING', ?) "
        "ON CONFLICT DO NOTHING RETURNING execution_id",
        [client, schedule, run_date, config_version, snapshot_json, now],
    ).fetchall()
    return rows[0][0] if rows else None


def jobs_of(con: duckdb.DuckDBPyConnection, execution_id: int, generation: int) -> list[JobRow]:
    rows = con.execute(
        f"SELECT {_JOB_COLS} FROM jobs WHERE execution_id = ? AND generation = ? ORDER BY sequence",
        [execution_id, generation],
    ).fetchall()
    return [JobRow(*r) for r in rows]


def find_job(
    con: duckdb.DuckDBPyConnection, client: str, schedule: str, run_date: dt.date, job: str
) -> tuple[bool, JobRow | None]:
    """(whether the date has an execution, the job of that name in its current generation or None),
    in one statement: a status read of a large workspace pays per statement (~1-3 ms each when the
    file was just attached), so the execution and the job are not looked up one after the other."""
    cols = ", ".join(f"j.{c.strip()}" for c in _JOB_COLS.split(","))
    rows = con.execute(
        f"SELECT {cols} FROM executions e LEFT JOIN jobs j ON j.execution_id = e.execution_id "
        "AND j.generation = e.generation AND j.name = ? WHERE e.client = ? AND e.schedule = ? AND e.run_date = ?",
        [job, client, schedule, run_date],
    ).fetchall()
    if not rows:
        return False, None
    return True, (JobRow(*rows[0]) if rows[0][0] is not None else None)


def insert_jobs(
    con: duckdb.DuckDBPyConnection, execution_id: int, generation: int, jobs: list[tuple[str, str, str]]
) -> None:
    """jobs: (name, type, config_json) in sequence order."""
    for sequence, (name, type_, config_json) in enumerate(jobs, start=1):
        con.execute(
            "INSERT INTO jobs (job_id, execution_id, generation, sequence, name, type, config_json, status) "
            "VALUES (nextval('seq_job'), ?, ?, ?, ?, ?, ?, 'PENDING')",
            [execution_id, generation, sequence, name, type_, config_json],
        )


def set_execution(con: duckdb.DuckDBPyConnection, execution_id: int, **values: Any) -> None:
    _update(con, "executions", "execution_id", execution_id, values)


def set_job(con: duckdb.DuckDBPyConnection, job_id: int, **values: Any) -> None:
    _update(con, "jobs", "job_id", job_id, values)


_UPDATABLE = {
    "executions": {
        "status", "started_at", "finished_at", "generation", "config_version", "snapshot_json",
        "lease_token", "lease_host", "lease_pid", "lease_heartbeat",
    },
    "jobs": {"status", "items_listed", "total", "processed", "error", "started_at", "finished_at"},
}


def _update(con: duckdb.DuckDBPyConnection, table: str, key: str, key_value: int, values: dict[str, Any]) -> None:
    unknown = set(values) - _UPDATABLE[table]
    if unknown:
        raise ValueError(f"cannot update {table}.{sorted(unknown)}")
    columns = ", ".join(f"{name} = ?" for name in values)
    con.execute(f"UPDATE {table} SET {columns} WHERE {key} = ?", [*values.values(), key_value])


def take_lease(
    con: duckdb.DuckDBPyConnection, execution_id: int, token: str, host: str, pid: int, now: dt.datetime
) -> None:
    set_execution(
        con, execution_id, lease_token=token, lease_host=host, lease_pid=pid, lease_heartbeat=now
    )


def release_lease(con: duckdb.DuckDBPyConnection, execution_id: int, token: str) -> None:
    con.execute(
        "UPDATE executions SET lease_token = NULL, lease_host = NULL, lease_pid = NULL, "
        "lease_heartbeat = NULL WHERE execution_id = ? AND lease_token = ?",
        [execution_id, token],
    )


def heartbeat(con: duckdb.DuckDBPyConnection, execution_id: int, token: str, now: dt.datetime) -> bool:
    """Refresh the lease; False when this run no longer holds it."""
    rows = con.execute(
        "UPDATE executions SET lease_heartbeat = ? WHERE execution_id = ? AND lease_token = ? "
        "RETURNING execution_id",
        [now, execution_id, token],
    ).fetchall()
    return bool(rows)


def lease_token(con: duckdb.DuckDBPyConnection, execution_id: int) -> str | None:
    rows = con.execute("SELECT lease_token FROM executions WHERE execution_id = ?", [execution_id]).fetchall()
    return rows[0][0] if rows else None


def archive_generation(
    con: duckdb.DuckDBPyConnection, row: ExecutionRow, now: dt.datetime, actor: str, action: str
) -> None:
    con.execute(
        "INSERT INTO archived_generations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [row.execution_id, row.generation, row.config_version, row.snapshot_json, row.status, now, actor, action],
    )


def execution_history(
    con: duckdb.DuckDBPyConnection, client: str, schedule: str, limit: int
) -> list[tuple[Any, ...]]:
    """Per run date (newest first, up to limit dates) and job of the current generation:
    run_date, execution status, job sequence, job name, job status, total, processed, error,
    job started_at, job finished_at."""
    return con.execute(
        "WITH recent AS (SELECT execution_id, run_date, status, generation FROM executions "
        "  WHERE client = ? AND schedule = ? ORDER BY run_date DESC LIMIT ?) "
        "SELECT r.run_date, r.status, j.sequence, j.name, j.status, j.total, j.processed, j.error, "
        "  j.started_at, j.finished_at "
        "FROM recent r JOIN jobs j ON j.execution_id = r.execution_id AND j.generation = r.generation "
        "ORDER BY r.run_date, j.sequence",
        [client, schedule, limit],
    ).fetchall()
