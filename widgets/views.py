"""The frozen views the dashboard renders, and the pure functions that compute them from what the
Workspace returns. No ipywidgets here, no state: ``widgets.view_state.ViewState`` holds the state.

Every decision (colours, which button is enabled and why not, counts, progress, drawer rows) is
made here, from Execution.actions / JobRun.actions and the state table's refusal texts, so it is
unit-tested without a browser. The few markup helpers (status circle, progress bar) escape every
value from the data.
"""
from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from allegro_ops import ExecutionStatus, JobAction, JobStatus, Phase, ScheduleAction
from allegro_ops.models import Execution, JobRun, JobStats, ScheduleConfig, ScheduleSummary, WorkItem
from allegro_ops.states import Role, job_refusal, refusal

__all__ = [
    "STATUS_COLOURS", "PROGRESS_COLOURS", "BUSY", "Clock", "StatusBadge", "ButtonView", "JobTileView",
    "ActivityView", "StatsView", "ItemRowView", "Confirmation", "status_badge", "activity_view", "stats_view",
    "item_rows", "nav_groups", "default_run_date", "should_auto_refresh", "execution_name", "config_attributes",
    "esc", "badge_html", "progress_html", "pretty_json", "job_badge", "late_html", "late_text", "DrawerActions",
    "drawer_actions", "EditorView", "confirmation_html", "same_payload", "COMPLETED_WITH_ERRORS_COLOUR",
]

Clock = Callable[[], dt.datetime]
OWNER_LOST = "owner lost"
STATUS_COLOURS = {  # the status circle's colour per status word
    "NOT_CREATED": "#9e9e9e", "PENDING": "#1e88e5", "IN_PROGRESS": "#ffb300",
    "COMPLETED": "#43a047", "ERRORED": "#e53935",
}
COMPLETED_WITH_ERRORS_COLOUR = "#9e9d24"  # a COMPLETED job that accepted errored work items: not green, not red
PROGRESS_COLOURS = {"processed": "#43a047", "error": "#e53935", "pending": "#1e88e5"}  # the stats bar's parts
SCHEDULE_HELP = {
    ScheduleAction.CREATE: "Create the execution for this date from the current config (all jobs PENDING)",
    ScheduleAction.RECREATE: "Rebuild the PENDING execution's jobs from the current config version",
    ScheduleAction.PROCESS: "Run the jobs in sequence; pauses at an errored job",
    ScheduleAction.REPROCESS: "Re-run the first errored job's errored work items, then the rest",
    ScheduleAction.RESET: "Back to PENDING with fresh jobs; the work items are archived",
}
JOB_HELP = {
    JobAction.PROCESS: "Run this PENDING job now",
    JobAction.RETRY: "Re-run this job's errored work items",
    JobAction.STATS: "Work item counts and errors by error code",
}
ITEM_RETRY_HELP = "Correct this work item's payload (JSON), then re-run it alone"
TILE_ACTIONS = (JobAction.PROCESS, JobAction.RETRY, JobAction.STATS)  # a job tile's menu (item retry is per item)
BUSY = "an action started on this page is still running"
DESTRUCTIVE = {
    ScheduleAction.RESET: "all jobs go back to PENDING and the work items are archived",
    ScheduleAction.RECREATE: "its jobs are rebuilt from the current config version",
}


@dataclass(frozen=True)
class StatusBadge:
    """The status circle: the status word, the text shown beside the dot, and its colour."""

    status: str
    text: str
    colour: str
    css: str  # ao-st-<status>, or ao-st-stalled when the run's owner is lost


@dataclass(frozen=True)
class ButtonView:
    label: str
    enabled: bool
    tooltip: str


@dataclass(frozen=True)
class JobTileView:
    name: str
    sequence: int
    status: StatusBadge
    total: int
    pending: int
    processed: int
    error: int
    progress: float  # (processed + error) / total, 0 when nothing is listed yet
    running: bool  # the progress bar shows while the job is IN_PROGRESS
    menu: dict[JobAction, ButtonView]
    late: str = ""  # the LATE badge's tooltip on an unfinished job of a LATE execution; "" when not late


@dataclass(frozen=True)
class ActivityView:
    client: str
    schedule: str
    run_date: dt.date
    status: StatusBadge
    actions: dict[ScheduleAction, ButtonView]
    config: tuple[tuple[str, str], ...]  # display-only config attributes (label, value)
    config_note: str
    tiles: tuple[JobTileView, ...]
    auto_refresh: bool
    late: str = ""  # the LATE badge's tooltip ("deadline ... passed"); "" when not late


@dataclass(frozen=True)
class StatsView:
    job: str
    counts: tuple[tuple[str, str, int], ...]  # (label, css suffix, value)
    errors: tuple[tuple[str, int], ...]  # (error code, count), largest first
    info_enabled: bool

    @property
    def progress(self) -> tuple[tuple[str, str, int], ...]:
        """(label, css suffix, count) of the processed, error and pending work items: the bar's parts."""
        counts = {css: (label, n) for label, css, n in self.counts}
        return tuple((counts[css][0].removesuffix(" Count"), css, counts[css][1])
                     for css in ("processed", "error", "pending"))


@dataclass(frozen=True)
class ItemRowView:
    item_no: int
    account_id: str
    batch_id: int
    status: str
    error_code: str
    reason: str
    reason_short: str
    payload: str  # pretty-printed JSON
    payload_short: str


@dataclass(frozen=True)
class DrawerActions:
    """The actions of an open job's drawers: Retry of one error code (a row of errors by code) and
    the fix-and-retry of one work item (Edit & retry on a row, Retry item in the editor)."""

    job: str
    retry: ButtonView  # the job's Retry, as each error code's row offers it
    item_retry: ButtonView

    def retry_code(self, code: str) -> ButtonView:
        if not self.retry.enabled:
            return ButtonView("Retry", False, self.retry.tooltip)
        return ButtonView("Retry", True, f"Re-run the errored work items of job {self.job} with error code {code}")

    def edit_item(self) -> ButtonView:
        return ButtonView("Edit & retry", self.item_retry.enabled, self.item_retry.tooltip)

    def retry_item(self) -> ButtonView:
        tooltip = ("Validate the JSON, save it beside the original payload and re-run this work item"
                   if self.item_retry.enabled else self.item_retry.tooltip)
        return ButtonView("Retry item", self.item_retry.enabled, tooltip)


@dataclass(frozen=True)
class EditorView:
    """The payload editor of one errored work item, under the work items drawer."""

    job: str
    code: str
    account_id: str
    text: str  # the payload as JSON text, pretty-printed when the editor opened
    error: str  # one line when the text is not valid JSON or the service refused it
    retry: ButtonView

    @property
    def title(self) -> str:
        return f"<b>Edit payload</b> · account {esc(self.account_id)} · job {esc(self.job)}"


@dataclass(frozen=True)
class Confirmation:
    """A destructive action waiting for Confirm, bound to the execution it was asked for.
    ``details``: what it will change (Recreate: the preview against the execution's snapshot)."""

    action: ScheduleAction
    client: str
    schedule: str
    run_date: dt.date
    details: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        name = f"{self.client}/{self.schedule} {self.run_date.isoformat()}"
        effect = DESTRUCTIVE[self.action]
        return f"{self.action.value.capitalize()} execution {name}? {effect[0].upper()}{effect[1:]}."


def confirmation_html(confirmation: Confirmation) -> str:
    """The confirmation's question in bold, then its details (the Recreate preview) as a list."""
    details = "".join(f"<li>{esc(line)}</li>" for line in confirmation.details)
    return f"<b>{esc(confirmation.text)}</b>" + (f'<ul class="ao-preview">{details}</ul>' if details else "")


def esc(value: Any) -> str:
    """Data as HTML text: every value from the workspace goes through this before widgets.HTML."""
    return html.escape("" if value is None else str(value), quote=True)


def badge_html(badge: StatusBadge) -> str:
    """The status circle as markup: a coloured dot and the status text (escaped)."""
    return (f'<span class="ao-dot {badge.css}" title="{esc(badge.status)}">●</span>'
            f' <span class="ao-status-text">{esc(badge.text)}</span>')


def progress_html(view: StatsView) -> str:
    """The job's work items as one stacked bar (processed, error, pending, each as wide as its share
    of the total) above a legend with the numbers: plain escaped markup, no chart widget."""
    parts = view.progress
    total, processed = sum(n for _label, _css, n in parts), parts[0][2]
    done = f"{processed / total:.0%} processed" if total else "no work items"
    segments = "".join(
        f'<div class="ao-bar-part ao-bar-{css}" style="width: {100 * n / total:.2f}%; '
        f'background: {PROGRESS_COLOURS[css]}" title="{esc(label)} {n}"></div>' for label, css, n in parts if n)
    legend = "".join(
        f'<span class="ao-bar-key ao-bar-key-{css}"><span class="ao-bar-swatch" '
        f'style="background: {PROGRESS_COLOURS[css]}"></span>{esc(label)} <b>{n}</b></span>'
        for label, css, n in parts)
    return (f'<div class="ao-bar" role="img" aria-label="job {esc(view.job)}: {done}">{segments}</div>'
            f'<div class="ao-bar-legend">{legend}<span class="ao-bar-done">{done}</span></div>')


def execution_name(client: str, schedule: str, run_date: dt.date) -> str:
    return f"execution {client}/{schedule} {run_date.isoformat()}"


def status_badge(status: str, phase: Phase | None = None) -> StatusBadge:
    """Colour and text of a status circle; a STALLED execution says its owner is lost."""
    word = getattr(status, "value", status)
    if phase is Phase.STALLED:
        return StatusBadge(word, f"{word} ({OWNER_LOST})", STATUS_COLOURS[word], "ao-st-stalled")
    return StatusBadge(word, word, STATUS_COLOURS.get(word, "#9e9e9e"), f"ao-st-{word.lower().replace('_', '-')}")


def job_badge(job: JobRun) -> StatusBadge:
    """A job's status circle; a COMPLETED job with errored work items (accepted errors) says so."""
    if job.status is JobStatus.COMPLETED and job.error > 0:
        return StatusBadge(job.status.value, "COMPLETED with errors", COMPLETED_WITH_ERRORS_COLOUR,
                           "ao-st-completed-errors")
    return status_badge(job.status.value)


def late_text(execution: Execution) -> str:
    """The LATE badge's tooltip, "" when the execution is not LATE."""
    if not execution.late:
        return ""
    if execution.deadline is None:
        return "deadline passed"
    return f"deadline {execution.deadline:%Y-%m-%d %H:%M %Z} passed"


def late_html(tooltip: str) -> str:
    """The LATE badge (nothing when ``tooltip`` is empty)."""
    return f' <span class="ao-late" title="{esc(tooltip)}">LATE</span>' if tooltip else ""


def _button(label: str, allowed: bool, busy: bool, help_text: str, why: str | None) -> ButtonView:
    """Enabled when the state table allows it and the page is not busy; the tooltip says why not."""
    if allowed and not busy:
        return ButtonView(label, True, help_text)
    return ButtonView(label, False, why or (BUSY if busy else "not allowed now"))


def _job_tile(execution: Execution, job: JobRun, busy: bool, late: str) -> JobTileView:
    name = execution_name(execution.client, execution.schedule, execution.run_date)
    menu = {a: _button(a.value.removeprefix("job ").capitalize(), bool(job.actions.get(a)),
                       busy and a is not JobAction.STATS, JOB_HELP[a],
                       job_refusal(a, job.status, execution.phase, name, f"job {job.name}", execution.role,
                                   job.error))
            for a in TILE_ACTIONS}
    progress = (job.processed + job.error) / job.total if job.total else 0.0
    unfinished = job.status is not JobStatus.COMPLETED
    return JobTileView(job.name, job.sequence, job_badge(job), job.total, job.pending, job.processed, job.error,
                       min(progress, 1.0), job.status is JobStatus.IN_PROGRESS, menu, late if unfinished else "")


def _planned_tiles(config: ScheduleConfig, name: str, role: Role) -> tuple[JobTileView, ...]:
    """Tiles of a NOT_CREATED date: the current config's jobs, every menu entry disabled."""
    menu = {a: ButtonView(a.value.removeprefix("job ").capitalize(), False,
                          job_refusal(a, JobStatus.PENDING, Phase.NOT_CREATED, name, role=role) or "create it first")
            for a in TILE_ACTIONS}
    return tuple(JobTileView(j.name, i, status_badge("NOT_CREATED"), 0, 0, 0, 0, 0.0, False, menu)
                 for i, j in enumerate(config.jobs, 1))


def config_attributes(config: ScheduleConfig) -> tuple[tuple[str, str], ...]:
    return (("Mode", config.mode), ("Calendar", config.calendar.cron), ("Timezone", config.calendar.timezone),
            ("Version", str(config.version)), ("Description", config.description))


def activity_view(execution: Execution, busy: bool = False) -> ActivityView:
    """Everything the activity pane shows for one execution; ``busy`` while this page runs an action."""
    name = execution_name(execution.client, execution.schedule, execution.run_date)
    errored = any(j.status.value == "ERRORED" for j in execution.jobs)
    actions = {a: _button(a.value.capitalize(), bool(execution.actions.get(a)), busy, SCHEDULE_HELP[a],
                          refusal(a, execution.phase, errored, name, execution.role, execution.started_at is not None,
                                  execution.runs_current_config)) for a in ScheduleAction}
    cfg = execution.config
    if execution.status is ExecutionStatus.NOT_CREATED:
        note, tiles = "current config (this date is not created yet)", _planned_tiles(cfg, name, execution.role) if cfg else ()
    else:
        note = f"config version {execution.config_version} this date runs with"
        tiles = tuple(_job_tile(execution, j, busy, late_text(execution)) for j in execution.jobs)
    # While this page's own run is going, a STALLED read is that run between its lease and its
    # registration (or its release and its final status): it is alive, not "owner lost".
    phase = None if busy and execution.phase is Phase.STALLED else execution.phase
    return ActivityView(execution.client, execution.schedule, execution.run_date,
                        status_badge(execution.status.value, phase), actions,
                        config_attributes(cfg) if cfg else (), note, tiles,
                        should_auto_refresh(execution) or busy, late_text(execution))


def drawer_actions(execution: Execution, job: str, busy: bool = False) -> DrawerActions | None:
    """Retry by error code and fix-and-retry of one work item for the open job's drawers, enabled
    per the job's RETRY / ITEM_RETRY actions and not while this page runs an action."""
    run = next((j for j in execution.jobs if j.name == job), None)
    if run is None:
        return None
    name = execution_name(execution.client, execution.schedule, execution.run_date)

    def button(action: JobAction, label: str, help_text: str) -> ButtonView:
        why = job_refusal(action, run.status, execution.phase, name, f"job {job}", execution.role, run.error)
        return _button(label, bool(run.actions.get(action)), busy, help_text, why)

    return DrawerActions(job, button(JobAction.RETRY, "Retry", JOB_HELP[JobAction.RETRY]),
                         button(JobAction.ITEM_RETRY, "Edit & retry", ITEM_RETRY_HELP))


def should_auto_refresh(execution: Execution | None) -> bool:
    """Keep re-reading while a live run owns the execution (here or in another process)."""
    return execution is not None and execution.phase is Phase.RUNNING


def stats_view(job: str, stats: JobStats) -> StatsView:
    counts = (("Total Count", "total", stats.total), ("Pending Count", "pending", stats.pending),
              ("Processed Count", "processed", stats.processed), ("Error Count", "error", stats.error))
    errors = tuple((e.error_code, e.count) for e in stats.errors_by_code)
    return StatsView(job, counts, errors, stats.error > 0 and bool(errors))


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def same_payload(a: Any, b: Any) -> bool:
    """Whether two payloads are the same JSON (1, 1.0 and true differ; key order and spacing do not)."""
    def canonical(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return canonical(a) == canonical(b)


def item_rows(items: list[WorkItem]) -> tuple[ItemRowView, ...]:
    return tuple(
        ItemRowView(i.item_no, i.account_id, i.batch_id, i.status, i.error_code or "", i.reason or "",
                    _short(i.reason or ""), pretty_json(i.payload),
                    _short(json.dumps(i.payload, ensure_ascii=False, default=str)))
        for i in items)


def nav_groups(schedules: list[ScheduleSummary]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Schedules grouped by client, both sorted: the navigation tree."""
    clients = sorted({s.client for s in schedules})
    return tuple((c, tuple(sorted(s.schedule for s in schedules if s.client == c))) for c in clients)


def default_run_date(now: dt.datetime, timezone: str) -> dt.date:
    """Today in the schedule's timezone (a naive clock reading counts as UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    return now.astimezone(ZoneInfo(timezone)).date()
