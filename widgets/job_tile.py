"""One tile per job of the execution: name, status circle (COMPLETED with errors; the LATE badge),
counts, a progress bar while running, and the "⋮" menu with Process, Retry and Stats. Also the
small widget factories the other dashboard modules share (buttons and HTML carrying the CSS
classes the page relies on)."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import ipywidgets as widgets

from allegro_ops import JobAction

from .views import ButtonView, JobTileView, badge_html, esc, late_html

__all__ = ["JobTile", "make_button", "make_html", "css_name", "close_tree", "show"]

JobHandler = Callable[[str, JobAction], None]
MENU_CLASSES = {JobAction.PROCESS: "ao-job-process", JobAction.RETRY: "ao-job-retry", JobAction.STATS: "ao-job-stats"}


def css_name(*parts: str) -> str:
    """A CSS class fragment from names (anything but letters, digits, _ and - becomes -)."""
    return "-".join(re.sub(r"[^A-Za-z0-9_-]", "-", p) for p in parts)


def make_button(description: str, *classes: str, tooltip: str = "", style: str = "",
                on_click: Callable[[], None] | None = None, width: str | None = None) -> widgets.Button:
    """A Button with CSS classes; ``on_click`` takes no argument."""
    button = widgets.Button(description=description, tooltip=tooltip, button_style=style)
    if width:
        button.layout.width = width
    for c in classes:
        button.add_class(c)
    if on_click is not None:
        button.on_click(lambda _b: on_click())
    return button


def make_html(value: str = "", *classes: str) -> widgets.HTML:
    """An HTML widget. ``value`` must already be escaped (build it with ``esc``)."""
    widget = widgets.HTML(value=value)
    for c in classes:
        widget.add_class(c)
    return widget


def show(widget: widgets.Widget, visible: bool) -> None:
    widget.layout.display = None if visible else "none"


def apply(button: widgets.Button, view: ButtonView) -> None:
    """Enable or disable a button per the view; the tooltip says why not."""
    button.disabled = not view.enabled
    button.tooltip = view.tooltip


def close_tree(widget: widgets.Widget) -> None:
    """Close a widget and everything under it, so replaced parts free their comms."""
    for child in getattr(widget, "children", ()) or ():
        close_tree(child)
    widget.close()


def counts_html(view: JobTileView) -> str:
    parts = (("Total", view.total), ("Pending", view.pending), ("Processed", view.processed), ("Error", view.error))
    return " · ".join(f'<span class="ao-count-word">{label}</span> <b>{n}</b>' for label, n in parts)


class JobTile(widgets.VBox):
    """A job's tile. Clicks on its menu entries go to ``on_job_action(job, action)``."""

    def __init__(self, view: JobTileView, on_job_action: JobHandler) -> None:
        self.job = view.name
        self._on_job_action = on_job_action
        self.title = make_html("", "ao-job-name")
        self.menu_toggle = widgets.ToggleButton(description="⋮", tooltip="Job actions", value=False)
        self.menu_toggle.add_class("ao-job-menu")
        self.menu_toggle.layout.width = "36px"
        self.menu_toggle.observe(lambda ch: show(self.menu, bool(ch["new"])), names="value")
        self.status = make_html("", "ao-job-status")
        self.counts = make_html("", "ao-job-counts")
        self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info")
        self.progress.add_class("ao-job-progress")
        self.progress.layout.width = "95%"
        self.buttons = {a: make_button(a.value.removeprefix("job ").capitalize(), MENU_CLASSES[a],
                                       on_click=lambda a=a: self._choose(a), width="90px") for a in MENU_CLASSES}
        self.menu = widgets.HBox(list(self.buttons.values()))
        self.menu.add_class("ao-job-menu-items")
        show(self.menu, False)
        header = widgets.HBox([self.title, self.menu_toggle])
        header.add_class("ao-job-header")
        super().__init__([header, self.menu, self.status, self.counts, self.progress])
        self.add_class("ao-job-tile")
        self.add_class(f"ao-job-{css_name(view.name)}")
        self.update(view)

    def update(self, view: JobTileView) -> None:
        """Show the job's current status, counts, progress and menu enablement."""
        self.title.value = f"<b>{view.sequence}. {esc(view.name)}</b>"
        self.status.value = badge_html(view.status) + late_html(view.late)
        self.counts.value = counts_html(view)
        self.progress.value = view.progress
        self.progress.description = f"{view.progress:.0%}"
        show(self.progress, view.running)
        for action, button in self.buttons.items():
            apply(button, view.menu[action])

    def _choose(self, action: JobAction) -> None:
        self.menu_toggle.value = False
        self._on_job_action(self.job, action)


def tiles_match(tiles: Iterable[JobTile], views: Iterable[JobTileView]) -> bool:
    return [t.job for t in tiles] == [v.name for v in views]
