"""The Dask executor gives the same outcomes as the local pool: statuses, error codes and
counts per job, errors, Reprocess after a fix, and Retry. One LocalCluster of worker
processes serves the module; workspaces reach it through ALLEGRO_OPS_DASK_ADDRESS."""
from __future__ import annotations

import datetime as dt
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

distributed = pytest.importorskip("distributed")

from allegro_ops import Workspace  # noqa: E402
from allegro_ops.demo import init_demo, resolve  # noqa: E402
from allegro_ops.engine import process_batch  # noqa: E402
from allegro_ops.executors import DASK_ADDRESS_ENV, DaskExecutor, make_executor  # noqa: E402
from allegro_ops.jobs import JobContext, registry  # noqa: E402
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
        init_demo(ws, accounts=60, seed=7, batch_size=10)
        pair.append(ws)
    return pair[0], pair[1]


def outcome(ws: Workspace, client: str = C, schedule: str = S, day=DAY) -> list[tuple]:
    """Per job: status, counts, errors by code; and the attempts recorded."""
    ex = ws.execution(client, schedule, day)
    jobs = []
    for j in ex.jobs:
        stats = ws.job_stats(client, schedule, day, j.name)
        jobs.append((j.name, j.status.value, j.total, j.pending, j.processed, j.error,
                     tuple((e.error_code, e.count) for e in stats.errors_by_code)))
    attempts = ws.store.read(lambda con: con.execute("SELECT count(*) FROM attempts").fetchall()[0][0])
    return [ex.status.value, jobs, attempts]


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


def test_demo_on_dask_matches_local_pool_through_errors_resolve_and_reprocess(tmp_path, dask_env):
    local, remote = demo_pair(tmp_path)
    for ws in (local, remote):
        ws.create(C, S, DAY)
        ws.process(C, S, DAY)
    first = outcome(local)
    assert first[0] == "ERRORED" and any(j[5] for j in first[1])
    assert outcome(remote) == first

    for ws in (local, remote):
        ws.reprocess(C, S, DAY)  # nothing fixed: the same errors again, one more attempt each
    assert outcome(remote) == outcome(local)

    for ws in (local, remote):
        resolve(ws, C)
        ws.reprocess(C, S, DAY)
    final = outcome(local)
    assert final[0] == "COMPLETED"
    assert outcome(remote) == final


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
    assert first[1][0][1:] == ("ERRORED", 400, 0, 343, 57, (("HASH_REJECTED", 57),))
    assert outcome(remote, "lab", "hashing") == first

    for ws in (local, remote):
        ws.retry_job("lab", "hashing", DAY, "hash")
    again = outcome(local, "lab", "hashing")
    assert again[2] == first[2] + 57  # every retried item has a new attempt
    assert outcome(remote, "lab", "hashing") == again
