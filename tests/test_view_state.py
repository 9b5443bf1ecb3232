"""The dashboard's view state, without widgets: colours, enablement and reasons, counts, progress,
drawer rows, paging, the default run date and when auto-refresh runs."""
from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from allegro_ops import ExecutionStatus, JobAction, JobStatus, Phase, ScheduleAction, Workspace
from allegro_ops.demo import init_demo
from allegro_ops.models import ErrorCount, Execution, JobRun, JobStats, WorkItem
from allegro_ops.states import job_actions, job_refusal, refusal, schedule_actions
from widgets.view_state import (
    BUSY, STATUS_COLOURS, Confirmation, DrawerStack, ItemPager, ViewState, activity_view, badge_html,
    default_run_date, esc, item_rows, nav_groups, progress_html, should_auto_refresh, stats_view, status_badge,
)

RUN_DATE = dt.date(2026, 11, 24)
TARGET = ("acme", "daily-billing", RUN_DATE)
NAME = "execution acme/daily-billing 2026-11-24"
ERRORED_PAGE = "RATE_PLAN_NOT_FOUND"  # 8 work items of acme's bill-run in the demo


@pytest.fixture(scope="module")
def errored_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo workspace whose acme/daily-billing 2026-11-24 ran and stopped ERRORED at bill-run,
    built once per module (a run of 400 accounts costs seconds); tests get copies."""
    home = tmp_path_factory.mktemp("errored")
    ws = Workspace(home, clock=lambda: dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc), actor="tester")
    init_demo(ws, accounts=400, seed=7, batch_size=50)
    ws.create(*TARGET)
    ws.process(*TARGET)
    return home


@pytest.fixture
def errored(errored_home: Path, tmp_path: Path, clock) -> Workspace:
    home = tmp_path / "errored"
    shutil.copytree(errored_home, home)
    return Workspace(home, clock=clock, actor="tester")


def enabled(view) -> set[str]:
    return {a.value for a, b in view.actions.items() if b.enabled}


def test_status_circle_colour_and_text_per_status() -> None:
    expected = {"NOT_CREATED": "#9e9e9e", "PENDING": "#1e88e5", "IN_PROGRESS": "#ffb300",
                "COMPLETED": "#43a047", "ERRORED": "#e53935"}
    assert STATUS_COLOURS == expected
    for word, colour in expected.items():
        badge = status_badge(word)
        assert (badge.status, badge.text, badge.colour) == (word, word, colour)
        assert badge.css == "ao-st-" + word.lower().replace("_", "-")
    assert status_badge(ExecutionStatus.ERRORED).text == "ERRORED"


def test_stalled_execution_says_owner_lost() -> None:
    badge = status_badge("IN_PROGRESS", Phase.STALLED)
    assert badge.text == "IN_PROGRESS (owner lost)"
    assert badge.css == "ao-st-stalled"
    assert status_badge("IN_PROGRESS", Phase.RUNNING).text == "IN_PROGRESS"


def test_badge_html_escapes_its_text() -> None:
    badge = dataclasses.replace(status_badge("ERRORED"), text="<b>x</b>")
    assert "<b>x</b>" not in badge_html(badge)
    assert "&lt;b&gt;x&lt;/b&gt;" in badge_html(badge)
    assert esc('<img src=x onerror="a">') == "&lt;img src=x onerror=&quot;a&quot;&gt;"
    assert esc(None) == ""


def test_not_created_enables_create_only_and_says_why_not(demo: Workspace) -> None:
    view = activity_view(demo.execution(*TARGET))
    assert enabled(view) == {"create"}
    assert view.status.text == "NOT_CREATED"
    for action, button in view.actions.items():
        if action is not ScheduleAction.CREATE:
            assert button.tooltip == refusal(action, Phase.NOT_CREATED, False, NAME)
    assert [t.name for t in view.tiles] == ["usage-rating", "bill-run", "invoice-delivery", "payment-collection"]
    assert all(t.status.status == "NOT_CREATED" and not any(b.enabled for b in t.menu.values()) for t in view.tiles)
    assert "NOT_CREATED" in view.tiles[0].menu[JobAction.STATS].tooltip
    assert not view.auto_refresh


def test_fresh_pending_enables_process_only_and_says_why_not_recreate_or_reset(demo: Workspace) -> None:
    view = activity_view(demo.create(*TARGET))
    assert enabled(view) == {"process"}
    assert view.actions[ScheduleAction.RESET].tooltip.endswith("reset needs a run to undo")
    assert view.actions[ScheduleAction.RECREATE].tooltip.endswith("needs a newer config version (config apply)")
    assert view.actions[ScheduleAction.CREATE].tooltip == refusal(ScheduleAction.CREATE, Phase.PENDING, False, NAME)
    assert "create needs NOT_CREATED" in view.actions[ScheduleAction.CREATE].tooltip
    tile = view.tiles[0]
    assert tile.menu[JobAction.PROCESS].enabled and not tile.menu[JobAction.RETRY].enabled
    assert (tile.total, tile.pending, tile.processed, tile.error, tile.progress) == (0, 0, 0, 0, 0.0)


def test_errored_enables_reprocess_and_reset_and_retry_on_the_errored_job(errored: Workspace) -> None:
    execution = errored.execution(*TARGET)
    view = activity_view(execution)
    assert view.status.text == "ERRORED" and view.status.colour == "#e53935"
    assert enabled(view) == {"reprocess", "reset"}
    tiles = {t.name: t for t in view.tiles}
    bill = tiles["bill-run"]
    assert (bill.total, bill.pending, bill.processed, bill.error) == (400, 0, 386, 14)
    assert bill.progress == 1.0 and not bill.running
    assert {a for a, b in bill.menu.items() if b.enabled} == {JobAction.RETRY, JobAction.STATS}
    assert bill.menu[JobAction.PROCESS].tooltip == job_refusal(JobAction.PROCESS, JobStatus.ERRORED,
                                                                Phase.ERRORED, NAME, "job bill-run")
    assert tiles["usage-rating"].status.status == "COMPLETED"
    assert tiles["invoice-delivery"].menu[JobAction.PROCESS].enabled


def test_enablement_is_exactly_execution_actions_in_every_state(errored: Workspace) -> None:
    for execution in (errored.execution("acme", "daily-billing", "2026-11-01"), errored.execution(*TARGET),
                      errored.reset(*TARGET)):
        view = activity_view(execution)
        assert {a: b.enabled for a, b in view.actions.items()} == execution.actions
        for tile, job in zip(view.tiles, execution.jobs):
            assert {a: b.enabled for a, b in tile.menu.items()} == {a: job.actions[a] for a in tile.menu}
            assert set(tile.menu) == set(job.actions) - {JobAction.ITEM_RETRY}  # item retry is per work item


def test_busy_page_disables_actions_but_keeps_stats(errored: Workspace) -> None:
    view = activity_view(errored.execution(*TARGET), busy=True)
    assert enabled(view) == set()
    assert view.actions[ScheduleAction.REPROCESS].tooltip == BUSY
    assert view.tiles[1].menu[JobAction.STATS].enabled
    assert not view.tiles[1].menu[JobAction.RETRY].enabled
    assert view.auto_refresh


def _live(execution: Execution, phase: Phase) -> Execution:
    """The execution as it looks while a run (live or with its owner lost) holds it."""
    jobs = tuple(dataclasses.replace(j, status=JobStatus.IN_PROGRESS, total=400, pending=280, processed=100, error=20,
                                     actions=job_actions(JobStatus.IN_PROGRESS, phase)) if j.sequence == 1 else j
                 for j in execution.jobs)
    return dataclasses.replace(execution, status=ExecutionStatus.IN_PROGRESS, phase=phase, jobs=jobs,
                               actions=schedule_actions(phase, False))


def test_running_job_shows_progress_and_keeps_auto_refresh_on(demo: Workspace) -> None:
    running = _live(demo.create(*TARGET), Phase.RUNNING)
    view = activity_view(running)
    assert view.auto_refresh and should_auto_refresh(running)
    tile = view.tiles[0]
    assert tile.running and tile.progress == pytest.approx(0.3)
    assert tile.status.text == "IN_PROGRESS" and tile.pending == 280
    assert enabled(view) == set()
    assert "a live run owns it" in view.actions[ScheduleAction.RESET].tooltip


def test_stalled_run_offers_process_and_does_not_auto_refresh(demo: Workspace) -> None:
    stalled = _live(demo.create(*TARGET), Phase.STALLED)
    view = activity_view(stalled)
    assert view.status.text == "IN_PROGRESS (owner lost)"
    assert "process" in enabled(view)
    assert not view.auto_refresh and not should_auto_refresh(stalled)
    assert not should_auto_refresh(None)
    # this page's own run, read between its lease and its registration, is not shown as lost
    assert activity_view(stalled, busy=True).status.text == "IN_PROGRESS"


def _write_config(ws: Workspace, path: Path, **changes) -> None:
    doc = yaml.safe_load(ws.export_config("acme", "daily-billing"))
    doc.update(changes)
    path.write_text(yaml.safe_dump(doc))
    ws.apply_config(path)


def test_config_attributes_are_the_snapshot_of_the_date(demo: Workspace, tmp_path: Path) -> None:
    demo.create(*TARGET)
    _write_config(demo, tmp_path / "v2.yaml", description="Second version")
    created = activity_view(demo.execution(*TARGET))
    fresh = activity_view(demo.execution("acme", "daily-billing", "2026-11-26"))
    assert dict(created.config)["Version"] == "1" and "Daily billing cycle" in dict(created.config)["Description"]
    assert dict(fresh.config)["Version"] == "2" and dict(fresh.config)["Description"] == "Second version"
    assert dict(fresh.config)["Mode"] == "automatic"
    assert dict(fresh.config)["Calendar"] == "0 2 * * *"
    assert dict(fresh.config)["Timezone"] == "America/New_York"
    assert "not created" in fresh.config_note and "version 1" in created.config_note


def test_default_run_date_is_today_in_the_schedule_timezone() -> None:
    late_utc = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.timezone.utc)
    assert default_run_date(late_utc, "America/New_York") == dt.date(2026, 11, 24)
    assert default_run_date(late_utc, "Asia/Tokyo") == dt.date(2026, 11, 25)
    assert default_run_date(dt.datetime(2026, 11, 25, 3, 0), "UTC") == dt.date(2026, 11, 25)


def test_nav_groups_sorts_clients_and_schedules(demo: Workspace) -> None:
    assert nav_groups(demo.schedules()) == (("acme", ("daily-billing", "month-end")),
                                            ("globex", ("daily-billing", "month-end")))
    assert nav_groups([]) == ()


def test_stats_view_lists_the_four_counts_and_errors_by_code() -> None:
    stats = JobStats(400, 10, 376, 14, (ErrorCount("RATE_PLAN_NOT_FOUND", 8), ErrorCount("TAX_RULE_MISSING", 6)))
    view = stats_view("bill-run", stats)
    assert view.counts == (("Total Count", "total", 400), ("Pending Count", "pending", 10),
                           ("Processed Count", "processed", 376), ("Error Count", "error", 14))
    assert view.errors == (("RATE_PLAN_NOT_FOUND", 8), ("TAX_RULE_MISSING", 6))
    assert view.info_enabled
    assert not stats_view("x", JobStats(5, 0, 5, 0, ())).info_enabled


def test_progress_bar_is_escaped_markup_with_each_part_as_wide_as_its_share() -> None:
    view = stats_view("<b>job</b>", JobStats(400, 100, 280, 20, ()))
    assert [(label, n) for label, _css, n in view.progress] == [("Processed", 280), ("Error", 20), ("Pending", 100)]
    bar = progress_html(view)
    assert 'width: 70.00%; background: #43a047' in bar and 'width: 5.00%; background: #e53935' in bar
    assert 'width: 25.00%; background: #1e88e5' in bar and "70% processed" in bar
    assert "&lt;b&gt;job&lt;/b&gt;" in bar and "<b>job</b>" not in bar
    empty = progress_html(stats_view("j", JobStats(0, 0, 0, 0, ())))
    assert "ao-bar-part" not in empty and "no work items" in empty


def test_item_rows_pretty_print_the_payload_and_shorten_the_reason() -> None:
    item = WorkItem(7, "ACME-7", 2, "ERROR", "E1", "r" * 100, {"b": 1, "a": {"c": [1, 2]}}, 1)
    row = item_rows([item])[0]
    assert (row.account_id, row.batch_id, row.status, row.error_code) == ("ACME-7", 2, "ERROR", "E1")
    assert row.payload.startswith('{\n  "a": {')
    assert row.reason == "r" * 100 and len(row.reason_short) == 60 and row.reason_short.endswith("…")
    assert item_rows([dataclasses.replace(item, reason=None)])[0].reason == ""


def _items(n: int) -> list[WorkItem]:
    return [WorkItem(i * 10, f"A-{i}", 1, "ERROR", "E", "r", {}, 1) for i in range(1, n + 1)]


def test_item_pager_pages_by_keyset_forward_and_back() -> None:
    items, calls = _items(7), []

    def fetch(after: int, limit: int) -> list[WorkItem]:
        calls.append((after, limit))
        return [i for i in items if i.item_no > after][:limit]

    pager = ItemPager("E", 7, page_size=3)
    pager.load(fetch)
    assert [i.item_no for i in pager.items] == [10, 20, 30] and pager.has_next and not pager.has_previous
    assert pager.label == "1–3 of 7"
    pager.next(fetch)
    assert [i.item_no for i in pager.items] == [40, 50, 60] and pager.label == "4–6 of 7"
    pager.next(fetch)
    assert [i.item_no for i in pager.items] == [70] and not pager.has_next and pager.has_previous
    pager.next(fetch)  # no next page: nothing moves
    assert [i.item_no for i in pager.items] == [70]
    pager.previous(fetch)
    assert [i.item_no for i in pager.items] == [40, 50, 60]
    assert calls[:3] == [(0, 4), (30, 4), (60, 4)]


def test_drawer_stack_closes_one_level_at_a_time() -> None:
    stack = DrawerStack("bill-run", JobStats(1, 0, 0, 1, ()), True, ItemPager("E", 1))
    assert stack.depth == 3
    stack.close_one()
    assert stack.depth == 2 and stack.pager is None
    stack.close_one()
    assert stack.depth == 1 and not stack.errors_open
    stack.close_one()
    assert stack.depth == 0 and stack.job is None
    stack = DrawerStack("bill-run", None, True, None)
    stack.close_all()
    assert stack.depth == 0


def test_select_defaults_to_today_in_the_schedule_timezone_until_a_date_is_chosen(demo: Workspace) -> None:
    state = ViewState(demo, lambda: dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.timezone.utc))
    state.load_schedules()
    state.select("acme", "daily-billing")
    assert state.run_date == dt.date(2026, 11, 24)  # 22:00 in New York
    state.select("globex", "daily-billing")
    assert state.run_date == dt.date(2026, 11, 25)  # 04:00 in Berlin
    state.choose_date(dt.date(2026, 11, 1))
    state.select("acme", "month-end")
    assert state.run_date == dt.date(2026, 11, 1)
    assert state.execution.status is ExecutionStatus.NOT_CREATED


class Counting:
    """Counts the calls of a Workspace method."""

    def __init__(self, fn) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_refresh_reads_the_execution_once_and_stats_only_with_a_drawer_open(errored: Workspace, monkeypatch) -> None:
    state = ViewState(errored)
    state.client, state.schedule, state.run_date = TARGET
    execution, stats = Counting(errored.execution), Counting(errored.job_stats)
    monkeypatch.setattr(errored, "execution", execution)
    monkeypatch.setattr(errored, "job_stats", stats)
    state.refresh()
    assert (execution.calls, stats.calls) == (1, 0)
    state.open_stats("bill-run")
    state.refresh()
    assert (execution.calls, stats.calls) == (2, 2)
    assert state.stats().counts[3] == ("Error Count", "error", 14)


def test_refresh_closes_the_drawers_when_the_execution_was_reset(errored: Workspace) -> None:
    state = ViewState(errored)
    state.client, state.schedule, state.run_date = TARGET
    state.refresh()
    state.open_stats("bill-run")
    state.open_errors()
    errored.reset(*TARGET)
    state.refresh()
    assert state.drawers.depth == 0 and state.stats() is None


def test_drill_down_pages_through_every_errored_item_of_a_code(errored: Workspace) -> None:
    state = ViewState(errored, page_size=3)
    state.client, state.schedule, state.run_date = TARGET
    state.refresh()
    assert state.open_stats("bill-run").errors == (("RATE_PLAN_NOT_FOUND", 8), ("TAX_RULE_MISSING", 6))
    state.open_errors()
    pager = state.open_items(ERRORED_PAGE)
    seen = [i.item_no for i in pager.items]
    while pager.has_next:
        state.page(1)
        seen += [i.item_no for i in pager.items]
    everything = errored.job_errors(*TARGET, "bill-run", code=ERRORED_PAGE, limit=100)
    assert seen == [i.item_no for i in everything] and len(seen) == 8
    assert pager.label == "7–8 of 8"
    state.page(-1)
    assert pager.label == "4–6 of 8"
    assert state.drawers.depth == 3


def test_reset_and_recreate_ask_for_confirmation(demo: Workspace) -> None:
    state = ViewState(demo)
    state.client, state.schedule, state.run_date = TARGET
    assert state.ask(ScheduleAction.PROCESS) is None and state.confirmation is None
    confirmation = state.ask(ScheduleAction.RESET)
    assert confirmation == Confirmation(ScheduleAction.RESET, *TARGET)
    assert confirmation.text == (
        "Reset execution acme/daily-billing 2026-11-24? All jobs go back to PENDING and the work items are archived.")
    assert state.ask(ScheduleAction.RECREATE).text.startswith("Recreate execution acme/daily-billing 2026-11-24?")
    state.choose_date(dt.date(2026, 11, 23))
    assert state.confirmation is None


def test_actions_call_the_service_for_the_given_target(demo: Workspace) -> None:
    state = ViewState(demo)
    assert state.run(ScheduleAction.CREATE, TARGET).status is ExecutionStatus.PENDING
    assert state.run_job(JobAction.PROCESS, TARGET, "usage-rating").job("usage-rating").status is JobStatus.COMPLETED


def test_view_state_does_not_import_ipywidgets() -> None:
    code = "import sys, widgets.view_state; assert 'ipywidgets' not in sys.modules, 'imported ipywidgets'"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_views_import_no_ipywidgets_and_view_state_still_exports_them() -> None:
    code = ("import sys, widgets.views, widgets.view_state as v; assert 'ipywidgets' not in sys.modules; "
            "assert v.activity_view is widgets.views.activity_view and v.ViewState.__module__ == 'widgets.view_state'; "
            "assert all(hasattr(v, name) for name in v.__all__)")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
