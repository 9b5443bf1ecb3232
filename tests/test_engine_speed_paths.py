"""The engine's fast paths keep its guarantees: batches run in pieces but are written whole,
counters from fresh results match counters from the join, and a run that holds the file open
between writes hands it over as soon as another process asks."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import yaml

from allegro_ops import Workspace
from allegro_ops.store import Store
from allegro_ops.store import work_items as wi_sql
from conftest import as_before_item_states, twin_jobs_store

DAY = dt.date(2026, 11, 24)


def noop_workspace(home: Path, count: int, batch_size: int, concurrency: int, **params) -> Workspace:
    home.mkdir(parents=True, exist_ok=True)
    cfg = {"client": "lab", "name": "s", "mode": "manual", "calendar": {"cron": "0 0 * * *", "timezone": "UTC"},
           "jobs": [{"name": "job", "type": "demo.noop", "batch_size": batch_size, "concurrency": concurrency,
                     "params": {"count": count, **params}}]}
    (home / "s.yaml").write_text(yaml.safe_dump(cfg))
    ws = Workspace(home, actor="test")
    ws.apply_config(home / "s.yaml")
    return ws


def q(ws: Workspace, sql: str):
    return ws.store.read(lambda con: con.execute(sql).fetchall())


def test_small_batches_on_many_workers_record_one_attempt_per_item_and_whole_batches(tmp_path):
    ws = noop_workspace(tmp_path, 1000, 50, 16, fail_every=9, error_code="NINE")
    ws.create("lab", "s", DAY)
    job = ws.process("lab", "s", DAY).jobs[0]
    assert (job.total, job.processed, job.error, job.pending) == (1000, 889, 111, 0)
    assert q(ws, "SELECT count(*), count(DISTINCT item_no), max(attempt) FROM attempts") == [(1000, 1000, 1)]
    # every batch's attempts carry the same run token and the batch ids of their items
    assert q(ws, "SELECT count(*) FROM attempts a JOIN work_items w USING (job_id, item_no) "
                 "WHERE a.batch_id <> w.batch_id") == [(0,)]
    stats = ws.job_stats("lab", "s", DAY, "job")
    assert [(e.error_code, e.count) for e in stats.errors_by_code] == [("NINE", 111)]


def test_retry_after_a_fresh_run_keeps_counters_consistent(tmp_path):
    ws = noop_workspace(tmp_path, 200, 20, 4, fail_every=5)
    ws.create("lab", "s", DAY)
    ws.process("lab", "s", DAY)
    job = ws.retry_job("lab", "s", DAY, "job").jobs[0]
    assert (job.processed, job.error) == (160, 40)
    assert q(ws, "SELECT count(*) FROM attempts") == [(240,)]
    assert q(ws, "SELECT processed, error FROM jobs") == [(160, 40)]


def _results(item_nos: list[int], status: str) -> pa.Table:
    now = dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc)
    n = len(item_nos)
    return pa.table({"item_no": pa.array(item_nos, pa.int32()), "batch_id": pa.array([1] * n, pa.int32()),
                     "status": [status] * n, "error_code": pa.array([None] * n, pa.string()),
                     "reason": pa.array([None] * n, pa.string()), "started_at": [now] * n, "finished_at": [now] * n},
                    schema=wi_sql.RESULT_SCHEMA)


def test_fresh_results_give_the_same_counter_deltas_as_the_join(tmp_path):
    items = pa.table({"account_id": ["A", "B", "C"], "payload": ["{}", "{}", "{}"]})
    store = twin_jobs_store(tmp_path / "x.duckdb", items, 2)
    fresh = store.write(lambda con: wi_sql.write_results(con, 1, _results([1, 2, 3], "ERROR"), "t", fresh=True))
    joined = store.write(lambda con: wi_sql.write_results(con, 2, _results([1, 2, 3], "ERROR"), "t"))
    assert fresh == joined == (0, 3)
    again = store.write(lambda con: wi_sql.write_results(con, 1, _results([1, 2], "PROCESSED"), "t"))
    assert again == (2, -2)


READER = """
import sys, time
from allegro_ops.store import Store
t = time.monotonic()
Store(sys.argv[1], lock_timeout=20).read(lambda con: con.execute("SELECT 1").fetchall())
print(time.monotonic() - t)
"""


def test_a_held_file_is_handed_to_another_process_that_asks(tmp_path):
    store = Store(tmp_path / "x.duckdb")
    store.write(lambda con: con.execute("CREATE TABLE t (x INTEGER)"))
    stop = threading.Event()

    def keep_writing():
        with store.held(hold=60.0):  # would keep the file a minute if nobody asked
            while not stop.is_set():
                store.write(lambda con: con.execute("INSERT INTO t VALUES (1)"))
                time.sleep(0.002)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        time.sleep(0.3)
        out = subprocess.run([sys.executable, "-c", READER, str(store.path)], capture_output=True, text=True,
                             check=True, timeout=60)
    finally:
        stop.set()
        writer.join()
    assert float(out.stdout) < 2.0
    assert store.read(lambda con: con.execute("SELECT count(*) FROM t").fetchall())[0][0] > 10


def test_account_history_finds_items_by_account_key_also_in_a_workspace_from_before_the_key(prepared):
    """Migration 4 gives every existing work item its account_key (6 cuts it to 32 bits); new items
    get one on insert."""
    from allegro_ops.demo import init_demo

    def build(w: Workspace) -> None:
        init_demo(w, accounts=30, seed=7, batch_size=10)
        w.create("acme", "daily-billing", "2026-11-24")
        w.process("acme", "daily-billing", "2026-11-24")

    ws = prepared("speed-account-key", build)
    account = q(ws, "SELECT account_id FROM work_items ORDER BY job_id, item_no LIMIT 1")[0][0]
    expected = ws.account_history("acme", account)
    assert expected and q(ws, "SELECT count(*) FROM work_items WHERE account_key IS NULL") == [(0,)]
    assert q(ws, "SELECT count(DISTINCT account_key) = count(DISTINCT account_id) FROM work_items") == [(True,)]
    # The workspace as it was before migration 4.
    ws.store.write(lambda con: (as_before_item_states(con),
                                con.execute("ALTER TABLE work_items DROP COLUMN account_key"),
                                con.execute("DROP MACRO account_key"),
                                con.execute("DELETE FROM schema_migrations WHERE version IN (4, 6)")))
    again = Workspace(ws.home, clock=ws.clock, actor="tester")
    assert again.account_history("acme", account) == expected
    assert q(again, "SELECT count(*) FROM work_items WHERE account_key IS NULL") == [(0,)]
    # migration 4 gave 64-bit keys, migration 6 cut them to the 32 bits the macro gives new items
    assert q(again, "SELECT count(*) FROM listed_items WHERE account_key IS DISTINCT FROM account_key(account_id)") \
        == [(0,)]
    assert again.account_history("acme", "no-such-account") == []
