"""The Audit view: the append-only audit log (who did what, when, the outcome and the reason of a
refusal), newest first, filtered by client; and the banner that says who is signed in with which
role. Everything shown is data: escaped."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ipywidgets as widgets

from allegro_ops.access import Access
from allegro_ops.models import AuditEntry
from allegro_ops.states import Role

from .job_tile import make_button, make_html
from .views import esc

__all__ = ["AuditView", "AuditRowView", "audit_rows", "audit_table", "role_html", "AUDIT_LIMIT", "ALL_CLIENTS"]

AUDIT_LIMIT = 500  # entries shown per read
ALL_CLIENTS = "All clients"


@dataclass(frozen=True)
class AuditRowView:
    time: str
    actor: str
    action: str
    target: str
    outcome: str
    reason: str
    refused: bool


def audit_rows(entries: Sequence[AuditEntry]) -> tuple[AuditRowView, ...]:
    return tuple(AuditRowView(e.time.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.target, e.outcome,
                              e.reason, e.outcome in ("refused", "failed")) for e in entries)


def audit_table(rows: tuple[AuditRowView, ...]) -> str:
    head = ("Time (UTC)", "Actor", "Action", "Target", "Outcome", "Reason")
    body = "".join(
        f'<tr class="ao-audit-row{" ao-audit-refused" if r.refused else ""}">'
        + "".join(f"<td>{esc(v)}</td>" for v in (r.time, r.actor, r.action, r.target, r.outcome, r.reason))
        + "</tr>" for r in rows)
    return ('<table class="ao-table ao-audit-table"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + f"</tr></thead><tbody>{body}</tbody></table>")


def role_html(access: Access) -> str:
    """Who acts on this page and in which role; a viewer is told why every action is disabled."""
    text = f"Signed in as <b>{esc(access.actor)}</b> · role <b>{esc(access.role.value)}</b>"
    if access.role is Role.VIEWER:
        text += f" · every action is disabled (role from {esc(access.source)})"
    return f'<span class="ao-role ao-role-{esc(access.role.value)}">{text}</span>'


class AuditView(widgets.VBox):
    """The audit log of the workspace; ``on_read(client or None)`` re-reads it."""

    def __init__(self, on_read: Callable[[str | None], None]) -> None:
        self.client = widgets.Dropdown(options=[ALL_CLIENTS], value=ALL_CLIENTS, description="Client")
        self.client.add_class("ao-audit-client")
        self.client.observe(lambda _ch: on_read(self.selected_client), names="value")
        self.reload = make_button("Refresh", "ao-audit-refresh", on_click=lambda: on_read(self.selected_client))
        self.summary = make_html("", "ao-audit-summary")
        self.results = make_html("", "ao-audit-results")
        super().__init__([make_html("<b>Audit log</b> · newest first", "ao-audit-title"),
                          widgets.HBox([self.client, self.reload]), self.summary, self.results])
        self.add_class("ao-audit")

    @property
    def selected_client(self) -> str | None:
        return None if self.client.value in (None, ALL_CLIENTS) else self.client.value

    def set_clients(self, clients: list[str]) -> None:
        options = [ALL_CLIENTS, *clients]
        if list(self.client.options) != options:
            current = self.client.value
            self.client.options = options
            self.client.value = current if current in options else ALL_CLIENTS

    def render(self, rows: tuple[AuditRowView, ...], limit: int) -> None:
        refused = sum(r.refused for r in rows)
        more = f" (the newest {limit})" if len(rows) >= limit else ""
        self.summary.value = f"{len(rows)} entries{more}, {refused} refused or failed"
        self.results.value = audit_table(rows) if rows else "<i>No audit entry yet.</i>"
