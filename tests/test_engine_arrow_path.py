"""The engine's Arrow path keeps its guarantees: a job type that lists its work items as an Arrow
table of JSON text is taken without a Python step per item yet refused whole on bad input; the
first attempts of a fresh run are written by range and by join with the same result; each item's
times come from the run's clock."""
from __future__ import annotations

import datetime as dt
import gc
import json
import re
import weakref
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from allegro_ops import BadInput, ItemInput, JobContext, JobType, Workspace, WorkItemError, register
from allegro_ops.batches import loads, process_batch
from allegro_ops.store import work_items as wi_sql
from conftest import twin_jobs_store

DAY = dt.date(2026, 11, 24)
LISTED: dict[str, pa.Table] = {}  # what the test job type lists, by the job's params["key"]


class ArrowListed(JobType):
    """Lists whatever table the test put under its key; fails items whose payload says so."""

    name = "test.arrow_listed"

    def list_work_items(self, ctx: JobContext) -> pa.Table:
        return LISTED[ctx.params["key"]]

    def process_item(self, item: ItemInput, state: Any, ctx: JobContext) -> None:
        if isinstance(item.payload, dict) and item.payload.get("fail"):
            raise WorkItemError("ASKED", f"item {item.item_no} asked to fail")


register(ArrowListed)


def listed_workspace(home: Path, clock, key: str, table: pa.Table, batch_size: int = 4,
                     concurrency: int = 2) -> Workspace:
    LISTED[key] = table
    cfg = {"client": "lab", "name": "s", "mode": "manual", "calendar": {"cron": "0 0 * * *", "timezone": "UTC"},
           "jobs": [{"name": "job", "type": "test.arrow_listed", "batch_size": batch_size,
                     "concurrency": concurrency, "params": {"key": key}}]}
    (home / "s.yaml").write_text(yaml.safe_dump(cfg))
    ws = Workspace(home, clock=clock, actor="tester")
    ws.apply_config(home / "s.yaml")
    ws.create("lab", "s", DAY)
    return ws


def rows(ws: Workspace, sql: str) -> list[tuple]:
    return ws.store.read(lambda con: con.execute(sql).fetchall())


def test_json_text_listed_as_arrow_runs_with_its_outcomes(home, clock):
    n = 23
    payloads = [json.dumps({"n": i, "fail": i % 5 == 0}) for i in range(1, n + 1)]
    table = pa.table({"account_id": [f"A{i}" for i in range(1, n + 1)], "payload": payloads})
    ws = listed_workspace(home, clock, "ok", table)
    job = ws.process("lab", "s", DAY).jobs[0]
    assert (job.total, job.processed, job.error) == (23, 19, 4)
    assert rows(ws, "SELECT item_no, account_id, payload, batch_id FROM work_items ORDER BY item_no")[:2] == [
        (1, "A1", payloads[0], 1), (2, "A2", payloads[1], 1)]
    assert rows(ws, "SELECT item_no, error_code, attempts FROM work_items WHERE status = 'ERROR' ORDER BY 1") == [
        (5, "ASKED", 1), (10, "ASKED", 1), (15, "ASKED", 1), (20, "ASKED", 1)]
    assert rows(ws, "SELECT count(*), count(DISTINCT item_no), min(attempt), max(attempt) FROM attempts") == [
        (23, 23, 1, 1)]


def test_integer_account_ids_become_text_and_a_missing_payload_is_json_null(home, clock):
    table = pa.table({"account_id": pa.array([7, 8], pa.int64()), "payload": pa.array(['{"a": 1}', None])})
    ws = listed_workspace(home, clock, "ints", table)
    ws.process("lab", "s", DAY)
    assert rows(ws, "SELECT account_id, payload, status FROM work_items ORDER BY item_no") == [
        ("7", '{"a": 1}', "PROCESSED"), ("8", "null", "PROCESSED")]


@pytest.mark.parametrize("payloads, accounts, message", [
    (['{"a": 1}', '{"a": '], ["A", "B"], "work item 'B': payload is not valid JSON text"),
    (['{"a": 1}', "not json"], ["A", "B"], "work item 'B': payload is not valid JSON text"),
    (['{}', '{}'], ["A", None], "1 listed work item(s) have no account id"),
])
def test_bad_arrow_listings_are_refused_whole_and_change_nothing(home, clock, payloads, accounts, message):
    table = pa.table({"account_id": pa.array(accounts, pa.string()), "payload": pa.array(payloads, pa.string())})
    ws = listed_workspace(home, clock, f"bad-{message[:12]}", table)
    before = ws.execution("lab", "s", DAY)
    with pytest.raises(BadInput, match=re.escape(message)):
        ws.process("lab", "s", DAY)
    assert rows(ws, "SELECT count(*) FROM work_items") == [(0,)]
    after = ws.execution("lab", "s", DAY)
    assert after.jobs[0].status == before.jobs[0].status
    assert after.jobs[0].total == 0


def _results(item_nos: list[int], failed: set[int]) -> pa.Table:
    now = dt.datetime(2026, 11, 24, 9, tzinfo=dt.timezone.utc)
    return pa.table({
        "item_no": pa.array(item_nos, pa.int32()), "batch_id": pa.array([1] * len(item_nos), pa.int32()),
        "status": ["ERROR" if i in failed else "PROCESSED" for i in item_nos],
        "error_code": pa.array(["E" if i in failed else None for i in item_nos], pa.string()),
        "reason": pa.array([f"r{i}" if i in failed else None for i in item_nos], pa.string()),
        "started_at": [now + dt.timedelta(seconds=i) for i in item_nos],
        "finished_at": [now + dt.timedelta(seconds=i, milliseconds=5) for i in item_nos]},
        schema=wi_sql.RESULT_SCHEMA)


@pytest.mark.parametrize("written", [
    [list(range(1, 11))],  # one unbroken range
    [list(range(1, 6)), list(range(6, 11))],  # two ranges one after the other
    [[1, 2, 4, 7, 9], [3, 5, 6, 8, 10]],  # broken ranges: only the join may write them
])
def test_first_attempts_by_range_leave_what_the_join_leaves(tmp_path, written):
    items = pa.table({"account_id": [f"A{i}" for i in range(1, 11)], "payload": ["{}"] * 10})
    store = twin_jobs_store(tmp_path / "x.duckdb", items, 3)
    failed = {2, 3, 9}
    for part in written:
        store.write(lambda con: wi_sql.write_results(con, 1, _results(part, failed), "t", fresh=True))
        store.write(lambda con: wi_sql.write_results(con, 2, _results(part, failed), "t", fresh=False))

    def state(job_id: int) -> tuple[list, list, list]:
        return store.read(lambda con: (
            con.execute("SELECT item_no, status, error_code, reason, attempts FROM work_items WHERE job_id = ? "
                        "ORDER BY item_no", [job_id]).fetchall(),
            con.execute("SELECT item_no, attempt, batch_id, status, error_code, reason, started_at, finished_at "
                        "FROM attempts WHERE job_id = ? ORDER BY item_no", [job_id]).fetchall(),
            con.execute("SELECT processed, error FROM jobs WHERE job_id = ?", [job_id]).fetchall()))

    assert state(1) == state(2)
    items_state, attempts, counters = state(1)
    assert counters == [(7, 3)]
    assert [r[1] for r in items_state] == ["PROCESSED", "ERROR", "ERROR"] + ["PROCESSED"] * 5 + ["ERROR", "PROCESSED"]
    assert all(r[4] == 1 for r in items_state) and len(attempts) == 10


def test_a_batch_takes_its_times_from_the_runs_clock_in_item_order():
    moments = iter([dt.datetime(2026, 11, 24, 9, tzinfo=dt.timezone.utc)])
    ctx = JobContext("c", "s", DAY, "j")
    batch = [(i, 1, f"A{i}", json.dumps({"n": i, "fail": i == 2})) for i in range(1, 5)]
    table = process_batch(ArrowListed(), batch, None, ctx, lambda: next(moments))
    started, finished = table.column("started_at").to_pylist(), table.column("finished_at").to_pylist()
    base = dt.datetime(2026, 11, 24, 9, tzinfo=dt.timezone.utc)
    assert base <= started[0] < base + dt.timedelta(seconds=5)
    assert all(s <= f for s, f in zip(started, finished))
    assert all(f <= s for f, s in zip(finished, started[1:]))  # one item after the other
    assert table.column("status").to_pylist() == ["PROCESSED", "ERROR", "PROCESSED", "PROCESSED"]
    assert table.column("error_code").to_pylist() == [None, "ASKED", None, None]


@pytest.mark.parametrize("text", ['{"a": [1, 2.5, "x", null, true]}', "NaN", '{"big": 123456789012345678901234567890}',
                                  '"\\ud800"', "[1e400]", '{"a": 1, "a": 2}'])
def test_the_payload_decoder_gives_what_json_gives(text):
    expected, got = json.loads(text), loads(text)
    assert repr(got) == repr(expected)


def test_the_payload_decoder_refuses_what_json_refuses():
    with pytest.raises(ValueError):
        loads('{"a": 1,}')


def _table(n: int) -> pa.Table:
    return pa.table({"account_id": [f"A{i}" for i in range(1, n + 1)],
                     "payload": [json.dumps({"n": i, "fail": i % 7 == 0}) for i in range(1, n + 1)]})


def _state(ws: Workspace) -> tuple[list, list, list]:
    return (rows(ws, "SELECT item_no, batch_id, account_id, payload, status, error_code, attempts FROM work_items "
                     "ORDER BY item_no"),
            rows(ws, "SELECT item_no, attempt, batch_id, status, error_code FROM attempts ORDER BY item_no"),
            rows(ws, "SELECT status, total, processed, error, items_listed FROM jobs"))


def test_a_large_listing_run_from_memory_while_stored_leaves_what_the_store_path_leaves(tmp_path, clock, monkeypatch):
    from allegro_ops import engine

    table = _table(103)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    stored = listed_workspace(tmp_path / "a", clock, "same", table, batch_size=10, concurrency=3)
    stored.process("lab", "s", DAY)
    monkeypatch.setattr(engine, "_OVERLAP_FROM", 50)  # this listing now runs from memory while it is stored
    overlapped = listed_workspace(tmp_path / "b", clock, "same", table, batch_size=10, concurrency=3)
    overlapped.process("lab", "s", DAY)
    assert _state(overlapped) == _state(stored)
    assert _state(stored)[2] == [("ERRORED", 103, 89, 14, True)]


def test_a_listing_run_from_memory_goes_on_from_the_store_once_stored_and_lets_the_table_go(
        tmp_path, clock, monkeypatch):
    from allegro_ops import engine, listing

    table = _table(103)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    stored = listed_workspace(tmp_path / "a", clock, "same", table, batch_size=10, concurrency=3)
    stored.process("lab", "s", DAY)
    monkeypatch.setattr(engine, "_OVERLAP_FROM", 50)
    monkeypatch.setattr(engine, "_READ_ROWS", 20)  # chunks of 30 items (batch 10 x concurrency 3)
    tables, checks, reads = [], [], []
    real_normalize, real_stored, real_read = listing.normalize, listing.Source.stored, wi_sql.read_items

    def normalize(*args):
        listed, checked = real_normalize(*args)
        tables.append(weakref.ref(listed))
        return listed, checked

    def stored_after_the_first_chunk(source):
        checks.append(source.items)
        if len(checks) == 1:
            return False  # the first chunk runs from memory ...
        source.storing.result()  # ... the next ones once the store holds every item
        return real_stored(source)

    def read_items(*args):
        gc.collect()
        reads.append((args[3], args[7], tables[0]() is None))  # (after, upto, the listed table is gone)
        return real_read(*args)

    monkeypatch.setattr(listing, "normalize", normalize)
    monkeypatch.setattr(listing.Source, "stored", stored_after_the_first_chunk)
    monkeypatch.setattr(wi_sql, "read_items", read_items)
    overlapped = listed_workspace(tmp_path / "b", clock, "same", table, batch_size=10, concurrency=3)
    overlapped.process("lab", "s", DAY)
    assert checks == [None, None]  # the generator holds the table, not the source
    assert reads == [(30, 60, True), (60, 90, True), (90, 120, True)]
    assert _state(overlapped) == _state(stored)


def test_when_storing_a_listing_fails_no_outcome_is_written_and_the_next_process_runs_it_all(
        tmp_path, clock, monkeypatch):
    from allegro_ops import engine

    monkeypatch.setattr(engine, "_OVERLAP_FROM", 50)
    ws = listed_workspace(tmp_path, clock, "fails", _table(120), batch_size=10, concurrency=2)
    real = wi_sql.insert_items

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(wi_sql, "insert_items", broken)
    with pytest.raises(OSError, match="disk full"):
        ws.process("lab", "s", DAY)
    assert rows(ws, "SELECT count(*) FROM work_items") == [(0,)]
    assert rows(ws, "SELECT count(*) FROM attempts") == [(0,)]
    assert rows(ws, "SELECT status, items_listed FROM jobs") == [("PENDING", False)]
    monkeypatch.setattr(wi_sql, "insert_items", real)
    job = ws.process("lab", "s", DAY).jobs[0]
    assert (job.total, job.processed, job.error) == (120, 103, 17)
    assert rows(ws, "SELECT count(*), max(attempt) FROM attempts") == [(120, 1)]


def test_a_listing_stored_in_parts_and_interrupted_is_stored_again_whole(tmp_path, clock, monkeypatch):
    from allegro_ops import engine

    monkeypatch.setattr(engine, "_WRITE_ROWS", 7)  # parts of 7 items, one transaction each
    ws = listed_workspace(tmp_path, clock, "parts", _table(30), batch_size=5, concurrency=2)
    real, calls = wi_sql.insert_items, []

    def third_fails(*args, **kwargs):
        calls.append(kwargs.get("first_item"))
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(wi_sql, "insert_items", third_fails)
    with pytest.raises(OSError, match="disk full"):
        ws.process("lab", "s", DAY)
    assert calls == [1, 8, 15]
    # the two parts stored before the failure are taken out with it: a failed listing leaves nothing
    assert rows(ws, "SELECT count(*) FROM work_items") == [(0,)]
    assert rows(ws, "SELECT status, items_listed, total FROM jobs") == [("PENDING", False, 0)]
    # what a process killed between two parts leaves (no one took it out): 14 items, the job not listed
    (job_id,), = rows(ws, "SELECT job_id FROM jobs")
    ws.store.write(lambda con: real(con, job_id, _table(14), 5, clock()))
    assert rows(ws, "SELECT count(*) FROM work_items") == [(14,)]
    monkeypatch.setattr(wi_sql, "insert_items", real)
    job = ws.process("lab", "s", DAY).jobs[0]
    assert (job.total, job.processed, job.error) == (30, 26, 4)
    assert rows(ws, "SELECT count(*), count(DISTINCT item_no), min(item_no), max(item_no) FROM work_items") == [
        (30, 30, 1, 30)]
    assert rows(ws, "SELECT batch_id, count(*) FROM work_items GROUP BY 1 ORDER BY 1") == [(b, 5) for b in range(1, 7)]
