"""Workspace backup and restore (issue 7): a round trip loses nothing, row for row; a restore never
overwrites a database and refuses a corrupted backup; a backup taken while another process runs
Process holds the run exactly as its last committed batch left it; the restored workspace keeps
working and its ids continue after the restored ones."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from allegro_ops import ActionRefused, BadInput, ExecutionStatus, Phase, StoreBusy, Workspace
from allegro_ops.backup import backup, read_manifest, restore
from allegro_ops.demo import init_demo, resolve
from allegro_ops.store import DB_FILENAME
from conftest import init_small_demo

C, S = "acme", "daily-billing"
D1, D2, D3 = "2026-11-24", "2026-11-23", "2026-11-26"
RUN_FILE = Path("runs") / D1 / C / "daily-billing-process.ipynb"
HISTORY_TABLES = ("archived_generations", "attempts", "audit", "config_versions", "executions", "jobs",
                  "notifications", "payload_edits", "listed_items", "item_states", "schema_migrations", "demo_accounts")


def build_history(ws: Workspace) -> None:
    """A workspace with every kind of history: Process, fix-and-retry of one item (payload_edits),
    Reprocess, Reset (an archived generation), a config re-apply (two versions), a notification,
    an errored date of globex, holidays.yaml and a dated run report."""
    init_small_demo(ws)
    (ws.home / "holidays.yaml").write_text("holiday_sets:\n  us-banks: [2026-11-26, 2026-12-25]\n")
    ws.create(C, S, D1)
    ws.process(C, S, D1)
    item = ws.job_errors(C, S, D1, "bill-run")[0]
    ws.retry_item(C, S, D1, "bill-run", item.account_id, payload=json.dumps({**item.payload, "note": "fixed"}))
    resolve(ws, C)
    ws.reprocess(C, S, D1)
    ws.create(C, S, D2)
    ws.process(C, S, D2)
    ws.reset(C, S, D2)
    config_file = ws.home / "configs" / C / "daily-billing.yaml"
    config = yaml.safe_load(config_file.read_text())
    config_file.write_text(yaml.safe_dump({**config, "description": "Daily billing, second version"}))
    ws.apply_config(ws.home / "configs")
    ws.create("globex", S, D1)
    ws.process("globex", S, D1)
    ws.store.write(lambda con: con.execute(
        "INSERT INTO notifications (execution_id, generation, event, channel, target, sent_at, outcome, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [1, 1, "ERRORED", "log", "ops", ws.clock(), "sent", ""]))
    (ws.home / RUN_FILE).parent.mkdir(parents=True)
    (ws.home / RUN_FILE).write_text('{"cells": []}\n')


def table_contents(ws: Workspace) -> dict[str, list[tuple]]:
    """Every table of the workspace's database, its rows sorted."""
    def read(con):
        names = [n for (n,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1").fetchall()]
        return {n: con.execute(f'SELECT * FROM "{n}" ORDER BY ALL').fetchall() for n in names}
    return ws.store.read(read)


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(cli_cmd, cli_env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([*cli_cmd, *map(str, args)], env=cli_env, capture_output=True, text=True, timeout=120)


def one_line_error(done: subprocess.CompletedProcess, code: int) -> str:
    assert done.returncode == code, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    return done.stderr.strip()


@pytest.fixture
def history(prepared) -> Workspace:
    return prepared("backup-history", build_history)


@pytest.mark.parametrize("fmt", ["file", "export"])
def test_round_trip_restores_every_table_row_for_row_and_ids_continue(fmt, history, tmp_path, clock, cli_cmd,
                                                                       cli_env):
    before = table_contents(history)
    for name in HISTORY_TABLES:
        assert before[name], f"the history workspace has no {name} rows: the comparison would prove nothing"
    assert len(before["config_versions"]) == 5 and len(before["archived_generations"]) == 1

    out, new = tmp_path / "backup", tmp_path / "restored"
    done = run(cli_cmd, cli_env, "--home", history.home, "backup", out, "--format", fmt, "--with-runs", "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["path"] == str(out) and manifest["format"] == fmt
    assert manifest["tables"] == {name: len(rows) for name, rows in before.items()}
    assert manifest["schema_version"] == max(v for v, *_ in before["schema_migrations"])
    logged = history.audit(limit=1)[0]
    assert (logged.action, logged.target, logged.actor) == ("backup", str(out), "tester")
    assert logged.outcome.startswith(f"done: {sum(manifest['tables'].values())} rows in {len(before)} tables")

    done = run(cli_cmd, cli_env, "--home", new, "restore", out, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == sum(len(rows) for rows in before.values())
    restored_ws = Workspace(new, clock=clock, actor="tester")
    after = table_contents(restored_ws)
    assert {k: v for k, v in after.items() if k != "audit"} == {k: v for k, v in before.items() if k != "audit"}
    added, lost = Counter(after["audit"]) - Counter(before["audit"]), Counter(before["audit"]) - Counter(after["audit"])
    assert not lost
    (entry,) = added
    assert entry[3] == "restore" and entry[0] > max(e[0] for e in before["audit"])
    for rel in ("holidays.yaml", "configs/acme/daily-billing.yaml", str(RUN_FILE)):
        assert (new / rel).read_bytes() == (history.home / rel).read_bytes()

    # the restored workspace keeps working, and new ids come after the restored ones
    assert restored_ws.create(C, S, D3).status is ExecutionStatus.PENDING
    assert restored_ws.process(C, S, D3).status in (ExecutionStatus.COMPLETED, ExecutionStatus.ERRORED)
    grown = table_contents(restored_ws)
    new_execution = {r[0] for r in grown["executions"]} - {r[0] for r in before["executions"]}
    assert len(new_execution) == 1 and new_execution.pop() > max(r[0] for r in before["executions"])
    new_jobs = {r[0] for r in grown["jobs"]} - {r[0] for r in before["jobs"]}
    assert len(new_jobs) == 4 and min(new_jobs) > max(r[0] for r in before["jobs"])
    entry_ids = [r[0] for r in grown["audit"]]
    assert len(entry_ids) == len(set(entry_ids)) >= len(before["audit"]) + 3  # restore, create, process


def test_the_restored_workspace_answers_status_job_errors_and_audit(history, tmp_path, clock, cli_cmd, cli_env):
    out, new = tmp_path / "backup", tmp_path / "restored"
    backup(history, out)
    restore(Workspace(new, clock=clock, actor="tester"), out)

    done = run(cli_cmd, cli_env, "--home", new, "status", "globex", S, D1, "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    original = history.execution("globex", S, D1)
    assert status["status"] == original.status.value == "ERRORED"
    assert [(j["name"], j["error"]) for j in status["jobs"]] == [(j.name, j.error) for j in original.jobs]

    done = run(cli_cmd, cli_env, "--home", new, "job", "errors", "globex", S, D1, "bill-run", "--json")
    assert done.returncode == 0, done.stderr
    assert sorted(i["account_id"] for i in json.loads(done.stdout)) == \
        sorted(i.account_id for i in history.job_errors("globex", S, D1, "bill-run"))

    done = run(cli_cmd, cli_env, "--home", new, "audit", "--json")
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)
    assert entries[0]["action"] == "restore" and str(out) in entries[0]["outcome"]
    assert [e["action"] for e in entries[1:]] == [e.action for e in history.audit()][1:]  # the source has "backup"


def test_restore_into_a_workspace_with_a_database_is_refused_and_changes_nothing(history, prepared, tmp_path,
                                                                                  cli_cmd, cli_env):
    out = tmp_path / "backup"
    backup(history, out)
    other = prepared("backup-other", init_small_demo)
    backup_files, other_files = checksums(out), checksums(other.home)

    done = run(cli_cmd, cli_env, "--home", other.home, "restore", out)
    assert one_line_error(done, 3) == (f"error: restore refused: workspace {other.home} already has a database "
                                       f"({DB_FILENAME}); nothing changed")
    assert checksums(out) == backup_files and checksums(other.home) == other_files


def test_a_workspace_file_that_differs_from_the_backups_is_refused_and_an_identical_one_kept(history, tmp_path,
                                                                                             clock):
    out, new = tmp_path / "backup", tmp_path / "restored"
    backup(history, out)
    new.mkdir()
    (new / "holidays.yaml").write_text("holiday_sets: {}\n")
    target = Workspace(new, clock=clock, actor="tester")
    with pytest.raises(ActionRefused, match="holidays.yaml exists and differs from the backup's; nothing changed"):
        restore(target, out)
    assert sorted(p.name for p in new.iterdir()) == ["holidays.yaml"]  # no database, no configs/, no temporary

    shutil.copyfile(history.home / "holidays.yaml", new / "holidays.yaml")
    result = restore(target, out)
    assert result.unchanged == ["holidays.yaml"] and "configs/acme/daily-billing.yaml" in result.restored
    assert not (new / "runs").exists()  # runs/ only with --with-runs
    assert not read_manifest(out).with_runs


def test_a_corrupted_truncated_or_tampered_backup_is_refused_and_restores_nothing(history, tmp_path, clock, cli_cmd,
                                                                                  cli_env):
    good = tmp_path / "backup"
    backup(history, good)
    new = tmp_path / "restored"
    target = Workspace(new, clock=clock, actor="tester")

    flipped = tmp_path / "flipped"
    shutil.copytree(good, flipped)
    db = flipped / "database" / DB_FILENAME
    data = bytearray(db.read_bytes())
    data[len(data) // 2] ^= 0xFF
    db.write_bytes(bytes(data))
    message = one_line_error(run(cli_cmd, cli_env, "--home", new, "restore", flipped), 2)
    assert message == (f"error: backup {flipped} is corrupted: database/{DB_FILENAME} does not match its sha256 "
                       "in the manifest")

    truncated = tmp_path / "truncated"
    shutil.copytree(good, truncated)
    yaml_file = truncated / "workspace" / "configs" / "acme" / "daily-billing.yaml"
    yaml_file.write_bytes(yaml_file.read_bytes()[:20])
    with pytest.raises(BadInput, match="workspace/configs/acme/daily-billing.yaml has 20 bytes, the manifest says"):
        restore(target, truncated)

    tampered = tmp_path / "tampered"  # checksums fine, but the counts do not match the database
    shutil.copytree(good, tampered)
    manifest = json.loads((tampered / "manifest.json").read_text())
    manifest["tables"]["attempts"] += 1
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInput, match=r"does not match its manifest: table attempts has \d+ rows, expected \d+"):
        restore(target, tampered)

    with pytest.raises(BadInput, match="manifest.json is missing"):
        restore(target, tmp_path)
    assert not new.exists() or sorted(p.name for p in new.iterdir()) == []  # nothing restored, nothing left over


def test_backup_into_an_existing_non_empty_folder_is_refused(history, tmp_path, cli_cmd, cli_env):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    message = one_line_error(run(cli_cmd, cli_env, "--home", history.home, "backup", out), 2)
    assert message == f"error: backup folder {out} exists and is not empty; give a new folder"
    assert checksums(out) == {"notes.txt": hashlib.sha256(b"keep me").hexdigest()}
    assert all(e.action != "backup" for e in history.audit())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no partial folder

    empty = tmp_path / "empty"
    empty.mkdir()
    assert backup(history, empty).rows > 0 and (empty / "manifest.json").is_file()


@pytest.mark.slow
def test_a_backup_taken_during_a_run_in_another_process_holds_the_run_as_its_last_batch_left_it(
        home, clock, tmp_path, cli_cmd, cli_env):
    ws = Workspace(home, clock=clock, actor="tester")
    init_demo(ws, accounts=120, seed=7, batch_size=10, item_delay_ms=15)
    ws.create(C, S, D1)
    runner = subprocess.Popen([*cli_cmd, "process", C, S, D1, "--json"], env=cli_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while ws.execution(C, S, D1).jobs[0].processed < 20:
            assert runner.poll() is None and time.monotonic() < deadline, "the run ended before the backup"
            time.sleep(0.05)
        out = tmp_path / "backup"
        manifest = backup(ws, out)
        assert manifest.created_at == clock.now.isoformat()  # the workspace's clock
        stdout, stderr = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 0, stderr  # the run waited for the backup's lock and went on
    assert json.loads(stdout)["status"] == "ERRORED"

    restored = Workspace(tmp_path / "restored", clock=clock, actor="tester")
    restore(restored, out)
    e = restored.execution(C, S, D1)
    assert e.status is ExecutionStatus.IN_PROGRESS and e.phase is Phase.STALLED  # its owner has ended
    assert 0 < sum(j.processed + j.error for j in e.jobs) < 2 * 120
    # every batch is in the copy whole or not at all: counters, work items and attempts agree
    per_job = restored.store.read(lambda con: con.execute(
        "SELECT j.sequence, j.name, j.total, j.processed, j.error, count(w.item_no), "
        "  count(*) FILTER (WHERE w.status = 'PROCESSED'), count(*) FILTER (WHERE w.status = 'ERROR'), "
        "  coalesce(sum(w.attempts), 0), (SELECT count(*) FROM attempts a WHERE a.job_id = j.job_id) "
        "FROM jobs j LEFT JOIN work_items w USING (job_id) GROUP BY ALL ORDER BY 1").fetchall())
    for _, name, total, processed, error, items, ok, bad, attempts, attempt_rows in per_job:
        assert (total, processed, error, attempts) == (items, ok, bad, attempt_rows), name
    assert manifest.tables["attempts"] == sum(row[-1] for row in per_job)

    e = restored.process(C, S, D1)  # resumes where the copy stopped, redoing no committed batch
    assert e.status is ExecutionStatus.ERRORED and e.jobs[0].processed == 120 and e.jobs[1].total == 120
    assert restored.store.read(lambda con: con.execute(
        "SELECT max(attempts), count(*) FROM work_items").fetchall()) == [(1, 240)]


def test_a_backup_waits_for_a_process_holding_the_database_and_gives_up_as_busy(history, tmp_path, clock):
    room = tmp_path / "room"
    room.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('ready', flush=True); time.sleep(30)", str(history.store.path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        impatient = Workspace(history.home, clock=clock, actor="tester", lock_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(StoreBusy):
            backup(impatient, room / "backup")
        assert time.monotonic() - started >= 0.5
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in room.iterdir()) == []  # neither OUT nor a partial folder
    assert backup(history, room / "backup").rows > 0  # once the holder is gone


def test_a_backup_checkpoints_what_a_connection_held_open_in_this_process_wrote(history, tmp_path, clock):
    with history.store.held(hold=60):  # as during a run: the connection stays open between writes
        history.record("note", None, "written through a held connection", "done")
        assert (history.home / f"{DB_FILENAME}.wal").stat().st_size > 0  # the write is only in the WAL yet
        manifest = backup(Workspace(history.home, clock=clock, actor="tester"), tmp_path / "backup")
    restored = Workspace(tmp_path / "restored", clock=clock, actor="tester")
    restore(restored, tmp_path / "backup")
    assert [e.action for e in restored.audit(limit=2)] == ["restore", "note"]
    assert manifest.tables["audit"] == len(restored.audit()) - 1


def test_the_database_copy_keeps_duckdbs_lock_on_the_original(tmp_path):
    """POSIX drops a process's fcntl locks on a file when it closes any descriptor of it: a copy
    made in this process would let another process open the database during the backup."""
    import duckdb

    from allegro_ops.backup import _copy_in_child

    db = tmp_path / DB_FILENAME
    con = duckdb.connect(str(db))
    try:
        con.execute("CREATE TABLE t AS SELECT range AS n FROM range(1000)")
        con.execute("CHECKPOINT")
        _copy_in_child(db, tmp_path / "copy.duckdb")
        probe = subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1])", str(db)],
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode != 0 and "lock" in probe.stderr.lower()
    finally:
        con.close()
    copy = duckdb.connect(str(tmp_path / "copy.duckdb"), read_only=True)
    try:
        assert copy.execute("SELECT count(*), sum(n) FROM t").fetchall() == [(1000, 499500)]
    finally:
        copy.close()


def test_a_backup_inside_what_it_backs_up_or_a_restore_into_the_backup_itself_is_refused(history, tmp_path, clock):
    with pytest.raises(BadInput, match="would be inside what it backs up"):
        backup(history, history.home / "configs" / "backup")
    with pytest.raises(BadInput, match="would be inside what it backs up"):
        backup(history, history.home / "runs" / "backup", with_runs=True)
    assert not (history.home / "configs" / "backup").exists() and not (history.home / "runs" / "backup").exists()

    out = tmp_path / "backup"
    backup(history, out)
    files = checksums(out)
    with pytest.raises(BadInput, match="into itself"):
        restore(Workspace(out / "workspace", clock=clock, actor="tester"), out)
    assert checksums(out) == files


def test_a_viewer_may_back_up_but_not_restore_and_the_refusal_touches_nothing(tmp_path: Path, clock) -> None:
    from allegro_ops import ActionRefused
    from allegro_ops.backup import backup, restore
    from conftest import init_small_demo

    source = Workspace(tmp_path / "source", clock=clock, actor="tester")
    init_small_demo(source)
    viewer = Workspace(source.home, clock=clock, actor="vera", role="viewer")
    backup(viewer, tmp_path / "out")
    assert source.audit(limit=1)[0].action == "backup" and source.audit(limit=1)[0].actor == "vera"
    target = Workspace(tmp_path / "new", clock=clock, actor="vera", role="viewer")
    with pytest.raises(ActionRefused, match="restore refused: role viewer may not restore"):
        restore(target, tmp_path / "out")
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())
    restore(Workspace(tmp_path / "new", clock=clock, actor="olga", role="operator"), tmp_path / "out")
    assert (tmp_path / "new" / "allegro_ops.duckdb").exists()
