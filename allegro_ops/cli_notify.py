"""allegro-ops notify: check for notifications due (LATE, and ERRORED or COMPLETED after errors
not yet sent), retry failed deliveries, list what was sent. Registered on the main command group
by the import at the bottom of cli.py; thin like the rest of the CLI (allegro_ops/notify.py does
the work)."""
from __future__ import annotations

import datetime as dt

import click

from . import notify
from .cli import _emit, _ws, cli, json_option
from .dates import parse_timestamp as _timestamp
from .errors import AllegroOpsError
from .service import utc_now

__all__ = ["notify_group", "DeliveriesFailed"]


class DeliveriesFailed(AllegroOpsError):
    """Some notifications of a check did not go out (exit 1; each is recorded and audited)."""

    def __init__(self, failed: int, total: int) -> None:
        super().__init__(f"{failed} of {total} notifications failed (allegro-ops notify list; "
                         "notify check --retry-failed tries them again)")


def _line(d: notify.Delivery) -> str:
    color = {"sent": "green", "failed": "red"}.get(d.outcome, "yellow")
    return (f"{click.style(f'{d.outcome:<7}', fg=color)} {d.sent_at:%Y-%m-%d %H:%M:%S}  {d.event:<22} "
            f"{d.client}/{d.schedule} {d.run_date}  -> {d.channel} {d.target}" + (f"  ({d.detail})" if d.detail else ""))


@click.group("notify")
def notify_group() -> None:
    """Notifications (ERRORED, LATE, COMPLETED after errors) to webhooks and email."""


@notify_group.command("check")
@click.option("--retry-failed", is_flag=True, help="Also try the failed deliveries again.")
@click.option("--now", "now_text", default=None, metavar="TIMESTAMP",
              help="Act as if it were this time (ISO 8601; UTC when no offset is given).")
@click.option("--window-days", default=7.0, show_default=True, type=click.FloatRange(0, 3660, min_open=True),
              help="Look back this far at deadlines and finished runs.")
@json_option
@click.pass_context
def notify_check(ctx, retry_failed, now_text, window_days, as_json) -> None:
    """Send the notifications due now: LATE executions, and ERRORED or COMPLETED-after-errors ones
    not yet notified. Each is sent once per execution generation, event and channel target (LATE
    once per run date). Exit 1 when a delivery failed."""
    ws = _ws(ctx)
    deliveries = notify.check_due(ws, _timestamp(now_text) or utc_now(), retry_failed=retry_failed,
                                  window=dt.timedelta(days=window_days))
    failed = [d for d in deliveries if d.outcome != "sent"]
    summary = f"{len(deliveries) - len(failed)} sent, {len(failed)} failed" if deliveries else "nothing to send"
    _emit([d.to_dict() for d in deliveries], as_json, "\n".join([*map(_line, deliveries), summary]))
    if failed:
        raise DeliveriesFailed(len(failed), len(deliveries))


@notify_group.command("list")
@click.option("--client", default=None, help="Only this client.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@json_option
@click.pass_context
def notify_list(ctx, client, limit, as_json) -> None:
    """The notifications, newest first: execution, event, channel target, outcome (sending, sent,
    failed) and detail."""
    rows = notify.notifications(_ws(ctx), client, limit)
    _emit([d.to_dict() for d in rows], as_json, "\n".join(map(_line, rows)) or "no notifications")


cli.add_command(notify_group)
