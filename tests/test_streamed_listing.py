"""A streamed listing: a job type that lists its work items as an iterator (of Arrow tables or
record batches, a RecordBatchReader, or (account_id, payload) pairs) has them stored part by part,
never all in memory, numbered and run as a listed table's would be; a bad part refuses the whole
listing and leaves nothing of it."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
import yaml

from allegro_ops import BadInput, ExecutionStatus, ItemInput, JobContext, JobType, Workspace, register
from allegro_ops.store.db import ROW_GROUP_ROWS

DAY = dt.date(2026, 11, 24)


def _table(first: int, n: int) -> pa.Table:
    ids = [f"S-{i:06d}" for i in range(first, first + n)]
    return pa.table({"account_id": ids, "payload": [json.dumps({"n": i}) for i in range(first, first + n)]})


@register
class Streamed(JobType):
    """Lists ``sizes`` parts in the form ``shape`` says; notes how many items the store held when it
    made each part; ``bad_part`` makes that part's first payload not JSON, ``fail_part`` raises there."""

    name = "test.streamed"
    stored_when_made: list[int] = []

    def list_work_items(self, ctx: JobContext) -> Any:
        sizes, shape = ctx.params["sizes"], ctx.params.get("shape", "tables")
        bad, fail = ctx.params.get("bad_part"), ctx.params.get("fail_part")

        def parts() -> Iterator[pa.Table]:
            first = 1
            for k, n in enumerate(sizes):
                Streamed.stored_when_made.append(ctx.store.read(
                    lambda con: con.execute("SELECT count(*) FROM listed_items").fetchall()[0][0]))
                if k == fail:
                    raise RuntimeError(f"the accounts service went away at part {k}")
                if k == ctx.params.get("taken_over_at"):  # another process takes the run over now
                    ctx.store.write(lambda con: (
                        con.execute("UPDATE executions SET lease_token = 'another-process'"),
                        con.execute("UPDATE jobs SET status = 'IN_PROGRESS'")))
                part = _table(first, n)
                if k == bad:
                    part = part.set_column(1, "payload", pa.array(["{not json"] + part.column("payload").to_pylist()[1:]))
                yield part
                first += n

        if shape == "tables":
            return parts()
        if shape == "batches":
            return (b for t in parts() for b in t.to_batches(max_chunksize=9_000))
        if shape == "reader":
            return pa.RecordBatchReader.from_batches(_table(1, 1).schema, (b for t in parts() for b in t.to_batches()))
        return ((a, json.loads(p)) for t in parts() for a, p in zip(t.column("account_id").to_pylist(),
                                                                     t.column("payload").to_pylist()))

    def process_item(self, item: ItemInput, state: Any, ctx: JobContext) -> None:
        assert item.account_id == f"S-{item.payload['n']:06d}"  # every item got its own payload
        assert item.item_no == item.payload["n"]  # numbered in the listing's order


def workspace(home, clock, **params: Any) -> Workspace:
    ws = Workspace(home, clock=clock, actor="tester", role="operator")
    doc = {"client": "acme", "name": "stream", "mode": "manual", "calendar": {"cron": "0 2 * * *"},
           "jobs": [{"name": "listing", "type": "test.streamed", "batch_size": 1000, "concurrency": 2,
                     "params": params}]}
    (home / "stream.yaml").write_text(yaml.safe_dump(doc))
    ws.apply_config(home / "stream.yaml")
    ws.create("acme", "stream", DAY)
    Streamed.stored_when_made.clear()
    return ws


def rows(ws: Workspace, sql: str) -> list[tuple]:
    return ws.store.read(lambda con: con.execute(sql).fetchall())


@pytest.mark.parametrize("shape", ["tables", "batches", "reader", "pairs"])
def test_a_streamed_listing_is_stored_numbered_and_run_like_a_listed_table(home, clock, shape):
    sizes = [25_000, 0, 40_000, 5_001]
    ws = workspace(home, clock, sizes=sizes, shape=shape)
    execution = ws.process("acme", "stream", DAY)
    total = sum(sizes)
    assert execution.status is ExecutionStatus.COMPLETED
    assert (execution.jobs[0].total, execution.jobs[0].processed, execution.jobs[0].error) == (total, total, 0)
    assert rows(ws, "SELECT count(*), min(item_no), max(item_no), count(DISTINCT account_id), "
                    "min(batch_id), max(batch_id) FROM listed_items") == [(total, 1, total, total, 1, 71)]
    assert rows(ws, "SELECT count(*) FROM listed_items WHERE batch_id <> (item_no - 1) // 1000 + 1") == [(0,)]
    assert rows(ws, "SELECT count(*) FROM attempts") == [(total,)]
    history = ws.account_history("acme", "S-050000")
    assert [(h["job"], h["status"], h["payload"]) for h in history] == [("listing", "PROCESSED", {"n": 50_000})]


def test_the_engine_takes_a_part_only_when_the_one_before_the_last_is_stored(home, clock):
    ws = workspace(home, clock, sizes=[ROW_GROUP_ROWS] * 5)
    assert ws.process("acme", "stream", DAY).status is ExecutionStatus.COMPLETED
    made = Streamed.stored_when_made
    assert len(made) == 5
    # the listing is never in memory whole: part k is made once parts 0..k-2 are in the store
    assert all(made[k] >= (k - 1) * ROW_GROUP_ROWS for k in range(1, 5)), made
    assert made[-1] < 5 * ROW_GROUP_ROWS


@pytest.mark.parametrize("fault", [{"bad_part": 2}, {"fail_part": 2}])
def test_a_bad_part_refuses_the_whole_listing_and_leaves_nothing_of_it(home, clock, fault):
    ws = workspace(home, clock, sizes=[ROW_GROUP_ROWS, ROW_GROUP_ROWS, 100], **fault)
    kind = BadInput if "bad_part" in fault else RuntimeError
    with pytest.raises(kind) as raised:
        ws.process("acme", "stream", DAY)
    message = str(raised.value)
    assert "\n" not in message
    assert ("S-061441" in message and "not valid JSON" in message) if "bad_part" in fault else "part 2" in message
    assert Streamed.stored_when_made[2] == ROW_GROUP_ROWS  # part 0 was stored (part 1 was made) before it
    assert rows(ws, "SELECT count(*) FROM listed_items") == [(0,)]
    assert rows(ws, "SELECT count(*) FROM attempts") == [(0,)]
    assert rows(ws, "SELECT count(*) FROM account_items") + rows(ws, "SELECT count(*) FROM account_items_recent") \
        == [(0,), (0,)]
    job = ws.execution("acme", "stream", DAY).jobs[0]
    assert (job.status.value, job.total) == ("PENDING", 0)


def test_storing_a_long_listing_lets_the_file_go_every_few_parts(home, clock, monkeypatch):
    from allegro_ops import engine
    from allegro_ops.store import Store, db

    monkeypatch.setattr(engine, "_LET_GO_PARTS", 2)
    ws = workspace(home, clock, sizes=[ROW_GROUP_ROWS] * 5)
    let_go, attaches = [], []
    real_let_go, real_attach = Store.let_go, db._attach
    monkeypatch.setattr(Store, "let_go", lambda store: (let_go.append(store.path.name), real_let_go(store))[1])
    monkeypatch.setattr(db, "_attach", lambda path: (attaches.append(path.name), real_attach(path))[1])
    assert ws.process("acme", "stream", DAY).status is ExecutionStatus.COMPLETED
    assert let_go == ["allegro_ops.duckdb"] * 2  # after parts 2 and 4 of 5
    assert len(attaches) >= 3  # each time, the next unit of work attached the file again
    assert rows(ws, "SELECT count(*) FROM listed_items") == [(5 * ROW_GROUP_ROWS,)]


def test_a_run_taken_over_while_storing_leaves_the_new_owners_listing_alone(home, clock):
    from allegro_ops.engine import LeaseLost

    ws = workspace(home, clock, sizes=[ROW_GROUP_ROWS] * 4, taken_over_at=2)
    with pytest.raises(LeaseLost, match="taken over by another process"):
        ws.process("acme", "stream", DAY)
    # part 0 was stored before the takeover; what is in the store now is the new owner's to handle
    assert rows(ws, "SELECT count(*) FROM listed_items") == [(ROW_GROUP_ROWS,)]
    assert rows(ws, "SELECT status, items_listed FROM jobs") == [("IN_PROGRESS", False)]
    assert rows(ws, "SELECT lease_token FROM executions") == [("another-process",)]


@register
class Mixed(JobType):
    """Streams an Arrow part, then a pair: a listing it cannot store as either."""

    name = "test.streamed_mixed"

    def list_work_items(self, ctx: JobContext) -> Iterator[Any]:
        yield _table(1, 10)
        yield ("S-000011", {"n": 11})

    def process_item(self, item: ItemInput, state: Any, ctx: JobContext) -> None:
        return None


def test_a_stream_that_mixes_arrow_parts_and_pairs_is_refused_in_one_line(home, clock):
    ws = Workspace(home, clock=clock, actor="tester", role="operator")
    doc = {"client": "acme", "name": "mixed", "mode": "manual", "calendar": {"cron": "0 2 * * *"},
           "jobs": [{"name": "listing", "type": "test.streamed_mixed"}]}
    (home / "mixed.yaml").write_text(yaml.safe_dump(doc))
    ws.apply_config(home / "mixed.yaml")
    ws.create("acme", "mixed", DAY)
    with pytest.raises(BadInput, match="mixes Arrow parts with tuple") as raised:
        ws.process("acme", "mixed", DAY)
    assert "\n" not in str(raised.value)
    assert rows(ws, "SELECT count(*) FROM listed_items") == [(0,)]
    assert ws.execution("acme", "mixed", DAY).jobs[0].status.value == "PENDING"
