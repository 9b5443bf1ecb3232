"""The command line contract: one JSON document with --json, the documented keys, one line on
stderr and exit 2 for bad input, exit 3 for a refusal, exit 0 when the command ran."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from allegro_ops.cli import main

C, S, DAY = "acme", "daily-billing", "2026-11-24"
JOBS = ["usage-rating", "bill-run", "invoice-delivery", "payment-collection"]
STATUS_KEYS = {"client", "schedule", "run_date", "status", "config_version", "jobs", "actions"}
JOB_KEYS = {"name", "sequence", "status", "total", "pending", "processed", "error"}
ACTION_KEYS = {"create", "recreate", "process", "reprocess", "reset"}


class Cli:
    """Runs ``allegro-ops --home HOME ...`` in this process and keeps what it printed."""

    def __init__(self, home: Path, capsys) -> None:
        self.home, self._capsys = home, capsys

    def __call__(self, *args: str, home: bool = True) -> tuple[int, str, str]:
        self._capsys.readouterr()
        code = main((["--home", str(self.home)] if home else []) + list(args))
        out, err = self._capsys.readouterr()
        return code, out, err

    def json(self, *args: str):
        code, out, err = self(*args, "--json")
        assert code == 0, err
        return json.loads(out)  # exactly one JSON document: json.loads refuses trailing data


@pytest.fixture
def cli(home, capsys, monkeypatch) -> Cli:
    monkeypatch.setenv("ALLEGRO_OPS_ACTOR", "cli-tester")
    monkeypatch.delenv("ALLEGRO_OPS_HOME", raising=False)
    return Cli(home, capsys)


def _cli_in(prepared, capsys, name: str, *commands: tuple[str, ...]) -> Cli:
    def build(ws):
        for command in commands:
            assert main(["--home", str(ws.home), *command]) == 0
        capsys.readouterr()

    return Cli(prepared(name, build).home, capsys)


INIT = ("demo", "init", "--accounts", "60", "--batch-size", "10")


@pytest.fixture
def small(prepared, capsys, monkeypatch) -> Cli:
    """A 60-account demo workspace, nothing executed."""
    monkeypatch.setenv("ALLEGRO_OPS_ACTOR", "cli-tester")
    return _cli_in(prepared, capsys, "cli-small", INIT)


@pytest.fixture
def errored(prepared, capsys, monkeypatch) -> Cli:
    """The 60-account demo after create and process of acme/daily-billing 2026-11-24."""
    monkeypatch.setenv("ALLEGRO_OPS_ACTOR", "cli-tester")
    return _cli_in(prepared, capsys, "cli-errored", INIT, ("create", C, S, DAY), ("process", C, S, DAY))


def assert_one_error_line(err: str, *fragments: str) -> None:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


# ------------------------------------------------------------------ workspace and demo
def test_demo_init_builds_the_workspace_under_home(cli, home):
    applied = cli.json(*INIT)
    assert sorted((a["client"], a["schedule"], a["version"]) for a in applied) == [
        ("acme", "daily-billing", 1), ("acme", "month-end", 1), ("globex", "daily-billing", 1),
        ("globex", "month-end", 1)]
    assert (home / "allegro_ops.duckdb").is_file()


def test_home_comes_from_the_environment_without_the_option(cli, home, monkeypatch):
    monkeypatch.setenv("ALLEGRO_OPS_HOME", str(home))
    code, _, err = cli(*INIT, home=False)
    assert code == 0, err
    assert (home / "allegro_ops.duckdb").is_file()


def test_demo_init_flags_shape_the_accounts_and_jobs(cli):
    cli.json("demo", "init", "--accounts", "12", "--seed", "3", "--batch-size", "5", "--item-delay-ms", "1")
    exported = yaml.safe_load(cli("config", "export", C, S)[1])
    assert {j["batch_size"] for j in exported["jobs"]} == {5}
    assert {j["params"]["item_delay_ms"] for j in exported["jobs"]} == {1}
    cli.json("create", C, S, DAY)
    ran = cli.json("job", "process", C, S, DAY, "usage-rating")
    assert ran["jobs"][0]["total"] == 12
    errors = cli.json("job", "errors", C, S, DAY, "usage-rating")
    assert errors == []


def test_demo_init_refuses_bad_flag_values_with_exit_2(cli):
    code, out, err = cli("demo", "init", "--accounts", "0")
    assert code == 2 and out == ""
    assert "Traceback" not in err and "--accounts" in err


def test_demo_resolve_repairs_one_code_and_refuses_unknown_codes(errored):
    assert errored.json("demo", "resolve", C, "--code", "RATE_PLAN_NOT_FOUND") == {"RATE_PLAN_NOT_FOUND": 1}
    stats = errored.json("job", "stats", C, S, DAY, "bill-run")
    assert [e["error_code"] for e in stats["errors_by_code"]] == ["RATE_PLAN_NOT_FOUND", "TAX_RULE_MISSING"]
    after = errored.json("reprocess", C, S, DAY)
    assert after["jobs"][1]["error"] == 1
    code, out, err = errored("demo", "resolve", C, "--code", "NO_SUCH_CODE")
    assert code == 2 and out == ""
    assert_one_error_line(err, "unknown error code 'NO_SUCH_CODE'")
    code, _, err = errored("demo", "resolve", "nobody")
    assert code == 2
    assert_one_error_line(err, "unknown client 'nobody'")


# ------------------------------------------------------------------ reading
def test_schedules_json_lists_each_schedule_with_its_jobs(small):
    listed = small.json("schedules")
    assert len(listed) == 4
    for entry in listed:
        assert set(entry) == {"client", "schedule", "mode", "calendar", "version", "jobs"}
    daily = next(e for e in listed if (e["client"], e["schedule"]) == (C, S))
    assert daily == {"client": C, "schedule": S, "mode": "automatic", "calendar": "0 2 * * *", "version": 1,
                     "jobs": JOBS}
    assert [e["client"] for e in small.json("schedules", "--client", "globex")] == ["globex", "globex"]


def test_status_json_of_a_date_not_created_has_no_jobs_and_offers_create(small):
    status = small.json("status", C, S, DAY)
    assert STATUS_KEYS <= set(status)
    assert (status["client"], status["schedule"], status["run_date"], status["status"]) == (C, S, DAY, "NOT_CREATED")
    assert status["jobs"] == [] and status["config_version"] is None
    assert status["actions"] == {"create": True, "recreate": False, "process": False, "reprocess": False,
                                 "reset": False}


def test_status_json_after_process_shows_each_job_and_the_enabled_actions(errored):
    status = errored.json("status", C, S, DAY)
    assert STATUS_KEYS <= set(status) and status["status"] == "ERRORED" and status["config_version"] == 1
    assert [j["name"] for j in status["jobs"]] == JOBS
    assert all(set(j) >= JOB_KEYS for j in status["jobs"])
    assert [j["sequence"] for j in status["jobs"]] == [1, 2, 3, 4]
    assert [j["status"] for j in status["jobs"]] == ["COMPLETED", "ERRORED", "PENDING", "PENDING"]
    for j in status["jobs"]:
        assert j["total"] == j["pending"] + j["processed"] + j["error"]
    assert status["actions"] == {"create": False, "recreate": False, "process": False, "reprocess": True,
                                 "reset": True}


def test_status_text_names_the_execution_its_jobs_and_actions(errored):
    code, out, _ = errored("status", C, S, DAY)
    assert code == 0
    assert f"{C}/{S} {DAY}" in out and "ERRORED" in out
    assert all(name in out for name in JOBS)
    assert "actions: reprocess, reset" in out


# ------------------------------------------------------------------ schedule and job actions
def test_schedule_actions_print_the_execution_as_json(small):
    created = small.json("create", C, S, DAY)
    assert created["status"] == "PENDING" and [j["status"] for j in created["jobs"]] == ["PENDING"] * 4
    code, _out, err = small("recreate", C, S, DAY)
    assert code == 3 and "already runs the current config version" in err
    processed = small.json("process", C, S, DAY)
    assert processed["status"] == "ERRORED"  # an errored result is still exit 0
    assert set(processed) >= STATUS_KEYS
    assert small.json("reprocess", C, S, DAY)["status"] == "ERRORED"
    reset = small.json("reset", C, S, DAY)
    assert reset["status"] == "PENDING" and all(j["total"] == 0 for j in reset["jobs"])


def test_job_process_and_retry_print_the_execution(small, errored):
    small.json("create", C, S, DAY)
    ran = small.json("job", "process", C, S, DAY, "usage-rating")
    assert [j["status"] for j in ran["jobs"]] == ["COMPLETED", "PENDING", "PENDING", "PENDING"]
    errored.json("demo", "resolve", C)
    retried = errored.json("job", "retry", C, S, DAY, "bill-run")
    assert retried["status"] == "COMPLETED"


def test_job_stats_json_counts_and_errors_by_code(errored):
    stats = errored.json("job", "stats", C, S, DAY, "bill-run")
    assert set(stats) == {"total", "pending", "processed", "error", "errors_by_code"}
    assert (stats["total"], stats["pending"], stats["processed"], stats["error"]) == (60, 0, 58, 2)
    assert stats["errors_by_code"] == [{"error_code": "RATE_PLAN_NOT_FOUND", "count": 1},
                                       {"error_code": "TAX_RULE_MISSING", "count": 1}]


def test_job_errors_json_lists_errored_work_items_with_their_payload(errored):
    items = errored.json("job", "errors", C, S, DAY, "bill-run")
    assert len(items) == 2
    for item in items:
        assert {"account_id", "batch_id", "reason", "status", "payload", "attempts"} <= set(item)
        assert item["status"] == "ERROR" and item["attempts"] == 1
        assert isinstance(item["payload"], dict) and item["payload"]["account_id"] == item["account_id"]
        assert isinstance(item["batch_id"], int) and item["reason"]
    only = errored.json("job", "errors", C, S, DAY, "bill-run", "--code", "TAX_RULE_MISSING")
    assert len(only) == 1 and "tax region" in only[0]["reason"]
    first = errored.json("job", "errors", C, S, DAY, "bill-run", "--limit", "1")
    second = errored.json("job", "errors", C, S, DAY, "bill-run", "--limit", "1", "--offset", "1")
    assert [first[0]["account_id"], second[0]["account_id"]] == [i["account_id"] for i in items]


def test_audit_json_records_actions_with_actor_target_outcome_and_reason(errored):
    errored("create", C, S, DAY)  # refused
    errored.json("job", "retry", C, S, DAY, "bill-run")
    entries = errored.json("audit")
    for entry in entries:
        assert set(entry) == {"time", "actor", "action", "target", "outcome", "reason"}
    assert {e["actor"] for e in entries} == {"cli-tester"}
    actions = [e["action"] for e in entries]
    assert {"config apply", "create", "process", "job retry"} <= set(actions)
    newest, refused = entries[0], entries[1]
    assert (newest["action"], newest["target"], newest["outcome"]) == (
        "job retry", f"{C}/{S} {DAY} job bill-run", "ERRORED")
    assert (refused["action"], refused["outcome"]) == ("create", "refused")
    assert refused["reason"].endswith("create needs NOT_CREATED")
    assert len(errored.json("audit", "--limit", "2")) == 2
    assert {e["target"].split("/")[0] for e in errored.json("audit", "--client", "globex")} == {"globex"}


def test_config_export_then_apply_is_unchanged_and_an_edit_is_a_new_version(small, tmp_path):
    code, exported, _ = small("config", "export", C, S)
    assert code == 0 and yaml.safe_load(exported)["name"] == S
    path = tmp_path / "daily.yaml"
    path.write_text(exported)
    assert small.json("config", "apply", str(path)) == [
        {"client": C, "schedule": S, "version": 1, "changed": False}]
    doc = yaml.safe_load(exported)
    doc["jobs"] = doc["jobs"][:2]
    path.write_text(yaml.safe_dump(doc))
    assert small.json("config", "apply", str(path))[0]["version"] == 2
    assert small.json("schedules", "--client", C)[0]["jobs"] == JOBS[:2]


# ------------------------------------------------------------------ exit codes
@pytest.mark.parametrize("args, fragment", [
    (("status", C, S, "2026-02-30"), "bad date '2026-02-30'"),
    (("create", C, S, "24.11.2026"), "bad date"),
    (("status", "nobody", S, DAY), "unknown client 'nobody'"),
    (("process", C, "weekly", DAY), "unknown schedule 'acme/weekly'"),
    (("job", "stats", C, S, DAY, "no-such-job"), "unknown job 'no-such-job'"),
    (("job", "retry", C, S, DAY, "no-such-job"), "unknown job 'no-such-job'"),
    (("job", "errors", C, S, DAY, "bill-run", "--code", "NOPE"), "unknown error code 'NOPE'"),
    (("config", "export", C, "weekly"), "unknown schedule"),
], ids=["impossible-date", "bad-date-format", "unknown-client", "unknown-schedule", "unknown-job-stats",
        "unknown-job-retry", "unknown-error-code", "export-unknown"])
def test_bad_input_exits_2_with_one_line_on_stderr(errored, args, fragment):
    code, out, err = errored(*args, "--json") if args[0] != "config" else errored(*args)
    assert code == 2 and out == ""
    assert_one_error_line(err, "error: ", fragment)


def test_invalid_config_exits_2_naming_the_file_and_field(small, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("client: acme\nname: x\nmode: manual\ncalendar: {cron: '0 2 * * *', timezone: Nowhere/City}\n"
                    "jobs: [{name: a, type: demo.noop}]\n")
    code, out, err = small("config", "apply", str(path), "--json")
    assert code == 2 and out == ""
    assert_one_error_line(err, str(path), "calendar.timezone", "unknown IANA timezone")


@pytest.mark.parametrize("args, fragment", [
    (("recreate", C, S, DAY), "recreate refused: execution acme/daily-billing 2026-11-24 is ERRORED; "
                              "recreate needs PENDING"),
    (("process", C, S, DAY), "process refused: "),
    (("create", C, S, DAY), "create refused: "),
    (("job", "process", C, S, DAY, "usage-rating"), "job process needs a PENDING job"),
    (("job", "retry", C, S, DAY, "usage-rating"), "job retry needs an ERRORED job, or a COMPLETED one with errored work items"),
    (("reprocess", C, S, "2026-11-25"), "is NOT_CREATED"),
])
def test_refused_action_exits_3_with_the_reason_on_one_line(errored, args, fragment):
    code, out, err = errored(*args, "--json")
    assert code == 3 and out == ""
    assert_one_error_line(err, fragment)


def test_usage_errors_exit_2(cli):
    code, _, err = cli("status", C, S)  # missing DATE
    assert code == 2 and "Missing argument" in err and "Traceback" not in err
    code, _, err = cli("no-such-command")
    assert code == 2 and "Traceback" not in err


# ------------------------------------------------------------------ as a real process
def test_cli_process_exit_codes_ran_bad_input_refused(cli_cmd, cli_env, prepared, capsys):
    """As a real process: 0 when the command ran (an ERRORED result included), 2 for bad input,
    3 for a refusal; stdout holds exactly one JSON document or nothing. The three run at once:
    the recreate is refused whether it comes before, during or after the reprocess."""
    ws = _cli_in(prepared, capsys, "cli-errored", INIT, ("create", C, S, DAY), ("process", C, S, DAY))
    env = dict(cli_env, ALLEGRO_OPS_HOME=str(ws.home))
    commands = {"ran": ("reprocess", C, S, DAY, "--json"), "bad": ("status", C, S, "2026-02-30", "--json"),
                "refused": ("recreate", C, S, DAY, "--json")}
    procs = {k: subprocess.Popen([*cli_cmd, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for k, args in commands.items()}
    done = {k: (p.wait(timeout=120), *p.communicate()) for k, p in procs.items()}

    code, out, err = done["ran"]
    assert code == 0 and err == ""
    assert json.loads(out)["status"] == "ERRORED"
    code, out, err = done["bad"]
    assert code == 2 and out == ""
    assert_one_error_line(err, "bad date")
    code, out, err = done["refused"]
    assert code == 3 and out == ""
    assert_one_error_line(err, "recreate refused")
