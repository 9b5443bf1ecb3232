"""allegro-ops: a thin command line over the service API.

Each command opens the workspace, calls one service method and prints the result (one JSON
document with --json). Errors print one line: exit 2 bad input, 3 refused by the state rules,
1 anything unexpected.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from .errors import AllegroOpsError
from .models import Execution
from .service import Workspace

__all__ = ["main", "cli"]

_COLORS = {"COMPLETED": "green", "ERRORED": "red", "IN_PROGRESS": "yellow", "PENDING": "cyan", "NOT_CREATED": "white"}


def _ws(ctx: click.Context) -> Workspace:
    return ctx.obj["workspace"]()


def _emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, default=str, ensure_ascii=False))
    elif text is not None:
        click.echo(text)


def _execution_text(e: Execution) -> str:
    lines = [
        f"{e.client}/{e.schedule} {e.run_date}  "
        + click.style(e.status.value, fg=_COLORS.get(e.status.value))
        + (" (owner lost: Process resumes it)" if e.phase.value == "STALLED" else "")
        + (click.style(f"  LATE (deadline {e.deadline:%Y-%m-%d %H:%M %Z})", fg="red") if e.late else "")
        + (f"  config v{e.config_version}" if e.config_version else "")
    ]
    for j in e.jobs:
        accepted = " (with errors)" if j.status.value == "COMPLETED" and j.error else ""
        lines.append(
            f"  {j.sequence}. {j.name:<24} {click.style(f'{j.status.value:<11}', fg=_COLORS.get(j.status.value))}"
            f" total {j.total:>7}  pending {j.pending:>7}  processed {j.processed:>7}  error {j.error:>6}{accepted}"
        )
    enabled = [a.value for a, on in e.actions.items() if on]
    lines.append(f"  actions: {', '.join(enabled) or 'none'}"
                 + (" (role viewer: every action is refused)" if e.role.value == "viewer" else ""))
    return "\n".join(lines)


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), envvar="ALLEGRO_OPS_HOME", default=".",
              show_default=True, help="Workspace folder (DuckDB file and runs/). Env: ALLEGRO_OPS_HOME.")
@click.pass_context
def cli(ctx: click.Context, home: str) -> None:
    """Operate dated batch job schedules."""
    ctx.ensure_object(dict)
    ctx.obj["workspace"] = lambda: Workspace(home)


# ------------------------------------------------------------------ demo
@cli.group()
def demo() -> None:
    """The demo billing workspace."""


@demo.command("init")
@click.option("--accounts", default=400, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--batch-size", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--item-delay-ms", default=0.0, show_default=True, type=click.FloatRange(0, 60_000))
@json_option
@click.pass_context
def demo_init(ctx, accounts, seed, batch_size, item_delay_ms, as_json) -> None:
    """Build the demo workspace: two clients, their accounts and schedules."""
    from .demo import init_demo

    ws = _ws(ctx)
    applied = init_demo(ws, accounts=accounts, seed=seed, batch_size=batch_size, item_delay_ms=item_delay_ms)
    _emit(applied, as_json, "\n".join(f"{a['client']}/{a['schedule']}: version {a['version']}" for a in applied)
          + f"\nworkspace: {ws.home}")


@demo.command("resolve")
@click.argument("client")
@click.option("--code", default=None, help="Only this error code (default: all).")
@json_option
@click.pass_context
def demo_resolve(ctx, client, code, as_json) -> None:
    """Repair the demo data behind the errors, so that Reprocess succeeds."""
    from .demo import resolve

    fixed = resolve(_ws(ctx), client, code)
    _emit(fixed, as_json, "\n".join(f"{c}: {n} records fixed" for c, n in fixed.items()))


# ------------------------------------------------------------------ configs
@cli.group()
def config() -> None:
    """Schedule configurations (YAML)."""


@config.command("apply")
@click.argument("path", type=click.Path())
@json_option
@click.pass_context
def config_apply(ctx, path, as_json) -> None:
    """Validate and store the schedules in a YAML file or folder (a new version when changed)."""
    applied = _ws(ctx).apply_config(path)
    _emit(applied, as_json, "\n".join(
        f"{a['client']}/{a['schedule']}: version {a['version']}" + ("" if a["changed"] else " (unchanged)")
        for a in applied))


@config.command("export")
@click.argument("client")
@click.argument("schedule")
@click.pass_context
def config_export(ctx, client, schedule) -> None:
    """Print the current configuration as YAML (config apply takes it back after edits)."""
    click.echo(_ws(ctx).export_config(client, schedule), nl=False)


@cli.command()
@click.option("--client", default=None)
@json_option
@click.pass_context
def schedules(ctx, client, as_json) -> None:
    """List the configured schedules."""
    items = _ws(ctx).schedules(client)
    _emit([s.to_dict() for s in items], as_json, "\n".join(
        f"{s.client}/{s.schedule}  {s.mode:<9} {s.calendar} {s.timezone}  v{s.version}  {' > '.join(s.jobs)}"
        for s in items))


# ------------------------------------------------------------------ executions
@cli.command()
@click.argument("client")
@click.argument("schedule")
@click.argument("date")
@json_option
@click.pass_context
def status(ctx, client, schedule, date, as_json) -> None:
    """Show the execution of a schedule for a date."""
    e = _ws(ctx).execution(client, schedule, date)
    _emit(e.to_dict(), as_json, _execution_text(e))


def _schedule_action(name: str, method: str, doc: str) -> None:
    @click.argument("client")
    @click.argument("schedule")
    @click.argument("date")
    @json_option
    @click.pass_context
    def command(ctx, client, schedule, date, as_json) -> None:
        e = getattr(_ws(ctx), method)(client, schedule, date)
        _emit(e.to_dict(), as_json, _execution_text(e))

    command.__doc__ = doc
    cli.command(name)(command)


_schedule_action("create", "create", "Create the execution for DATE (all jobs PENDING).")


@cli.command("recreate")
@click.argument("client")
@click.argument("schedule")
@click.argument("date")
@click.option("--dry-run", is_flag=True, help="Show what would change against the execution's snapshot; change nothing.")
@json_option
@click.pass_context
def recreate(ctx, client, schedule, date, dry_run, as_json) -> None:
    """Rebuild a PENDING execution's jobs from the current config (--dry-run: show the changes)."""
    ws = _ws(ctx)
    if dry_run:
        diff = ws.recreate_preview(client, schedule, date)
        _emit(diff.to_dict(), as_json, "\n".join(diff.lines()))
        return
    e = ws.recreate(client, schedule, date)
    _emit(e.to_dict(), as_json, _execution_text(e))


_schedule_action("process", "process", "Run the execution's jobs in sequence; pause at an errored job.")
_schedule_action("reprocess", "reprocess", "Re-run the first errored job's errored items, then the rest.")
_schedule_action("reset", "reset", "Back to PENDING with fresh jobs; earlier work items are archived.")


@cli.group()
def job() -> None:
    """One job of an execution: process, retry, stats, errors."""


def _job_action(name: str, method: str, doc: str) -> None:
    @click.argument("client")
    @click.argument("schedule")
    @click.argument("date")
    @click.argument("job_name", metavar="JOB")
    @json_option
    @click.pass_context
    def command(ctx, client, schedule, date, job_name, as_json) -> None:
        e = getattr(_ws(ctx), method)(client, schedule, date, job_name)
        _emit(e.to_dict(), as_json, _execution_text(e))

    command.__doc__ = doc
    job.command(name)(command)


_job_action("process", "process_job", "Run one PENDING job now.")


@job.command("retry")
@click.argument("client")
@click.argument("schedule")
@click.argument("date")
@click.argument("job_name", metavar="JOB")
@click.option("--code", default=None, help="Only the errored work items of this error code.")
@json_option
@click.pass_context
def job_retry(ctx, client, schedule, date, job_name, code, as_json) -> None:
    """Re-run a job's errored work items (of one error code with --code); paused jobs after it then run."""
    e = _ws(ctx).retry_job(client, schedule, date, job_name, code=code)
    _emit(e.to_dict(), as_json, _execution_text(e))


@cli.group()
def item() -> None:
    """One work item of a job: fix its payload and retry it."""


@item.command("retry")
@click.argument("client")
@click.argument("schedule")
@click.argument("date")
@click.argument("job_name", metavar="JOB")
@click.argument("account_id")
@click.option("--payload-file", type=click.File("r", encoding="utf-8"), default=None,
              help="A corrected payload (JSON; - reads stdin). The earlier payload stays in the history.")
@json_option
@click.pass_context
def item_retry(ctx, client, schedule, date, job_name, account_id, payload_file, as_json) -> None:
    """Re-run one errored work item alone, with a corrected payload when given."""
    payload = payload_file.read() if payload_file is not None else None
    e = _ws(ctx).retry_item(client, schedule, date, job_name, account_id, payload=payload)
    _emit(e.to_dict(), as_json, _execution_text(e))


@job.command("stats")
@click.argument("client")
@click.argument("schedule")
@click.argument("date")
@click.argument("job_name", metavar="JOB")
@json_option
@click.pass_context
def job_stats(ctx, client, schedule, date, job_name, as_json) -> None:
    """Total, pending, processed and error counts, and errors by code."""
    s = _ws(ctx).job_stats(client, schedule, date, job_name)
    text = f"total {s.total}  pending {s.pending}  processed {s.processed}  error {s.error}"
    text += "".join(f"\n  {e.count:>7}  {e.error_code}" for e in s.errors_by_code)
    _emit(s.to_dict(), as_json, text)


@job.command("errors")
@click.argument("client")
@click.argument("schedule")
@click.argument("date")
@click.argument("job_name", metavar="JOB")
@click.option("--code", default=None, help="Only this error code.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--offset", default=0, show_default=True, type=int)
@json_option
@click.pass_context
def job_errors(ctx, client, schedule, date, job_name, code, limit, offset, as_json) -> None:
    """The errored work items of a job (account id, batch id, reason, status, payload)."""
    items = _ws(ctx).job_errors(client, schedule, date, job_name, code=code, limit=limit, offset=offset)
    data = [{k: v for k, v in i.to_dict().items() if k != "error_code"} for i in items]
    _emit(data, as_json, "\n".join(
        f"{i.account_id}  batch {i.batch_id}  {i.error_code}  {i.reason}  {json.dumps(i.payload)}" for i in items))


@cli.command()
@click.option("--client", default=None)
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@json_option
@click.pass_context
def audit(ctx, client, limit, as_json) -> None:
    """The audit log, newest first: who did what, when, and the outcome."""
    entries = _ws(ctx).audit(client, limit)
    _emit([e.to_dict() for e in entries], as_json, "\n".join(
        f"{e.time:%Y-%m-%d %H:%M:%S}  {e.actor:<10} {e.action:<13} {e.target:<40} {e.outcome}"
        + (f" ({e.reason})" if e.reason else "") for e in entries))


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps our errors to a one-line message and an exit code."""
    try:
        cli.main(args=argv, prog_name="allegro-ops", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except AllegroOpsError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


from . import cli_analyst  # noqa: E402,F401  (registers export)
from . import cli_scheduler  # noqa: E402,F401  (registers scheduler, run, backfill)
from . import cli_admin  # noqa: E402,F401  (registers backup, restore)
from . import cli_notify  # noqa: E402,F401  (registers notify)

if __name__ == "__main__":
    # Run as ``python -m allegro_ops.cli``: use the package's module, where every command is registered.
    from allegro_ops.cli import main as _package_main

    sys.exit(_package_main())
