"""The dashboard's state, without widgets: the selected schedule and date, the last read execution,
the open drawers (with the paging of one error code's work items) and a pending confirmation.

``ViewState`` calls the Workspace and raises its typed errors; what it shows is computed by the
pure functions of ``widgets.views``, re-exported here so that one import serves the widgets and
the tests. No ipywidgets here (a test checks it).
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from allegro_ops import AllegroOpsError, BadInput, JobAction, ScheduleAction, Workspace
from allegro_ops.models import Execution, JobStats, ScheduleSummary, WorkItem

from .views import (
    BUSY, DESTRUCTIVE, PROGRESS_COLOURS, STATUS_COLOURS, ActivityView, ButtonView, Clock, Confirmation, DrawerActions,
    EditorView, ItemRowView, JobTileView, StatsView, StatusBadge, activity_view, badge_html, config_attributes,
    confirmation_html, default_run_date, drawer_actions, esc, execution_name, item_rows, job_badge, late_html,
    nav_groups, pretty_json, progress_html, same_payload, should_auto_refresh, stats_view, status_badge,
)

__all__ = [
    "ViewState", "DrawerStack", "ItemPager", "ItemEditor",
    # re-exported from widgets.views
    "STATUS_COLOURS", "PROGRESS_COLOURS", "BUSY", "Clock", "StatusBadge", "ButtonView", "JobTileView",
    "ActivityView", "StatsView", "ItemRowView", "Confirmation", "status_badge", "activity_view", "stats_view",
    "item_rows", "nav_groups", "default_run_date", "should_auto_refresh", "execution_name", "config_attributes",
    "esc", "badge_html", "progress_html", "pretty_json", "job_badge", "late_html", "DrawerActions", "EditorView",
    "confirmation_html", "drawer_actions", "same_payload",
]

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
class ItemEditor:
    """The payload of one errored work item being corrected before its retry."""

    job: str
    code: str
    account_id: str
    original: object  # the payload as listed when the editor opened
    text: str
    error: str = ""

    def payload(self) -> str | None:
        """The text to save as the corrected payload; None when it is the same JSON as the original
        (the item is retried as it is). Call after ``check``."""
        return None if same_payload(json.loads(self.text), self.original) else self.text

    def check(self, text: str) -> bool:
        """Keep ``text``; False (with a one-line error) when it is not valid JSON."""
        self.text = text
        try:
            json.loads(text)
        except ValueError as exc:
            self.error = f"bad payload: not valid JSON ({' '.join(str(exc).split())})"
            return False
        self.error = ""
        return True


@dataclass
class DrawerStack:
    """The open drawers: stats of a job, then its errors by code, then one code's work items (with
    the payload editor of one of them)."""

    job: str | None = None
    stats: JobStats | None = None
    errors_open: bool = False
    pager: ItemPager | None = None
    editor: ItemEditor | None = None

    @property
    def depth(self) -> int:
        return 0 if self.job is None else 1 + self.errors_open + (self.pager is not None)

    def set_pager(self, pager: ItemPager | None) -> None:
        """Open another code's work items, or close them; the editor goes with the page it came from."""
        self.pager, self.editor = pager, None

    def close_one(self) -> None:
        if self.pager is not None:
            self.set_pager(None)
        elif self.errors_open:
            self.errors_open = False
        else:
            self.job, self.stats = None, None

    def close_all(self) -> None:
        self.job, self.stats, self.errors_open = None, None, False
        self.set_pager(None)


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
                    self.drawers.set_pager(None)  # a retry fixed every item of that code
                elif pager is not None:
                    pager.count = codes[pager.code]
        return execution

    def activity(self) -> ActivityView | None:
        return activity_view(self.execution, self.busy) if self.execution is not None else None

    def auto_refresh(self) -> bool:
        return self.busy or should_auto_refresh(self.execution)

    # ------------------------------------------------------------------ actions
    def ask(self, action: ScheduleAction) -> Confirmation | None:
        """Reset and Recreate wait for a confirmation; other actions need none (returns None).
        Recreate's confirmation lists what it will change (the preview; one read)."""
        target = self.target
        if action not in DESTRUCTIVE or target is None:
            return None
        details: tuple[str, ...] = ()
        if action is ScheduleAction.RECREATE:
            try:
                details = tuple(self.ws.recreate_preview(*target).lines())
            except AllegroOpsError as exc:  # Confirm would be refused for the same reason; say it now
                details = (f"no preview: {exc}",)
        self.confirmation = Confirmation(action, *target, details)
        return self.confirmation

    def run(self, action: ScheduleAction, target: tuple[str, str, dt.date]) -> Execution:
        """Call the service for a schedule action (blocks for Process/Reprocess)."""
        return getattr(self.ws, action.value)(*target)

    def run_job(self, action: JobAction, target: tuple[str, str, dt.date], job: str) -> Execution:
        method = {JobAction.PROCESS: self.ws.process_job, JobAction.RETRY: self.ws.retry_job}[action]
        return method(*target, job)

    def retry_code(self, target: tuple[str, str, dt.date], job: str, code: str) -> Execution:
        """Retry of one error code's work items (a row of the errors-by-code drawer)."""
        return self.ws.retry_job(*target, job, code=code)

    def drawer_actions(self) -> DrawerActions | None:
        job = self.drawers.job
        if job is None or self.execution is None:
            return None
        return drawer_actions(self.execution, job, self.busy)

    # ------------------------------------------------------------------ fix and retry one work item
    def edit_item(self, account_id: str) -> ItemEditor:
        """Open the payload editor of one work item of the open page, its payload pretty-printed."""
        d = self.drawers
        item = next((i for i in d.pager.items if i.account_id == account_id), None) if d.pager else None
        if item is None or d.job is None:
            raise BadInput(f"work item {account_id} is not on the open page; open its error code first")
        d.editor = ItemEditor(d.job, d.pager.code, account_id, item.payload, pretty_json(item.payload))
        return d.editor

    def cancel_edit(self) -> None:
        self.drawers.editor = None

    def edit_text(self, text: str) -> None:
        """The editor's text as it is typed: kept, so that a rebuilt drawer does not lose it."""
        if self.drawers.editor is not None:
            self.drawers.editor.text = text

    def editor(self) -> EditorView | None:
        e, actions = self.drawers.editor, self.drawer_actions()
        if e is None or actions is None:
            return None
        return EditorView(e.job, e.code, e.account_id, e.text, e.error, actions.retry_item())

    def retry_item(self, target: tuple[str, str, dt.date], editor: ItemEditor) -> Execution:
        """Retry the edited work item alone, saving the corrected payload when it changed. On success
        the editor closes; on a refusal its error line says why and the text stays for another try."""
        try:
            execution = self.ws.retry_item(*target, editor.job, editor.account_id, payload=editor.payload())
        except AllegroOpsError as exc:
            editor.error = str(exc)
            raise
        if self.drawers.editor is editor:
            self.drawers.editor = None
        return execution

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
            self.drawers.errors_open = True
            self.drawers.set_pager(None)

    def open_items(self, code: str) -> ItemPager:
        d = self.drawers
        count = dict(self.stats().errors).get(code, 0) if d.stats else 0
        pager = ItemPager(code, count, self.page_size)
        pager.load(self._fetch(code))
        d.errors_open = True
        d.set_pager(pager)
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
        editor = self.drawers.editor
        if editor is not None and (step or editor.account_id not in {i.account_id for i in pager.items}):
            self.drawers.editor = None  # its work item is no longer on the page (fixed, or paged away)

    def _fetch(self, code: str) -> Fetch:
        target, job = self._need_target(), self.drawers.job
        return lambda after, limit: self.ws.job_errors(*target, job, code=code, limit=limit, after=after)

    def _need_target(self) -> tuple[str, str, dt.date]:
        if self.target is None:
            raise BadInput("choose a schedule and a run date first")
        return self.target
