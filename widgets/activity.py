"""The activity pane of one schedule: display-only config attributes, the header bar (status
circle with the LATE badge, Create/Recreate/Process/Reprocess/Reset, the run date, Refresh), the
inline confirmation of destructive actions (Recreate's lists what it will change), one tile per
job, the history charts and, over them, the drawers with their backdrop (a click beside the
drawers closes one level); and the two threads of live execution: the Runner that runs an
action off the page's thread and the Refresher that re-reads a live run."""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass

import ipywidgets as widgets

from allegro_ops import JobAction, ScheduleAction

from .charts import Charts
from .drawers import Drawers
from .job_tile import JobTile, apply, close_tree, make_button, make_html, show, tiles_match
from .views import ActivityView, Confirmation, badge_html, confirmation_html, esc, late_html

__all__ = ["ActivityPane", "ActivityHandlers", "Runner", "Refresher"]


@dataclass(frozen=True)
class ActivityHandlers:
    action: Callable[[ScheduleAction], None]
    refresh: Callable[[], None]
    date: Callable[[dt.date | None], None]
    confirm: Callable[[bool], None]
    job_action: Callable[[str, JobAction], None]


class ActivityPane(widgets.VBox):
    """Renders an ActivityView; forwards clicks to its handlers."""

    def __init__(self, handlers: ActivityHandlers, drawers: Drawers, charts: Charts) -> None:
        self.handlers, self.drawers, self.charts = handlers, drawers, charts
        self.title = make_html("", "ao-title")
        self.config = make_html("", "ao-config")
        self.status = make_html("", "ao-status")
        self.buttons = {a: make_button(a.value.capitalize(), f"ao-action-{a.value}", width="96px",
                                       on_click=lambda a=a: handlers.action(a)) for a in ScheduleAction}
        self.buttons[ScheduleAction.RESET].button_style = "warning"
        self.date = widgets.DatePicker(description="Run date")
        self.date.add_class("ao-date")
        self.date.layout.width = "240px"
        self.date.observe(self._date_changed, names="value")
        self._quiet = False
        self.refresh = make_button("Refresh", "ao-refresh", tooltip="Re-read the execution and the schedules",
                                   on_click=handlers.refresh, width="96px")
        header = widgets.HBox([self.status, *self.buttons.values(), self.date, self.refresh])
        header.add_class("ao-header")
        self.confirm_text = make_html("", "ao-confirm-text")
        self.confirm_yes = make_button("Confirm", "ao-confirm-yes", style="danger",
                                       on_click=lambda: handlers.confirm(True))
        self.confirm_no = make_button("Cancel", "ao-confirm-no", on_click=lambda: handlers.confirm(False))
        self.confirm_bar = widgets.HBox([self.confirm_text, self.confirm_yes, self.confirm_no])
        self.confirm_bar.add_class("ao-confirm")
        show(self.confirm_bar, False)
        self.placeholder = make_html("", "ao-placeholder")
        self.tiles_box = widgets.HBox([])
        self.tiles_box.add_class("ao-tiles")
        self.tiles: list[JobTile] = []
        left = widgets.VBox([self.tiles_box, charts])
        left.add_class("ao-activity-main")
        body = widgets.Box([left, drawers.backdrop, drawers])
        body.add_class("ao-activity-body")
        self.body = body
        # The drawers lie over the tiles and charts (absolutely placed, so the charts keep their
        # size); the body keeps room for them while they are open.
        drawers.layout.observe(self._drawers_shown, names="display")
        super().__init__([self.title, self.config, header, self.confirm_bar, self.placeholder, body])
        self.add_class("ao-activity")

    def _drawers_shown(self, change: dict) -> None:
        (self.body.remove_class if change["new"] == "none" else self.body.add_class)("ao-drawers-open")

    def set_date(self, day: dt.date | None) -> None:
        """Show a date without treating it as the user's choice."""
        self._quiet = True
        try:
            self.date.value = day
        finally:
            self._quiet = False

    def _date_changed(self, change: dict) -> None:
        if not self._quiet:
            self.handlers.date(change["new"])

    def render(self, view: ActivityView | None, confirmation: Confirmation | None, placeholder: str = "") -> None:
        """Show the execution (or the placeholder text when there is none)."""
        self.placeholder.value = f"<i>{esc(placeholder)}</i>" if placeholder else ""
        show(self.placeholder, bool(placeholder))
        show(self.body, view is not None)
        show(self.config, view is not None)
        if view is None:
            self.status.value = ""
            for button in self.buttons.values():
                button.disabled, button.tooltip = True, placeholder
            self._render_confirm(None)
            return
        self.title.value = f"<b>{esc(view.client)}</b> / <b>{esc(view.schedule)}</b> · job schedule"
        self.config.value = _config_html(view)
        self.status.value = badge_html(view.status) + late_html(view.late)
        for action, button in self.buttons.items():
            apply(button, view.actions[action])
        self._render_tiles(view)
        self._render_confirm(confirmation)

    def show_schedule(self, client: str, schedule: str) -> None:
        self.title.value = f"<b>{esc(client)}</b> / <b>{esc(schedule)}</b> · job schedule"

    def _render_tiles(self, view: ActivityView) -> None:
        if tiles_match(self.tiles, view.tiles):
            for tile, tile_view in zip(self.tiles, view.tiles):
                tile.update(tile_view)
            return
        old = self.tiles
        self.tiles = [JobTile(t, self.handlers.job_action) for t in view.tiles]
        self.tiles_box.children = self.tiles
        for tile in old:
            close_tree(tile)

    def _render_confirm(self, confirmation: Confirmation | None) -> None:
        self.confirm_text.value = confirmation_html(confirmation) if confirmation else ""
        show(self.confirm_bar, confirmation is not None)

    def tile(self, job: str) -> JobTile:
        return next(t for t in self.tiles if t.job == job)


def _config_html(view: ActivityView) -> str:
    cells = "".join(f'<span class="ao-attr"><span class="ao-attr-label">{esc(label)}</span> '
                    f'<span class="ao-attr-value">{esc(value)}</span></span>' for label, value in view.config)
    return f'<div class="ao-config-note">{esc(view.config_note)}</div><div class="ao-attrs">{cells}</div>'


class Runner:
    """Runs an action's work in a daemon thread (the page never freezes), or inline for tests."""

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self.thread: threading.Thread | None = None

    def submit(self, fn: Callable[[], None], name: str = "allegro-ops-action") -> None:
        if not self.background:
            fn()
            return
        self.thread = threading.Thread(target=fn, name=name, daemon=True)
        self.thread.start()

    def join(self, timeout: float | None = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
            return not self.thread.is_alive()
        return True


class Refresher:
    """Calls ``tick`` every ``interval`` seconds in a daemon thread until it returns False."""

    def __init__(self, tick: Callable[[], bool], interval: float, on_stop: Callable[[], None]) -> None:
        self._tick, self.interval, self._on_stop = tick, interval, on_stop
        self._lock = threading.Lock()
        self._active = False
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._active

    def start(self) -> None:
        with self._lock:
            if self._active:
                return
            self._active = True
            self._stop.clear()
            self.thread = threading.Thread(target=self._loop, name="allegro-ops-refresh", daemon=True)
            self.thread.start()

    def _loop(self) -> None:
        keep = True
        while keep and not self._stop.wait(self.interval):
            keep = self._tick()
            with self._lock:
                if not keep:
                    self._active = False
        with self._lock:
            self._active = False
        self._on_stop()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        thread = self.thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True
