"""SQL for the scheduler's own audit entries (its decisions that are not actions)."""
from __future__ import annotations

import datetime as dt

import duckdb

from .catalog import append_audit

__all__ = ["append_audit_once"]


def append_audit_once(
    con: duckdb.DuckDBPyConnection,
    *,
    time: dt.datetime,
    actor: str,
    action: str,
    client: str | None,
    target: str,
    outcome: str,
    reason: str = "",
) -> bool:
    """Append the entry unless the same actor already recorded this action, target and outcome
    (a decision repeated by every pass is logged once). True when appended."""
    seen = con.execute(
        "SELECT count(*) FROM audit WHERE actor = ? AND action = ? AND target = ? AND outcome = ?",
        [actor, action, target, outcome],
    ).fetchall()[0][0]
    if seen:
        return False
    append_audit(con, time=time, actor=actor, action=action, client=client, target=target, outcome=outcome,
                 reason=reason)
    return True
