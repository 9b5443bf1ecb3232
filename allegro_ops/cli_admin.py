"""Workspace administration commands: backup and restore (registered on the main CLI group).

Thin like the rest of the CLI: one call into allegro_ops.backup, the result printed as one line
(one JSON document with --json); bad input exits 2, a refused restore 3, each with one line.
"""
from __future__ import annotations

from pathlib import Path

import click

from . import backup as backup_mod
from .cli import _emit, _ws, cli, json_option

__all__ = ["backup_command", "restore_command"]


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size, unit = float(n), "bytes"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024:
            break
    return f"{size:.1f} {unit}"


@cli.command("backup")
@click.argument("out", type=click.Path())
@click.option("--with-runs", is_flag=True, help="Also copy runs/ (the dated notebook reports).")
@click.option("--format", "fmt", type=click.Choice(backup_mod.FORMATS), default="file", show_default=True,
              help="file: a copy of the DuckDB file; export: EXPORT DATABASE to Parquet (readable by other "
                   "DuckDB versions).")
@json_option
@click.pass_context
def backup_command(ctx, out, with_runs, fmt, as_json) -> None:
    """Back the workspace up into the new folder OUT: the database (consistent, even while a run
    writes), the YAML files, configs/ and with --with-runs runs/, with a manifest of checksums."""
    m = backup_mod.backup(_ws(ctx), out, with_runs=with_runs, format=fmt)
    path = str(Path(out).expanduser().resolve())
    _emit({"path": path, **m.to_dict()}, as_json,
          f"backup of {m.source} -> {path}: {m.rows} rows in {len(m.tables)} tables (schema v{m.schema_version}, "
          f"{m.format}), {len(m.files)} files, {_size(m.size)}")


@cli.command("restore")
@click.argument("source", type=click.Path())
@json_option
@click.pass_context
def restore_command(ctx, source, as_json) -> None:
    """Restore the backup folder SOURCE into this workspace (--home), which must have no database
    yet. Every file is checked against the backup's manifest first."""
    r = backup_mod.restore(_ws(ctx), source)
    _emit(r.to_dict(), as_json,
          f"restored {r.source} -> {r.home}: {r.manifest.rows} rows in {len(r.manifest.tables)} tables "
          f"(schema v{r.manifest.schema_version}, backup taken {r.manifest.created_at}), "
          f"{len(r.restored)} workspace files")
