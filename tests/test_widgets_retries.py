"""The dashboard side of issue 8, in plain pytest (no browser): Retry on a row of the errors-by-code
drawer, fix-and-retry of one work item (its payload edited as JSON, validated before anything is
called), Recreate's confirmation listing what will change, a job COMPLETED with errors, and the
LATE badge; each refused (disabled, with the reason as tooltip) for viewers."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from allegro_ops import JobAction, JobStatus, ScheduleAction, Workspace
from allegro_ops.demo import resolve
from conftest import init_small_demo
from test_widgets import find, make_dashboard, menu_button, one, shown, text, tile  # noqa: F401  (a fixture)
from widgets import Dashboard
from widgets.view_state import (
    BUSY, Confirmation, ItemEditor, ViewState, confirmation_html, drawer_actions, job_badge, late_html, same_payload,
)

C, S = "acme", "daily-billing"
DAY = dt.date(2026, 11, 24)
TARGET = (C, S, DAY)
HOSTILE = "<img src=x onerror=alert(1)>"


def rows(ws: Workspace, sql: str, *params) -> list[tuple]:
    return ws.store.read(lambda con: con.execute(sql, list(params)).fetchall())


def attempts(ws: Workspace) -> int:
    return rows(ws, "SELECT count(*) FROM attempts")[0][0]


def edits(ws: Workspace) -> list[tuple]:
    return rows(ws, "SELECT old_payload, new_payload, edited_by FROM payload_edits ORDER BY edit_no")


def apply_config(ws: Workspace, folder: Path, **changes) -> None:
    """A new config version of acme/daily-billing: schedule keys, or per-job keys under ``jobs``."""
    doc = yaml.safe_load(ws.export_config(C, S))
    for name, job_changes in changes.pop("jobs", {}).items():
        next(j for j in doc["jobs"] if j["name"] == name).update(job_changes)
    doc.update(changes)
    (folder / "next.yaml").write_text(yaml.safe_dump(doc))
    ws.apply_config(folder / "next.yaml")


@pytest.fixture
def errored(prepared) -> Workspace:
    """acme/daily-billing processed once (60 accounts): ERRORED at bill-run with one work item of
    RATE_PLAN_NOT_FOUND and one of TAX_RULE_MISSING; the jobs after it PENDING."""
    def build(ws: Workspace) -> None:
        init_small_demo(ws)
        ws.create(*TARGET)
        ws.process(*TARGET)

    return prepared("widgets-retries-errored", build)


def open_dash(make_dashboard, ws: Workspace) -> Dashboard:
    dash = make_dashboard(ws)
    one(dash, "ao-date").value = DAY
    return dash


def open_errors(dash: Dashboard, job: str = "bill-run") -> None:
    menu_button(dash, job, "stats").click()
    one(dash, "ao-errors-info").click()


def code_row(dash: Dashboard, code: str):
    return next(r for r in find(dash, "ao-error-row") if code in text(one(r, "ao-error-code")))


def codes_listed(dash: Dashboard) -> set[str]:
    return {text(one(r, "ao-error-code")).strip() for r in find(dash, "ao-error-row")}


def open_editor(dash: Dashboard, code: str) -> str:
    """View a code's work items and click Edit & retry on the first; returns its account id."""
    one(code_row(dash, code), "ao-view").click()
    row = find(dash, "ao-item-row")[0]
    one(row, "ao-edit-item").click()
    return text(one(row, "ao-account-id")).strip()


# ------------------------------------------------------------------------------------ retry one error code
def test_retry_on_an_error_code_row_reruns_that_code_and_its_row_disappears(errored: Workspace,
                                                                            make_dashboard) -> None:
    dash = open_dash(make_dashboard, errored)
    open_errors(dash)
    assert codes_listed(dash) == {"RATE_PLAN_NOT_FOUND", "TAX_RULE_MISSING"}
    for code in ("RATE_PLAN_NOT_FOUND", "TAX_RULE_MISSING"):
        retry = one(code_row(dash, code), "ao-retry-code")
        assert not retry.disabled and code in retry.tooltip
    one(code_row(dash, "TAX_RULE_MISSING"), "ao-view").click()  # its work items open beside the row
    assert shown(one(dash, "ao-items-drawer"))
    before = attempts(errored)
    resolve(errored, C, "TAX_RULE_MISSING")
    one(code_row(dash, "TAX_RULE_MISSING"), "ao-retry-code").click()
    dash.wait_idle(30)
    assert not dash.state.busy and not shown(dash.message)
    assert codes_listed(dash) == {"RATE_PLAN_NOT_FOUND"}  # the fixed code's row is gone, the other stays
    assert find(dash, "ao-items-drawer") == []  # its work items drawer closed with it
    assert attempts(errored) == before + 1  # only the TAX_RULE_MISSING item ran again
    assert "ERRORED" in text(tile(dash, "bill-run")) and "1" in text(one(dash, "ao-count-error"))
    for later in ("invoice-delivery", "payment-collection"):  # still paused behind bill-run's error
        assert "PENDING" in text(one(tile(dash, later), "ao-job-status"))
    entry = errored.audit(limit=1)[0]
    assert entry.action == "job retry" and entry.target.endswith("job bill-run code TAX_RULE_MISSING")
    # The last code fixed and retried: no errors left, so the paused jobs run.
    resolve(errored, C, "RATE_PLAN_NOT_FOUND")
    one(code_row(dash, "RATE_PLAN_NOT_FOUND"), "ao-retry-code").click()
    dash.wait_idle(30)
    assert "COMPLETED" in text(one(tile(dash, "bill-run"), "ao-job-status"))
    assert "PENDING" not in text(one(tile(dash, "invoice-delivery"), "ao-job-status"))


def test_drawer_actions_follow_the_job_state_and_the_busy_page(errored: Workspace) -> None:
    e = errored.execution(*TARGET)
    actions = drawer_actions(e, "bill-run")
    assert actions.retry_code("X").enabled and actions.edit_item().enabled and actions.retry_item().enabled
    busy = drawer_actions(e, "bill-run", busy=True)
    assert [(b.enabled, b.tooltip) for b in (busy.retry_code("X"), busy.edit_item(), busy.retry_item())] == [
        (False, BUSY)] * 3
    done = drawer_actions(e, "usage-rating")
    assert not done.retry_code("X").enabled
    assert done.retry_code("X").tooltip == (
        "job usage-rating is COMPLETED with no errored work item; job retry needs an ERRORED job, "
        "or a COMPLETED one with errored work items")
    assert "item retry needs" in done.edit_item().tooltip
    assert drawer_actions(e, "no-such-job") is None


# ------------------------------------------------------------------------------------ fix and retry one item
def test_invalid_json_shows_an_error_in_the_editor_and_calls_nothing(errored: Workspace, make_dashboard) -> None:
    dash = open_dash(make_dashboard, errored)
    open_errors(dash)
    account = open_editor(dash, "RATE_PLAN_NOT_FOUND")
    editor = one(dash, "ao-item-editor")
    item = errored.job_errors(*TARGET, "bill-run", code="RATE_PLAN_NOT_FOUND", limit=5)[0]
    assert item.account_id == account and account in text(editor)
    area = one(editor, "ao-editor-text")
    assert json.loads(area.value) == item.payload and "\n" in area.value  # pretty JSON of the payload
    assert not shown(one(editor, "ao-editor-error"))
    before = (attempts(errored), edits(errored), errored.execution(*TARGET).to_dict(), len(errored.audit(limit=50)))
    area.value = '{"account_id": "' + HOSTILE + '",'
    one(editor, "ao-retry-item").click()
    error = one(dash, "ao-editor-error")
    assert shown(error) and error.value.startswith("bad payload: not valid JSON (Expecting")
    assert "\n" not in error.value and not dash.state.busy and not shown(dash.message)
    assert one(dash, "ao-item-editor") is editor and area.value.endswith(",")  # the text stays to be fixed
    assert (attempts(errored), edits(errored), errored.execution(*TARGET).to_dict(),
            len(errored.audit(limit=50))) == before
    one(editor, "ao-cancel-edit").click()
    assert find(dash, "ao-item-editor") == [] and shown(one(dash, "ao-items-drawer"))


def test_valid_json_saves_the_edit_and_retries_that_item_alone(errored: Workspace, make_dashboard) -> None:
    dash = open_dash(make_dashboard, errored)
    open_errors(dash)
    account = open_editor(dash, "RATE_PLAN_NOT_FOUND")
    original = errored.job_errors(*TARGET, "bill-run", code="RATE_PLAN_NOT_FOUND", limit=5)[0].payload
    resolve(errored, C, "RATE_PLAN_NOT_FOUND")
    before = attempts(errored)
    area = one(dash, "ao-editor-text")
    area.value = json.dumps({**original, "note": HOSTILE}, indent=4)
    one(dash, "ao-retry-item").click()
    dash.wait_idle(30)
    assert not shown(dash.message), dash.message.text.value
    (old, new, by), = edits(errored)
    assert json.loads(old) == original and json.loads(new) == {**original, "note": HOSTILE} and by == "tester"
    assert attempts(errored) == before + 1  # that work item alone ran again
    assert account not in {i.account_id for i in errored.job_errors(*TARGET, "bill-run", limit=100)}
    assert find(dash, "ao-item-editor") == [] and find(dash, "ao-items-drawer") == []  # its code is gone
    assert codes_listed(dash) == {"TAX_RULE_MISSING"}
    assert [h["attempt"] for h in errored.account_history(C, account) if h["job"] == "bill-run"][:2] == [2, 1]
    assert {x.action for x in errored.audit(limit=2)} == {"item retry", "item payload edit"}
    assert "PENDING" in text(one(tile(dash, "invoice-delivery"), "ao-job-status"))  # TAX_RULE_MISSING is left


def test_unchanged_text_retries_the_item_without_an_edit(errored: Workspace, make_dashboard) -> None:
    dash = open_dash(make_dashboard, errored)
    open_errors(dash)
    account = open_editor(dash, "TAX_RULE_MISSING")
    area = one(dash, "ao-editor-text")
    area.value = " ".join(area.value.split())  # the same JSON, spaced differently
    before = attempts(errored)
    one(dash, "ao-retry-item").click()
    dash.wait_idle(30)
    assert edits(errored) == [] and attempts(errored) == before + 1
    assert account in {i.account_id for i in errored.job_errors(*TARGET, "bill-run", limit=100)}  # same error
    assert find(dash, "ao-item-editor") == []  # the retry ran; its row is back in the list
    assert account in text(one(dash, "ao-items-drawer"))


def test_a_payload_the_service_refuses_keeps_the_editor_open_with_its_reason(errored: Workspace,
                                                                          make_dashboard) -> None:
    dash = open_dash(make_dashboard, errored)
    open_errors(dash)
    open_editor(dash, "TAX_RULE_MISSING")
    before = attempts(errored)
    one(dash, "ao-editor-text").value = '{"amount": NaN}'  # Python reads it; JSON (and the service) does not
    one(dash, "ao-retry-item").click()
    dash.wait_idle(30)
    assert attempts(errored) == before and edits(errored) == []
    error = one(dash, "ao-editor-error").value
    assert shown(one(dash, "ao-editor-error")) and error.startswith("bad payload")
    assert "bad payload" in dash.message.text.value and one(dash, "ao-editor-text").value == '{"amount": NaN}'


def test_item_editor_compares_json_values_not_text() -> None:
    editor = ItemEditor("bill-run", "X", "ACC-1", {"a": 1, "b": [True]}, "")
    assert editor.check('{"b": [true],\n "a": 1}') and editor.payload() is None
    assert editor.check('{"a": 1.0, "b": [true]}') and editor.payload() == '{"a": 1.0, "b": [true]}'
    assert editor.check('{"a": true, "b": [true]}') and editor.payload() is not None  # true is not 1
    assert not editor.check("{'a': 1}") and editor.error.startswith("bad payload: not valid JSON")
    assert editor.check("[]") and editor.error == ""
    assert same_payload({"x": "é"}, {"x": "\u00e9"}) and not same_payload(1, True)


# ------------------------------------------------------------------------------------ viewers
def test_viewer_sees_every_new_button_disabled_with_the_role_as_reason(errored: Workspace, make_dashboard) -> None:
    viewer = Workspace(errored.home, clock=errored.clock, actor="vera", role="viewer")
    dash = open_dash(make_dashboard, viewer)
    open_errors(dash)
    retries = find(dash, "ao-retry-code")
    assert len(retries) == 2
    for button in retries:
        assert button.disabled and button.tooltip.startswith("role viewer may not job retry")
    one(code_row(dash, "TAX_RULE_MISSING"), "ao-view").click()
    edit = one(dash, "ao-edit-item")
    assert edit.disabled and edit.tooltip.startswith("role viewer may not item retry")
    # Even if the editor were opened (its handler called directly), Retry item is disabled.
    account = text(one(dash, "ao-account-id")).strip()
    dash.drawers.handlers.edit_item(account)
    retry = one(dash, "ao-retry-item")
    assert retry.disabled and retry.tooltip.startswith("role viewer may not item retry")
    before = attempts(errored)
    dash.drawers.handlers.retry_item('{"fixed": true}')
    dash.wait_idle(30)
    assert "role viewer may not item retry" in dash.message.text.value
    assert attempts(errored) == before and edits(errored) == []


# ------------------------------------------------------------------------------------ recreate preview
def test_recreate_confirmation_lists_what_will_change(prepared, make_dashboard, tmp_path: Path) -> None:
    ws = prepared("widgets-retries-demo", init_small_demo)
    ws.create(*TARGET)
    apply_config(ws, tmp_path, description=f"next {HOSTILE}",
                 jobs={"bill-run": {"batch_size": 25, "params": {"label": HOSTILE}}})
    dash = open_dash(make_dashboard, ws)
    recreate = one(dash, "ao-action-recreate")
    assert not recreate.disabled, recreate.tooltip
    recreate.click()
    assert shown(one(dash, "ao-confirm"))
    shown_html = one(dash, "ao-confirm-text").value
    lines = ws.recreate_preview(*TARGET).lines()
    assert lines[0] == "config version 1 → 2" and len(lines) >= 3
    assert shown_html.count("<li>") == len(lines) and '<ul class="ao-preview">' in shown_html
    assert "job bill-run: batch_size 10 → 25" in shown_html
    assert HOSTILE not in shown_html and "&lt;img src=x onerror=alert(1)&gt;" in shown_html
    assert [j.name for j in ws.execution(*TARGET).jobs][1] == "bill-run"  # nothing changed yet
    one(dash, "ao-confirm-yes").click()
    dash.wait_idle(30)
    assert ws.execution(*TARGET).config_version == 2 and not shown(one(dash, "ao-confirm"))


def test_confirmation_html_escapes_its_details_and_reset_has_none() -> None:
    plain = Confirmation(ScheduleAction.RESET, C, S, DAY)
    assert "<ul" not in confirmation_html(plain) and confirmation_html(plain).startswith("<b>Reset execution")
    recreate = dataclasses.replace(plain, action=ScheduleAction.RECREATE,
                                   details=("job added: " + HOSTILE,))
    assert confirmation_html(recreate).endswith("<li>job added: &lt;img src=x onerror=alert(1)&gt;</li></ul>")


# ------------------------------------------------------------------------------------ accepted errors
def test_a_job_within_its_accepted_errors_shows_completed_with_errors_and_stays_retryable(
        prepared, make_dashboard, tmp_path: Path) -> None:
    ws = prepared("widgets-retries-demo", init_small_demo)
    apply_config(ws, tmp_path, jobs={"bill-run": {"max_errors": 5}})
    ws.create(*TARGET)
    e = ws.process(*TARGET)
    bill = e.job("bill-run")
    assert bill.status is JobStatus.COMPLETED and bill.error == 2
    badge = job_badge(bill)
    assert (badge.text, badge.css) == ("COMPLETED with errors", "ao-st-completed-errors")
    assert badge.colour not in ("#43a047", "#e53935")
    assert job_badge(e.job("usage-rating")).text == "COMPLETED"
    dash = open_dash(make_dashboard, ws)
    status = one(tile(dash, "bill-run"), "ao-job-status").value
    assert "ao-st-completed-errors" in status and "COMPLETED with errors" in status
    assert "with errors" not in one(tile(dash, "usage-rating"), "ao-job-status").value
    assert not menu_button(dash, "bill-run", "retry").disabled
    open_errors(dash)
    assert codes_listed(dash) == {"RATE_PLAN_NOT_FOUND", "TAX_RULE_MISSING"}  # errors still listed
    assert all(not b.disabled for b in find(dash, "ao-retry-code"))
    account = open_editor(dash, "TAX_RULE_MISSING")
    assert not one(dash, "ao-retry-item").disabled
    resolve(ws, C, "TAX_RULE_MISSING")
    one(dash, "ao-retry-item").click()
    dash.wait_idle(30)
    assert account not in {i.account_id for i in ws.job_errors(*TARGET, "bill-run", limit=100)}
    assert ws.execution(*TARGET).job("bill-run").actions[JobAction.RETRY]  # one accepted error left
    assert "COMPLETED with errors" in one(tile(dash, "bill-run"), "ao-job-status").value


# ------------------------------------------------------------------------------------ deadlines
def test_a_late_execution_shows_late_on_the_activity_bar_and_its_unfinished_tiles(
        prepared, make_dashboard, tmp_path: Path, clock) -> None:
    ws = prepared("widgets-retries-demo", init_small_demo)
    apply_config(ws, tmp_path, deadline="+1 06:00")  # the day after the run date, 06:00 New York time
    ws.create(*TARGET)
    clock.now = dt.datetime(2026, 11, 25, 10, 59, tzinfo=dt.timezone.utc)  # 05:59 in New York
    dash = open_dash(make_dashboard, ws)
    assert "ao-late" not in one(dash, "ao-status").value
    assert not any("ao-late" in w.value for w in find(dash, "ao-job-status"))
    clock.now = dt.datetime(2026, 11, 25, 11, 1, tzinfo=dt.timezone.utc)
    one(dash, "ao-refresh").click()
    bar = one(dash, "ao-status").value
    assert '<span class="ao-late" title="deadline 2026-11-25 06:00 EST passed">LATE</span>' in bar
    assert all("ao-late" in w.value for w in find(dash, "ao-job-status"))  # all four PENDING
    one(dash, "ao-action-process").click()
    dash.wait_idle(30)
    assert "ao-late" in one(dash, "ao-status").value  # ERRORED and past the deadline
    late_tiles = {job for job in ("usage-rating", "bill-run", "invoice-delivery", "payment-collection")
                  if "ao-late" in one(tile(dash, job), "ao-job-status").value}
    assert late_tiles == {"bill-run", "invoice-delivery", "payment-collection"}  # usage-rating COMPLETED
    assert late_html("") == "" and "&lt;b&gt;" in late_html("<b>")


def test_recreate_asked_where_the_preview_is_refused_says_why_in_the_confirmation(prepared) -> None:
    state = ViewState(prepared("widgets-retries-demo", init_small_demo))
    state.client, state.schedule, state.run_date = TARGET  # not created yet: Recreate would be refused
    confirmation = state.ask(ScheduleAction.RECREATE)
    assert confirmation.details == (
        "no preview: recreate refused: execution acme/daily-billing 2026-11-24 is NOT_CREATED; recreate needs PENDING",)
