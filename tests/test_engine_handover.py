"""A run writes in whole row groups, so that another process gets the file between its
transactions: the listing is stored one row group per transaction, results are written in
whole row groups (the rest once it is due, or at the end), and a process that asks for the file
while a run writes gets it between two of them, with the run's progress so far."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import handover_support as hs
from allegro_ops import ExecutionStatus, Workspace
from allegro_ops.store import work_items as wi_sql
from allegro_ops.store.db import ROW_GROUP_ROWS, Store

TESTS = Path(__file__).resolve().parent


def row_groups(ws: Workspace, table: str) -> list[int]:
    """The rows of each row group of a table, in order (from DuckDB's storage info)."""
    return [n for _, n in ws.store.read(lambda con: con.execute(
        f"SELECT row_group_id, sum(count) FROM pragma_storage_info('{table}') "
        "WHERE column_id = 0 AND segment_type <> 'VALIDITY' GROUP BY 1 ORDER BY 1").fetchall())]


def items_table(ws: Workspace) -> str:
    """The table that holds listed work items (``work_items`` may be a view over it)."""
    names = {n for (n,) in ws.store.read(lambda con: con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name IN ('listed_items', 'work_items')").fetchall())}
    return "listed_items" if "listed_items" in names else "work_items"


def test_a_run_stores_its_listing_one_row_group_per_transaction_and_no_row_group_grows_past_the_size(home, clock):
    n = 2 * ROW_GROUP_ROWS + 5
    ws = hs.workspace(home, n, clock=clock)
    job = ws.process(hs.CLIENT, hs.SCHEDULE, hs.DAY).jobs[0]
    assert (job.total, job.processed, job.error) == (n, n, 0)
    assert row_groups(ws, items_table(ws)) == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 5]
    attempts = row_groups(ws, "attempts")
    assert sum(attempts) == n and max(attempts) <= ROW_GROUP_ROWS


def test_results_are_written_in_whole_row_groups_until_the_rest_is_due(home, clock, monkeypatch):
    from allegro_ops import engine

    monkeypatch.setattr(engine, "_WRITE_ROWS", 7)  # "a row group" of 7 results
    monkeypatch.setattr(engine, "_WRITE_EVERY_S", 3600.0)  # never due before the end
    written, real = [], wi_sql.write_results

    def write_results(con, job_id, results, *args, **kwargs):
        written.append(results.column("item_no").to_pylist())
        return real(con, job_id, results, *args, **kwargs)

    monkeypatch.setattr(wi_sql, "write_results", write_results)
    ws = hs.workspace(home, 40, batch_size=5, concurrency=2, clock=clock)
    job = ws.process(hs.CLIENT, hs.SCHEDULE, hs.DAY).jobs[0]
    assert (job.total, job.processed, job.error) == (40, 40, 0)
    assert [len(w) for w in written[:-1]] == [7] * (len(written) - 1) and 1 <= len(written[-1]) <= 7
    assert sorted(n for w in written for n in w) == list(range(1, 41))  # every outcome once


READER = """
import json, sys, time
from allegro_ops import Workspace
from allegro_ops.store.db import Store

waits = []
real = Store._mark_waiting
def mark_waiting(self):
    waits.append(time.monotonic())
    return real(self)
Store._mark_waiting = mark_waiting

ws = Workspace(sys.argv[1], actor="reader")
seen = []
deadline = time.monotonic() + 120  # until the run, started by another process, has ended
while time.monotonic() < deadline:
    before = len(waits)
    e = ws.execution("lab", "rowgroups", "2026-11-24")
    seen.append((e.status.value, e.jobs[0].processed, e.jobs[0].total, len(waits) > before))
    if e.status.value in ("COMPLETED", "ERRORED"):
        break
    time.sleep(0.05)
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_a_process_that_waits_for_the_file_gets_it_between_a_runs_transactions(home, cli_env):
    """A second process reads the status every 50 ms while a run of three row groups writes: it has to
    wait for the file, gets it while the run is in progress, and sees its progress grow."""
    n = 2 * ROW_GROUP_ROWS + 5
    hs.workspace(home, n, pause_ms=1, pause_every=25)  # ~1-2 s of handlers
    env = {**cli_env, "PYTHONPATH": f"{TESTS.parent}:{TESTS}"}
    writer = subprocess.Popen([sys.executable, "-m", "handover_support", str(home)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        reader = subprocess.run([sys.executable, "-c", READER, str(home)], env=env, text=True, capture_output=True,
                                timeout=180)
        out, err = writer.communicate(timeout=180)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0 and out.strip() == "COMPLETED", err
    assert reader.returncode == 0, reader.stderr
    seen = [tuple(s) for s in json.loads(reader.stdout)]
    running = [(processed, waited) for status, processed, total, waited in seen if status == "IN_PROGRESS"]
    assert any(waited for _, waited in running), "the reader never had to wait for the run's file"
    mid_run = [p for p, _ in running if 0 < p < n]
    assert len(set(mid_run)) >= 2 and mid_run == sorted(mid_run)  # progress seen between transactions, never back
    assert seen[-1][:3] == ("COMPLETED", n, n)
    ws = Workspace(home, actor="tester")
    assert ws.execution(hs.CLIENT, hs.SCHEDULE, hs.DAY).status is ExecutionStatus.COMPLETED
    assert row_groups(ws, items_table(ws)) == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 5]
    assert Store(home / "allegro_ops.duckdb").read(lambda con: con.execute(
        "SELECT count(*), count(DISTINCT item_no), max(attempt) FROM attempts").fetchall()) == [(n, n, 1)]
