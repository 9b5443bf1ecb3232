"""allegro-ops export: the analysts' commands, registered on the main command group.

Thin like the rest of the CLI: validate nothing here that allegro_ops.query validates, print the
path and row count (one JSON document with --json); bad input exits 2 with one line.
"""
from __future__ import annotations


import click

from . import query
from .cli import _emit, _ws, cli, json_option

__all__ = ["export"]


@click.group()
def export() -> None:
    """Export data for analysis (Parquet or CSV)."""


@export.command("errors")
@click.option("--from", "date_from", required=True, metavar="DATE", help="First run date (YYYY-MM-DD).")
@click.option("--to", "date_to", required=True, metavar="DATE", help="Last run date (YYYY-MM-DD), included.")
@click.option("--client", default=None, help="Only this client.")
@click.option("--schedule", default=None, help="Only this schedule.")
@click.option("--job", "job_name", default=None, help="Only this job.")
@click.option("--code", default=None, help="Only this error code.")
@click.option("--account", default=None, help="Only this account id.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True,
              help="Parquet is zstd-compressed.")
@click.option("--partition-by-date", is_flag=True, help="Write OUT as a folder of run_date=YYYY-MM-DD/ partitions.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
@json_option
@click.argument("out", type=click.Path())
@click.pass_context
def export_errors(ctx, date_from, date_to, client, schedule, job_name, code, account, fmt, partition_by_date,
                  overwrite, out, as_json) -> None:
    """Write the currently errored work items of a date range to OUT, one row each (client, schedule,
    run_date, job, account_id, batch_id, error_code, reason, attempts, payload, ...)."""
    result = query.export_errors(_ws(ctx), out, date_from=date_from, date_to=date_to, client=client,
                                 schedule=schedule, job=job_name, error_code=code, account_id=account, format=fmt,
                                 partition_by_date=partition_by_date, overwrite=overwrite)
    layout = ", partitioned by run_date" if result.partitioned_by else ""
    _emit(result.to_dict(), as_json, f"{result.rows} errored work items -> {result.path} ({result.format}{layout})")


cli.add_command(export)
