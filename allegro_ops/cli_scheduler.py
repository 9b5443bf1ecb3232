"""Automation commands: ``scheduler``, ``run`` (a dated run through papermill) and ``backfill``.

Registered on the ``allegro-ops`` group by the import at the bottom of cli.py. Thin, like the
rest of the CLI: parse options, call scheduler.py / notebook_runs.py / backfill.py, print.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import threading
from typing import Any

import click

from . import lease
from .backfill import REPROCESS_MODES, BackfillStep, BackfillStopped, backfill, backfill_dates
from .cli import _emit, _ws, cli, json_option
from .dates import parse_timestamp as _timestamp
from .errors import ActionRefused, AllegroOpsError
from .run_report import ACTIONS
from .scheduler import SCHEDULER_ACTOR, PassReport, note, run_forever, run_pass
from .service import Workspace, parse_date, utc_now

__all__ = ["scheduler", "run", "backfill_command", "PassFailed"]

_QUIET = {"done", "not due", "manual"}  # left out of the text report unless --verbose
_NEWS = {"processed", "resumed", "lost race", "failed", "not started"}  # a foreground pass worth printing


class PassFailed(AllegroOpsError):
    """A scheduler pass (--once) in which some decision failed."""

    def __init__(self, failed: int, total: int) -> None:
        super().__init__(f"{failed} of {total} scheduler decisions failed (see the report and the audit log)")


def _report_text(report: PassReport, verbose: bool) -> str:
    lines = [f"pass at {report.now:%Y-%m-%d %H:%M:%SZ} (catching up from {report.window_start:%Y-%m-%d %H:%M:%SZ})"]
    for d in report.decisions:
        if d.decision in _QUIET and not verbose:
            continue
        when = d.run_date.isoformat() if d.run_date else "-"
        lines.append(f"  {d.client + '/' + d.schedule:<30} {when:<10}  {d.decision:<11} {d.status:<11}"
                     + (f" {d.reason}" if d.reason else "") + (f" [{d.notebook}]" if d.notebook else ""))
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts().items())) or "no schedules"
    lines.append(f"  {counts}")
    if report.next_due:
        c, s, day, due = report.next_due
        lines.append(f"  next due: {c}/{s} {day} at {due:%Y-%m-%d %H:%M:%SZ}")
    return "\n".join(lines)


@cli.command()
@click.option("--once", is_flag=True, help="Do one pass and exit (for system cron or a systemd timer).")
@click.option("--now", "now_text", default=None, metavar="TIMESTAMP",
              help="With --once: act as if it were this time (ISO 8601; UTC when no offset is given).")
@click.option("--catch-up-days", default=3.0, show_default=True, type=click.FloatRange(0, 3660, min_open=True),
              help="Catch up run dates that came due within this many days before now (fractions allowed).")
@click.option("--via-notebook", is_flag=True, help="Process each due execution through the run notebook "
              "(papermill), leaving a dated report in runs/.")
@click.option("--dry-run", is_flag=True, help="With --once: report what is due, change nothing.")
@click.option("--max-sleep", default=60.0, show_default=True, type=click.FloatRange(0.05, 86400),
              help="Foreground: wake at least this often (seconds) to see config changes.")
@click.option("--verbose", "-v", is_flag=True, help="Also list schedules with nothing to do (and, in the "
              "foreground, print passes that did nothing).")
@json_option
@click.pass_context
def scheduler(ctx, once, now_text, catch_up_days, via_notebook, dry_run, max_sleep, verbose, as_json) -> None:
    """Start automatic schedules' executions when their run dates come due.

    In the foreground until Ctrl-C or SIGTERM (a run under way finishes first); --once does one
    pass. Manual schedules are never started."""
    if not once and (now_text or dry_run):
        raise click.UsageError("--now and --dry-run need --once")
    if via_notebook:
        from .notebook_runs import check_installed

        check_installed()
    ws = Workspace(_ws(ctx).home, actor=SCHEDULER_ACTOR)
    catch_up = dt.timedelta(days=catch_up_days)
    if once:
        report = run_pass(ws, _timestamp(now_text) or utc_now(), catch_up=catch_up, via_notebook=via_notebook,
                          dry_run=dry_run)
        _emit(report.to_dict(), as_json, _report_text(report, verbose))
        if report.failed:
            raise PassFailed(len(report.failed), len(report.decisions))
        return
    _foreground(ws, catch_up, via_notebook, max_sleep, verbose, as_json)


def _foreground(ws: Workspace, catch_up: dt.timedelta, via_notebook: bool, max_sleep: float, verbose: bool,
                as_json: bool) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: stop now; a run under way is left STALLED
        stop.set()
        click.echo(f"scheduler: {signal.Signals(signum).name} received, stopping after the current run "
                   "(send it again to stop at once)", err=True)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    me = f"{lease.HOST} pid {os.getpid()}"
    note(ws, None, me, "started", f"home {ws.home}", once=False)
    click.echo(f"scheduler started ({me}, home {ws.home}); Ctrl-C or SIGTERM stops it", err=True)

    def on_report(report: PassReport) -> None:
        if as_json or verbose or any(d.decision in _NEWS for d in report.decisions):
            _emit(report.to_dict(), as_json, _report_text(report, verbose))
            sys.stdout.flush()

    def on_error(exc: Exception) -> None:
        click.echo(f"scheduler: pass failed: {type(exc).__name__}: {exc}", err=True)

    try:
        passes = run_forever(ws, stop, catch_up=catch_up, via_notebook=via_notebook, max_sleep=max_sleep,
                             on_report=on_report, on_error=on_error)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    note(ws, None, me, "stopped", f"after {passes} pass(es)", once=False)
    click.echo(f"scheduler stopped after {passes} pass(es)", err=True)


@cli.command()
@click.argument("client")
@click.argument("schedule")
@click.argument("date")
@click.option("--action", type=click.Choice(ACTIONS), default="process", show_default=True)
@click.option("--html", is_flag=True, help="Also render the report as self-contained HTML next to it.")
@click.pass_context
def run(ctx, client, schedule, date, action, html) -> None:
    """Perform ACTION through the run notebook (papermill) into <home>/runs/DATE/CLIENT/.

    Prints the outcome, then the notebook's path as the last line. Exit 0 when the notebook ran
    (whatever the execution's status), 3 when the action was refused, 1 when the notebook raised
    (the notebook is kept)."""
    from .notebook_runs import NotebookFailed, check_installed, run_notebook

    ws = _ws(ctx)
    day = parse_date(date)
    ws.config(client, schedule)  # unknown names fail here, before a kernel starts
    check_installed(html)
    try:
        result = run_notebook(ws.home, client, schedule, day, action, now=utc_now(), actor=ws.actor, html=html)
    except NotebookFailed as exc:
        click.echo(exc.path)
        raise
    out = result.outcome
    click.echo(f"{action} {out['outcome']}: {client}/{schedule} {day} is {out['status']}", err=True)
    if result.html:
        click.echo(result.html)
    click.echo(result.path)
    if out["outcome"] == "refused":
        raise ActionRefused(action, out["reason"], client=client, schedule=schedule, run_date=day.isoformat(),
                            status=out["status"])


@cli.command("backfill")
@click.argument("client")
@click.argument("schedule")
@click.option("--from", "first", required=True, metavar="DATE", help="First run date (YYYY-MM-DD).")
@click.option("--to", "last", required=True, metavar="DATE", help="Last run date, inclusive.")
@click.option("--reprocess", type=click.Choice(REPROCESS_MODES), default="none", show_default=True,
              help="Existing dates: none leaves COMPLETED and ERRORED ones; errored Reprocesses ERRORED "
                   "ones; all Resets and Processes every one.")
@click.option("--keep-going", is_flag=True, help="Do not stop at the first date that ends ERRORED or fails.")
@json_option
@click.pass_context
def backfill_command(ctx, client, schedule, first, last, reprocess, keep_going, as_json) -> None:
    """Create and process the schedule's calendar run dates from --from to --to, oldest first."""
    ws = _ws(ctx)
    dates = backfill_dates(ws, client, schedule, first, last)

    def show(step: BackfillStep | None) -> str:
        return f"{step.run_date} {step.result}" if step else ""

    with click.progressbar(length=len(dates), label=f"backfill {client}/{schedule}", file=sys.stderr,
                           item_show_func=show) as bar:
        report = backfill(ws, client, schedule, first, last, reprocess=reprocess, keep_going=keep_going,
                          on_step=lambda step: bar.update(1, step))
    lines = [f"{s.run_date}  {s.action:<15} {s.result:<11}" + (f" {s.reason}" if s.reason else "")
             for s in report.steps]
    errors = sum(s.is_error for s in report.steps)
    lines.append(f"{len(report.steps)} of {len(dates)} date(s) done, {errors} with errors")
    _emit(report.to_dict(), as_json, "\n".join(lines))
    if report.stopped:
        raise BackfillStopped(report)
