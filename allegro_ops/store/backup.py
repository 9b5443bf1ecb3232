"""SQL for backups: checkpoint, what a database holds (tables and their rows, schema version,
sequences), EXPORT/IMPORT DATABASE, and opening a backup's copy to check it.

Table names come from DuckDB's own catalog and are quoted as identifiers; EXPORT and IMPORT
cannot take their folder as a parameter, so it is quoted as a literal (``sql_literal``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from .analyst import sql_literal
from .migrations import MIGRATIONS

__all__ = ["Contents", "LATEST_SCHEMA_VERSION", "checkpoint", "contents", "export_database", "import_database",
           "file_contents", "wal_path"]

LATEST_SCHEMA_VERSION = max(version for version, _, _ in MIGRATIONS)


@dataclass(frozen=True)
class Contents:
    """What a database holds, compared between the original (read under the lock) and its copy."""

    schema_version: int
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows
    sequences: dict[str, int] = field(default_factory=dict)  # sequence -> the value nextval() gives next

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def differences(self, other: Contents) -> list[str]:
        """What ``other`` (a copy) lacks or has otherwise, one phrase each; empty when equal."""
        out = []
        if other.schema_version != self.schema_version:
            out.append(f"schema version {other.schema_version}, expected {self.schema_version}")
        for name in sorted(self.tables.keys() | other.tables.keys()):
            mine, theirs = self.tables.get(name), other.tables.get(name)
            if mine != theirs:
                out.append(f"table {name} has {_count(theirs)} rows, expected {_count(mine)}")
        for name in sorted(self.sequences):
            if other.sequences.get(name, 0) < self.sequences[name]:  # behind: new ids would collide
                out.append(f"sequence {name} continues at {other.sequences.get(name)}, expected {self.sequences[name]}")
        return out


def _count(n: int | None) -> str:
    return "no" if n is None else str(n)


def wal_path(db_file: Path) -> Path:
    """DuckDB's write-ahead log next to a database file."""
    return db_file.with_name(db_file.name + ".wal")


def checkpoint(con: duckdb.DuckDBPyConnection) -> None:
    """Write everything into the database file, so that the file alone holds the database."""
    con.execute("CHECKPOINT")


def contents(con: duckdb.DuckDBPyConnection) -> Contents:
    """Row count of every table, the schema version and the sequences of the open database."""
    names = [name for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND NOT temporary ORDER BY 1"
    ).fetchall()]
    tables = {name: con.execute(f"SELECT count(*) FROM {_ident(name)}").fetchall()[0][0] for name in names}
    version = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0] \
        if "schema_migrations" in tables else 0
    sequences = dict(con.execute(
        "SELECT sequence_name, CASE WHEN last_value IS NULL THEN start_value ELSE last_value + increment_by END "
        "FROM duckdb_sequences() WHERE database_name = current_database() AND schema_name = 'main' ORDER BY 1"
    ).fetchall())
    return Contents(int(version), tables, {k: int(v) for k, v in sequences.items()})


def export_database(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """EXPORT DATABASE: schema.sql, load.sql and one zstd Parquet file per table in ``folder``;
    plain DuckDB (any version that reads the Parquet) can IMPORT it."""
    con.execute(f"EXPORT DATABASE {sql_literal(str(folder))} (FORMAT parquet, COMPRESSION zstd)")
    _order_schema(folder / "schema.sql")


def _order_schema(path: Path) -> None:
    """EXPORT DATABASE writes views by name, so a view over another view (v_errors over
    v_work_items) may come first, and IMPORT DATABASE then fails. Rewrite schema.sql in an order
    that runs: each statement is tried in an empty in-memory database; one that misses a name
    is tried again after the others."""
    scratch = duckdb.connect()
    try:
        pending = [s.query.strip().rstrip(";") + ";" for s in scratch.extract_statements(path.read_text("utf-8"))]
        ordered: list[str] = []
        while pending:
            left, failure = [], None
            for statement in pending:
                try:
                    scratch.execute(statement)
                    ordered.append(statement)
                except duckdb.CatalogException as exc:
                    left.append(statement)
                    failure = exc
            if len(left) == len(pending):
                raise failure  # no progress: a name that nothing creates
            pending = left
    finally:
        scratch.close()
    path.write_text("\n".join(ordered) + "\n", encoding="utf-8")


def import_database(target: Path, folder: Path) -> None:
    """Build the new database file ``target`` from an EXPORT DATABASE folder (sequences continue
    where they were: the export creates them with their next value as START)."""
    con = duckdb.connect(str(target))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"IMPORT DATABASE {sql_literal(str(folder))}")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def file_contents(db_file: Path) -> Contents:
    """Open a database file that no one else uses (a backup's copy), read its contents, close it."""
    con = duckdb.connect(str(db_file), read_only=True)
    try:
        return contents(con)
    finally:
        con.close()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
