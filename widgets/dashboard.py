"""The operations dashboard: navigation, activity pane, drawers, charts and the account view,
wired to a ViewState. Process, Reprocess and the Retries (of a job, of one error code, of one
corrected work item) run in a background thread; while a run is
live a refresher re-reads the execution every ~1 s. Every failure shows on the page: engine
errors as a one-line message, anything else with its traceback in the Details output."""
from __future__ import annotations

import datetime as dt
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from allegro_ops import AllegroOpsError, BadInput, JobAction, ScheduleAction, Workspace
from allegro_ops.models import Execution

from .activity import ActivityHandlers, ActivityPane, Refresher, Runner
from .audit import AUDIT_LIMIT, AuditView, audit_rows, role_html
from .charts import Charts, busy_seconds, errors_by_code_history, history_series
from .drawers import DrawerHandlers, Drawers
from .job_tile import close_tree, make_button, make_html, show
from .navigation import ACCOUNT, ACCOUNT_LIMIT, AUDIT, AccountView, Navigation, account_rows
from .style import STYLE
from .view_state import ViewState
from .views import Clock, esc, nav_groups

NO_SCHEDULES = "No schedules configured yet; apply a config, then Refresh."

__all__ = ["Dashboard", "build_dashboard", "MessageBar", "STYLE"]


class MessageBar(widgets.HBox):
    """A one-line message on the page (errors in red); × dismisses it."""

    def __init__(self) -> None:
        self.text = make_html("", "ao-message-text")
        self.dismiss = make_button("×", "ao-message-close", tooltip="Dismiss", on_click=self.clear, width="32px")
        super().__init__([self.text, self.dismiss])
        self.add_class("ao-message")
        self.clear()

    def show(self, text: str, level: str = "error") -> None:
        self.text.value = esc(text)
        for lvl in ("error", "info"):
            (self.add_class if lvl == level else self.remove_class)(f"ao-message-{lvl}")
        show(self, True)

    def clear(self) -> None:
        self.text.value = ""
        show(self, False)


class Dashboard(widgets.VBox):
    """The whole page. ``run_in_background=False`` runs actions inline (tests); ``refresh_seconds``
    paces the live refresher (None: never), ``nav_refresh_seconds`` the re-read of schedules."""

    def __init__(self, workspace: Workspace, *, clock: Clock | None = None, run_in_background: bool = True,
                 refresh_seconds: float | None = 1.0, nav_refresh_seconds: float | None = 30.0,
                 page_size: int = 25, history_days: int = 14) -> None:
        self.ws, self.history_days = workspace, history_days
        self.state = ViewState(workspace, clock, page_size)
        self.runner = Runner(run_in_background)
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self.refresher = Refresher(self._tick, refresh_seconds or 1.0, self._run_ended)
        self._live = refresh_seconds is not None
        self._charts_key: tuple | None = None
        self.message = MessageBar()
        self.traceback_output = widgets.Output()
        self.details = widgets.Accordion(children=[self.traceback_output], titles=("Details",))
        self.details.add_class("ao-log")
        show(self.details, False)
        self.drawers = Drawers(DrawerHandlers(
            self._guard(self._errors_info), self._guard(self._view), self._guard(self._page),
            self._guard(self._cancel), self._guard(self._close_all), retry_code=self._guard(self._retry_code),
            edit_item=self._guard(self._edit_item), edit_text=self.state.edit_text,
            retry_item=self._guard(self._retry_item), cancel_edit=self._guard(self._cancel_edit)))
        self.charts = Charts(on_mode=self._guard(self._render_charts))
        self.activity = ActivityPane(ActivityHandlers(self._guard(self._action), self.refresh,
                                                      self._guard(self._date), self._guard(self._confirm),
                                                      self._guard(self._job_action)), self.drawers, self.charts)
        self.account = AccountView(self._guard(self._lookup))
        show(self.account, False)
        self.audit = AuditView(self._guard(self._read_audit))
        show(self.audit, False)
        self.role = make_html(role_html(workspace.access), "ao-role-bar")
        self.nav = Navigation(self._guard(self.select), self._guard(self._mode))
        main = widgets.VBox([self.activity, self.account, self.audit])
        main.add_class("ao-main")
        body = widgets.HBox([self.nav, main])
        super().__init__([make_html(STYLE), self.role, self.message, body, self.details])
        self.add_class("ao-dashboard")
        self._guard(self._start)()
        if nav_refresh_seconds:
            threading.Thread(target=self._watch_schedules, args=(nav_refresh_seconds,), daemon=True,
                             name="allegro-ops-schedules").start()

    # ------------------------------------------------------------------ error reporting
    def _guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Run a handler so that no failure is silent: a message on the page, a traceback below."""
        def guarded(*args: Any) -> Any:
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 - everything is reported on the page
                self.report(exc)
                return None
        return guarded

    def report(self, exc: BaseException) -> None:
        if isinstance(exc, AllegroOpsError):
            self.message.show(str(exc))
            return
        self.message.show(f"Unexpected error: {type(exc).__name__}: {exc} (traceback under Details)")
        self.traceback_output.append_stderr("".join(traceback.format_exception(exc)))
        show(self.details, True)

    # ------------------------------------------------------------------ navigation
    def _start(self) -> None:
        self.state.load_schedules()
        self._show_schedules()
        if self.state.schedules:
            first = self.state.schedules[0]
            self.select(first.client, first.schedule)
        else:
            self.activity.render(None, None, NO_SCHEDULES)

    def _show_schedules(self) -> None:
        self.nav.set_groups(nav_groups(self.state.schedules), self._selected())
        self.account.set_clients(sorted({s.client for s in self.state.schedules}))
        self.audit.set_clients(sorted({s.client for s in self.state.schedules}))

    def _selected(self) -> tuple[str, str] | None:
        s = self.state
        return (s.client, s.schedule) if s.client and s.schedule else None

    def select(self, client: str, schedule: str) -> None:
        """Open a schedule's activity pane (what clicking its navigation entry does)."""
        self.message.clear()
        with self._lock:
            self.activity.show_schedule(client, schedule)
            self.nav.mark((client, schedule))
            try:
                self.state.select(client, schedule)
            finally:
                self.activity.set_date(self.state.run_date)
                self._render()
        self._render_charts()

    def _mode(self, mode: str) -> None:
        show(self.activity, mode not in (ACCOUNT, AUDIT))
        show(self.account, mode == ACCOUNT)
        show(self.audit, mode == AUDIT)
        if mode == AUDIT:
            self._read_audit(self.audit.selected_client)

    def _read_audit(self, client: str | None) -> None:
        """The audit log, newest first (one read)."""
        self.audit.render(audit_rows(self.ws.audit(client, AUDIT_LIMIT)), AUDIT_LIMIT)

    def _watch_schedules(self, every: float) -> None:
        """The slow timer: new schedule configs appear in the navigation, and a run started
        elsewhere (the CLI, the scheduler) starts the live refresh without a click."""
        while not self._closed.wait(every):
            try:
                changed = self.state.load_schedules()
                with self._lock:
                    if changed:
                        self._show_schedules()
                    if not self.refresher.running and not self.state.busy and self.state.target:
                        self.state.refresh()
                        self._render()
            except Exception:  # noqa: BLE001 - the next tick tries again; Refresh reports errors
                pass

    # ------------------------------------------------------------------ rendering
    def _render(self) -> None:
        with self._lock:
            s = self.state
            view = s.activity()
            hint = "" if view else (NO_SCHEDULES if not s.schedules else
                                    "Choose a run date." if s.client and s.run_date is None else "")
            self.activity.render(view, s.confirmation, hint)
            self._render_drawers()
        if self._live and self.state.auto_refresh():
            self.refresher.start()

    def _render_charts(self) -> None:
        """Re-read the schedule's history (one read); only when it changed, read what else the
        charts need and update the one figure in place."""
        s = self.state
        if not s.client or not s.schedule:
            return
        rows = self.ws.history(s.client, s.schedule, self.history_days)
        key = (s.client, s.schedule, self.charts.by_code, rows)
        if key == self._charts_key:
            return
        busy = busy_seconds(self.ws, s.client, s.schedule, rows)
        by_code = errors_by_code_history(self.ws, s.client, s.schedule, rows) if self.charts.by_code else None
        with self._lock:
            self.charts.render(history_series(rows, busy), by_code)
            self._charts_key = key

    def refresh(self) -> None:
        """What Refresh does: re-read the schedules, the execution, open drawers and the charts.
        Cheap when nothing changed: a few short reads, and no widget or figure is rebuilt. A
        failure shows on the page (the notebook calls this too, when a preheated page is asked for)."""
        self._guard(self._refresh)()

    def _refresh(self) -> None:
        self.message.clear()
        if self.state.load_schedules():
            self._show_schedules()
        with self._lock:
            self.state.refresh()
            self.state.page(0)  # the open work item page, re-read
            self._render()
        self._render_charts()

    def _tick(self) -> bool:
        """One auto-refresh: re-read and re-render; keep going while a run is live."""
        if self._closed.is_set():
            return False
        try:
            with self._lock:
                self.state.refresh()
                self._render_widgets_only()
        except Exception as exc:  # noqa: BLE001
            self.report(exc)
            return self.state.busy
        return self.state.auto_refresh()

    def _render_widgets_only(self) -> None:
        s = self.state
        self.activity.render(s.activity(), s.confirmation)
        self._render_drawers()

    def _render_drawers(self) -> None:
        s = self.state
        self.drawers.render(s.stats(), s.drawers.errors_open, s.drawers.pager, s.drawer_actions(), s.editor())

    def _run_ended(self) -> None:
        if not self._closed.is_set():
            self._guard(self._render_charts)()

    # ------------------------------------------------------------------ actions
    def _date(self, day: dt.date | None) -> None:
        self.message.clear()
        with self._lock:
            try:
                self.state.choose_date(day)
            finally:
                self._render()  # never leave the old date's execution on show

    def _action(self, action: ScheduleAction) -> None:
        self.message.clear()
        with self._lock:
            if self.state.ask(action) is not None:
                self._render()
                return
        self._launch(action.value, lambda target: self.state.run(action, target))

    def _confirm(self, yes: bool) -> None:
        with self._lock:
            confirmation, self.state.confirmation = self.state.confirmation, None
            self._render()
        if yes and confirmation is not None:
            target = (confirmation.client, confirmation.schedule, confirmation.run_date)
            self._launch(confirmation.action.value, lambda _t: self.state.run(confirmation.action, target))

    def _job_action(self, job: str, action: JobAction) -> None:
        self.message.clear()
        if action is JobAction.STATS:
            with self._lock:
                self.state.open_stats(job)
                self._render()
            return
        self._launch(f"{action.value} {job}", lambda target: self.state.run_job(action, target, job))

    def _launch(self, name: str, work: Callable[[tuple[str, str, dt.date]], Any]) -> None:
        """Run an action through the runner; the page stays live and shows how it ended."""
        target = self.state.target
        if target is None:
            self.message.show("Choose a schedule and a run date first.")
            return
        if self.state.busy:
            self.message.show("An action started on this page is still running.")
            return
        self.state.busy = True
        self._render()

        def task() -> None:
            result = None
            try:
                result = work(target)
            except Exception as exc:  # noqa: BLE001 - shown on the page
                self.report(exc)
            finally:
                self.state.busy = False
                self._guard(self._after_action)(result)

        self.runner.submit(task, f"allegro-ops {name}")

    def _after_action(self, execution: Execution | None) -> None:
        """Show how the action ended (the execution it returned, else a fresh read) and the charts."""
        with self._lock:
            self.state.refresh(execution)
            self.state.page(0)  # the open work item page, re-read: a retried item leaves it when fixed
            self._render()
        self._render_charts()

    # ------------------------------------------------------------------ drawers and account
    def _errors_info(self) -> None:
        with self._lock:
            self.state.open_errors()
            self._render()

    def _view(self, code: str) -> None:
        with self._lock:
            self.state.open_items(code)
            self._render()

    def _page(self, step: int) -> None:
        with self._lock:
            self.state.page(step)
            self._render()

    def _cancel(self) -> None:
        with self._lock:
            self.state.drawers.close_one()
            self._render()

    def _close_all(self) -> None:
        with self._lock:
            self.state.drawers.close_all()
            self._render()

    def _retry_code(self, code: str) -> None:
        """Retry on a row of the errors-by-code drawer: that code's work items, in the background."""
        self.message.clear()
        job = self.state.drawers.job
        if job is None:
            return
        self._launch(f"job retry {job} code {code}", lambda target: self.state.retry_code(target, job, code))

    def _edit_item(self, account_id: str) -> None:
        with self._lock:
            self.state.edit_item(account_id)
            self._render()

    def _cancel_edit(self) -> None:
        with self._lock:
            self.state.cancel_edit()
            self._render()

    def _retry_item(self, text: str) -> None:
        """Retry item: invalid JSON stays in the editor with a one-line error and calls nothing;
        valid JSON retries the work item alone in the background (saving the edit if it changed)."""
        self.message.clear()
        with self._lock:
            editor = self.state.drawers.editor
            if editor is None:
                return
            if not editor.check(text):
                self._render()
                return
        self._launch(f"item retry {editor.job} {editor.account_id}",
                     lambda target: self.state.retry_item(target, editor))

    def _lookup(self, client: str, account_id: str) -> None:
        """Every work item attempt of one account across dates, jobs and generations."""
        self.message.clear()
        account_id = account_id.strip()
        if not client or not account_id:
            raise BadInput("choose a client and enter an Account Id")
        rows = account_rows(self.ws.account_history(client, account_id, ACCOUNT_LIMIT))
        self.account.render(client, account_id, rows, ACCOUNT_LIMIT)

    # ------------------------------------------------------------------ lifecycle
    @property
    def auto_refreshing(self) -> bool:
        return self.refresher.running

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait for the running action and the refresher to finish (tests; notebooks)."""
        ok = self.runner.join(timeout)
        for _ in range(3):  # the action's end may start one more refresher run
            ok = self.refresher.join(timeout) and ok
            if not self.refresher.running:
                break
        return ok and not self.refresher.running

    def close(self) -> None:
        """Stop the timers and close every widget of the page."""
        self._closed.set()
        self.refresher.stop()
        for child in self.children:
            close_tree(child)
        super().close()


def build_dashboard(home: str | Path | None = None, clock: Clock | None = None, **options: Any) -> Dashboard:
    """The dashboard for a workspace folder (default: $ALLEGRO_OPS_HOME, else the current folder)."""
    return Dashboard(Workspace(home, clock=clock), clock=clock, **options)
