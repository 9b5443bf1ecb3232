"""What the dashboard shows and enables, computed from the Workspace. No ipywidgets here.

The widget classes render these frozen views and forward clicks to ``ViewState``; every decision
(colours, which button is enabled and why not, counts, progress, drawer rows, paging, whether to
keep auto-refreshing) is made here, from Execution.actions / JobRun.actions and the state table's
refusal texts, so it is unit-tested without a browser.
"""
from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from allegro_ops import BadInput, ExecutionStatus, JobAction, JobStatus, Phase, ScheduleAction, Workspace
from allegro_ops.models import Execution, JobRun, JobStats, ScheduleConfig, ScheduleSummary, WorkItem
from allegro_ops.states import job_refusal, refusal

__all__ = [
    "STATUS_COLOURS", "StatusBadge", "ButtonView", "JobTileView", "ActivityView", "StatsView",
    "ItemRowView", "ItemPager", "DrawerStack", "Confirmation", "ViewState", "status_badge", "activity_view",
    "stats_view", "item_rows", "nav_groups", "default_run_date", "should_auto_refresh", "execution_name",
    "esc", "badge_html", "pretty_json",
]

Clock = Callable[[], dt.datetime]
OWNER_LOST = "owner lost"
STATUS_COLOURS = {  # the status circle's colour per status word
    "NOT_CREATED": "#9e9e9e", "PENDING": "#1e88e5", "IN_PROGRESS": "#ffb300",
    "COMPLETED": "#43a047", "ERRORED": "#e53935",
}
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


@dataclass(frozen=True)
class StatsView:
    job: str
    counts: tuple[tuple[str, str, int], ...]  # (label, css suffix, value)
    errors: tuple[tuple[str, int], ...]  # (error code, count), largest first
    info_enabled: bool

    @property
    def donut(self) -> list[int]:
        """Processed, error and pending work items."""
        counts = {css: n for _label, css, n in self.counts}
        return [counts["processed"], counts["error"], counts["pending"]]


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
class Confirmation:
    """A destructive action waiting for Confirm, bound to the execution it was asked for."""

    action: ScheduleAction
    client: str
    schedule: str
    run_date: dt.date

    @property
    def text(self) -> str:
        name = f"{self.client}/{self.schedule} {self.run_date.isoformat()}"
        effect = DESTRUCTIVE[self.action]
        return f"{self.action.value.capitalize()} execution {name}? {effect[0].upper()}{effect[1:]}."


def esc(value: Any) -> str:
    """Data as HTML text: every value from the workspace goes through this before widgets.HTML."""
    return html.escape("" if value is None else str(value), quote=True)


def badge_html(badge: StatusBadge) -> str:
    """The status circle as markup: a coloured dot and the status text (escaped)."""
    return (f'<span class="ao-dot {badge.css}" title="{esc(badge.status)}">●</span>'
            f' <span class="ao-status-text">{esc(badge.text)}</span>')


def execution_name(client: str, schedule: str, run_date: dt.date) -> str:
    return f"execution {client}/{schedule} {run_date.isoformat()}"


def status_badge(status: str, phase: Phase | None = None) -> StatusBadge:
    """Colour and text of a status circle; a STALLED execution says its owner is lost."""
    word = getattr(status, "value", status)
    if phase is Phase.STALLED:
        return StatusBadge(word, f"{word} ({OWNER_LOST})", STATUS_COLOURS[word], "ao-st-stalled")
    return StatusBadge(word, word, STATUS_COLOURS.get(word, "#9e9e9e"), f"ao-st-{word.lower().replace('_', '-')}")


def _button(label: str, allowed: bool, busy: bool, help_text: str, why: str | None) -> ButtonView:
    """Enabled when the state table allows it and the page is not busy; the tooltip says why not."""
    if allowed and not busy:
        return ButtonView(label, True, help_text)
    return ButtonView(label, False, why or (BUSY if busy else "not allowed now"))


def _job_tile(execution: Execution, job: JobRun, busy: bool) -> JobTileView:
    name = execution_name(execution.client, execution.schedule, execution.run_date)
    menu = {a: _button(a.value.removeprefix("job ").capitalize(), bool(job.actions.get(a)),
                       busy and a is not JobAction.STATS, JOB_HELP[a],
                       job_refusal(a, job.status, execution.phase, name, f"job {job.name}")) for a in JobAction}
    progress = (job.processed + job.error) / job.total if job.total else 0.0
    return JobTileView(job.name, job.sequence, status_badge(job.status.value), job.total, job.pending,
                       job.processed, job.error, min(progress, 1.0), job.status.value == "IN_PROGRESS", menu)


def _planned_tiles(config: ScheduleConfig, name: str) -> tuple[JobTileView, ...]:
    """Tiles of a NOT_CREATED date: the current config's jobs, every menu entry disabled."""
    menu = {a: ButtonView(a.value.removeprefix("job ").capitalize(), False,
                          job_refusal(a, JobStatus.PENDING, Phase.NOT_CREATED, name) or "create it first")
            for a in JobAction}
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
                          refusal(a, execution.phase, errored, name)) for a in ScheduleAction}
    cfg = execution.config
    if execution.status is ExecutionStatus.NOT_CREATED:
        note, tiles = "current config (this date is not created yet)", _planned_tiles(cfg, name) if cfg else ()
    else:
        note = f"config version {execution.config_version} this date runs with"
        tiles = tuple(_job_tile(execution, j, busy) for j in execution.jobs)
    # While this page's own run is going, a STALLED read is that run between its lease and its
    # registration (or its release and its final status): it is alive, not "owner lost".
    phase = None if busy and execution.phase is Phase.STALLED else execution.phase
    return ActivityView(execution.client, execution.schedule, execution.run_date,
                        status_badge(execution.status.value, phase), actions,
                        config_attributes(cfg) if cfg else (), note, tiles,
                        should_auto_refresh(execution) or busy)


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


Fetch = Callable[[int, int], list[WorkItem]]  # (after item_no, limit) -> items


@dataclass
class ItemPager:
    """Keyset paging over one error code's work items: a stack of the ``after`` item_no per page."""

    code: str
    count: int
    page_size: int = 25
    afters: list[int] = field(default_factory=lambda: [0])
    items: list[WorkItem] = field(default_factory=list)
    has_next: bool = False

    def load(self, fetch: Fetch) -> None:
        """(Re)read the current page; one extra row tells whether a next page exists."""
        rows = fetch(self.afters[-1], self.page_size + 1)
        self.items, self.has_next = rows[: self.page_size], len(rows) > self.page_size

    def next(self, fetch: Fetch) -> None:
        if self.has_next and self.items:
            self.afters.append(self.items[-1].item_no)
            self.load(fetch)

    def previous(self, fetch: Fetch) -> None:
        if len(self.afters) > 1:
            self.afters.pop()
            self.load(fetch)

    @property
    def has_previous(self) -> bool:
        return len(self.afters) > 1

    @property
    def label(self) -> str:
        if not self.items:
            return f"no errored work items with error code {self.code}"
        start = (len(self.afters) - 1) * self.page_size + 1
        return f"{start}–{start + len(self.items) - 1} of {max(self.count, start + len(self.items) - 1)}"


@dataclass
class DrawerStack:
    """The open drawers: stats of a job, then its errors by code, then one code's work items."""

    job: str | None = None
    stats: JobStats | None = None
    errors_open: bool = False
    pager: ItemPager | None = None

    @property
    def depth(self) -> int:
        return 0 if self.job is None else 1 + self.errors_open + (self.pager is not None)

    def close_one(self) -> None:
        if self.pager is not None:
            self.pager = None
        elif self.errors_open:
            self.errors_open = False
        else:
            self.job, self.stats = None, None

    def close_all(self) -> None:
        self.job, self.stats, self.errors_open, self.pager = None, None, False, None


class ViewState:
    """The dashboard's state: selected schedule and date, the last read execution, open drawers,
    a pending confirmation. Its methods call the Workspace and raise its typed errors."""

    def __init__(self, ws: Workspace, clock: Clock | None = None, page_size: int = 25) -> None:
        self.ws, self.clock, self.page_size = ws, clock or ws.clock, page_size
        self.schedules: list[ScheduleSummary] = []
        self.client: str | None = None
        self.schedule: str | None = None
        self.run_date: dt.date | None = None
        self.date_chosen = False
        self.execution: Execution | None = None
        self.busy = False
        self.confirmation: Confirmation | None = None
        self.drawers = DrawerStack()

    def load_schedules(self) -> bool:
        """Re-read the configured schedules; True when the list changed."""
        fresh = self.ws.schedules()
        changed = [(s.client, s.schedule, s.version) for s in fresh] != [
            (s.client, s.schedule, s.version) for s in self.schedules]
        self.schedules = fresh
        return changed

    def select(self, client: str, schedule: str) -> Execution | None:
        """Open a schedule's activity; the date is today in its timezone unless the user chose one."""
        summary = next((s for s in self.schedules if (s.client, s.schedule) == (client, schedule)), None)
        self.client, self.schedule = client, schedule
        self._moved()
        if not self.date_chosen or self.run_date is None:
            tz = summary.timezone if summary else self.ws.config(client, schedule).calendar.timezone
            self.run_date = default_run_date(self.clock(), tz)
        return self.refresh()

    def choose_date(self, day: dt.date | None) -> Execution | None:
        self.run_date, self.date_chosen = day, True
        self._moved()
        return self.refresh()

    def _moved(self) -> None:
        """Another schedule or date: what was shown for the old one no longer applies."""
        self.confirmation, self.execution = None, None
        self.drawers.close_all()

    @property
    def target(self) -> tuple[str, str, dt.date] | None:
        if self.client is None or self.schedule is None or self.run_date is None:
            return None
        return self.client, self.schedule, self.run_date

    def refresh(self, execution: Execution | None = None) -> Execution | None:
        """Re-read the execution (one call; none when an action just returned it) and, only when a
        drawer is open, its job's stats."""
        target = self.target
        if target is None:
            return None
        if execution is None or (execution.client, execution.schedule, execution.run_date) != target:
            execution = self.ws.execution(*target)
        if self.target != target:
            return self.execution  # the user moved on while we read
        previous, self.execution = self.execution, execution
        job = self.drawers.job
        if job is not None:
            same = previous is not None and previous.generation == execution.generation
            if not same or job not in {j.name for j in execution.jobs}:
                self.drawers.close_all()
            else:
                self.drawers.stats = self.ws.job_stats(*target, job)
                codes = dict((e.error_code, e.count) for e in self.drawers.stats.errors_by_code)
                pager = self.drawers.pager
                if pager is not None and pager.code not in codes:
                    self.drawers.pager = None  # a retry fixed every item of that code
                elif pager is not None:
                    pager.count = codes[pager.code]
        return execution

    def activity(self) -> ActivityView | None:
        return activity_view(self.execution, self.busy) if self.execution is not None else None

    def auto_refresh(self) -> bool:
        return self.busy or should_auto_refresh(self.execution)

    # ------------------------------------------------------------------ actions
    def ask(self, action: ScheduleAction) -> Confirmation | None:
        """Reset and Recreate wait for a confirmation; other actions need none (returns None)."""
        target = self.target
        if action not in DESTRUCTIVE or target is None:
            return None
        self.confirmation = Confirmation(action, *target)
        return self.confirmation

    def run(self, action: ScheduleAction, target: tuple[str, str, dt.date]) -> Execution:
        """Call the service for a schedule action (blocks for Process/Reprocess)."""
        return getattr(self.ws, action.value)(*target)

    def run_job(self, action: JobAction, target: tuple[str, str, dt.date], job: str) -> Execution:
        method = {JobAction.PROCESS: self.ws.process_job, JobAction.RETRY: self.ws.retry_job}[action]
        return method(*target, job)

    # ------------------------------------------------------------------ drawers
    def open_stats(self, job: str) -> StatsView:
        target = self._need_target()
        stats = self.ws.job_stats(*target, job)
        self.drawers.close_all()
        self.drawers.job, self.drawers.stats = job, stats
        return stats_view(job, stats)

    def stats(self) -> StatsView | None:
        d = self.drawers
        return stats_view(d.job, d.stats) if d.job is not None and d.stats is not None else None

    def open_errors(self) -> None:
        if self.drawers.job is not None:
            self.drawers.errors_open, self.drawers.pager = True, None

    def open_items(self, code: str) -> ItemPager:
        d = self.drawers
        count = dict(self.stats().errors).get(code, 0) if d.stats else 0
        pager = ItemPager(code, count, self.page_size)
        pager.load(self._fetch(code))
        d.errors_open, d.pager = True, pager
        return pager

    def page(self, step: int) -> None:
        """Next page (step > 0), previous page (step < 0) or reload the current one (0)."""
        pager = self.drawers.pager
        if pager is None:
            return
        fetch = self._fetch(pager.code)
        if step > 0:
            pager.next(fetch)
        elif step < 0:
            pager.previous(fetch)
        else:
            pager.load(fetch)

    def _fetch(self, code: str) -> Fetch:
        target, job = self._need_target(), self.drawers.job
        return lambda after, limit: self.ws.job_errors(*target, job, code=code, limit=limit, after=after)

    def _need_target(self) -> tuple[str, str, dt.date]:
        if self.target is None:
            raise BadInput("choose a schedule and a run date first")
        return self.target
