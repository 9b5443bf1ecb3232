"""SQL for notifications: one row per (execution, generation, event, channel, target), claimed
before the message is sent, so that each is sent once however many runs, passes or processes look
at it. A Reset or Recreate starts a new generation of the execution (migration 8 added it to the
key); ``claim(..., any_generation=True)`` claims an event once for the execution, whatever the
generation.

A row's outcome is ``sending`` (claimed, being delivered), ``sent`` or ``failed``; ``detail`` is
one line (the HTTP status, the SMTP reply, why it failed)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

__all__ = [
    "Key",
    "Notice",
    "execution_id",
    "notices_of",
    "claim",
    "reclaim",
    "settle",
    "candidates",
    "retryable",
    "list_notifications",
]

Key = tuple[str, str, str]  # event, channel, target
Notice = tuple[int, str, str, str]  # generation, event, channel, target


def execution_id(con: duckdb.DuckDBPyConnection, client: str, schedule: str, run_date: dt.date) -> int | None:
    rows = con.execute(
        "SELECT execution_id FROM executions WHERE client = ? AND schedule = ? AND run_date = ?",
        [client, schedule, run_date],
    ).fetchall()
    return rows[0][0] if rows else None


def notices_of(con: duckdb.DuckDBPyConnection, execution_ids: list[int]) -> dict[int, dict[Notice, str]]:
    """Per execution: (generation, event, channel, target) -> outcome of every notification
    claimed for it, in any generation."""
    if not execution_ids:
        return {}
    rows = con.execute(
        "SELECT execution_id, generation, event, channel, target, outcome FROM notifications "
        "WHERE list_contains(?::BIGINT[], execution_id)",
        [execution_ids],
    ).fetchall()
    out: dict[int, dict[Notice, str]] = {i: {} for i in execution_ids}
    for ex_id, generation, event, channel, target, outcome in rows:
        out[ex_id][(generation, event, channel, target)] = outcome
    return out


def claim(con: duckdb.DuckDBPyConnection, execution_id: int, generation: int, event: str, channel: str,
          target: str, now: dt.datetime, any_generation: bool = False) -> bool:
    """Insert the row as ``sending``; False when it exists (another run or process claimed it), or
    with ``any_generation`` when the execution has the notice in any generation."""
    rows = con.execute(
        "INSERT INTO notifications (execution_id, generation, event, channel, target, sent_at, outcome, detail) "
        "SELECT ?, ?, ?, ?, ?, ?, 'sending', '' WHERE NOT (? AND EXISTS ("
        "  SELECT 1 FROM notifications WHERE execution_id = ? AND event = ? AND channel = ? AND target = ?)) "
        "ON CONFLICT DO NOTHING RETURNING execution_id",
        [execution_id, generation, event, channel, target, now, any_generation, execution_id, event, channel,
         target],
    ).fetchall()
    return bool(rows)


def reclaim(con: duckdb.DuckDBPyConnection, execution_id: int, generation: int, event: str, channel: str,
            target: str, now: dt.datetime, stale_before: dt.datetime) -> bool:
    """Claim a failed row (or one left ``sending`` since before ``stale_before`` by a process that
    died) for another try; False when another process got it first or it was sent meanwhile."""
    rows = con.execute(
        "UPDATE notifications SET outcome = 'sending', sent_at = ?, detail = '' "
        "WHERE execution_id = ? AND generation = ? AND event = ? AND channel = ? AND target = ? "
        "AND (outcome = 'failed' OR (outcome = 'sending' AND sent_at < ?)) RETURNING execution_id",
        [now, execution_id, generation, event, channel, target, stale_before],
    ).fetchall()
    return bool(rows)


def settle(con: duckdb.DuckDBPyConnection, execution_id: int, generation: int, event: str, channel: str,
           target: str, outcome: str, detail: str, now: dt.datetime) -> None:
    """Record how the delivery went: ``sent`` or ``failed``, with one line of detail."""
    con.execute(
        "UPDATE notifications SET outcome = ?, detail = ?, sent_at = ? "
        "WHERE execution_id = ? AND generation = ? AND event = ? AND channel = ? AND target = ?",
        [outcome, detail, now, execution_id, generation, event, channel, target],
    )


def candidates(con: duckdb.DuckDBPyConnection, clients: list[str], finished_since: dt.datetime,
               run_date_from: dt.date) -> list[tuple[Any, ...]]:
    """Executions of these clients that may call for a notice: created and not COMPLETED with a
    deadline in their snapshot (LATE) and a run date from ``run_date_from`` on, and ERRORED or
    COMPLETED ones finished since the given moment. Rows: execution_id, client, schedule, run_date, status, snapshot_json, config_version,
    finished_at."""
    return con.execute(
        "SELECT execution_id, client, schedule, run_date, status, snapshot_json, config_version, finished_at "
        "FROM executions WHERE list_contains(?::VARCHAR[], client) AND ("
        "  (status IN ('PENDING', 'IN_PROGRESS', 'ERRORED') AND run_date >= ? "
        "   AND json_extract_string(snapshot_json, '$.deadline') IS NOT NULL) "
        "  OR (status IN ('ERRORED', 'COMPLETED') AND finished_at >= ?)) "
        "ORDER BY run_date, client, schedule",
        [clients, run_date_from, finished_since],
    ).fetchall()


def retryable(con: duckdb.DuckDBPyConnection, clients: list[str], stale_before: dt.datetime
              ) -> list[tuple[Any, ...]]:
    """Failed notifications of these clients, and those left ``sending`` since before
    ``stale_before``. Rows: execution_id, generation, client, schedule, run_date, event, channel, target."""
    return con.execute(
        "SELECT n.execution_id, n.generation, e.client, e.schedule, e.run_date, n.event, n.channel, n.target "
        "FROM notifications n JOIN executions e USING (execution_id) "
        "WHERE list_contains(?::VARCHAR[], e.client) "
        "AND (n.outcome = 'failed' OR (n.outcome = 'sending' AND n.sent_at < ?)) "
        "ORDER BY e.run_date, e.client, e.schedule, n.generation, n.event, n.channel, n.target",
        [clients, stale_before],
    ).fetchall()


def list_notifications(con: duckdb.DuckDBPyConnection, client: str | None, limit: int) -> list[tuple[Any, ...]]:
    """Newest first. Rows: client, schedule, run_date, event, channel, target, sent_at, outcome, detail,
    generation."""
    return con.execute(
        "SELECT e.client, e.schedule, e.run_date, n.event, n.channel, n.target, n.sent_at, n.outcome, n.detail, "
        "n.generation "
        "FROM notifications n JOIN executions e USING (execution_id) "
        "WHERE (? IS NULL OR e.client = ?) "
        "ORDER BY n.sent_at DESC, e.client, e.schedule, e.run_date, n.generation DESC, n.event, n.channel, n.target "
        "LIMIT ?",
        [client, client, limit],
    ).fetchall()
