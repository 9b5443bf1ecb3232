"""Item states (migration 5): from its first error on, a work item's state lives in item_states and
wins over its listed row, so that errored pages, Reprocess and Retry never scan or rewrite a job's
listed rows. The view work_items is every item's current state, as the one table was before; a
workspace from before the migration keeps every item's state, payload and attempt count."""
from __future__ import annotations

import json

from allegro_ops import Workspace
from allegro_ops.demo import resolve
from conftest import as_before_item_states, init_small_demo

C, S, D = "acme", "daily-billing", "2026-11-24"
JOB = "bill-run"


def _errored(ws: Workspace) -> None:
    init_small_demo(ws)
    ws.create(C, S, D)
    ws.process(C, S, D)


def _history(ws: Workspace) -> None:
    """Process, fix and retry one item with a corrected payload, Reprocess after the cause is fixed."""
    _errored(ws)
    item = ws.job_errors(C, S, D, JOB)[0]
    ws.retry_item(C, S, D, JOB, item.account_id, payload=json.dumps({**item.payload, "note": "fixed"}))
    resolve(ws, C)
    ws.reprocess(C, S, D)


def _history_and_errors(ws: Workspace) -> None:
    """_history, then globex (never resolved) processed: errored items now too."""
    _history(ws)
    ws.create("globex", S, D)
    ws.process("globex", S, D)


def rows(ws: Workspace, sql: str, params=None) -> list[tuple]:
    return ws.store.read(lambda con: con.execute(sql, params or []).fetchall())


def job_id(ws: Workspace) -> int:
    return rows(ws, "SELECT job_id FROM v_jobs WHERE job = ?", [JOB])[0][0]


def test_reprocess_and_retry_write_item_states_and_leave_the_listed_rows_as_listed(prepared):
    ws = prepared("item-states-errored", _errored)
    job = job_id(ws)
    listed = rows(ws, "SELECT * FROM listed_items WHERE job_id = ? ORDER BY item_no", [job])
    errored = rows(ws, "SELECT item_no FROM listed_items WHERE job_id = ? AND status = 'ERROR' ORDER BY 1", [job])
    assert errored and rows(ws, "SELECT item_no FROM item_states WHERE job_id = ? ORDER BY 1", [job]) == errored

    item = ws.job_errors(C, S, D, JOB)[0]
    fixed = json.dumps({**item.payload, "note": "fixed"})
    ws.retry_item(C, S, D, JOB, item.account_id, payload=fixed)
    resolve(ws, C)
    ws.reprocess(C, S, D)

    assert rows(ws, "SELECT * FROM listed_items WHERE job_id = ? ORDER BY item_no", [job]) == listed
    assert rows(ws, "SELECT DISTINCT status FROM work_items WHERE job_id = ?", [job]) == [("PROCESSED",)]
    assert ws.job_errors(C, S, D, JOB) == []
    # the corrected payload is the item's payload now (retried with it: still failing, the cause was
    # not fixed yet; then Reprocessed); the listed one is kept
    now = rows(ws, "SELECT payload, attempts FROM work_items WHERE job_id = ? AND account_id = ?",
               [job, item.account_id])
    assert now == [(fixed, 3)]
    (listed_payload,), = rows(ws, "SELECT payload FROM listed_items WHERE job_id = ? AND account_id = ?",
                              [job, item.account_id])
    assert json.loads(listed_payload) == item.payload != json.loads(fixed)
    history = [h for h in ws.account_history(C, item.account_id) if h["job"] == JOB]
    assert [(h["attempt"], h["status"]) for h in history] == [(3, "PROCESSED"), (2, "ERROR"), (1, "ERROR")]
    assert all(h["payload"] == json.loads(fixed) for h in history)


def test_every_items_current_state_is_its_latest_attempt(prepared):
    ws = prepared("item-states-history", _history)
    mismatched = rows(ws, """
        WITH latest AS (SELECT job_id, item_no, attempt AS attempts, status, error_code FROM attempts
                        QUALIFY row_number() OVER (PARTITION BY job_id, item_no ORDER BY attempt DESC) = 1)
        SELECT w.job_id, w.item_no, w.status, l.status FROM work_items w LEFT JOIN latest l USING (job_id, item_no)
        WHERE w.status IS DISTINCT FROM coalesce(l.status, 'PENDING') OR w.attempts <> coalesce(l.attempts, 0)
           OR w.error_code IS DISTINCT FROM l.error_code""")
    assert mismatched == []
    assert rows(ws, "SELECT count(*) FROM item_states") != [(0,)]
    counters = rows(ws, "SELECT job_id, processed, error FROM jobs ORDER BY 1")
    assert counters == rows(ws, "SELECT j.job_id, count(*) FILTER (WHERE w.status = 'PROCESSED'), "
                                "count(*) FILTER (WHERE w.status = 'ERROR') FROM jobs j LEFT JOIN work_items w "
                                "USING (job_id) GROUP BY 1 ORDER BY 1")


def test_a_workspace_from_before_item_states_keeps_every_items_state(prepared):
    ws = prepared("item-states-history-and-errors", _history_and_errors)
    view = "SELECT * FROM {} ORDER BY job_id, item_no"
    current = rows(ws, view.format("work_items"))
    analysts = rows(ws, "SELECT * FROM v_work_items ORDER BY job_id, item_no")
    attempts = rows(ws, "SELECT * FROM v_attempts ORDER BY job_id, item_no, attempt")
    ws.store.write(as_before_item_states)
    assert rows(ws, view.format("work_items")) == current  # the one table of before

    again = Workspace(ws.home, clock=ws.clock, actor="tester")
    assert rows(again, "SELECT count(*) FROM schema_migrations WHERE version = 5") == [(1,)]
    assert rows(again, view.format("work_items")) == current
    assert rows(again, "SELECT * FROM v_work_items ORDER BY job_id, item_no") == analysts
    assert rows(again, "SELECT * FROM v_attempts ORDER BY job_id, item_no, attempt") == attempts
    # the items errored now have their state in item_states (their listed rows hold the same)
    (errored,), = rows(again, "SELECT count(*) FROM work_items WHERE status = 'ERROR'")
    assert errored > 0 and rows(again, "SELECT count(*) FROM item_states") == [(errored,)]
