"""Backfill: a schedule's calendar run dates in a range, oldest first; stops at the first ERRORED
date unless --keep-going; --reprocess decides what happens to dates that already exist."""
from __future__ import annotations

import json

import pytest

from allegro_ops import Phase, Workspace
from allegro_ops.backfill import backfill_dates
from allegro_ops.cli import main
from allegro_ops.demo import resolve

from automation_support import build_demo, copy_workspace, edit_schedule

ACME = ("acme", "daily-billing")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("backfill") / "template")


@pytest.fixture
def ws(template, tmp_path, clock) -> Workspace:
    return copy_workspace(template, tmp_path / "ws", clock=clock, actor="tester")


def run_backfill(ws: Workspace, capsys, *args: str) -> tuple[int, dict, str]:
    code = main(["--home", str(ws.home), "backfill", *ACME, *args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def steps(report: dict) -> list[tuple[str, str, str]]:
    return [(s["run_date"], s["action"], s["result"]) for s in report["steps"]]


def test_backfill_stops_at_the_first_errored_date_without_keep_going(ws, capsys):
    code, report, err = run_backfill(ws, capsys, "--from", "2026-11-20", "--to", "2026-11-22")
    assert code == 1
    assert steps(report) == [("2026-11-20", "create+process", "ERRORED")]
    assert report["stopped"] is True and report["dates"] == ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert "backfill acme/daily-billing" in err  # the progress bar, on stderr
    assert err.strip().endswith("error: backfill stopped at 2026-11-20: create+process ERRORED; 2 later date(s) "
                                "not run (--keep-going runs past errors)")
    assert ws.execution(*ACME, "2026-11-21").phase is Phase.NOT_CREATED


def test_keep_going_runs_every_date_past_errors_and_exits_0(ws, capsys):
    code, report, _ = run_backfill(ws, capsys, "--from", "2026-11-20", "--to", "2026-11-22", "--keep-going")
    assert code == 0
    assert steps(report) == [(f"2026-11-2{d}", "create+process", "ERRORED") for d in (0, 1, 2)]
    assert report["errors"] == 3 and report["stopped"] is False


def test_reprocess_errored_reprocesses_errored_dates_and_processes_missing_ones(ws, capsys):
    run_backfill(ws, capsys, "--from", "2026-11-20", "--to", "2026-11-21", "--keep-going")
    resolve(ws, "acme")
    code, report, _ = run_backfill(ws, capsys, "--from", "2026-11-20", "--to", "2026-11-22", "--reprocess", "errored")
    assert code == 0
    assert steps(report) == [("2026-11-20", "reprocess", "COMPLETED"), ("2026-11-21", "reprocess", "COMPLETED"),
                             ("2026-11-22", "create+process", "COMPLETED")]
    assert ws.execution(*ACME, "2026-11-20").generation == 1  # reprocessed in place, not reset


def test_existing_dates_are_left_by_default_and_reset_and_processed_with_reprocess_all(ws, capsys):
    resolve(ws, "acme")
    run_backfill(ws, capsys, "--from", "2026-11-20", "--to", "2026-11-20")
    ws.create(*ACME, "2026-11-21")  # PENDING: not done yet, so every mode processes it
    code, report, _ = run_backfill(ws, capsys, "--from", "2026-11-20", "--to", "2026-11-21")
    assert code == 0 and steps(report) == [("2026-11-20", "none", "COMPLETED"), ("2026-11-21", "process", "COMPLETED")]
    code, report, _ = run_backfill(ws, capsys, "--from", "2026-11-20", "--to", "2026-11-21", "--reprocess", "all")
    assert code == 0
    assert steps(report) == [("2026-11-20", "reset+process", "COMPLETED"), ("2026-11-21", "reset+process", "COMPLETED")]
    assert ws.execution(*ACME, "2026-11-20").generation == 2


def test_backfill_runs_the_calendars_dates_only(ws):
    edit_schedule(ws, *ACME, calendar={"weekend": ["sat", "sun"], "non_business_day": "skip"})
    assert [d.isoformat() for d in backfill_dates(ws, *ACME, "2026-11-20", "2026-11-23")] == [
        "2026-11-20", "2026-11-23"]


def test_a_backwards_range_is_bad_input(ws, capsys):
    code = main(["--home", str(ws.home), "backfill", *ACME, "--from", "2026-11-22", "--to", "2026-11-20"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: bad range: --to 2026-11-20 is before --from 2026-11-22"
