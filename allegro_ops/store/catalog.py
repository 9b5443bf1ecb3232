"""SQL for configuration versions and the audit log (both append-only)."""
from __future__ import annotations

import datetime as dt

import duckdb

__all__ = [
    "latest_config",
    "config_version",
    "insert_config_version",
    "list_latest_configs",
    "append_audit",
    "read_audit",
]


def latest_config(con: duckdb.DuckDBPyConnection, client: str, schedule: str) -> tuple[int, str, str] | None:
    """(version, content_hash, config_json) of the current version, or None."""
    rows = con.execute(
        "SELECT version, content_hash, config_json FROM config_versions "
        "WHERE client = ? AND schedule = ? ORDER BY version DESC LIMIT 1",
        [client, schedule],
    ).fetchall()
    return rows[0] if rows else None


def config_version(con: duckdb.DuckDBPyConnection, client: str, schedule: str, version: int) -> str | None:
    rows = con.execute(
        "SELECT config_json FROM config_versions WHERE client = ? AND schedule = ? AND version = ?",
        [client, schedule, version],
    ).fetchall()
    return rows[0][0] if rows else None


def insert_config_version(
    con: duckdb.DuckDBPyConnection,
    client: str,
    schedule: str,
    version: int,
    content_hash: str,
    config_json: str,
    now: dt.datetime,
    actor: str,
) -> None:
    con.execute(
        "INSERT INTO config_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
        [client, schedule, version, content_hash, config_json, now, actor],
    )


def list_latest_configs(con: duckdb.DuckDBPyConnection, client: str | None = None) -> list[tuple[int, str]]:
    """(version, config_json) of every schedule's current version, ordered by client, schedule."""
    return con.execute(
        "SELECT version, config_json FROM config_versions "
        "WHERE (? IS NULL OR client = ?) "
        "QUALIFY row_number() OVER (PARTITION BY client, schedule ORDER BY version DESC) = 1 "
        "ORDER BY client, schedule",
        [client, client],
    ).fetchall()


def append_audit(
    con: duckdb.DuckDBPyConnection,
    *,
    time: dt.datetime,
    actor: str,
    action: str,
    client: str | None,
    target: str,
    outcome: str,
    reason: str = "",
) -> None:
    con.execute(
        "INSERT INTO audit (time, actor, action, client, target, outcome, reason) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [time, actor, action, client, target, outcome, reason],
    )


def read_audit(
    con: duckdb.DuckDBPyConnection, client: str | None = None, limit: int = 1000
) -> list[tuple[dt.datetime, str, str, str, str, str]]:
    """Newest first."""
    return con.execute(
        "SELECT time, actor, action, target, outcome, reason FROM audit "
        "WHERE (? IS NULL OR client = ?) ORDER BY entry_id DESC LIMIT ?",
        [client, client, limit],
    ).fetchall()
