"""The navigation pane (Usage/Account switch; Usage → Scheduling → Schedules → one entry per
configured schedule under its client) and the Account view (every work item attempt of one
account across dates, jobs and attempts; archived ones marked)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from .job_tile import close_tree, css_name, make_button, make_html, show
from .views import esc, pretty_json

__all__ = ["USAGE", "ACCOUNT", "AUDIT", "Navigation", "AccountView", "AccountRowView", "account_rows", "account_table", "ACCOUNT_LIMIT"]

USAGE, ACCOUNT, AUDIT = "Usage", "Account", "Audit"
ACCOUNT_LIMIT = 500  # attempts listed per account look-up
Groups = tuple[tuple[str, tuple[str, ...]], ...]


class Navigation(widgets.VBox):
    """Usage/Account switch and the schedule tree; ``on_select(client, schedule)``, ``on_mode(mode)``."""

    def __init__(self, on_select: Callable[[str, str], None], on_mode: Callable[[str], None]) -> None:
        self._on_select = on_select
        self.mode = widgets.ToggleButtons(options=[USAGE, ACCOUNT, AUDIT], value=USAGE)
        self.mode.add_class("ao-mode")
        self.mode.style.button_width = "70px"
        self.mode.observe(lambda ch: self._mode_changed(on_mode, ch["new"]), names="value")
        self.scheduling = make_button("▾ Scheduling", "ao-nav-scheduling", tooltip="Job Schedule framework",
                                      on_click=lambda: self._toggle(self.scheduling, self.scheduling_items))
        self.schedules_button = make_button("▾ Schedules", "ao-nav-schedules", tooltip="Configured job schedules",
                                            on_click=lambda: self._toggle(self.schedules_button, self.tree))
        self.tree = widgets.VBox([])
        self.tree.add_class("ao-schedule-tree")
        self.scheduling_items = widgets.VBox([self.schedules_button, self.tree])
        self.scheduling_items.add_class("ao-nav-indent")
        self.usage = widgets.VBox([self.scheduling, self.scheduling_items])
        self.account_hint = make_html("<i>Look up an account's work items on the right.</i>", "ao-nav-hint")
        show(self.account_hint, False)
        self.audit_hint = make_html("<i>Who did what, when, and the outcome.</i>", "ao-nav-hint")
        show(self.audit_hint, False)
        self.entries: dict[tuple[str, str], widgets.Button] = {}
        self._groups: Groups = ()
        super().__init__([self.mode, self.usage, self.account_hint, self.audit_hint])
        self.add_class("ao-nav")

    def set_groups(self, groups: Groups, selected: tuple[str, str] | None = None) -> None:
        """Show one entry per schedule under its client; rebuilt only when the list changed."""
        if groups != self._groups:
            old, self.entries, self._groups = self.tree.children, {}, groups
            children: list[widgets.Widget] = []
            for client, schedules in groups:
                children.append(make_html(esc(client), "ao-client"))
                for schedule in schedules:
                    entry = make_button(schedule, "ao-schedule-entry", f"ao-schedule-{css_name(client, schedule)}",
                                        tooltip=f"{client}/{schedule}",
                                        on_click=lambda c=client, s=schedule: self._on_select(c, s))
                    self.entries[(client, schedule)] = entry
                    children.append(entry)
            if not groups:
                children.append(make_html("<i>No schedules configured yet (allegro-ops config apply).</i>",
                                          "ao-nav-empty"))
            self.tree.children = children
            for w in old:
                close_tree(w)
        self.mark(selected)

    def mark(self, selected: tuple[str, str] | None) -> None:
        for key, entry in self.entries.items():
            if key == selected:
                entry.button_style = "info"
                entry.add_class("ao-selected")
            else:
                entry.button_style = ""
                entry.remove_class("ao-selected")

    def entry(self, client: str, schedule: str) -> widgets.Button:
        return self.entries[(client, schedule)]

    @staticmethod
    def _toggle(button: widgets.Button, items: widgets.Widget) -> None:
        opened = items.layout.display == "none"
        show(items, opened)
        button.description = ("▾ " if opened else "▸ ") + button.description[2:]

    def _mode_changed(self, on_mode: Callable[[str], None], mode: str) -> None:
        show(self.usage, mode == USAGE)
        show(self.account_hint, mode == ACCOUNT)
        show(self.audit_hint, mode == AUDIT)
        on_mode(mode)


@dataclass(frozen=True)
class AccountRowView:
    """One attempt at one of the account's work items."""

    run_date: str
    schedule: str
    job: str
    generation: int
    attempt: int
    batch_id: int
    status: str
    error_code: str
    reason: str
    finished_at: str
    payload: str  # pretty-printed JSON
    archived: bool  # an attempt of a generation that a Reset or Recreate archived


def account_rows(history: list[dict[str, Any]]) -> tuple[AccountRowView, ...]:
    """ws.account_history() rows as text for the table."""
    def text(v: Any) -> str:
        return "" if v is None else (v.isoformat(timespec="seconds") if isinstance(v, dt.datetime) else str(v))

    return tuple(
        AccountRowView(text(h["run_date"]), h["schedule"], h["job"], h["generation"], h["attempt"],
                       h["batch_id"], h["status"], text(h["error_code"]), text(h["reason"]),
                       text(h["finished_at"]), pretty_json(h["payload"]), bool(h["archived"]))
        for h in history)


def account_table(rows: tuple[AccountRowView, ...]) -> str:
    """Every attempt as an escaped HTML table; attempts of archived generations are marked."""
    head = ("Run Date", "Schedule", "Job", "Generation", "Attempt", "Batch Id", "Status", "Error Code", "Reason",
            "Finished", "Payload")
    body = []
    for r in rows:
        generation = f"{r.generation}" + (' <span class="ao-archived-tag">archived</span>' if r.archived else "")
        cells = [esc(r.run_date), esc(r.schedule), esc(r.job), generation, esc(r.attempt), esc(r.batch_id),
                 esc(r.status), esc(r.error_code), esc(r.reason), esc(r.finished_at),
                 f'<details class="ao-expand"><summary>JSON</summary><pre>{esc(r.payload)}</pre></details>']
        css = "ao-account-row" + (" ao-archived" if r.archived else "")
        body.append(f'<tr class="{css}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ('<table class="ao-table"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


class AccountView(widgets.VBox):
    """Look up one Account Id of a client; ``on_lookup(client, account_id)``."""

    def __init__(self, on_lookup: Callable[[str, str], None]) -> None:
        self.client = widgets.Dropdown(options=[], description="Client")
        self.client.add_class("ao-account-client")
        self.account_id = widgets.Text(placeholder="Account Id", description="Account Id", continuous_update=False)
        self.account_id.add_class("ao-account-id-input")
        self.lookup = make_button("Look up", "ao-account-lookup", style="primary",
                                  on_click=lambda: on_lookup(self.client.value or "", self.account_id.value))
        self.summary = make_html("", "ao-account-summary")
        self.results = make_html("", "ao-account-results")
        form = widgets.HBox([self.client, self.account_id, self.lookup])
        super().__init__([make_html("<b>Account</b> · work item attempts", "ao-account-title"), form, self.summary,
                          self.results])
        self.add_class("ao-account")

    def set_clients(self, clients: list[str]) -> None:
        if list(self.client.options) != clients:
            current = self.client.value
            self.client.options = clients
            self.client.value = current if current in clients else (clients[0] if clients else None)

    def render(self, client: str, account_id: str, rows: tuple[AccountRowView, ...], limit: int) -> None:
        archived = sum(r.archived for r in rows)
        more = f" (the newest {limit})" if len(rows) >= limit else ""
        self.summary.value = (f"{len(rows)} attempts{more} of account <b>{esc(account_id)}</b> of client "
                              f"<b>{esc(client)}</b>, {archived} archived")
        self.results.value = account_table(rows) if rows else "<i>No work item of this account.</i>"
