"""The scheduler: what is due, catch-up within the window, manual schedules left alone, holiday
policies, one execution per date under concurrent schedulers, stalled runs resumed, the audit
trail under the actor ``scheduler``, and a clean stop of the foreground loop on SIGTERM.

The demo's acme/daily-billing runs at 02:00 New York time (07:00 UTC in November); in these
workspaces it is the only automatic schedule (globex/daily-billing is switched to manual).
"""
from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from allegro_ops import Phase, Workspace, lease
from allegro_ops.cli import main
from allegro_ops.scheduler import SCHEDULER_ACTOR, run_pass
from allegro_ops.store import executions as ex_sql

from automation_support import OPS, build_demo, cli_environment, copy_workspace, edit_schedule

UTC = dt.timezone.utc
D = dt.date
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
HALF_DAY = dt.timedelta(hours=12)
ACME = ("acme", "daily-billing")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    folder = build_demo(tmp_path_factory.mktemp("scheduler") / "template")
    edit_schedule(Workspace(folder, actor="tester"), "globex", "daily-billing", mode="manual")
    return folder


@pytest.fixture
def ws(template, tmp_path, clock) -> Workspace:
    return copy_workspace(template, tmp_path / "ws", clock=clock, actor=SCHEDULER_ACTOR)


def acted(report) -> list[tuple]:
    return [(d.client, d.schedule, d.run_date, d.decision, d.status) for d in report.decisions
            if d.decision not in ("manual", "not due")]


def scheduler_audit(ws: Workspace, outcome: str | None = None) -> list:
    return [e for e in ws.audit() if e.actor == SCHEDULER_ACTOR and (outcome is None or e.outcome == outcome)]


# ------------------------------------------------------------------ what is due
def test_a_pass_creates_and_processes_the_date_that_came_due_and_audits_it_as_scheduler(ws):
    report = run_pass(ws, NOW, catch_up=HALF_DAY)
    assert acted(report) == [("acme", "daily-billing", D(2026, 11, 25), "processed", "ERRORED")]
    assert ws.execution(*ACME, "2026-11-25").jobs[0].total == 20
    assert ws.execution(*ACME, "2026-11-24").phase is Phase.NOT_CREATED
    trail = [(e.actor, e.action, e.target, e.outcome) for e in reversed(ws.audit()) if e.actor == SCHEDULER_ACTOR]
    assert trail == [("scheduler", "create", "acme/daily-billing 2026-11-25", "done"),
                     ("scheduler", "process", "acme/daily-billing 2026-11-25", "ERRORED")]


def test_catch_up_runs_the_missed_dates_within_the_window_and_no_earlier(ws):
    report = run_pass(ws, NOW, catch_up=dt.timedelta(days=3))
    assert [(d.run_date, d.decision) for d in report.decisions if d.run_date] == [
        (D(2026, 11, 23), "processed"), (D(2026, 11, 24), "processed"), (D(2026, 11, 25), "processed")]
    assert ws.execution(*ACME, "2026-11-22").phase is Phase.NOT_CREATED  # due 11-22 07:00Z, before the window


def test_a_date_not_yet_due_is_left_for_a_later_pass_which_it_names(ws):
    report = run_pass(ws, dt.datetime(2026, 11, 25, 6, 59, tzinfo=UTC), catch_up=HALF_DAY)
    assert acted(report) == []
    assert ws.execution(*ACME, "2026-11-25").phase is Phase.NOT_CREATED
    assert report.next_due == ("acme", "daily-billing", D(2026, 11, 25), dt.datetime(2026, 11, 25, 7, tzinfo=UTC))


def test_manual_schedules_are_never_started_even_when_their_cron_is_due(ws):
    # Dec 1: month-end (manual, 06:00 on the 1st) and globex/daily-billing (switched to manual) are due by cron
    report = run_pass(ws, dt.datetime(2026, 12, 1, 12, 0, tzinfo=UTC), catch_up=HALF_DAY)
    assert acted(report) == [("acme", "daily-billing", D(2026, 12, 1), "processed", "ERRORED")]
    for client, schedule in [("acme", "month-end"), ("globex", "month-end"), ("globex", "daily-billing")]:
        assert ws.execution(client, schedule, "2026-12-01").phase is Phase.NOT_CREATED
    assert {(d.client, d.schedule) for d in report.decisions if d.decision == "manual"} == {
        ("acme", "month-end"), ("globex", "month-end"), ("globex", "daily-billing")}


def test_an_errored_date_is_left_for_an_operator_and_the_audit_says_so_once(ws):
    run_pass(ws, NOW, catch_up=HALF_DAY)
    again = [run_pass(ws, NOW + dt.timedelta(minutes=m), catch_up=HALF_DAY) for m in (5, 10)]
    assert [acted(r) for r in again] == [[("acme", "daily-billing", D(2026, 11, 25), "left", "ERRORED")]] * 2
    assert [e.target for e in scheduler_audit(ws, "left")] == ["acme/daily-billing 2026-11-25"]
    assert ws.execution(*ACME, "2026-11-25").generation == 1


def test_dry_run_reports_what_is_due_and_changes_nothing(ws, capsys):
    code = main(["--home", str(ws.home), "scheduler", "--once", "--dry-run", "--now", "2026-11-25T09:00:00Z",
                 "--catch-up-days", "2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(d["run_date"], d["decision"]) for d in report["decisions"] if d["run_date"]] == [
        ("2026-11-24", "planned"), ("2026-11-25", "planned")]
    assert ws.execution(*ACME, "2026-11-24").phase is Phase.NOT_CREATED
    assert scheduler_audit(ws) == []


# ------------------------------------------------------------------ holidays
def test_a_holiday_under_the_skip_policy_gets_no_execution_and_one_audit_entry(ws):
    edit_schedule(ws, *ACME, calendar={"holidays": ["2026-11-26"], "non_business_day": "skip"})
    reports = [run_pass(ws, dt.datetime(2026, 11, 26, 12, m, tzinfo=UTC), catch_up=HALF_DAY) for m in (0, 5)]
    for report in reports:
        assert acted(report) == [("acme", "daily-billing", D(2026, 11, 26), "skipped", "")]
    assert ws.execution(*ACME, "2026-11-26").phase is Phase.NOT_CREATED
    assert [(e.target, e.reason) for e in scheduler_audit(ws, "skipped")] == [
        ("acme/daily-billing 2026-11-26", "2026-11-26 is a holiday; non_business_day: skip")]


def test_a_holiday_from_the_named_set_moves_a_weekly_run_to_the_next_business_day(ws):
    (ws.home / "holidays.yaml").write_text("holiday_sets:\n  us-banks: [2026-11-26, 2026-12-25]\n")
    edit_schedule(ws, *ACME, calendar={"cron": "0 2 * * 4", "holiday_set": "us-banks", "non_business_day": "next",
                                       "weekend": ["sat", "sun"]})
    thursday = run_pass(ws, dt.datetime(2026, 11, 26, 12, tzinfo=UTC), catch_up=HALF_DAY)
    assert acted(thursday) == []
    assert thursday.next_due == ("acme", "daily-billing", D(2026, 11, 27), dt.datetime(2026, 11, 27, 7, tzinfo=UTC))
    friday = run_pass(ws, dt.datetime(2026, 11, 27, 12, tzinfo=UTC), catch_up=HALF_DAY)
    assert acted(friday) == [("acme", "daily-billing", D(2026, 11, 27), "processed", "ERRORED")]
    assert ws.execution(*ACME, "2026-11-26").phase is Phase.NOT_CREATED
    assert [e.reason for e in scheduler_audit(ws, "moved")] == [
        "run date moved from 2026-11-26 (holiday; non_business_day: next)"]


def test_an_unknown_holiday_set_fails_that_schedule_and_the_pass_exits_1(ws, capsys):
    edit_schedule(ws, *ACME, calendar={"holiday_set": "us-banks"})
    code = main(["--home", str(ws.home), "scheduler", "--once", "--now", "2026-11-25T09:00:00Z"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "acme/daily-billing" in out and "failed" in out and "no such holiday set" in out
    assert err.strip() == "error: 1 of 4 scheduler decisions failed (see the report and the audit log)"
    assert ws.execution(*ACME, "2026-11-25").phase is Phase.NOT_CREATED
    assert [e.target for e in scheduler_audit(ws, "failed")] == ["acme/daily-billing"]


# ------------------------------------------------------------------ races and restarts
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stalled_run_is_resumed_not_duplicated(ws, clock):
    ws.create(*ACME, "2026-11-25")
    ws.process_job(*ACME, "2026-11-25", "usage-rating")

    def orphan(con):  # the run's owner died mid-run: IN_PROGRESS under a lease nobody holds
        row = ex_sql.find_execution(con, *ACME, D(2026, 11, 25))
        ex_sql.take_lease(con, row.execution_id, "dead-run", lease.HOST, dead_pid(), clock())
        ex_sql.set_execution(con, row.execution_id, status="IN_PROGRESS")

    ws.store.write(orphan)
    assert ws.execution(*ACME, "2026-11-25").phase is Phase.STALLED
    report = run_pass(ws, NOW, catch_up=HALF_DAY)
    assert acted(report) == [("acme", "daily-billing", D(2026, 11, 25), "resumed", "ERRORED")]
    execution = ws.execution(*ACME, "2026-11-25")
    assert execution.generation == 1 and [j.status.value for j in execution.jobs][:2] == ["COMPLETED", "ERRORED"]
    attempts = Counter(h["job"] for h in ws.account_history("acme", "ACME-000001"))
    assert attempts["usage-rating"] == 1  # the committed job was not run again


@pytest.mark.slow
def test_two_schedulers_at_once_create_one_execution_per_date_and_run_each_once(ws, tmp_path):
    env = cli_environment(ws.home, tmp_path)
    args = [*OPS, "scheduler", "--once", "--now", "2026-11-25T09:00:00Z", "--catch-up-days", "3", "--json"]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    decisions = [d for out, _ in outputs for d in json.loads(out)["decisions"] if d["run_date"]]
    for day in ("2026-11-23", "2026-11-24", "2026-11-25"):
        mine = sorted(d["decision"] for d in decisions if d["run_date"] == day)
        assert mine.count("processed") == 1 and set(mine) - {"processed"} <= {"lost race", "running", "left"}, mine
    creates = Counter(e.target for e in ws.audit() if e.action == "create" and e.outcome == "done")
    assert creates == {f"acme/daily-billing 2026-11-{d}": 1 for d in (23, 24, 25)}
    history = ws.account_history("acme", "ACME-000001")
    assert Counter((h["run_date"], h["job"]) for h in history if h["job"] == "usage-rating") == {
        (D(2026, 11, d), "usage-rating"): 1 for d in (23, 24, 25)}


@pytest.mark.slow
def test_the_foreground_scheduler_stops_cleanly_on_sigterm(tmp_path):
    home = tmp_path / "empty"
    env = cli_environment(home, tmp_path)
    proc = subprocess.Popen([*OPS, "scheduler", "--max-sleep", "0.2", "--verbose"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "scheduler started" in proc.stderr.readline()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM received, stopping after the current run" in err
    passes = int(err.rsplit("scheduler stopped after ", 1)[1].split()[0])
    assert passes >= 2 and out.count("pass at ") == passes
    assert [e.outcome for e in Workspace(home).audit() if e.actor == SCHEDULER_ACTOR] == ["stopped", "started"]
