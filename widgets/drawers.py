"""The drill-down drawers of a job: Stats (the four counts and a stacked bar of processed, error
and pending work items, plain HTML), errors by error code (Error Count, Error Code, View, Retry of
that code), and the work items of one code (Account Id, Batch Id, Reason, Status, Payload, Edit &
retry), paged, with the payload editor of one work item. The drawers lie over the activity pane;
each has Cancel (closes one level) and Close all, and a click on the backdrop beside them (the
activity pane) closes one level too."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ipywidgets as widgets

from .job_tile import apply, close_tree, make_button, make_html, show
from .view_state import ItemPager
from .views import ButtonView, DrawerActions, EditorView, ItemRowView, StatsView, esc, item_rows, progress_html

__all__ = ["Drawers", "DrawerHandlers", "expandable"]


@dataclass(frozen=True)
class DrawerHandlers:
    errors_info: Callable[[], None]
    view: Callable[[str], None]  # error code
    page: Callable[[int], None]  # -1 previous, +1 next
    cancel: Callable[[], None]
    close_all: Callable[[], None]
    retry_code: Callable[[str], None] = lambda code: None  # error code: Retry on its row
    edit_item: Callable[[str], None] = lambda account_id: None  # Edit & retry on a work item's row
    edit_text: Callable[[str], None] = lambda text: None  # the editor's text as it is typed
    retry_item: Callable[[str], None] = lambda text: None  # Retry item, with the editor's text
    cancel_edit: Callable[[], None] = lambda: None


def expandable(summary: str, full: str) -> str:
    """A details/summary block: the summary on one line, the full text in an escaped <pre>."""
    return (f'<details class="ao-expand"><summary>{esc(summary) or "&nbsp;"}</summary>'
            f"<pre>{esc(full)}</pre></details>")


def _drawer(css: str, title: str, body: list[widgets.Widget], handlers: DrawerHandlers) -> widgets.VBox:
    cancel = make_button("Cancel", "ao-cancel", tooltip="Close this drawer", on_click=handlers.cancel)
    close_all = make_button("Close all", "ao-close-all", tooltip="Back to the activity pane",
                            on_click=handlers.close_all)
    footer = widgets.HBox([close_all, cancel])
    footer.add_class("ao-drawer-footer")
    box = widgets.VBox([make_html(title, "ao-drawer-title"), *body, footer])
    box.add_class("ao-drawer")
    box.add_class(css)
    return box


class Drawers(widgets.VBox):
    """Renders the open drawer levels, stacked; a level is rebuilt only when its content changed.
    ``backdrop`` is the transparent button the activity pane places under the drawers: a click
    beside the drawers closes one level (the seed's "click outside in the activity pane")."""

    def __init__(self, handlers: DrawerHandlers) -> None:
        self.handlers = handlers
        self.stats_drawer: widgets.VBox | None = None
        self.errors_drawer: widgets.VBox | None = None
        self.items_drawer: widgets.VBox | None = None
        self._keys: dict[str, object] = {}
        self._counts: dict[str, widgets.HTML] = {}
        self._progress: widgets.HTML | None = None
        self.info_button: widgets.Button | None = None
        self._retry_buttons: dict[str, widgets.Button] = {}  # error code -> its row's Retry
        self._edit_buttons: list[widgets.Button] = []
        self._editor_slot: widgets.VBox | None = None
        self._editor_key: object = None
        self.editor: widgets.VBox | None = None
        self.editor_text: widgets.Textarea | None = None
        self.editor_error: widgets.HTML | None = None
        self.editor_retry: widgets.Button | None = None
        self.backdrop = make_button("", "ao-backdrop", tooltip="Close the drawer", on_click=handlers.cancel)
        show(self.backdrop, False)
        super().__init__([])
        self.add_class("ao-drawers")
        show(self, False)

    def render(self, stats: StatsView | None, errors_open: bool, pager: ItemPager | None,
               actions: DrawerActions | None = None, editor: EditorView | None = None) -> None:
        self.stats_drawer = self._level("stats", stats and stats.job, self.stats_drawer,
                                        lambda: self._build_stats(stats), lambda: self._update_stats(stats))
        errors_key = (stats.job, stats.errors) if stats is not None and errors_open else None
        self.errors_drawer = self._level("errors", errors_key, self.errors_drawer, lambda: self._build_errors(stats))
        items_key = None
        if stats is not None and pager is not None:
            items_key = (stats.job, pager.code, tuple(pager.afters), tuple(i.item_no for i in pager.items),
                         tuple((i.reason, i.status) for i in pager.items))
        self.items_drawer = self._level("items", items_key, self.items_drawer,
                                        lambda: self._build_items(stats.job, pager))
        if self.errors_drawer is None:
            self._retry_buttons = {}
        if self.items_drawer is None:
            self._edit_buttons, self._editor_slot = [], None
        self._render_actions(actions)
        self._render_editor(editor if self.items_drawer is not None else None)
        levels = [d for d in (self.stats_drawer, self.errors_drawer, self.items_drawer) if d is not None]
        if list(self.children) != levels:
            self.children = levels
        show(self, bool(levels))
        show(self.backdrop, bool(levels))

    def _level(self, name: str, key: object, current: widgets.VBox | None,
               build: Callable[[], widgets.VBox], update: Callable[[], None] | None = None) -> widgets.VBox | None:
        """Keep, update, rebuild or drop one drawer level according to its content key."""
        if key is None:
            if current is not None:
                close_tree(current)
            self._keys.pop(name, None)
            return None
        if current is not None and self._keys.get(name) == key:
            if update is not None:
                update()
            return current
        if current is not None:
            close_tree(current)
        self._keys[name] = key
        return build()

    # ------------------------------------------------------------------ stats
    def _build_stats(self, view: StatsView) -> widgets.VBox:
        rows: list[widgets.Widget] = []
        self._counts = {}
        for label, css, _n in view.counts:
            self._counts[css] = make_html("", f"ao-count-{css}")
            if css == "error":
                # "i" in a CSS circle: the ⓘ glyph is missing from common Linux fonts (DejaVu)
                self.info_button = make_button("i", "ao-errors-info", tooltip="Error counts by error code",
                                               on_click=self.handlers.errors_info, width="26px")
                rows.append(widgets.HBox([self._counts[css], self.info_button]))
            else:
                rows.append(self._counts[css])
        self._progress = make_html("", "ao-progress")
        rows.append(self._progress)
        drawer = _drawer("ao-stats-drawer", f"<b>Stats</b> · job {esc(view.job)}", rows, self.handlers)
        self._update_stats(view)
        return drawer

    def _update_stats(self, view: StatsView) -> None:
        for label, css, n in view.counts:
            self._counts[css].value = f'<span class="ao-count-label">{label}</span> <b>{n}</b>'
        if self.info_button is not None:
            self.info_button.disabled = not view.info_enabled
            self.info_button.tooltip = ("Error counts by error code" if view.info_enabled
                                        else "no errored work items")
        self._progress.value = progress_html(view)

    # ------------------------------------------------------------------ errors by code
    def _build_errors(self, view: StatsView) -> widgets.VBox:
        header = make_html("<span>Error Count</span><span>Error Code</span><span>View</span><span>Retry</span>",
                           "ao-error-header")
        rows: list[widgets.Widget] = [header]
        self._retry_buttons = {}
        for code, count in view.errors:
            view_button = make_button("View", "ao-view", tooltip="Errored work items with this error code",
                                      on_click=lambda c=code: self.handlers.view(c), width="70px")
            retry = make_button("Retry", "ao-retry-code", on_click=lambda c=code: self.handlers.retry_code(c),
                                width="70px")
            retry.disabled = True  # until the actions are applied
            self._retry_buttons[code] = retry
            row = widgets.HBox([make_html(f"<b>{count}</b>", "ao-error-count"),
                                make_html(esc(code), "ao-error-code"), view_button, retry])
            row.add_class("ao-error-row")
            rows.append(row)
        if not view.errors:
            rows.append(make_html("<i>No errored work items.</i>"))
        return _drawer("ao-errors-drawer", f"<b>Errors by error code</b> · job {esc(view.job)}", rows, self.handlers)

    # ------------------------------------------------------------------ work items of one code
    def _build_items(self, job: str, pager: ItemPager) -> widgets.VBox:
        header = make_html("<span>Account Id</span><span>Batch Id</span><span>Reason</span><span>Status</span>"
                           "<span>Payload</span><span></span>", "ao-item-header")
        self._edit_buttons = []
        rows: list[widgets.Widget] = [header]
        for r in item_rows(pager.items):
            edit = make_button("Edit & retry", "ao-edit-item", width="100px",
                               on_click=lambda a=r.account_id: self.handlers.edit_item(a))
            edit.disabled = True  # until the actions are applied
            self._edit_buttons.append(edit)
            rows.append(_item_row(r, edit))
        self._editor_slot, self._editor_key = widgets.VBox([]), None
        rows.append(self._editor_slot)
        previous = make_button("Previous", "ao-previous", on_click=lambda: self.handlers.page(-1), width="90px")
        following = make_button("Next", "ao-next", on_click=lambda: self.handlers.page(1), width="90px")
        previous.disabled, following.disabled = not pager.has_previous, not pager.has_next
        paging = widgets.HBox([previous, make_html(esc(pager.label), "ao-page-label"), following])
        paging.add_class("ao-paging")
        title = f"<b>Work items</b> · error code {esc(pager.code)} · job {esc(job)}"
        return _drawer("ao-items-drawer", title, [*rows, paging], self.handlers)


    # ------------------------------------------------------------------ actions and the payload editor
    def _render_actions(self, actions: DrawerActions | None) -> None:
        """Enable the rows' Retry and Edit & retry per the view (the tooltip says why not)."""
        for code, button in self._retry_buttons.items():
            apply(button, actions.retry_code(code) if actions else _NO_ACTIONS)
        for button in self._edit_buttons:
            apply(button, actions.edit_item() if actions else _NO_ACTIONS)

    def _render_editor(self, view: EditorView | None) -> None:
        """Build the editor when another work item's opens; otherwise update its error line and
        button only, so that the text being typed stays."""
        key = (view.job, view.code, view.account_id) if view is not None else None
        if key != self._editor_key:
            if self.editor is not None:
                close_tree(self.editor)
            self.editor = self.editor_text = self.editor_error = self.editor_retry = None
            self._editor_key = key
            if view is not None and self._editor_slot is not None:
                self.editor = self._build_editor(view)
            if self._editor_slot is not None:
                self._editor_slot.children = [self.editor] if self.editor is not None else []
        if view is not None and self.editor is not None:
            self.editor_error.value = esc(view.error)
            show(self.editor_error, bool(view.error))
            apply(self.editor_retry, view.retry)

    def _build_editor(self, view: EditorView) -> widgets.VBox:
        self.editor_text = widgets.Textarea(value=view.text, rows=min(16, view.text.count("\n") + 2))
        self.editor_text.add_class("ao-editor-text")
        self.editor_text.layout.width = "98%"
        self.editor_text.observe(lambda ch: self.handlers.edit_text(ch["new"]), names="value")
        self.editor_error = make_html("", "ao-editor-error")
        self.editor_retry = make_button("Retry item", "ao-retry-item", style="primary",
                                        on_click=lambda: self.handlers.retry_item(self.editor_text.value))
        cancel = make_button("Cancel", "ao-cancel-edit", tooltip="Close the editor; nothing is saved",
                             on_click=self.handlers.cancel_edit)
        buttons = widgets.HBox([self.editor_retry, cancel])
        box = widgets.VBox([make_html(view.title, "ao-editor-title"), self.editor_text, self.editor_error, buttons])
        box.add_class("ao-item-editor")
        return box


_NO_ACTIONS = ButtonView("", False, "no execution read yet")


def _item_row(row: ItemRowView, edit: widgets.Button) -> widgets.HBox:
    cells = [
        make_html(esc(row.account_id), "ao-account-id"),
        make_html(esc(row.batch_id), "ao-batch-id"),
        make_html(expandable(row.reason_short, row.reason), "ao-reason"),
        make_html(esc(row.status), "ao-item-status"),
        make_html(expandable(row.payload_short, row.payload), "ao-payload"),
        edit,
    ]
    box = widgets.HBox(cells)
    box.add_class("ao-item-row")
    return box
