"""Beyond the seed, in the engine and the CLI: Retry of one error code, fix-and-retry of one work
item (its earlier payload kept), accepted errors (COMPLETED with errors), the Recreate preview and
deadlines (LATE). Each is audited and refused for viewers."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from allegro_ops import (
    ActionRefused, BadInput, ExecutionStatus, ItemInput, JobAction, JobContext, JobStatus, JobType, NotFound,
    Workspace,
    WorkItemError, register,
)
from allegro_ops.demo import resolve
from conftest import FixedClock, init_small_demo

C, S = "acme", "daily-billing"
DAY = dt.date(2026, 11, 24)
TARGET = (C, S, DAY)


def rows(ws: Workspace, sql: str, *params) -> list[tuple]:
    return ws.store.read(lambda con: con.execute(sql, list(params)).fetchall())


def attempts_by_code(ws: Workspace, job: str) -> dict[str, int]:
    """Attempt rows per error code (None: PROCESSED) of a job's current generation."""
    return dict(rows(ws, "SELECT coalesce(a.error_code, 'OK'), count(*) FROM v_attempts a WHERE a.client = ? "
                         "AND a.schedule = ? AND a.run_date = ? AND a.job = ? AND NOT a.archived GROUP BY 1",
                     C, S, DAY, job))


@pytest.fixture
def errored(prepared) -> Workspace:
    def build(ws: Workspace) -> None:
        init_small_demo(ws)
        ws.create(*TARGET)
        ws.process(*TARGET)

    return prepared("retries-errored", build)


# ------------------------------------------------------------------------------------ retry by code
def test_retry_of_one_error_code_reruns_only_those_items(errored: Workspace) -> None:
    stats = errored.job_stats(*TARGET, "bill-run")
    codes = {e.error_code: e.count for e in stats.errors_by_code}
    assert set(codes) == {"RATE_PLAN_NOT_FOUND", "TAX_RULE_MISSING"}
    before = attempts_by_code(errored, "bill-run")
    resolve(errored, C, "TAX_RULE_MISSING")
    e = errored.retry_job(*TARGET, "bill-run", code="TAX_RULE_MISSING")
    after = attempts_by_code(errored, "bill-run")
    # Only the TAX_RULE_MISSING items ran again, and they now pass; the other code was not touched.
    assert after["OK"] == before["OK"] + codes["TAX_RULE_MISSING"]
    assert after["RATE_PLAN_NOT_FOUND"] == before["RATE_PLAN_NOT_FOUND"]
    assert e.job("bill-run").status is JobStatus.ERRORED and e.job("bill-run").error == codes["RATE_PLAN_NOT_FOUND"]
    assert e.job("invoice-delivery").status is JobStatus.PENDING  # still paused: errors are left
    entry = errored.audit(limit=1)[0]
    assert (entry.action, entry.outcome) == ("job retry", "ERRORED")
    assert entry.target == f"{C}/{S} {DAY} job bill-run code TAX_RULE_MISSING"
    # The last code fixed and retried: no errors left, the paused jobs run as after a Retry.
    resolve(errored, C, "RATE_PLAN_NOT_FOUND")
    e = errored.retry_job(*TARGET, "bill-run", code="RATE_PLAN_NOT_FOUND")
    assert e.job("bill-run").status is JobStatus.COMPLETED
    assert e.job("invoice-delivery").status is JobStatus.ERRORED  # ran, and met the demo's INVALID_EMAIL


def test_retry_of_an_unknown_error_code_is_one_line_and_changes_nothing(errored: Workspace, cli_cmd,
                                                                       cli_env) -> None:
    before = errored.execution(*TARGET).to_dict(), attempts_by_code(errored, "bill-run")
    with pytest.raises(NotFound, match="unknown error code 'CARD_EXPIRED'; job bill-run has no errored work item"):
        errored.retry_job(*TARGET, "bill-run", code="CARD_EXPIRED")
    with pytest.raises(BadInput, match="bad error code: empty"):
        errored.retry_job(*TARGET, "bill-run", code=" ")
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(errored.home)}
    run = subprocess.run([*cli_cmd, "job", "retry", C, S, str(DAY), "bill-run", "--code", "NOPE'; DROP TABLE jobs"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "unknown error code" in run.stderr
    assert (errored.execution(*TARGET).to_dict(), attempts_by_code(errored, "bill-run")) == before


def test_cli_retry_of_one_code_prints_the_execution(errored: Workspace, cli_cmd, cli_env) -> None:
    resolve(errored, C, "TAX_RULE_MISSING")
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(errored.home)}
    run = subprocess.run([*cli_cmd, "job", "retry", C, S, str(DAY), "bill-run", "--code", "TAX_RULE_MISSING",
                          "--json"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    bill = next(j for j in data["jobs"] if j["name"] == "bill-run")
    assert bill["status"] == "ERRORED"
    codes = {e.error_code for e in errored.job_stats(*TARGET, "bill-run").errors_by_code}
    assert codes == {"RATE_PLAN_NOT_FOUND"}


# ------------------------------------------------------------------------------------ fix and retry one item
@register
class AmountCheck(JobType):
    """Fails a work item whose payload has a negative amount: a fix of the payload makes it pass."""

    name = "test.amount_check"

    def list_work_items(self, ctx: JobContext) -> list[tuple[str, Any]]:
        return [(f"ACC-{i}", {"amount": -5 if i in (2, 4) else 10, "note": "<b>n</b>"}) for i in range(1, 7)]

    def process_item(self, item: ItemInput, state: Any, ctx: JobContext) -> None:
        if item.payload.get("amount", 0) < 0:
            raise WorkItemError("NEGATIVE_AMOUNT", f"amount {item.payload['amount']} below zero")


@pytest.fixture
def amounts(home: Path, clock: FixedClock) -> Workspace:
    ws = Workspace(home, clock=clock, actor="tester", role="operator")
    doc = {"client": "acme", "name": "amounts", "mode": "manual", "calendar": {"cron": "0 2 * * *"},
           "jobs": [{"name": "charge", "type": "test.amount_check", "batch_size": 2},
                    {"name": "after", "type": "demo.noop", "batch_size": 5}]}
    (home / "amounts.yaml").write_text(yaml.safe_dump(doc))
    ws.apply_config(home / "amounts.yaml")
    ws.create(C, "amounts", DAY)
    ws.process(C, "amounts", DAY)
    return ws


def test_fix_and_retry_of_one_item_keeps_the_original_payload_and_continues_when_clean(amounts: Workspace,
                                                                                      clock) -> None:
    target = (C, "amounts", DAY)
    assert amounts.execution(*target).job("charge").error == 2
    e = amounts.retry_item(*target, "charge", "ACC-2", payload='{"amount": 5, "note": "fixed"}')
    assert e.job("charge").status is JobStatus.ERRORED and e.job("charge").error == 1  # ACC-4 is left
    edits = rows(amounts, "SELECT edit_no, edited_by, old_payload, new_payload FROM payload_edits")
    assert len(edits) == 1 and edits[0][:2] == (1, "tester")
    assert json.loads(edits[0][2]) == {"amount": -5, "note": "<b>n</b>"}
    assert json.loads(edits[0][3]) == {"amount": 5, "note": "fixed"}
    history = amounts.account_history(C, "ACC-2")
    assert [(h["attempt"], h["status"]) for h in history] == [(2, "PROCESSED"), (1, "ERROR")]
    entries = amounts.audit(limit=2)
    assert {(x.action, x.outcome) for x in entries} == {("item retry", "ERRORED"), ("item payload edit", "edit 1")}
    assert any("was {\"amount\": -5" in x.reason and "now {\"amount\": 5" in x.reason for x in entries)
    # Only ACC-2 ran again.
    assert rows(amounts, "SELECT count(*) FROM attempts")[0][0] == 6 + 1
    # The last errored item fixed: the job completes and the paused job after it runs.
    e = amounts.retry_item(*target, "charge", "ACC-4", payload='{"amount": 1}')
    assert e.status is ExecutionStatus.COMPLETED and e.job("after").status is JobStatus.COMPLETED


def test_item_retry_refusals_are_one_line_and_change_nothing(amounts: Workspace, cli_cmd, cli_env,
                                                             tmp_path: Path) -> None:
    target = (C, "amounts", DAY)
    snapshot = lambda: (amounts.execution(*target).to_dict(), rows(amounts, "SELECT * FROM work_items ORDER BY 1, 2"),
                        rows(amounts, "SELECT count(*) FROM payload_edits"))
    before = snapshot()
    with pytest.raises(BadInput, match=r"bad payload: not valid JSON \(Expecting"):
        amounts.retry_item(*target, "charge", "ACC-2", payload='{"amount": 5,')
    with pytest.raises(ActionRefused, match="work item ACC-1 of job charge is PROCESSED; item retry needs an errored"):
        amounts.retry_item(*target, "charge", "ACC-1", payload='{"amount": 5}')
    with pytest.raises(NotFound, match="unknown work item 'ACC-99'"):
        amounts.retry_item(*target, "charge", "ACC-99")
    with pytest.raises(ActionRefused, match="role viewer may not item retry"):
        Workspace(amounts.home, clock=amounts.clock, role="viewer").retry_item(*target, "charge", "ACC-2",
                                                                               payload="{}")
    assert snapshot() == before
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(amounts.home)}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    run = subprocess.run([*cli_cmd, "item", "retry", C, "amounts", str(DAY), "charge", "ACC-2", "--payload-file",
                          str(bad)], env=env, capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "bad payload: not valid JSON" in run.stderr
    assert snapshot() == before


def test_cli_item_retry_with_a_payload_file(errored: Workspace, cli_cmd, cli_env, tmp_path: Path) -> None:
    item = errored.job_errors(*TARGET, "bill-run", limit=1)[0]
    resolve(errored, C)
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps({**item.payload, "checked_by": "ops"}))
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(errored.home)}
    run = subprocess.run([*cli_cmd, "item", "retry", C, S, str(DAY), "bill-run", item.account_id, "--payload-file",
                          str(fixed), "--json"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    bill = next(j for j in json.loads(run.stdout)["jobs"] if j["name"] == "bill-run")
    assert bill["error"] == errored.execution(*TARGET).job("bill-run").error and bill["status"] == "ERRORED"
    assert item.account_id not in {i.account_id for i in errored.job_errors(*TARGET, "bill-run", limit=1000)}
    (old, new), = rows(errored, "SELECT old_payload, new_payload FROM payload_edits")
    assert json.loads(old) == item.payload and json.loads(new)["checked_by"] == "ops"
    assert errored.audit(limit=2)[1].actor == "tester"


def test_item_retry_without_a_payload_reruns_the_item_as_it_is(amounts: Workspace) -> None:
    e = amounts.retry_item(C, "amounts", DAY, "charge", "ACC-2")
    assert e.job("charge").error == 2  # same payload, same error, one more attempt
    assert [h["attempt"] for h in amounts.account_history(C, "ACC-2")] == [2, 1]
    assert rows(amounts, "SELECT count(*) FROM payload_edits")[0][0] == 0


# ------------------------------------------------------------------------------------ accepted errors
def _with_threshold(ws: Workspace, tmp_path: Path, **limits: Any) -> None:
    doc = yaml.safe_load(ws.export_config(C, "amounts"))
    doc["jobs"][0].update(limits)
    (tmp_path / "limits.yaml").write_text(yaml.safe_dump(doc))
    ws.apply_config(tmp_path / "limits.yaml")


@pytest.mark.parametrize("limits, completed", [
    ({"max_error_rate": "40%"}, True),   # 2 of 6 = 33 %
    ({"max_errors": 2}, True),
    ({"max_errors": 1}, False),
    ({"max_error_rate": 0.2}, False),
    ({"max_errors": 5, "max_error_rate": "10%"}, False),  # both must hold
])
def test_a_job_within_its_accepted_errors_completes_with_errors_and_the_schedule_goes_on(
        amounts: Workspace, tmp_path: Path, limits: dict, completed: bool) -> None:
    _with_threshold(amounts, tmp_path, **limits)
    amounts.reset(C, "amounts", DAY)  # back to PENDING, then rebuilt from the new config version
    amounts.recreate(C, "amounts", DAY)
    e = amounts.process(C, "amounts", DAY)
    charge = e.job("charge")
    assert charge.error == 2
    if completed:
        assert charge.status is JobStatus.COMPLETED and e.status is ExecutionStatus.COMPLETED
        assert e.job("after").status is JobStatus.COMPLETED
        # Errors stay listed and retryable.
        assert {x.error_code for x in amounts.job_stats(C, "amounts", DAY, "charge").errors_by_code} == {
            "NEGATIVE_AMOUNT"}
        assert charge.actions[JobAction.RETRY] and charge.actions[JobAction.ITEM_RETRY]
        retried = amounts.retry_item(C, "amounts", DAY, "charge", "ACC-2", payload='{"amount": 1}')
        assert retried.job("charge").error == 1 and retried.status is ExecutionStatus.COMPLETED
    else:
        assert charge.status is JobStatus.ERRORED and e.status is ExecutionStatus.ERRORED
        assert e.job("after").status is JobStatus.PENDING


def test_accepted_error_settings_are_validated(amounts: Workspace, tmp_path: Path) -> None:
    from allegro_ops import InvalidConfig
    for bad, field in (({"max_error_rate": "lots%"}, "max_error_rate"), ({"max_error_rate": 2}, "max_error_rate"),
                       ({"max_errors": -1}, "max_errors"), ({"item_timeout_s": 0}, "item_timeout_s")):
        with pytest.raises(InvalidConfig, match=field):
            _with_threshold(amounts, tmp_path, **bad)


# ------------------------------------------------------------------------------------ recreate preview
def test_recreate_preview_lists_added_removed_reordered_and_changed_settings(prepared, tmp_path: Path,
                                                                            cli_cmd, cli_env) -> None:
    ws = prepared("retries-demo", init_small_demo)
    ws.create(*TARGET)
    doc = yaml.safe_load(ws.export_config(C, S))
    jobs = {j["name"]: j for j in doc["jobs"]}
    jobs["bill-run"]["params"] = {**jobs["bill-run"].get("params", {}), "item_delay_ms": 5}
    jobs["bill-run"]["batch_size"] = 25
    doc["jobs"] = [jobs["bill-run"], jobs["usage-rating"], jobs["payment-collection"],
                   {"name": "statements", "type": "demo.statement_run"}]
    doc["deadline"] = "06:00"
    (tmp_path / "next.yaml").write_text(yaml.safe_dump(doc))
    ws.apply_config(tmp_path / "next.yaml")
    before = ws.execution(*TARGET).to_dict()
    diff = ws.recreate_preview(*TARGET)
    assert diff.added == ("statements",) and diff.removed == ("invoice-delivery",) and diff.reordered
    changed = {(c.job, c.key): (c.old, c.new) for c in diff.changes}
    assert changed[("bill-run", "batch_size")] == (10, 25)
    assert changed[("bill-run", "params.item_delay_ms")][1] == 5
    assert changed[(None, "deadline")] == (None, "06:00")
    text = diff.lines()
    assert text[0] == "config version 1 → 2" and "job added: statements" in text
    assert ws.execution(*TARGET).to_dict() == before  # a preview changes nothing
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(ws.home)}
    run = subprocess.run([*cli_cmd, "recreate", C, S, str(DAY), "--dry-run", "--json"], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["added"] == ["statements"] and json.loads(run.stdout)["reordered"] is True
    assert ws.execution(*TARGET).to_dict() == before
    assert json.loads(run.stdout)["allowed"] is True and json.loads(run.stdout)["refusal"] is None
    e = ws.recreate(*TARGET)
    assert [j.name for j in e.jobs] == ["bill-run", "usage-rating", "payment-collection", "statements"]
    assert ws.recreate_preview(*TARGET).empty
    run = subprocess.run([*cli_cmd, "recreate", C, S, str(DAY), "--dry-run"], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.splitlines() == [
        "no change: config version 2 runs the same jobs with the same settings",
        "recreate would be refused now: execution acme/daily-billing 2026-11-24 is PENDING and already runs the "
        "current config version; recreate needs a newer config version (config apply)"]


def test_recreate_preview_of_a_date_not_created_is_refused(prepared) -> None:
    ws = prepared("retries-demo", init_small_demo)
    with pytest.raises(ActionRefused, match="recreate refused: execution acme/daily-billing 2026-11-24 is NOT_CREATED"):
        ws.recreate_preview(*TARGET)


# ------------------------------------------------------------------------------------ deadlines
def test_an_execution_past_its_deadline_and_not_completed_is_late(prepared, tmp_path: Path, clock,
                                                                  cli_cmd, cli_env) -> None:
    ws = prepared("retries-demo", init_small_demo)
    doc = yaml.safe_load(ws.export_config(C, S))
    doc["deadline"] = "+1 06:00"  # the day after the run date, 06:00 New York time
    (tmp_path / "deadline.yaml").write_text(yaml.safe_dump(doc))
    ws.apply_config(tmp_path / "deadline.yaml")
    ws.create(*TARGET)
    clock.now = dt.datetime(2026, 11, 25, 10, 59, tzinfo=dt.timezone.utc)  # 05:59 in New York
    e = ws.execution(*TARGET)
    assert not e.late and e.deadline.isoformat() == "2026-11-25T06:00:00-05:00"
    clock.now = dt.datetime(2026, 11, 25, 11, 1, tzinfo=dt.timezone.utc)
    assert ws.execution(*TARGET).late and ws.execution(*TARGET).to_dict()["late"] is True
    e = ws.process(*TARGET)
    assert e.status is ExecutionStatus.ERRORED and e.late
    resolve(ws, C)
    for _ in range(4):
        if ws.execution(*TARGET).status is ExecutionStatus.COMPLETED:
            break
        ws.reprocess(*TARGET)
    assert ws.execution(*TARGET).status is ExecutionStatus.COMPLETED and not ws.execution(*TARGET).late
    # Dates without a deadline are never late.
    assert not ws.execution(C, "month-end", DAY).late
