"""How the store lets the file go: a unit of work that wrote checkpoints it, unless another process
waits for the file (then the write-ahead log goes with the file, and the next opener replays it);
a read never checkpoints. And the memory the process's DuckDB instance may use."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from allegro_ops.store.db import MEMORY_LIMIT_ENV, Store


def wal_bytes(db: Path) -> int:
    wal = db.with_name(db.name + ".wal")
    return wal.stat().st_size if wal.exists() else 0


def count_in_another_process(db: Path) -> int:
    """What a raw DuckDB client in another process finds in the file (it replays a write-ahead log)."""
    code = "import duckdb, sys; print(duckdb.connect(sys.argv[1], read_only=True).execute('SELECT count(*) FROM t').fetchall()[0][0])"
    return int(subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, check=True).stdout)


def test_a_write_checkpoints_as_it_lets_the_file_go_unless_a_process_waits_and_a_read_never_does(tmp_path):
    db = tmp_path / "ws.duckdb"
    store = Store(db)
    store.write(lambda con: con.execute("CREATE TABLE t AS SELECT range AS i FROM range(1000)"))
    assert wal_bytes(db) == 0  # checkpointed when detached: the file holds everything

    waiting = db.with_name(db.name + ".waiting")
    waiting.touch()  # another process says it waits for the file
    store.write(lambda con: con.execute("INSERT INTO t SELECT range FROM range(1000, 3000)"))
    handed_over = wal_bytes(db)
    assert handed_over > 0  # let go as it is: no checkpoint for the waiter to wait for
    assert count_in_another_process(db) == 3000  # which replays the log and finds every committed row

    waiting.unlink()
    assert store.read(lambda con: con.execute("SELECT count(*) FROM t").fetchall()) == [(3000,)]
    assert wal_bytes(db) == handed_over  # a read does not checkpoint

    store.write(lambda con: con.execute("INSERT INTO t VALUES (3000)"))
    assert wal_bytes(db) == 0  # the next write that lets the file go with nobody waiting does
    assert count_in_another_process(db) == 3001


def test_a_failed_write_leaves_nothing_to_checkpoint_and_the_file_as_it_was(tmp_path):
    db = tmp_path / "ws.duckdb"
    store = Store(db)
    store.write(lambda con: con.execute("CREATE TABLE t AS SELECT range AS i FROM range(10)"))

    def fails(con):
        con.execute("INSERT INTO t SELECT range FROM range(100)")
        raise RuntimeError("handler bug")

    try:
        store.write(fails)
    except RuntimeError:
        pass
    assert count_in_another_process(db) == 10


PROBE = """
import duckdb, json
from allegro_ops.errors import BadInput
from allegro_ops.store import db
try:
    instance = db._instance()
except BadInput as exc:
    print(json.dumps({"error": str(exc)}))
else:
    quarter = duckdb.connect()
    quarter.execute("SET memory_limit = '25%'")
    print(json.dumps({"limit": db._memory_limit_bytes(instance), "quarter": db._memory_limit_bytes(quarter)}))
"""


def probe(value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != MEMORY_LIMIT_ENV}
    if value is not None:
        env[MEMORY_LIMIT_ENV] = value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_duckdb_may_use_a_quarter_of_the_memory_at_most_2_gb_unless_the_variable_says_otherwise():
    default = probe(None)
    assert default["limit"] == min(default["quarter"], 2 * 2**30)
    assert 280 * 2**20 <= probe("300MB")["limit"] <= 300 * 10**6  # DuckDB's MB are 10**6 bytes
    error = probe("plenty")["error"]
    assert error.startswith(f"{MEMORY_LIMIT_ENV}='plenty' is not a memory size DuckDB understands") and "\n" not in error
