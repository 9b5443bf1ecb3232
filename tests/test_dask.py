"""The Dask executor gives the same outcomes as the local pool: statuses, counts and errors by
code per job, every errored work item with its reason and attempts, Reprocess after a fix, Retry
of a job, of one error code and of one work item, Process job, and the side-effect ledger. Handlers
run in the workers' processes with no handle on the workspace's DuckDB file. One LocalCluster of
worker processes serves the module; workspaces reach it through ALLEGRO_OPS_DASK_ADDRESS."""
from __future__ import annotations

import datetime as dt
import json
import os
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

distributed = pytest.importorskip("distributed")

from allegro_ops import JobType, Workspace, WorkItemError, register  # noqa: E402
from allegro_ops.demo import init_demo, resolve  # noqa: E402
from allegro_ops.engine import process_batch  # noqa: E402
from allegro_ops.executors import DASK_ADDRESS_ENV, DaskExecutor, make_executor  # noqa: E402
from allegro_ops.jobs import JobContext, registry  # noqa: E402
from allegro_ops.jobs.demo import read_side_effects  # noqa: E402
from allegro_ops.store import Store  # noqa: E402

C, S = "acme", "daily-billing"
DAY = dt.date(2026, 11, 24)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as c:
        yield c


@pytest.fixture
def dask_env(cluster, monkeypatch):
    monkeypatch.setenv(DASK_ADDRESS_ENV, cluster.scheduler_address)
    return cluster.scheduler_address


def demo_pair(tmp_path: Path) -> tuple[Workspace, Workspace]:
    pair = []
    for kind in ("local", "dask"):
        ws = Workspace(tmp_path / kind, actor="test", executor=kind)
        init_demo(ws, accounts=60, seed=7, batch_size=10, side_effects=True)
        pair.append(ws)
    return pair[0], pair[1]


def outcome(ws: Workspace, client: str = C, schedule: str = S, day=DAY) -> list:
    """Per job: status, counts, errors by code and every errored work item (account, batch, code,
    reason, attempts); and the attempts recorded."""
    ex = ws.execution(client, schedule, day)
    jobs = []
    for j in ex.jobs:
        stats = ws.job_stats(client, schedule, day, j.name)
        errored = tuple((i.item_no, i.account_id, i.batch_id, i.error_code, i.reason, i.attempts)
                        for i in ws.job_errors(client, schedule, day, j.name, limit=10_000))
        jobs.append((j.name, j.status.value, j.total, j.pending, j.processed, j.error,
                     tuple((e.error_code, e.count) for e in stats.errors_by_code), errored))
    attempts = ws.store.read(lambda con: con.execute("SELECT count(*) FROM attempts").fetchall()[0][0])
    return [ex.status.value, jobs, attempts]


def job_of(result: list, name: str) -> tuple:
    return next(j for j in result[1] if j[0] == name)


def side_effect_keys(ws: Workspace) -> list[str]:
    """Every side-effect call made (invoices e-mailed, cards charged), by idempotency key."""
    return sorted(call["key"] for call in read_side_effects(ws.home, C))


def test_batch_arguments_pickle_without_a_store(tmp_path):
    job_type = registry.get("demo.noop")
    ctx = JobContext(C, S, DAY, "job", {"count": 3}, Store(tmp_path / "x.duckdb"))
    remote = replace(ctx, store=None)
    table = process_batch(job_type, [(1, 1, "A", '{"n": 1}')], None, remote, lambda: dt.datetime(2026, 1, 1))
    assert pickle.loads(pickle.dumps(table)).equals(table)
    assert pickle.loads(pickle.dumps(remote)) == remote
    assert pickle.loads(pickle.dumps(job_type)).name == "demo.noop"


def test_job_params_choose_the_executor_and_address(dask_env):
    executor = make_executor("local", 2, {"executor": "dask"})
    try:
        assert isinstance(executor, DaskExecutor)
        assert executor.submit(sum, [1, 2, 3]).result(timeout=30) == 6
    finally:
        executor.close()
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("local", 2, {"executor": "spark"})


def test_demo_on_dask_matches_local_pool_through_errors_retries_and_reprocess(tmp_path, dask_env):
    local, remote = demo_pair(tmp_path)

    def both(action) -> list:
        """Do the same on the local pool and on Dask; the outcomes must be equal, item by item."""
        for ws in (local, remote):
            action(ws)
        result = outcome(local)
        assert outcome(remote) == result
        return result

    first = both(lambda ws: (ws.create(C, S, DAY), ws.process(C, S, DAY)))
    bill = job_of(first, "bill-run")
    assert first[0] == "ERRORED" and bill[1] == "ERRORED"
    assert {code for code, _ in bill[6]} == {"RATE_PLAN_NOT_FOUND", "TAX_RULE_MISSING"}
    assert job_of(first, "invoice-delivery")[1] == "PENDING"  # paused after the errored job

    again = both(lambda ws: ws.reprocess(C, S, DAY))  # nothing fixed: the same errors, one more attempt each
    assert job_of(again, "bill-run")[6] == bill[6] and again[2] == first[2] + bill[5]

    by_code = both(lambda ws: (resolve(ws, C, "RATE_PLAN_NOT_FOUND"),
                               ws.retry_job(C, S, DAY, "bill-run", code="RATE_PLAN_NOT_FOUND")))
    assert [code for code, _ in job_of(by_code, "bill-run")[6]] == ["TAX_RULE_MISSING"]

    tax_account = job_of(by_code, "bill-run")[7][0][1]
    one_item = both(lambda ws: (resolve(ws, C, "TAX_RULE_MISSING"), ws.retry_item(C, S, DAY, "bill-run", tax_account)))
    assert job_of(one_item, "bill-run")[1] == "COMPLETED"  # no errors left: the paused jobs ran, on Dask too
    assert job_of(one_item, "invoice-delivery")[6] == (("INVALID_EMAIL", 1),)

    final = both(lambda ws: (resolve(ws, C), ws.reprocess(C, S, DAY)))
    assert final[0] == "COMPLETED"
    # Invoices e-mailed and cards charged from the workers: the same calls, once per account.
    keys = side_effect_keys(local)
    assert side_effect_keys(remote) == keys and len(keys) == len(set(keys)) == 2 * 60


def cpu_workspace(home: Path, executor: str) -> Workspace:
    home.mkdir(parents=True)
    cfg = {"client": "lab", "name": "hashing", "mode": "manual",
           "calendar": {"cron": "0 0 * * *", "timezone": "UTC"},
           "jobs": [{"name": "hash", "type": "demo.cpu", "batch_size": 25, "concurrency": 4,
                     "params": {"count": 400, "rounds": 2000, "fail_every": 7, "error_code": "HASH_REJECTED"}},
                    {"name": "after", "type": "demo.noop", "batch_size": 25, "concurrency": 4,
                     "params": {"count": 50}}]}
    (home / "lab.yaml").write_text(yaml.safe_dump(cfg))
    ws = Workspace(home, actor="test", executor=executor)
    ws.apply_config(home / "lab.yaml")
    return ws


def test_cpu_job_on_dask_matches_local_pool_including_retry(tmp_path, dask_env):
    local, remote = cpu_workspace(tmp_path / "local", "local"), cpu_workspace(tmp_path / "dask", "dask")
    for ws in (local, remote):
        ws.create("lab", "hashing", DAY)
        ws.process("lab", "hashing", DAY)
    first = outcome(local, "lab", "hashing")
    assert first[1][0][1:7] == ("ERRORED", 400, 0, 343, 57, (("HASH_REJECTED", 57),))
    assert outcome(remote, "lab", "hashing") == first

    for ws in (local, remote):
        ws.retry_job("lab", "hashing", DAY, "hash")
    again = outcome(local, "lab", "hashing")
    assert again[2] == first[2] + 57  # every retried item has a new attempt
    assert {i[5] for i in again[1][0][7]} == {2}
    assert outcome(remote, "lab", "hashing") == again

    for ws in (local, remote):
        ws.process_job("lab", "hashing", DAY, "after")  # Process job: the paused job run by hand
    by_hand = outcome(local, "lab", "hashing")
    assert by_hand[1][1][1:6] == ("COMPLETED", 50, 0, 50, 0)
    assert outcome(remote, "lab", "hashing") == by_hand


@register
class WhereAmI(JobType):
    """Fails every work item with a reason saying where its handler ran and what it could reach."""

    name = "test.where_am_i"

    def list_work_items(self, ctx: JobContext) -> list[tuple[str, dict]]:
        return [(f"W-{i:03d}", {"n": i}) for i in range(int(ctx.params["count"]))]

    def prepare(self, ctx: JobContext) -> dict:
        return {"coordinator": os.getpid()}

    def process_item(self, item, state: dict, ctx: JobContext) -> None:
        raise WorkItemError("WHERE", json.dumps({"pid": os.getpid(), "coordinator": state["coordinator"],
                                                 "store": ctx.store is not None}))


def test_handlers_run_in_dask_worker_processes_without_the_store(tmp_path, dask_env):
    places = {}
    for kind in ("local", "dask"):
        home = tmp_path / kind
        home.mkdir()
        cfg = {"client": "lab", "name": "where", "mode": "manual", "calendar": {"cron": "0 0 * * *", "timezone": "UTC"},
               "jobs": [{"name": "where", "type": "test.where_am_i", "batch_size": 5, "concurrency": 4,
                         "params": {"count": 40}}]}
        (home / "where.yaml").write_text(yaml.safe_dump(cfg))
        ws = Workspace(home, actor="test", executor=kind)
        ws.apply_config(home / "where.yaml")
        ws.create("lab", "where", DAY)
        assert ws.process("lab", "where", DAY).job("where").error == 40
        places[kind] = [json.loads(i.reason) for i in ws.job_errors("lab", "where", DAY, "where", limit=100)]
    assert len(places["local"]) == len(places["dask"]) == 40
    assert all(p["pid"] == p["coordinator"] == os.getpid() and p["store"] for p in places["local"])
    assert all(p["pid"] != p["coordinator"] and p["coordinator"] == os.getpid() and not p["store"]
               for p in places["dask"])
    assert len({p["pid"] for p in places["dask"]}) == 2  # both worker processes of the cluster took batches
