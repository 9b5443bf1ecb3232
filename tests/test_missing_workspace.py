"""A read never makes a workspace: reading a home whose database file does not exist (never made,
or deleted under a dashboard left open) leaves no file, log or folder and answers as an empty
workspace; a write makes the file and migrates it, also after this Store had migrated a deleted
one; `make dashboard` builds the demo into a home whose database holds nothing an operator made."""
from __future__ import annotations

import datetime as dt
import html
import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
import yaml

from allegro_ops import NotFound, Workspace
from allegro_ops.store import DB_FILENAME, Store
from allegro_ops.store import migrations
from allegro_ops.store.migrations import MIGRATIONS
from conftest import RUN_DATE, init_small_demo
from widgets import Dashboard
from widgets.serve import prepare_workspace

C, S = "acme", "daily-billing"
LATEST = max(version for version, _, _ in MIGRATIONS)
OWN_SCHEDULE = {
    "client": "initech", "name": "nightly-usage", "mode": "manual",
    "calendar": {"cron": "0 3 * * *", "timezone": "UTC"},
    "jobs": [{"name": "usage-rating", "type": "demo.usage_rating", "batch_size": 10}],
}


def _tree(folder: Path) -> list[str]:
    """Every path under folder, relative to it (nothing when it does not exist)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _db_files(home: Path) -> list[str]:
    return sorted(p.name for p in home.glob(DB_FILENAME + "*")) if home.exists() else []


def _migrations(store: Store) -> list[int]:
    return [r[0] for r in store.read(lambda con: con.execute(
        "SELECT version FROM schema_migrations ORDER BY version").fetchall())]


def _delete_database(home: Path) -> None:
    for path in home.glob(DB_FILENAME + "*"):  # the file and its write-ahead log, if any
        path.unlink()


# ------------------------------------------------------------------------------------ the CLI
def test_cli_reads_of_an_empty_home_create_nothing(home: Path, tmp_path: Path, cli_cmd, cli_env) -> None:
    env = {**cli_env, "HOME": str(tmp_path / "user")}
    (tmp_path / "user").mkdir()
    missing = tmp_path / "no" / "such" / "workspace"

    status = subprocess.run([*cli_cmd, "status", C, S, str(RUN_DATE)], env=env, capture_output=True, text=True,
                            timeout=120)
    listed = subprocess.run([*cli_cmd, "schedules", "--json"], env={**env, "ALLEGRO_OPS_HOME": str(missing)},
                            capture_output=True, text=True, timeout=120)

    assert status.returncode == 2, status.stderr
    assert status.stderr.strip() == "error: unknown client 'acme'; known: none (apply a config first)"
    assert "Traceback" not in status.stderr
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stderr
    assert _tree(home) == []  # no database, no .wal, no runs/
    assert not (tmp_path / "no").exists()  # no folder either


# ------------------------------------------------------------------------------------ the Store
def test_a_read_of_a_missing_file_answers_empty_and_makes_no_folder(tmp_path: Path) -> None:
    store = Store(tmp_path / "a" / "b" / DB_FILENAME)

    counts = store.read(lambda con: [con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                                     for t in ("config_versions", "executions", "jobs", "audit")])

    assert counts == [0, 0, 0, 0]
    assert _migrations(store) == sorted(v for v, _, _ in MIGRATIONS)  # the empty workspace has the whole schema
    assert not (tmp_path / "a").exists() and not store.exists


def test_what_a_read_changes_in_the_empty_workspace_is_not_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / DB_FILENAME)
    other = Store(tmp_path / "elsewhere" / DB_FILENAME)  # another missing workspace of the same process

    store.read(lambda con: con.execute(
        "INSERT INTO config_versions VALUES ('acme', 'x', 1, 'h', '{}', now(), 'tester')").fetchall())

    for s in (store, other):
        assert s.read(lambda con: con.execute("SELECT count(*) FROM config_versions").fetchall()) == [(0,)]
    assert _tree(tmp_path) == []


def test_the_empty_workspace_is_not_in_the_catalogs_a_file_read_sees(tmp_path: Path, home: Path) -> None:
    Store(tmp_path / "missing" / DB_FILENAME).read(lambda con: con.execute("SELECT 1").fetchall())
    store = Store(home / DB_FILENAME)
    store.write(lambda con: None)

    databases = store.read(lambda con: con.execute(
        "SELECT DISTINCT database_name FROM duckdb_tables() ORDER BY 1").fetchall())

    assert databases == [("allegro_ops",)]  # what an analyst's SQL over the file lists: the file alone


def test_the_empty_workspace_follows_the_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / DB_FILENAME)
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
    assert _migrations(store) == [1]
    monkeypatch.undo()
    assert _migrations(store)[-1] == LATEST and not store.exists  # a patched list does not linger


def test_a_deleted_file_is_not_remade_by_reads_and_a_write_remakes_and_migrates_it(
        workspace: Workspace, home: Path) -> None:
    init_small_demo(workspace)
    assert len(workspace.schedules()) == 4 and _db_files(home) == [DB_FILENAME]
    _delete_database(home)

    assert workspace.schedules() == [] and workspace.audit() == []
    with pytest.raises(NotFound, match="unknown client 'acme'; known: none"):
        workspace.execution(C, S, RUN_DATE)
    assert _db_files(home) == []

    applied = workspace.apply_config(home / "configs")  # a write: the file is made and migrated

    assert [a["version"] for a in applied] == [1, 1, 1, 1]
    assert _db_files(home) and _migrations(workspace.store)[-1] == LATEST
    assert workspace.execution(C, S, RUN_DATE).status.value == "NOT_CREATED"


def test_a_write_right_after_the_file_was_deleted_migrates_the_new_file(workspace: Workspace, home: Path) -> None:
    init_small_demo(workspace)
    _delete_database(home)

    applied = workspace.apply_config(home / "configs")  # no read in between: the Store never saw it missing

    assert [(a["version"], a["changed"]) for a in applied] == [(1, True)] * 4  # a new file, configs anew
    assert _migrations(workspace.store)[-1] == LATEST
    assert workspace.create(C, S, RUN_DATE).status.value == "PENDING"


def test_a_file_put_in_place_of_the_migrated_one_is_migrated(tmp_path: Path, home: Path) -> None:
    store = Store(home / DB_FILENAME)
    store.write(lambda con: None)  # made and migrated
    replacement = tmp_path / "replacement.duckdb"
    raw = duckdb.connect(str(replacement))  # a file no Store migrated (a raw DuckDB client made it)
    raw.execute("CREATE TABLE raw_notes (note VARCHAR)")
    raw.execute("INSERT INTO raw_notes VALUES ('kept')")
    raw.close()
    os.replace(replacement, store.path)  # another file at the same path, as a restore puts one

    notes = store.read(lambda con: con.execute("SELECT note FROM raw_notes").fetchall())

    assert notes == [("kept",)] and _migrations(store)[-1] == LATEST
    assert store.read(lambda con: con.execute("SELECT count(*) FROM executions").fetchall()) == [(0,)]


# ------------------------------------------------------------------------------------ the dashboard
def test_a_dashboard_left_open_on_a_deleted_workspace_makes_nothing_on_refresh(
        workspace: Workspace, home: Path, clock) -> None:
    init_small_demo(workspace)
    dash = Dashboard(workspace, clock=clock, run_in_background=False, refresh_seconds=None, nav_refresh_seconds=None)
    try:
        assert "acme" in dash.activity.title.value
        shutil.rmtree(home)

        dash.refresh()

        assert not home.exists()
        assert "unknown client 'acme'" in html.unescape(dash.message.text.value)  # the page says why, nothing was made
    finally:
        dash.close()
    empty = Dashboard(Workspace(home, clock=clock), clock=clock, run_in_background=False, refresh_seconds=None,
                      nav_refresh_seconds=None)
    try:
        assert "No schedules configured yet" in empty.activity.placeholder.value  # the empty state
        empty.refresh()
        assert empty.message.text.value == "" and not home.exists()
        assert "No schedules configured yet" in empty.activity.placeholder.value  # Refresh keeps saying why
    finally:
        empty.close()


# ------------------------------------------------------------------------------------ make dashboard
def test_prepare_workspace_builds_the_demo_into_an_empty_database(home: Path) -> None:
    Store(home / DB_FILENAME).write(lambda con: None)  # what a read used to leave: a migrated, empty file
    said: list[str] = []

    prepare_workspace(home, RUN_DATE, history_days=0, say=said.append)

    ws = Workspace(home)
    assert {(s.client, s.schedule) for s in ws.schedules()} >= {("acme", S), ("globex", S)}
    assert ws.execution(C, S, RUN_DATE).status.value == "ERRORED"  # the seed's story: bill-run errored
    assert said[0] == f"Built the demo workspace in {home} (its database held no schedule and no execution)"


def test_prepare_workspace_leaves_a_workspace_with_a_schedule_of_its_own_alone(home: Path, tmp_path: Path) -> None:
    ws = Workspace(home, actor="tester")
    path = tmp_path / "initech.yaml"
    path.write_text(yaml.safe_dump(OWN_SCHEDULE, sort_keys=False))
    ws.apply_config(path)
    said: list[str] = []

    prepare_workspace(home, RUN_DATE, history_days=0, say=said.append)

    assert [(s.client, s.schedule) for s in ws.schedules()] == [("initech", "nightly-usage")]
    assert said == [] and not (home / "configs").exists()


def test_prepare_workspace_builds_the_demo_into_a_missing_home(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    said: list[str] = []

    prepare_workspace(home, RUN_DATE, history_days=1, say=said.append)

    assert said[0] == f"Built the demo workspace in {home}"
    ws = Workspace(home)
    day_before = RUN_DATE - dt.timedelta(days=1)
    assert ws.execution("globex", S, day_before).status.value == "COMPLETED"  # its defects resolved, reprocessed
    assert ws.execution(C, S, RUN_DATE).status.value == "ERRORED"
