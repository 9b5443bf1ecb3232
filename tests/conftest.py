"""Shared fixtures: a temporary workspace, a fixed clock, and a demo workspace."""
from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import pytest

from allegro_ops import Workspace
from allegro_ops.demo import init_demo

RUN_DATE = dt.date(2026, 11, 24)


class FixedClock:
    """A clock tests set and move by hand."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def workspace(home: Path, clock: FixedClock) -> Workspace:
    return Workspace(home, clock=clock, actor="tester")


@pytest.fixture
def demo(workspace: Workspace) -> Workspace:
    """A demo workspace: clients acme and globex, 400 accounts each, nothing executed yet."""
    init_demo(workspace, accounts=400, seed=7, batch_size=50)
    return workspace


@pytest.fixture
def cli_env(home: Path) -> dict[str, str]:
    """Environment for running the CLI in a subprocess against the temporary workspace."""
    env = dict(os.environ)
    env["ALLEGRO_OPS_HOME"] = str(home)
    env["ALLEGRO_OPS_ACTOR"] = "tester"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return env


@pytest.fixture
def cli_cmd() -> list[str]:
    return [sys.executable, "-m", "allegro_ops.cli"]


# ---------------------------------------------------------------------------------------------
# Added for the engine suite: workspaces built once per session and handed out as fresh copies.
SMALL_ACCOUNTS = 60


def init_small_demo(ws: Workspace, **kwargs) -> Workspace:
    """A demo workspace small enough to run in a fraction of a second (60 accounts, batches of 10)."""
    init_demo(ws, **{"accounts": SMALL_ACCOUNTS, "seed": 7, "batch_size": 10, **kwargs})
    return ws


@pytest.fixture(scope="session")
def _workspace_templates() -> dict[str, Path]:
    return {}


@pytest.fixture
def prepared(_workspace_templates, tmp_path_factory, tmp_path: Path, clock: FixedClock):
    """``prepared(name, build)``: a Workspace in a fresh copy of the workspace that ``build(ws)``
    made the first time ``name`` was asked for in this session (so expensive states are built once)."""
    import itertools
    import shutil

    copies = itertools.count(1)

    def make(name: str, build) -> Workspace:
        if name not in _workspace_templates:
            src = tmp_path_factory.mktemp(f"template-{name}")
            build(Workspace(src, clock=FixedClock(clock.now), actor="tester"))
            _workspace_templates[name] = src
        dst = tmp_path / f"ws-{name}-{next(copies)}"
        shutil.copytree(_workspace_templates[name], dst)
        return Workspace(dst, clock=clock, actor="tester")

    return make


def twin_jobs_store(path: Path, items, batch_size: int):
    """A store with jobs 1 and 2 IN_PROGRESS, each holding the same listed items (account_id,
    payload): to write the same results to both by two paths and compare."""
    from allegro_ops.store import Store
    from allegro_ops.store import work_items as wi_sql

    store = Store(path)
    now = dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc)

    def setup(con):
        for job_id in (1, 2):
            con.execute("INSERT INTO jobs (job_id, execution_id, generation, sequence, name, type, config_json, "
                        "status) VALUES (?, 1, 1, ?, 'j', 'demo.noop', '{}', 'IN_PROGRESS')", [job_id, job_id])
            wi_sql.insert_items(con, job_id, items, batch_size, now)

    store.write(setup)
    return store


def as_before_item_states(con) -> None:
    """Turn a workspace back into what it was before migration 5 (item states): one work_items
    table holding every item's current state. The next Workspace migrates it again."""
    con.execute("DROP VIEW work_items")
    con.execute("UPDATE listed_items l SET payload = s.payload, status = s.status, error_code = s.error_code, "
                "reason = s.reason, attempts = s.attempts, updated_at = s.updated_at FROM item_states s "
                "WHERE s.job_id = l.job_id AND s.item_no = l.item_no")
    con.execute("DROP TABLE item_states")
    con.execute("ALTER TABLE listed_items RENAME TO work_items")
    con.execute("DELETE FROM schema_migrations WHERE version = 5")
