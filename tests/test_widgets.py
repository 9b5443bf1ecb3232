"""The dashboard's widgets in plain pytest (no browser): build it on a demo workspace, click its
buttons, set the date picker, pick menu entries, and read what it shows and enables."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ipywidgets as widgets
import plotly.graph_objects as go
import pytest
import yaml

from allegro_ops import ItemInput, JobContext, JobType, Workspace, WorkItemError, register
from allegro_ops.demo import init_demo, resolve
from widgets import Dashboard, build_dashboard
from widgets.charts import history_series
from widgets.dashboard import STYLE
from widgets.navigation import account_rows

ROOT = Path(__file__).resolve().parent.parent
RUN_DATE = dt.date(2026, 11, 24)
TARGET = ("acme", "daily-billing", RUN_DATE)
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
FIXED_NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc)


@register
class HostileMarkup(JobType):
    """Work items whose account id, payload, error code and reason are markup."""

    name = "test.hostile_markup"

    def list_work_items(self, ctx: JobContext) -> list[tuple[str, object]]:
        return [(HOSTILE, {"note": HOSTILE, "script": "<script>alert(2)</script>"}), ("PLAIN-1", {"note": "plain"})]

    def process_item(self, item: ItemInput, state: object, ctx: JobContext) -> None:
        raise WorkItemError(f"CODE{HOSTILE}", f"reason {HOSTILE}")


# ------------------------------------------------------------------------------------ helpers
def walk(widget: widgets.Widget) -> Iterator[widgets.Widget]:
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from walk(child)


def find(root: widgets.Widget, css: str) -> list[widgets.Widget]:
    return [w for w in walk(root) if css in getattr(w, "_dom_classes", ())]


def one(root: widgets.Widget, css: str) -> widgets.Widget:
    found = find(root, css)
    assert len(found) == 1, f"{len(found)} widgets with class {css}"
    return found[0]


def shown(widget: widgets.Widget) -> bool:
    return widget.layout.display != "none"


def text(widget: widgets.Widget) -> str:
    """Roughly what a person reads in an HTML widget or a box of them (tags dropped, entities kept)."""
    return " ".join(re.sub(r"<[^>]+>", "", w.value) for w in walk(widget) if isinstance(w, widgets.HTML))


def html_values(root: widgets.Widget) -> list[str]:
    return [w.value for w in walk(root) if isinstance(w, widgets.HTML)]


def action(dash: Dashboard, name: str) -> widgets.Button:
    return one(dash, f"ao-action-{name}")


def enabled_actions(dash: Dashboard) -> set[str]:
    return {n for n in ("create", "recreate", "process", "reprocess", "reset") if not action(dash, n).disabled}


def tile(dash: Dashboard, job: str) -> widgets.Widget:
    return one(dash, f"ao-job-{job}")


def menu_button(dash: Dashboard, job: str, entry: str) -> widgets.Button:
    return one(tile(dash, job), f"ao-job-{entry}")


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


def open_schedule(dash: Dashboard, client: str = "acme", schedule: str = "daily-billing",
                  day: dt.date = RUN_DATE) -> None:
    one(dash, f"ao-schedule-{client}-{schedule}").click()
    one(dash, "ao-date").value = day


def open_items(dash: Dashboard, job: str, code: str) -> None:
    menu_button(dash, job, "stats").click()
    one(dash, "ao-errors-info").click()
    row = next(r for r in find(dash, "ao-error-row") if code in text(one(r, "ao-error-code")))
    one(row, "ao-view").click()


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def errored_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo with acme/daily-billing 2026-11-24 processed (ERRORED at bill-run), built once."""
    home = tmp_path_factory.mktemp("errored")
    ws = Workspace(home, clock=lambda: FIXED_NOW, actor="tester")
    init_demo(ws, accounts=400, seed=7, batch_size=50)
    ws.create(*TARGET)
    ws.process(*TARGET)
    return home


@pytest.fixture
def errored(errored_home: Path, tmp_path: Path, clock) -> Workspace:
    home = tmp_path / "errored"
    shutil.copytree(errored_home, home)
    return Workspace(home, clock=clock, actor="tester")


@pytest.fixture
def make_dashboard(clock) -> Iterator[Callable[..., Dashboard]]:
    made: list[Dashboard] = []

    def make(ws: Workspace, **options) -> Dashboard:
        settings = {"run_in_background": False, "refresh_seconds": None, "nav_refresh_seconds": None,
                    "page_size": 3, **options}
        dash = Dashboard(ws, clock=clock, **settings)
        made.append(dash)
        return dash

    yield make
    for dash in made:
        dash.wait_idle(30)
        dash.close()


@pytest.fixture
def dash(demo: Workspace, make_dashboard) -> Dashboard:
    return make_dashboard(demo)


@pytest.fixture
def errored_dash(errored: Workspace, make_dashboard) -> Dashboard:
    dash = make_dashboard(errored)  # opens on the first schedule, acme/daily-billing
    one(dash, "ao-date").value = RUN_DATE
    return dash


# ------------------------------------------------------------------------------------ navigation
def test_navigation_lists_each_schedule_under_its_client(dash: Dashboard) -> None:
    assert "ao-dashboard" in dash._dom_classes
    nav = one(dash, "ao-nav")
    order = [(w.value if isinstance(w, widgets.HTML) else w.description)
             for w in walk(nav) if {"ao-client", "ao-schedule-entry"} & set(w._dom_classes)]
    assert order == ["acme", "daily-billing", "month-end", "globex", "daily-billing", "month-end"]
    assert one(nav, "ao-schedule-globex-month-end").description == "month-end"
    assert one(nav, "ao-mode").options == ("Usage", "Account", "Audit") and one(nav, "ao-mode").value == "Usage"


def test_first_schedule_opens_on_today_in_its_timezone(dash: Dashboard) -> None:
    assert one(dash, "ao-date").value == dt.date(2026, 11, 25)  # 04:00 in New York
    assert "NOT_CREATED" in text(one(dash, "ao-status"))
    assert enabled_actions(dash) == {"create"}
    assert "process needs PENDING" in action(dash, "process").tooltip
    assert "acme / daily-billing" in text(one(dash, "ao-title"))
    config = text(one(dash, "ao-config"))
    for value in ("automatic", "0 2 * * *", "America/New_York", "Daily billing cycle for acme"):
        assert value in config
    assert len(find(dash, "ao-job-tile")) == 4
    assert "NOT_CREATED" in text(one(tile(dash, "bill-run"), "ao-job-status"))
    assert menu_button(dash, "bill-run", "stats").disabled


def test_selecting_a_schedule_shows_its_own_jobs_and_marks_the_entry(dash: Dashboard) -> None:
    one(dash, "ao-schedule-globex-month-end").click()
    assert "globex / month-end" in text(one(dash, "ao-title"))
    assert [t.job for t in dash.activity.tiles] == ["revenue-recognition", "statement-run", "ledger-export"]
    assert "manual" in text(one(dash, "ao-config"))
    assert one(dash, "ao-selected").description == "month-end"
    assert one(dash, "ao-schedule-globex-month-end").button_style == "info"


def test_refresh_rereads_the_schedules(demo: Workspace, dash: Dashboard, tmp_path: Path) -> None:
    _apply(demo, tmp_path, "acme", "catch-up")
    assert not find(dash, "ao-schedule-acme-catch-up")
    one(dash, "ao-refresh").click()
    assert one(dash, "ao-schedule-acme-catch-up").description == "catch-up"


def test_a_slow_timer_picks_up_new_schedules_and_changes_made_elsewhere(
        demo: Workspace, make_dashboard, tmp_path: Path) -> None:
    dash = make_dashboard(demo, nav_refresh_seconds=0.05)
    _apply(demo, tmp_path, "initech", "daily-billing")
    wait_for(lambda: bool(find(dash, "ao-schedule-initech-daily-billing")), 20)
    assert "initech" in [w.value for w in find(dash, "ao-client")]
    demo.create("acme", "daily-billing", one(dash, "ao-date").value)
    wait_for(lambda: "PENDING" in text(one(dash, "ao-status")), 20)


def _apply(ws: Workspace, folder: Path, client: str, name: str, **changes) -> None:
    doc = yaml.safe_load(ws.export_config("acme", "daily-billing"))
    doc.update({"client": client, "name": name, **changes})
    path = folder / f"{client}-{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    ws.apply_config(path)


# ------------------------------------------------------------------------------------ actions
def test_create_then_process_stops_errored_at_bill_run(dash: Dashboard) -> None:
    open_schedule(dash)
    assert "NOT_CREATED" in text(one(dash, "ao-status"))
    action(dash, "create").click()
    assert "PENDING" in text(one(dash, "ao-status"))
    assert enabled_actions(dash) == {"process"}  # Recreate and Reset would change nothing yet
    action(dash, "process").click()
    assert "ERRORED" in text(one(dash, "ao-status"))
    assert enabled_actions(dash) == {"reprocess", "reset"}
    bill = tile(dash, "bill-run")
    assert "ERRORED" in text(one(bill, "ao-job-status"))
    assert "Total 400 · Pending 0 · Processed 386 · Error 14" in text(one(bill, "ao-job-counts"))
    assert "COMPLETED" in text(one(tile(dash, "usage-rating"), "ao-job-status"))
    assert "PENDING" in text(one(tile(dash, "payment-collection"), "ao-job-status"))
    assert not shown(one(bill, "ao-job-progress"))
    assert not dash.message.text.value


def test_job_menu_enables_process_retry_and_stats_per_job(errored_dash: Dashboard) -> None:
    bill = tile(errored_dash, "bill-run")
    toggle = one(bill, "ao-job-menu")
    assert toggle.description == "⋮" and not shown(one(bill, "ao-job-menu-items"))
    toggle.value = True
    assert shown(one(bill, "ao-job-menu-items"))
    assert [menu_button(errored_dash, "bill-run", e).disabled for e in ("process", "retry", "stats")] == [
        True, False, False]
    assert "job bill-run is ERRORED" in menu_button(errored_dash, "bill-run", "process").tooltip
    assert not menu_button(errored_dash, "invoice-delivery", "process").disabled
    assert menu_button(errored_dash, "usage-rating", "retry").disabled
    assert [b.description for b in one(bill, "ao-job-menu-items").children] == ["Process", "Retry", "Stats"]


def test_stats_then_errors_by_code_then_work_items_then_cancel_level_by_level(errored_dash: Dashboard) -> None:
    dash = errored_dash
    menu_button(dash, "bill-run", "stats").click()
    stats = one(dash, "ao-stats-drawer")
    counts = {n: text(one(stats, f"ao-count-{n}")) for n in ("total", "pending", "processed", "error")}
    assert counts == {"total": "Total Count 400", "pending": "Pending Count 0",
                      "processed": "Processed Count 386", "error": "Error Count 14"}
    one(stats, "ao-errors-info").click()
    rows = find(one(dash, "ao-errors-drawer"), "ao-error-row")
    assert [(text(one(r, "ao-error-count")), text(one(r, "ao-error-code"))) for r in rows] == [
        ("8", "RATE_PLAN_NOT_FOUND"), ("6", "TAX_RULE_MISSING")]
    one(rows[0], "ao-view").click()
    items = one(dash, "ao-items-drawer")
    first = find(items, "ao-item-row")[0]
    account = text(one(first, "ao-account-id"))
    assert account.startswith("ACME-") and text(one(first, "ao-item-status")) == "ERROR"
    assert "rate plan" in text(one(first, "ao-reason"))
    payload = one(first, "ao-payload").value
    assert "<details" in payload and "<pre>" in payload and f"&quot;account_id&quot;: &quot;{account}&quot;" in payload
    assert [d.description for d in find(items, "ao-cancel")] == ["Cancel"]
    for level in ("ao-items-drawer", "ao-errors-drawer", "ao-stats-drawer"):
        assert find(dash, level)
        one(one(dash, level), "ao-cancel").click()
        assert not find(dash, level)
    assert not shown(dash.drawers) and "ERRORED" in text(one(dash, "ao-status"))


def test_work_items_page_with_previous_and_next(errored_dash: Dashboard) -> None:
    open_items(errored_dash, "bill-run", "RATE_PLAN_NOT_FOUND")

    def page() -> list[str]:
        return [text(one(r, "ao-account-id")) for r in find(errored_dash, "ao-item-row")]

    previous, following = one(errored_dash, "ao-previous"), one(errored_dash, "ao-next")
    assert (previous.description, following.description) == ("Previous", "Next")
    assert previous.disabled and not following.disabled
    seen = page()
    while not one(errored_dash, "ao-next").disabled:
        one(errored_dash, "ao-next").click()
        seen += page()
    assert len(seen) == len(set(seen)) == 8
    assert text(one(errored_dash, "ao-page-label")) == "7–8 of 8"
    one(errored_dash, "ao-previous").click()
    assert page() == seen[3:6]


def test_close_all_returns_to_the_activity_pane(errored_dash: Dashboard) -> None:
    open_items(errored_dash, "bill-run", "TAX_RULE_MISSING")
    assert len(find(errored_dash, "ao-item-row")) == 3
    find(errored_dash, "ao-close-all")[-1].click()
    assert not find(errored_dash, "ao-drawer") and not shown(errored_dash.drawers)


def test_stats_drawer_has_a_bar_of_processed_error_pending(errored_dash: Dashboard) -> None:
    menu_button(errored_dash, "bill-run", "stats").click()
    drawer = one(errored_dash, "ao-stats-drawer")
    assert not [w for w in walk(drawer) if isinstance(w, go.FigureWidget)]  # plain HTML, no plotly.js to ship
    bar = one(drawer, "ao-progress").value
    parts = re.findall(r'ao-bar-part ao-bar-(\w+)" style="width: ([\d.]+)%', bar)
    assert parts == [("processed", "96.50"), ("error", "3.50")]  # of 386, 14 and 0 pending
    assert re.findall(r"(\w+) <b>(\d+)</b>", bar) == [("Processed", "386"), ("Error", "14"), ("Pending", "0")]
    assert text(one(drawer, "ao-progress")).endswith("96% processed")


def test_a_click_beside_the_drawers_closes_one_level(errored_dash: Dashboard) -> None:
    dash = errored_dash
    backdrop = one(dash, "ao-backdrop")
    assert backdrop in dash.activity.body.children and not shown(backdrop)
    open_items(dash, "bill-run", "RATE_PLAN_NOT_FOUND")
    assert shown(backdrop) and "ao-drawers-open" in dash.activity.body._dom_classes
    for level in ("ao-items-drawer", "ao-errors-drawer", "ao-stats-drawer"):
        assert find(dash, level)
        backdrop.click()
        assert not find(dash, level)
    assert not shown(backdrop) and not shown(dash.drawers)
    assert "ao-drawers-open" not in dash.activity.body._dom_classes
    assert "ERRORED" in text(one(dash, "ao-status"))


def test_reset_asks_for_confirmation_first(errored_dash: Dashboard) -> None:
    dash = errored_dash
    bar = one(dash, "ao-confirm")
    assert not shown(bar)
    action(dash, "reset").click()
    assert shown(bar) and "Reset execution acme/daily-billing 2026-11-24?" in text(one(bar, "ao-confirm-text"))
    assert "ERRORED" in text(one(dash, "ao-status"))
    one(bar, "ao-confirm-no").click()
    assert not shown(bar) and "ERRORED" in text(one(dash, "ao-status"))
    action(dash, "reset").click()
    confirm = one(bar, "ao-confirm-yes")
    assert confirm.description == "Confirm"
    confirm.click()
    assert not shown(bar) and "PENDING" in text(one(dash, "ao-status"))
    assert "Total 0 · Pending 0 · Processed 0 · Error 0" in text(one(tile(dash, "bill-run"), "ao-job-counts"))


def test_recreate_asks_for_confirmation_and_rebuilds_from_the_current_config(
        demo: Workspace, dash: Dashboard, tmp_path: Path) -> None:
    open_schedule(dash)
    action(dash, "create").click()
    doc = yaml.safe_load(demo.export_config("acme", "daily-billing"))
    _apply(demo, tmp_path, "acme", "daily-billing", jobs=doc["jobs"][:2], description="Two jobs")
    one(dash, "ao-refresh").click()
    assert "Version 1" in text(one(dash, "ao-config"))  # the snapshot this date was created with
    action(dash, "recreate").click()
    assert "Recreate execution" in text(one(dash, "ao-confirm"))
    assert len(dash.activity.tiles) == 4
    one(dash, "ao-confirm-yes").click()
    assert [t.job for t in dash.activity.tiles] == ["usage-rating", "bill-run"]
    assert "Version 2" in text(one(dash, "ao-config")) and "Two jobs" in text(one(dash, "ao-config"))


def test_changing_the_date_drops_a_pending_confirmation(errored_dash: Dashboard) -> None:
    action(errored_dash, "reset").click()
    one(errored_dash, "ao-date").value = dt.date(2026, 11, 23)
    assert not shown(one(errored_dash, "ao-confirm"))
    assert errored_dash.state.confirmation is None
    assert "NOT_CREATED" in text(one(errored_dash, "ao-status"))


def test_retry_from_the_job_menu_reruns_the_errored_items(errored: Workspace, errored_dash: Dashboard) -> None:
    resolve(errored, "acme", "RATE_PLAN_NOT_FOUND")
    menu_button(errored_dash, "bill-run", "stats").click()
    menu_button(errored_dash, "bill-run", "retry").click()
    assert "Processed 394 · Error 6" in text(one(tile(errored_dash, "bill-run"), "ao-job-counts"))
    assert text(one(errored_dash, "ao-count-error")) == "Error Count 6"  # the open stats drawer follows
    assert "ERRORED" in text(one(errored_dash, "ao-status"))


def test_reprocess_after_resolving_completes_the_schedule(errored: Workspace, errored_dash: Dashboard) -> None:
    resolve(errored, "acme")
    action(errored_dash, "reprocess").click()
    assert "COMPLETED" in text(one(errored_dash, "ao-status"))
    assert all("COMPLETED" in text(one(t, "ao-job-status")) for t in find(errored_dash, "ao-job-tile"))
    assert enabled_actions(errored_dash) == {"reset"}


# ------------------------------------------------------------------------------------ errors
def test_a_refused_action_shows_the_engine_reason_on_the_page(demo: Workspace, dash: Dashboard) -> None:
    open_schedule(dash)
    demo.create(*TARGET)  # elsewhere: the page still shows NOT_CREATED
    assert not action(dash, "create").disabled
    action(dash, "create").click()
    message = one(dash, "ao-message")
    assert shown(message) and "create refused" in text(message) and "is PENDING" in text(message)
    assert "ao-message-error" in message._dom_classes
    assert "PENDING" in text(one(dash, "ao-status"))  # and the page caught up
    one(message, "ao-message-close").click()
    assert not shown(message)


def test_a_locked_database_shows_store_busy(demo: Workspace, make_dashboard, clock) -> None:
    dash = make_dashboard(Workspace(demo.home, clock=clock, lock_timeout=0.3))
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; "
                               f"c = duckdb.connect({str(demo.store.path)!r}); print('locked', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        one(dash, "ao-refresh").click()
    finally:
        holder.kill()
        holder.wait()
    message = one(dash, "ao-message")
    assert shown(message) and "locked by another process" in text(message)
    assert not dash.traceback_output.outputs


def test_an_unexpected_error_shows_a_line_and_its_traceback(dash: Dashboard, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(dash.ws, "execution", broken)
    one(dash, "ao-refresh").click()
    assert "Unexpected error: ZeroDivisionError: boom" in text(one(dash, "ao-message"))
    logged = "".join(o["text"] for o in dash.traceback_output.outputs)
    assert "Traceback" in logged and "ZeroDivisionError: boom" in logged
    assert shown(one(dash, "ao-log"))


def test_a_date_out_of_range_is_a_message_and_no_date_disables_actions(dash: Dashboard) -> None:
    one(dash, "ao-date").value = dt.date(1900, 1, 1)
    assert "bad date 1900-01-01" in text(one(dash, "ao-message"))
    assert enabled_actions(dash) == set() and not shown(dash.activity.body)  # not the old date's view
    one(dash, "ao-date").value = None
    assert enabled_actions(dash) == set()
    assert "Choose a run date" in text(one(dash, "ao-placeholder"))


# ------------------------------------------------------------------------------------ escaping
def test_markup_from_the_data_is_shown_as_text(demo: Workspace, make_dashboard, tmp_path: Path) -> None:
    _apply(demo, tmp_path, "evil", "markup", description=f"desc {HOSTILE}",
           jobs=[{"name": "post", "type": "test.hostile_markup", "batch_size": 10}])
    dash = make_dashboard(demo)
    open_schedule(dash, "evil", "markup")
    action(dash, "create").click()
    action(dash, "process").click()
    assert "ERRORED" in text(one(dash, "ao-status"))
    open_items(dash, "post", "CODE")
    row = next(r for r in find(dash, "ao-item-row") if HOSTILE_ESCAPED in one(r, "ao-account-id").value)
    assert HOSTILE_ESCAPED in one(row, "ao-payload").value
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in one(row, "ao-payload").value
    assert f"reason {HOSTILE_ESCAPED}" in one(row, "ao-reason").value
    assert f"CODE{HOSTILE_ESCAPED}" in one(dash, "ao-error-code").value
    assert f"desc {HOSTILE_ESCAPED}" in one(dash, "ao-config").value

    dash.nav.mode.value = "Account"
    account = one(dash, "ao-account")
    assert shown(account) and not shown(dash.activity)
    one(account, "ao-account-client").value = "evil"
    one(account, "ao-account-id-input").value = HOSTILE
    one(account, "ao-account-lookup").click()
    assert f"CODE{HOSTILE_ESCAPED}" in one(account, "ao-account-results").value
    assert HOSTILE_ESCAPED in one(account, "ao-account-summary").value

    dash.nav.mode.value = "Usage"
    one(dash, "ao-charts-mode").value = "by error code"
    assert [t.name for t in dash.charts.figure.data[2:]] == [f"CODE{HOSTILE_ESCAPED}"]
    everything = html_values(dash)
    assert not [v for v in everything if HOSTILE in v or "<script>" in v]
    assert not [w for w in walk(dash) if getattr(w, "description_allow_html", False)]


# ------------------------------------------------------------------------------------ account view
def test_account_view_lists_every_attempt_and_marks_archived_ones(errored: Workspace, errored_dash: Dashboard) -> None:
    resolve(errored, "acme", "RATE_PLAN_NOT_FOUND")
    menu_button(errored_dash, "bill-run", "retry").click()  # ACME-000002's bill-run: attempt 2 succeeds
    errored_dash.nav.mode.value = "Account"
    account = one(errored_dash, "ao-account")
    assert one(account, "ao-account-client").options == ("acme", "globex")
    one(account, "ao-account-id-input").value = "ACME-000002"
    one(account, "ao-account-lookup").click()
    table = one(account, "ao-account-results").value
    assert table.count('class="ao-account-row"') == 3  # usage-rating, bill-run attempts 2 and 1
    assert "RATE_PLAN_NOT_FOUND" in table and "0 archived" in text(one(account, "ao-account-summary"))
    errored_dash.nav.mode.value = "Usage"
    assert shown(errored_dash.activity) and not shown(account)
    action(errored_dash, "reset").click()
    one(errored_dash, "ao-confirm-yes").click()
    errored_dash.nav.mode.value = "Account"
    one(account, "ao-account-lookup").click()
    table = one(account, "ao-account-results").value
    assert table.count('class="ao-account-row ao-archived"') == 3 and 'class="ao-account-row"' not in table
    assert "3 archived" in text(one(account, "ao-account-summary"))


def test_account_view_without_an_account_id_says_so(dash: Dashboard) -> None:
    dash.nav.mode.value = "Account"
    one(dash, "ao-account-lookup").click()
    assert "enter an Account Id" in text(one(dash, "ao-message"))


def test_account_rows_mark_archived_attempts(errored: Workspace) -> None:
    resolve(errored, "acme", "RATE_PLAN_NOT_FOUND")
    errored.retry_job(*TARGET, "bill-run")
    errored.reset(*TARGET)
    rows = account_rows(errored.account_history("acme", "ACME-000002"))
    assert rows and all(r.archived for r in rows)  # the only generation with attempts was reset
    bill = [r for r in rows if r.job == "bill-run"]
    assert [r.attempt for r in bill] == [2, 1] and bill[0].status == "PROCESSED" and bill[1].status == "ERROR"
    assert bill[1].error_code == "RATE_PLAN_NOT_FOUND" and '"account_id": "ACME-000002"' in bill[1].payload


# ------------------------------------------------------------------------------------ live runs
def test_process_runs_in_a_background_thread_and_auto_refresh_ends_with_the_run(
        workspace: Workspace, make_dashboard) -> None:
    init_demo(workspace, accounts=60, seed=7, batch_size=10)
    dash = make_dashboard(workspace, run_in_background=True, refresh_seconds=0.05)
    open_schedule(dash)
    action(dash, "create").click()
    assert dash.wait_idle(30)
    assert "PENDING" in text(one(dash, "ao-status"))
    action(dash, "process").click()
    thread = dash.runner.thread
    assert thread is not None and thread.name == "allegro-ops process"
    assert enabled_actions(dash) == set()  # nothing else starts while it runs
    assert dash.wait_idle(60) and not thread.is_alive()
    assert "ERRORED" in text(one(dash, "ao-status")) and not dash.auto_refreshing
    assert enabled_actions(dash) == {"reprocess", "reset"}


def _slow_demo(ws: Workspace, item_delay_ms: int = 20) -> None:
    init_demo(ws, accounts=80, seed=7, batch_size=10, item_delay_ms=item_delay_ms)
    ws.create(*TARGET)


def test_tiles_show_progress_while_a_run_is_live(workspace: Workspace, make_dashboard) -> None:
    # slow enough that a job's results take several writes (one every 0.25 s) even on a busy machine
    _slow_demo(workspace, item_delay_ms=50)
    dash = make_dashboard(workspace, run_in_background=True, refresh_seconds=0.05)
    open_schedule(dash)
    action(dash, "process").click()
    usage = tile(dash, "usage-rating")
    wait_for(lambda: shown(one(usage, "ao-job-progress")) and 0 < one(usage, "ao-job-progress").value < 1)
    assert "IN_PROGRESS" in text(one(usage, "ao-job-status"))
    assert "IN_PROGRESS" in text(one(dash, "ao-status")) and dash.auto_refreshing
    assert dash.wait_idle(60)
    assert "ERRORED" in text(one(dash, "ao-status")) and not shown(one(usage, "ao-job-progress"))


def _cli(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "ALLEGRO_OPS_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "allegro_ops.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_run_started_elsewhere_is_followed_after_refresh(workspace: Workspace, make_dashboard) -> None:
    _slow_demo(workspace)
    dash = make_dashboard(workspace, refresh_seconds=0.3)
    open_schedule(dash)
    cli = _cli(workspace.home, "process", *map(str, TARGET))
    try:
        wait_for(lambda: workspace.execution(*TARGET).status.value == "IN_PROGRESS", every=0.2)
        assert "PENDING" in text(one(dash, "ao-status"))
        one(dash, "ao-refresh").click()
        assert dash.auto_refreshing and "IN_PROGRESS" in text(one(dash, "ao-status"))
        wait_for(lambda: "ERRORED" in text(one(dash, "ao-status")), 60)  # no click needed
    finally:
        cli.wait(60)
    assert dash.wait_idle(30) and not dash.auto_refreshing
    bill = workspace.execution(*TARGET).job("bill-run")
    assert f"Processed {bill.processed} · Error {bill.error}" in text(one(tile(dash, "bill-run"), "ao-job-counts"))


def test_a_run_whose_owner_died_shows_owner_lost(workspace: Workspace, make_dashboard) -> None:
    _slow_demo(workspace)
    cli = _cli(workspace.home, "process", *map(str, TARGET))
    try:
        wait_for(lambda: workspace.execution(*TARGET).status.value == "IN_PROGRESS", every=0.2)
    finally:
        cli.kill()
        cli.wait(30)
    dash = make_dashboard(workspace, refresh_seconds=0.05)
    open_schedule(dash)
    assert "IN_PROGRESS (owner lost)" in text(one(dash, "ao-status"))
    assert "ao-st-stalled" in one(dash, "ao-status").value
    assert "process" in enabled_actions(dash) and not dash.auto_refreshing


# ------------------------------------------------------------------------------------ charts and page
def test_history_charts_show_status_duration_and_errors_per_date(errored_dash: Dashboard) -> None:
    charts = one(errored_dash, "ao-charts")
    fig = errored_dash.charts.figure
    assert isinstance(fig, go.FigureWidget) and fig in list(walk(charts))
    assert list(fig.data[0].x) == ["2026-11-24"] and list(fig.data[0].y) == ["ERRORED"]
    assert list(fig.data[0].marker.color) == ["#e53935"]
    errors = {t.name: list(t.y) for t in fig.data[5:]}
    assert errors == {"usage-rating": [0], "bill-run": [14], "invoice-delivery": [0], "payment-collection": [0]}
    one(charts, "ao-charts-mode").value = "by error code"
    by_code = {t.name: list(t.y) for t in errored_dash.charts.figure.data[5:]}
    assert by_code == {"RATE_PLAN_NOT_FOUND": [8], "TAX_RULE_MISSING": [6]}


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, int]]:
    """What the widgets send to the browser from now on: (message type, bytes of JSON and buffers)
    per comm message. Without a kernel every widget's comm is a comm.DummyComm."""
    import comm

    messages: list[tuple[str, int]] = []

    def publish(self, msg_type, data=None, metadata=None, buffers=None, **keys) -> None:
        size = len(json.dumps(data, default=str)) + sum(memoryview(b).nbytes for b in buffers or ())
        messages.append((msg_type, size))

    monkeypatch.setattr(comm.DummyComm, "publish_msg", publish)
    return messages


@pytest.fixture
def figures_made(monkeypatch) -> list[go.FigureWidget]:
    """Every plotly FigureWidget created from now on (each one ships ~5 MB of plotly.js)."""
    made: list[go.FigureWidget] = []
    init = go.FigureWidget.__init__

    def counting(self, *args, **kwargs) -> None:
        made.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(go.FigureWidget, "__init__", counting)
    return made


def test_stats_and_chart_updates_reuse_the_one_figure_widget(
        errored: Workspace, errored_dash: Dashboard, figures_made, sent) -> None:
    dash = errored_dash
    figure = dash.charts.figure
    assert isinstance(figure, go.FigureWidget)
    for _ in range(5):
        menu_button(dash, "bill-run", "stats").click()
        one(dash, "ao-cancel").click()
    assert sum(n for _, n in sent) < 200_000  # five drawers of plain widgets (a donut was 5 MB each)
    sent.clear()
    errored.create("acme", "daily-billing", dt.date(2026, 11, 23))  # elsewhere: the history changes
    one(dash, "ao-refresh").click()
    assert list(dash.charts.figure.data[0].x) == ["2026-11-23", "2026-11-24"]
    assert dash.charts.last_update == "restyle" and 0 < sum(n for _, n in sent) < 20_000
    one(dash, "ao-schedule-globex-month-end").click()  # no history: the figure waits, unseen
    assert text(one(dash, "ao-charts")).endswith("No executions of this schedule yet.")
    one(dash, "ao-schedule-acme-daily-billing").click()
    sent.clear()
    one(dash, "ao-charts-mode").value = "by error code"  # other traces, on the same figure
    assert dash.charts.last_update == "replace" and 0 < sum(n for _, n in sent) < 20_000
    assert figures_made == [] and dash.charts.figure is figure
    assert figure in list(walk(one(dash, "ao-charts")))
    # A browser that connects later (a Voilà page: the notebook ran first) starts from this state.
    assert [t["name"] for t in figure._widget_data] == [t.name for t in figure.data]
    assert list(figure._widget_data[0]["x"]) == ["2026-11-23", "2026-11-24"]
    assert figure._widget_layout["annotations"][2]["text"] == "Errors per date by error code"


def test_refresh_when_nothing_changed_sends_nothing(errored_dash: Dashboard, sent) -> None:
    menu_button(errored_dash, "bill-run", "stats").click()
    sent.clear()
    one(errored_dash, "ao-refresh").click()
    errored_dash.refresh()
    assert sent == []


def test_duration_per_job_is_busy_time_without_the_wait_before_reprocess(
        workspace: Workspace, make_dashboard, clock) -> None:
    def tick() -> dt.datetime:  # each reading 1 ms later: work items take time
        clock.advance(milliseconds=1)
        return clock.now

    init_demo(workspace, accounts=60, seed=7, batch_size=10)
    ticking = Workspace(workspace.home, clock=tick, actor="tester")
    ticking.create(*TARGET)
    ticking.process(*TARGET)
    clock.advance(seconds=40)  # the operator looks into the errors, then resolves them
    resolve(ticking, "acme")
    ticking.reprocess(*TARGET)
    dash = make_dashboard(ticking)
    open_schedule(dash)
    fig = dash.charts.figure
    busy = {t.name: t.y[0] for t in fig.data[1:5]}
    assert 0 < busy["bill-run"] < 5 and all(v is not None and v < 5 for v in busy.values())
    row = next(r for r in ticking.history("acme", "daily-billing") if r["job"] == "bill-run")
    assert (row["finished_at"] - row["started_at"]).total_seconds() > 40  # what the chart used to show
    assert fig.layout.annotations[1].text == "Busy time per job (s)"


def test_history_series_reshapes_rows_per_job() -> None:
    t0 = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.timezone.utc)
    rows = [
        {"run_date": dt.date(2026, 11, 24), "execution_status": "ERRORED", "sequence": 1, "job": "a",
         "job_status": "COMPLETED", "total": 5, "processed": 5, "error": 0, "started_at": t0,
         "finished_at": t0 + dt.timedelta(seconds=3)},
        {"run_date": dt.date(2026, 11, 24), "execution_status": "ERRORED", "sequence": 2, "job": "b",
         "job_status": "ERRORED", "total": 5, "processed": 3, "error": 2, "started_at": t0, "finished_at": None},
        {"run_date": dt.date(2026, 11, 23), "execution_status": "COMPLETED", "sequence": 1, "job": "a",
         "job_status": "COMPLETED", "total": 5, "processed": 5, "error": 0, "started_at": None, "finished_at": None},
    ]
    series = history_series(rows)
    assert series.dates == ("2026-11-23", "2026-11-24") and series.statuses == ("COMPLETED", "ERRORED")
    assert series.jobs == ("a", "b")
    assert series.duration == {"a": (None, 3.0), "b": (None, None)}
    assert series.errors == {"a": (0, 0), "b": (0, 2)}
    assert series.duration_title == "Elapsed per job, first start to last finish (s)"
    busy = history_series(rows, {(dt.date(2026, 11, 24), "a"): 1.25, (dt.date(2026, 11, 24), "b"): 0.5})
    assert busy.duration == {"a": (None, 1.25), "b": (None, None)}  # b has not finished: no bar
    assert busy.duration_title == "Busy time per job (s)"


def test_style_is_static_and_colours_every_status() -> None:
    assert STYLE.startswith("<style>") and STYLE.count("<style>") == 1
    for forbidden in ("http", "@import", "url(", "<script"):
        assert forbidden not in STYLE
    for css, colour in (("not-created", "#9e9e9e"), ("pending", "#1e88e5"), ("in-progress", "#ffb300"),
                        ("completed", "#43a047"), ("errored", "#e53935")):
        assert f".ao-st-{css} {{ color: {colour}; }}" in STYLE


def test_build_dashboard_opens_a_workspace_folder(demo: Workspace, clock) -> None:
    dash = build_dashboard(demo.home, clock=clock, nav_refresh_seconds=None)
    try:
        assert isinstance(dash, widgets.VBox) and dash.ws.home == demo.home
        assert one(dash, "ao-date").value == dt.date(2026, 11, 25)
    finally:
        dash.close()


def test_the_notebook_is_a_few_lines_without_outputs() -> None:
    nb = json.loads((ROOT / "notebooks" / "dashboard.ipynb").read_text())  # (nbformat's import is slow)
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) == 1 and code[0]["outputs"] == [] and code[0]["execution_count"] is None
    source = "".join(code[0]["source"])
    assert "ALLEGRO_OPS_HOME" in source and "from widgets import build_dashboard" in source
    lines = [line.strip() for line in source.strip().splitlines()]
    assert len(lines) <= 14
    # Shown first; then, only in a preheated Voilà kernel, wait for the page request and re-read.
    shown_at, guard = lines.index("display(dashboard)"), lines.index('if os.environ.get("VOILA_PREHEAT") == "True":')
    assert shown_at < guard < lines.index("wait_for_request()") < lines.index("dashboard.refresh()") == len(lines) - 1
