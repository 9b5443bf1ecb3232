"""The store attaches the database file to one in-memory DuckDB instance per process for each
unit of work: the file is free between units (to other processes and raw DuckDB clients), two
Workspaces of one home share it, different homes stay apart, and the status reads answer as
before with fewer statements."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from allegro_ops import Workspace
from allegro_ops.errors import ActionRefused, NotFound, StoreBusy
from allegro_ops.store import Store
from allegro_ops.store import db as db_mod

C, S, DAY = "acme", "daily-billing", "2026-11-24"

RAW_CLIENT = """
import duckdb, sys
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS raw_notes (note VARCHAR)")
con.execute("INSERT INTO raw_notes VALUES (?)", [sys.argv[2]])
con.close()
print("ok")
"""


def _raw_client_writes(path: Path, note: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RAW_CLIENT, str(path), note], capture_output=True, text=True,
                          timeout=60)


def _notes(store: Store) -> list[str]:
    return [r[0] for r in store.read(lambda con: con.execute("SELECT note FROM raw_notes ORDER BY note").fetchall())]


@pytest.fixture
def errored(prepared) -> Workspace:
    """The demo, processed once: bill-run has errored work items."""

    def build(ws: Workspace) -> None:
        from conftest import init_small_demo

        init_small_demo(ws)
        ws.create(C, S, DAY)
        ws.process(C, S, DAY)

    return prepared("store-reads-errored", build)


def test_a_raw_duckdb_client_opens_the_file_between_units_of_work(workspace: Workspace, home: Path) -> None:
    workspace.store.write(lambda con: None)  # a unit of work: the file is made and migrated
    first = _raw_client_writes(workspace.store.path, "one")
    assert first.returncode == 0, first.stderr
    assert _notes(workspace.store) == ["one"]  # this process sees what the other wrote: nothing stale is kept
    second = _raw_client_writes(workspace.store.path, "two")
    assert second.returncode == 0, second.stderr
    assert _notes(workspace.store) == ["one", "two"]
    assert not db_mod._ATTACHED  # nothing attached once the unit of work is over


def test_a_unit_of_work_meets_a_raw_client_holding_the_file_as_store_busy(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.duckdb", lock_timeout=0.3)
    store.write(lambda con: con.execute("CREATE TABLE t (x INTEGER)"))
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(60)", str(store.path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreBusy):
            store.read(lambda con: con.execute("SELECT count(*) FROM t").fetchall())
    finally:
        holder.kill()
        holder.wait()
    assert not db_mod._ATTACHED
    assert store.read(lambda con: con.execute("SELECT count(*) FROM t").fetchall()) == [(0,)]


def test_two_workspaces_of_one_home_share_the_attached_file(errored: Workspace) -> None:
    other = Workspace(errored.home, clock=errored.clock, actor="tester")
    expected = errored.job_stats(C, S, DAY, "bill-run")
    with errored.store.held(hold=60.0):
        errored.job_stats(C, S, DAY, "bill-run")  # held: the file stays attached after this unit of work
        assert len(db_mod._ATTACHED) == 1
        assert other.job_stats(C, S, DAY, "bill-run") == expected  # the second Store uses the same attachment
        assert _raw_client_writes(errored.store.path, "x").returncode != 0  # held means held
    assert not db_mod._ATTACHED
    assert _raw_client_writes(errored.store.path, "x").returncode == 0


def test_workspaces_of_different_homes_stay_apart_across_threads(tmp_path: Path) -> None:
    stores = [Store(tmp_path / name / "allegro_ops.duckdb") for name in ("a", "b", "c")]
    for i, store in enumerate(stores):
        store.write(lambda con, i=i: (con.execute("CREATE TABLE mine (home INTEGER, n INTEGER)"),
                                      con.execute("INSERT INTO mine VALUES (?, 0)", [i])))
    failures: list[BaseException] = []

    def work(i: int, store: Store) -> None:
        try:
            for n in range(1, 31):
                store.write(lambda con: con.execute("INSERT INTO mine VALUES (?, ?)", [i, n]))
                names = store.read(lambda con: con.execute("SELECT current_database()").fetchall())[0][0]
                assert names.startswith("allegro_ops")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    for i, store in enumerate(stores):
        assert store.read(lambda con: con.execute("SELECT DISTINCT home FROM mine").fetchall()) == [(i,)]
        assert store.read(lambda con: con.execute("SELECT count(*) FROM mine").fetchall()) == [(31,)]
    assert not db_mod._ATTACHED


def test_a_failed_write_is_rolled_back_and_frees_the_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.duckdb")
    store.write(lambda con: con.execute("CREATE TABLE t (x INTEGER)"))

    def half_then_fail(con):
        con.execute("INSERT INTO t VALUES (1)")
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError):
        store.write(half_then_fail)
    assert not db_mod._ATTACHED
    assert store.read(lambda con: con.execute("SELECT count(*) FROM t").fetchall()) == [(0,)]
    con = duckdb.connect(str(store.path))  # a raw client in this process, now that the file is free
    try:
        assert con.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
    finally:
        con.close()


def test_a_unit_of_work_nested_in_another_inside_held_leaves_the_file_free_after(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.duckdb")
    store.write(lambda con: con.execute("CREATE TABLE t (x INTEGER)"))
    with store.held():
        store.read(lambda con: store.write(lambda inner: inner.execute("INSERT INTO t VALUES (1)")))
        assert store.read(lambda con: con.execute("SELECT count(*) FROM t").fetchall()) == [(1,)]
    assert not db_mod._ATTACHED  # both connections were closed: none was left behind by the nesting
    con = duckdb.connect(str(store.path))  # a raw client in this process, now that the file is free
    try:
        assert con.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    finally:
        con.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reads_through_its_own_instance(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.duckdb")
    store.write(lambda con: (con.execute("CREATE TABLE t (x INTEGER)"), con.execute("INSERT INTO t VALUES (7)")))
    pid = os.fork()
    if pid == 0:  # the child: the parent's instance must not be used, a new one is made
        try:
            ok = store.read(lambda con: con.execute("SELECT x FROM t").fetchall()) == [(7,)]
            store.write(lambda con: con.execute("INSERT INTO t VALUES (8)"))
        except BaseException:  # noqa: BLE001 - the exit code says it
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.read(lambda con: con.execute("SELECT x FROM t ORDER BY x").fetchall()) == [(7,), (8,)]


def test_a_spill_goes_to_a_folder_of_the_process_not_the_working_directory(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.duckdb")
    spill = store.read(lambda con: con.execute("SELECT current_setting('temp_directory')").fetchall())[0][0]
    assert Path(spill) == Path(tempfile.gettempdir()) / f"allegro-ops-duckdb-{os.getpid()}"


# ------------------------------------------------------------------------ the status reads
def _count_statements(monkeypatch, store: Store) -> list[str]:
    """The statements this store's units of work send from now on (a cold read pays per statement)."""
    sent: list[str] = []
    original = Store.connect

    class Counted:
        def __init__(self, con) -> None:
            self._con = con

        def execute(self, query, *args):
            sent.append(query)
            return self._con.execute(query, *args)

        def __getattr__(self, name):
            return getattr(self._con, name)

    @contextmanager
    def connect(self_store):
        with original(self_store) as con:
            yield Counted(con) if self_store is store else con

    monkeypatch.setattr(Store, "connect", connect)
    return sent


def test_job_stats_and_a_page_of_errors_take_two_statements_each(errored: Workspace, monkeypatch) -> None:
    expected_stats = errored.job_stats(C, S, DAY, "bill-run")
    code = expected_stats.errors_by_code[0].error_code
    expected_page = errored.job_errors(C, S, DAY, "bill-run", code=code, limit=5)
    sent = _count_statements(monkeypatch, errored.store)
    assert errored.job_stats(C, S, DAY, "bill-run") == expected_stats
    assert len(sent) == 2
    sent.clear()
    assert errored.job_errors(C, S, DAY, "bill-run", code=code, limit=5) == expected_page
    assert len(sent) == 2
    assert expected_stats.error > 0 and expected_stats.total == (expected_stats.pending + expected_stats.processed
                                                                  + expected_stats.error)


def test_the_counts_of_job_stats_are_the_jobs_counters(errored: Workspace) -> None:
    stats = errored.job_stats(C, S, DAY, "bill-run")
    rows = errored.store.read(lambda con: con.execute(
        "SELECT count(*), count(*) FILTER (WHERE w.status = 'PROCESSED'), count(*) FILTER (WHERE w.status = 'ERROR') "
        "FROM work_items w JOIN jobs j USING (job_id) JOIN executions e ON e.execution_id = j.execution_id "
        "AND e.generation = j.generation WHERE j.name = 'bill-run'").fetchall())
    assert (stats.total, stats.processed, stats.error) == rows[0]
    assert sum(e.count for e in stats.errors_by_code) == stats.error


def test_what_is_missing_is_said_when_the_job_is_not_found(errored: Workspace) -> None:
    with pytest.raises(NotFound, match="job 'no-such-job'"):
        errored.job_stats(C, S, DAY, "no-such-job")
    with pytest.raises(ActionRefused):
        errored.job_errors(C, S, "2026-11-23", "bill-run")
    with pytest.raises(NotFound, match="schedule"):
        errored.job_errors(C, "no-such-schedule", DAY, "bill-run")
    with pytest.raises(NotFound, match="client"):
        errored.job_stats("no-such-client", S, DAY, "bill-run")


def test_the_deepest_keyset_page_is_the_tail_of_the_offset_pages(errored: Workspace) -> None:
    everything = errored.job_errors(C, S, DAY, "bill-run", limit=10_000)
    assert len(everything) >= 2 and [i.item_no for i in everything] == sorted(i.item_no for i in everything)
    by_offset = errored.job_errors(C, S, DAY, "bill-run", limit=1, offset=len(everything) - 1)
    assert errored.job_errors(C, S, DAY, "bill-run", limit=1, after=everything[-2].item_no) == by_offset
    assert by_offset == everything[-1:]
    assert errored.job_errors(C, S, DAY, "bill-run", limit=1, after=everything[-1].item_no) == []
