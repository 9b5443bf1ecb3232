"""Workspace backup and restore: nothing is ever lost, so a workspace can be copied whole.

A backup is a new folder::

    OUT/manifest.json                what the backup holds: format, created_at, versions, row counts, sha256
    OUT/database/allegro_ops.duckdb  the database file (format "file"), or
    OUT/database/schema.sql, load.sql, <table>.parquet   EXPORT DATABASE (format "export")
    OUT/workspace/...                the workspace's top-level YAML files, configs/ and (--with-runs) runs/

The database is copied while this process holds the store's connection (no writer of any process
can be in) and after a CHECKPOINT (the file holds everything; no write-ahead log to lose). A run in
another process waits for the lock like any other caller. The copy is opened and its row counts
checked against those read under the lock before the backup folder appears under its name.

Restore goes into a workspace that has no database yet: every file is checked against the
manifest's sha256 first, the database is rebuilt under a temporary name inside the workspace,
checked (schema version, row counts, sequences) and then linked into place, which fails rather
than overwrite a database that appeared meanwhile.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from .errors import ActionRefused, AllegroOpsError, BadInput
from .service import Workspace
from .states import role_refusal
from .store import DB_FILENAME
from .store import backup as bk_sql
from .store import catalog as cat_sql

__all__ = ["BackupManifest", "RestoreResult", "FORMATS", "backup", "restore", "read_manifest"]

FORMAT_VERSION = 1
FORMATS = ("file", "export")
MANIFEST = "manifest.json"
DATABASE_DIR, WORKSPACE_DIR = "database", "workspace"
_YAML_SUFFIXES = (".yaml", ".yml")
_TREES = ("configs",)  # workspace folders always backed up (runs/ only on request)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BackupManifest:
    """What a backup holds; written as OUT/manifest.json and checked by restore."""

    format: str  # "file" (the DuckDB file) or "export" (EXPORT DATABASE, Parquet)
    created_at: str  # ISO time from the workspace clock
    source: str  # the workspace folder backed up
    actor: str
    duckdb_version: str
    schema_version: int
    tables: dict[str, int]  # table -> rows
    sequences: dict[str, int]  # sequence -> next value
    files: dict[str, dict[str, Any]]  # path inside OUT -> {"sha256", "size"}
    with_runs: bool = False
    format_version: int = FORMAT_VERSION

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    @property
    def size(self) -> int:
        return sum(int(f["size"]) for f in self.files.values())

    def contents(self) -> bk_sql.Contents:
        return bk_sql.Contents(self.schema_version, dict(self.tables), dict(self.sequences))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> BackupManifest:
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            found = data.get("format_version") if isinstance(data, dict) else None
            raise BadInput(f"bad backup {where}: format version {found!r}, this allegro-ops reads {FORMAT_VERSION}")
        missing = [k for k, f in cls.__dataclass_fields__.items() if k not in data and f.default is MISSING]
        if missing:
            raise BadInput(f"bad backup {where}: no {', '.join(missing)}")
        manifest = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        if manifest.format not in FORMATS or not isinstance(manifest.files, dict):
            raise BadInput(f"bad backup {where}: unknown format {manifest.format!r}")
        for name, entry in manifest.files.items():
            _inside(name, where)
            if not isinstance(entry, dict) or not {"sha256", "size"} <= entry.keys():
                raise BadInput(f"bad backup {where}: no sha256 and size for {name}")
        return manifest


@dataclass(frozen=True)
class RestoreResult:
    """What restore did: the workspace it filled and from which backup."""

    home: str
    source: str
    manifest: BackupManifest
    restored: list[str] = field(default_factory=list)  # workspace files written (paths inside home)
    unchanged: list[str] = field(default_factory=list)  # workspace files already there, identical

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {"home": self.home, "source": self.source, "format": m.format, "created_at": m.created_at,
                "schema_version": m.schema_version, "tables": m.tables, "rows": m.rows,
                "restored": self.restored, "unchanged": self.unchanged}


# ------------------------------------------------------------------------------------------- backup
def backup(ws: Workspace, out: str | Path, *, with_runs: bool = False, format: str = "file") -> BackupManifest:
    """Copy the workspace into the new folder ``out`` (database, YAML files, configs/, and runs/
    when asked), verify the copy, and record the backup in the workspace's audit log."""
    ws.authorize("backup", str(out))
    if format not in FORMATS:
        raise BadInput(f"bad backup format {format!r}: expected one of {', '.join(FORMATS)}")
    target = _new_folder(Path(out), ws.home, with_runs)
    if not ws.store.exists:
        raise BadInput(f"no database in {ws.home}: nothing to back up")
    partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:12]}"
    partial.mkdir(parents=True)
    try:
        contents = _copy_database(ws, partial / DATABASE_DIR, format)
        for rel in _workspace_files(ws.home, with_runs):
            _copy_file(ws.home / rel, partial / WORKSPACE_DIR / rel)
        manifest = BackupManifest(
            format=format, created_at=ws.clock().isoformat(), source=str(ws.home), actor=ws.actor,
            duckdb_version=duckdb.__version__, schema_version=contents.schema_version, tables=contents.tables,
            sequences=contents.sequences, files=_checksums(partial), with_runs=with_runs)
        _write_json(partial / MANIFEST, manifest.to_dict())
        try:
            os.rename(partial, target)  # onto an absent or empty folder: OUT appears complete or not at all
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
            _new_folder(target, ws.home, with_runs)  # something else filled OUT meanwhile: say so
            raise
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    tables = ", ".join(f"{name} {n}" for name, n in manifest.tables.items())
    _audit(ws, "backup", str(target), f"done: {manifest.rows} rows in {len(manifest.tables)} tables "
           f"({tables}); {len(manifest.files)} files, {format}")
    return manifest


def _new_folder(out: Path, home: Path, with_runs: bool) -> Path:
    out = out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise BadInput(f"backup folder {out} exists and is a file")
    if out.is_dir() and any(out.iterdir()):
        raise BadInput(f"backup folder {out} exists and is not empty; give a new folder")
    trees = (*_TREES, *(("runs",) if with_runs else ()))
    if out == home or any(out.is_relative_to(home / tree) for tree in trees):
        raise BadInput(f"backup folder {out} would be inside what it backs up; give a folder outside {home}")
    return out


def _copy_database(ws: Workspace, folder: Path, format: str) -> bk_sql.Contents:
    """Copy the database under the store's lock and check that the copy holds what the original did."""
    folder.mkdir()
    with ws.store.connect() as con:  # holds this process's file lock and DuckDB's process lock
        bk_sql.checkpoint(con)
        wal = bk_sql.wal_path(ws.store.path)
        if wal.exists() and wal.stat().st_size:
            raise AllegroOpsError(f"backup failed: {wal.name} still holds writes after CHECKPOINT "
                                  "(a transaction was open); try again")
        original = bk_sql.contents(con)
        if format == "export":
            bk_sql.export_database(con, folder)
        else:
            _copy_in_child(ws.store.path, folder / DB_FILENAME)
    copy = folder / DB_FILENAME
    if format == "export":
        copy = folder.parent / f".verify-{DB_FILENAME}"
        bk_sql.import_database(copy, folder)
    try:
        problems = original.differences(bk_sql.file_contents(copy))
    finally:
        if format == "export":
            copy.unlink(missing_ok=True)
            bk_sql.wal_path(copy).unlink(missing_ok=True)
    if problems:
        raise AllegroOpsError(f"backup failed: the copy does not match the database: {'; '.join(problems)}")
    return original


def _copy_in_child(source: Path, target: Path) -> None:
    """Copy the open database file in a child process. POSIX drops all of a process's fcntl locks
    on a file when the process closes *any* descriptor of it, so copying it here would release
    DuckDB's lock while this process still holds the connection."""
    code = ("import os, shutil, sys\n"
            "shutil.copyfile(sys.argv[1], sys.argv[2])\n"
            "fd = os.open(sys.argv[2], os.O_RDONLY); os.fsync(fd); os.close(fd)\n")
    done = subprocess.run([sys.executable, "-c", code, str(source), str(target)], capture_output=True, text=True)
    if done.returncode:
        lines = done.stderr.strip().splitlines() or ["no message"]
        raise AllegroOpsError(f"backup failed: copying {source.name}: {lines[-1]}")


def _workspace_files(home: Path, with_runs: bool) -> list[Path]:
    """Paths (relative to home) of the files a backup keeps besides the database."""
    files = [p.relative_to(home) for p in sorted(home.iterdir()) if p.is_file() and p.suffix in _YAML_SUFFIXES]
    for tree in (*_TREES, *(("runs",) if with_runs else ())):
        if (home / tree).is_dir():
            files += [p.relative_to(home) for p in sorted((home / tree).rglob("*")) if p.is_file()]
    return files


# ------------------------------------------------------------------------------------------ restore
def read_manifest(source: str | Path) -> BackupManifest:
    """The manifest of the backup folder ``source`` (BadInput when it is not a backup)."""
    path = Path(source).expanduser() / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"no backup at {Path(source)}: {MANIFEST} is missing") from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"bad backup {path}: {' '.join(str(exc).split())}") from None
    return BackupManifest.from_dict(data, str(path))


def restore(ws: Workspace, source: str | Path) -> RestoreResult:
    """Fill the workspace ``ws`` (which has no database yet) from the backup folder ``source``:
    every file is checked against the manifest, the database is rebuilt and checked under a
    temporary name, then put in place. Refused (ActionRefused) when ws already has a database."""
    reason = role_refusal(ws.role, "restore")
    if reason is not None:  # refused before anything touches NEW (an audit entry would create its database)
        raise ActionRefused("restore", reason)
    source = Path(source).expanduser().resolve()
    manifest = read_manifest(source)
    if ws.home.is_relative_to(source):
        raise BadInput(f"cannot restore the backup {source} into itself; give another workspace (--home)")
    _refuse_existing_database(ws)
    _verify_files(source, manifest)
    if manifest.schema_version > bk_sql.LATEST_SCHEMA_VERSION:
        raise BadInput(f"backup {source} has schema version {manifest.schema_version}; this allegro-ops knows "
                       f"up to {bk_sql.LATEST_SCHEMA_VERSION} (upgrade allegro-ops to restore it)")
    plan, unchanged = _plan_workspace_files(ws.home, source, manifest)
    if ws.home.exists() and not ws.home.is_dir():
        raise BadInput(f"workspace {ws.home} is a file, not a folder")
    created: list[Path] = [] if ws.home.exists() else [ws.home]
    ws.home.mkdir(parents=True, exist_ok=True)
    temporary = ws.home / f".{DB_FILENAME}.restore-{uuid.uuid4().hex[:12]}"
    try:
        _rebuild_database(source, manifest, temporary)
        for rel in plan:
            created += _copy_file(source / WORKSPACE_DIR / rel, ws.home / rel, ws.home)
        _put_in_place(ws, temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        bk_sql.wal_path(temporary).unlink(missing_ok=True)
        _remove(reversed(created))  # files before the folders that hold them
        raise
    temporary.unlink(missing_ok=True)  # the database keeps its own name (a hard link)
    _audit(ws, "restore", str(ws.home), f"done: {manifest.rows} rows in {len(manifest.tables)} tables, "
           f"{len(plan)} files restored; backup {source} of {manifest.source} taken {manifest.created_at}")
    return RestoreResult(str(ws.home), str(source), manifest, [str(p) for p in plan], [str(p) for p in unchanged])


def _refuse_existing_database(ws: Workspace) -> None:
    db = ws.store.path
    if db.exists() or bk_sql.wal_path(db).exists():
        raise ActionRefused("restore", f"workspace {ws.home} already has a database ({DB_FILENAME}); "
                            "nothing changed")


def _put_in_place(ws: Workspace, temporary: Path) -> None:
    """Give the rebuilt database its name; a hard link never replaces a database that appeared
    meanwhile (a rename would). Where hard links are not supported, check and rename."""
    _refuse_existing_database(ws)
    try:
        os.link(temporary, ws.store.path)
    except FileExistsError:
        _refuse_existing_database(ws)
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        _refuse_existing_database(ws)
        os.rename(temporary, ws.store.path)


def _verify_files(source: Path, manifest: BackupManifest) -> None:
    """Every file of the manifest is there with its size and sha256 (BadInput naming the first that is not)."""
    for name, entry in sorted(manifest.files.items()):
        path = source / name
        if not path.is_file():
            raise BadInput(f"backup {source} is incomplete: {name} is missing")
        size = path.stat().st_size
        if size != entry["size"]:
            raise BadInput(f"backup {source} is corrupted: {name} has {size} bytes, the manifest says {entry['size']}")
        if _sha256(path) != entry["sha256"]:
            raise BadInput(f"backup {source} is corrupted: {name} does not match its sha256 in the manifest")


def _plan_workspace_files(home: Path, source: Path, manifest: BackupManifest) -> tuple[list[Path], list[Path]]:
    """The workspace files to write, and those already in place with the same content; refuses
    (nothing written yet) when a file is in place with other content."""
    plan, unchanged = [], []
    prefix = WORKSPACE_DIR + "/"
    for name, entry in sorted(manifest.files.items()):
        if not name.startswith(prefix):
            continue
        rel = Path(name[len(prefix):])
        there = home / rel
        if not there.exists():
            plan.append(rel)
        elif there.is_file() and _sha256(there) == entry["sha256"]:
            unchanged.append(rel)
        else:
            raise ActionRefused("restore", f"{there} exists and differs from the backup's; nothing changed")
    return plan, unchanged


def _rebuild_database(source: Path, manifest: BackupManifest, temporary: Path) -> None:
    """The database under a temporary name, checked against the manifest."""
    folder = source / DATABASE_DIR
    try:
        if manifest.format == "export":
            bk_sql.import_database(temporary, folder)
        else:
            shutil.copyfile(folder / DB_FILENAME, temporary)
        problems = manifest.contents().differences(bk_sql.file_contents(temporary))
    except duckdb.Error as exc:
        versions = "" if manifest.duckdb_version == duckdb.__version__ else \
            f" (written by DuckDB {manifest.duckdb_version}, this is {duckdb.__version__})"
        raise BadInput(f"backup {source}: the database does not open{versions}: "
                       f"{' '.join(str(exc).split())[:300]}") from None
    if problems:
        raise BadInput(f"backup {source} does not match its manifest: {'; '.join(problems)}")
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)  # on disk before it gets its name
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ helpers
def _inside(name: str, where: str) -> Path:
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or rel.parts[:1] not in ((DATABASE_DIR,), (WORKSPACE_DIR,)):
        raise BadInput(f"bad backup {where}: file {name!r} is outside {DATABASE_DIR}/ and {WORKSPACE_DIR}/")
    return rel


def _copy_file(source: Path, target: Path, root: Path | None = None) -> list[Path]:
    """Copy one file, making its folders; returns what it created under ``root`` (folders first)."""
    made = []
    parent = target.parent
    while root is not None and parent != root and not parent.exists():
        made.insert(0, parent)
        parent = parent.parent
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    return [*made, target]


def _remove(paths: Iterable[Path]) -> None:
    """Undo what a failed restore created; a folder that something else wrote into meanwhile stays."""
    for path in paths:
        try:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


def _checksums(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.relative_to(folder).as_posix(): {"sha256": _sha256(p), "size": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file() and p != folder / MANIFEST}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _audit(ws: Workspace, action: str, target: str, outcome: str) -> None:
    now = ws.clock()
    ws.store.write(lambda con: cat_sql.append_audit(con, time=now, actor=ws.actor, action=action, client=None,
                                                    target=target, outcome=outcome))

