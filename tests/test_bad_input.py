"""Hostile and malformed input (issue 7): every bad date, unknown name, broken config and bad work
item gets a clear one-line error and changes nothing; markup in the data is shown as text.

"Changes nothing" is checked on the tables themselves: every base table except the audit log is
read whole before and after and compared; the audit log may only have grown by entries that
record the refusal or failure.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import math
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import allegro_ops.query as q
from allegro_ops import (
    ActionRefused, BadInput, InvalidConfig, ItemInput, JobContext, JobStatus, JobType, NotFound, ScheduleAction,
    Workspace, WorkItemError, parse_date, register,
)
from allegro_ops import config as config_mod
from allegro_ops.backfill import backfill_dates
from allegro_ops.cli import main
from allegro_ops.demo import init_demo
from widgets.audit import audit_rows, audit_table
from widgets.drawers import expandable
from widgets.navigation import account_rows, account_table
from widgets.views import esc, item_rows, progress_html, stats_view

C, S = "acme", "daily-billing"
RUN, PENDING_DAY = "2026-11-24", "2026-11-23"
CORE_TABLES = {"config_versions", "executions", "jobs", "listed_items", "item_states", "attempts",
               "archived_generations"}
BAD_DATES = [
    "", "2026-2-3", "2026-02-30", "20261125", "1900-01-01", "9999-12-31", " 2026-11-25; DROP TABLE executions",
    "２０２６-１１-２５", "٢٠٢٦-١١-٢٥",  # unicode digits: full-width and Arabic-Indic
    "2026-11-25T09:00", "2026-13-01", "0000-00-00", "2026-11-25\x00", "25.11.2026",
]
BAD_DATE_VALUES = [*BAD_DATES, None, 20261125, dt.date(1900, 1, 1), dt.date(9999, 12, 31)]


# ------------------------------------------------------------------------------------ helpers
def _tables(con) -> dict[str, list[dict[str, Any]]]:
    names = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
    found = {}
    for name in names:
        if name not in ("audit", "schema_migrations"):
            result = con.execute(f'SELECT * FROM "{name}" ORDER BY ALL')
            columns = [d[0] for d in result.description]
            found[name] = [dict(zip(columns, row)) for row in result.fetchall()]
    assert CORE_TABLES <= set(found)
    return found


def _audit_log(con) -> list[tuple]:
    return con.execute(
        "SELECT entry_id, time, actor, action, client, target, outcome, reason FROM audit ORDER BY entry_id"
    ).fetchall()


def snapshot(ws: Workspace) -> tuple[dict, list]:
    """Every row of every base table but the audit log (and the migrations record), and the audit log."""
    return ws.store.read(lambda con: (_tables(con), _audit_log(con)))


def assert_unchanged(ws: Workspace, before: tuple[dict, list], what: str = "",
                     tolerate: tuple[str, str] | None = None) -> list[tuple]:
    """Nothing changed but appended audit entries of refusals or failures (and the one ``tolerate``
    column, (table, column), of a known finding); returns the appended audit entries."""
    rows, log = before
    after, now = snapshot(ws)
    for name in rows:
        old, new = rows[name], after[name]
        if tolerate and tolerate[0] == name:
            old, new = ([{k: v for k, v in r.items() if k != tolerate[1]} for r in x] for x in (old, new))
        assert new == old, f"{what}: table {name} changed"
    assert now[: len(log)] == log, f"{what}: the audit log was rewritten"
    added = now[len(log):]
    assert all(e[6] in ("refused", "failed") for e in added), f"{what}: {added}"
    return added


def assert_one_line(message: str, *fragments: str) -> None:
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


_FACTS: dict[str, tuple[str, str, str]] = {}


def _build(ws: Workspace) -> None:
    init_demo(ws, accounts=60, seed=7, batch_size=10)
    ws.create(C, S, RUN)
    ws.process(C, S, RUN)  # a job ERRORED, the jobs after it paused
    ws.create(C, S, PENDING_DAY)
    job = next(j.name for j in ws.execution(C, S, RUN).jobs if j.status is JobStatus.ERRORED)
    code = ws.job_stats(C, S, RUN, job).errors_by_code[0].error_code
    _FACTS["errored"] = job, code, ws.job_errors(C, S, RUN, job, code=code, limit=1)[0].account_id


@pytest.fixture
def ws(prepared) -> Workspace:
    """acme/daily-billing: RUN processed and ERRORED at one job, PENDING_DAY created."""
    return prepared("bad-input", _build)


@pytest.fixture
def workspace(prepared) -> Workspace:
    """An empty workspace, its tables made once per session (conftest's makes them in every test)."""
    return prepared("bad-input-empty", lambda w: w.schedules())


def errored_job(ws: Workspace) -> tuple[str, str, str]:
    """(errored job, one of its error codes, an account of that code) of a ``ws`` workspace (read
    once, when its template was built)."""
    return _FACTS["errored"]


# ------------------------------------------------------------------------------------ dates
def _date_actions(job: str, code: str, account: str, out: Path) -> dict[str, Any]:
    return {
        "status": lambda ws, d: ws.execution(C, S, d),
        "create": lambda ws, d: ws.create(C, S, d),
        "recreate": lambda ws, d: ws.recreate(C, S, d),
        "recreate preview": lambda ws, d: ws.recreate_preview(C, S, d),
        "process": lambda ws, d: ws.process(C, S, d),
        "reprocess": lambda ws, d: ws.reprocess(C, S, d),
        "reset": lambda ws, d: ws.reset(C, S, d),
        "job process": lambda ws, d: ws.process_job(C, S, d, "usage-rating"),
        "job retry": lambda ws, d: ws.retry_job(C, S, d, job),
        "job retry code": lambda ws, d: ws.retry_job(C, S, d, job, code=code),
        "item retry": lambda ws, d: ws.retry_item(C, S, d, job, account),
        "job stats": lambda ws, d: ws.job_stats(C, S, d, job),
        "job errors": lambda ws, d: ws.job_errors(C, S, d, job, code=code),
        "backfill from": lambda ws, d: backfill_dates(ws, C, S, d, RUN),
        "backfill to": lambda ws, d: backfill_dates(ws, C, S, "2026-11-01", d),
        "query errors": lambda ws, d: q.errors(ws, date_from=d),
        "export errors": lambda ws, d: q.export_errors(ws, out, date_from="2026-11-01", date_to=d),
    }


DATE_ACTIONS = list(_date_actions("", "", "", Path()))


@pytest.mark.parametrize("value", BAD_DATE_VALUES, ids=repr)
def test_parse_date_refuses_every_bad_form_in_one_line(value):
    with pytest.raises(BadInput) as info:
        parse_date(value)
    assert_one_line(str(info.value), "bad date")


def test_an_iso_week_date_is_not_a_run_date():
    with pytest.raises(BadInput):
        parse_date("2026-W48-2")


@pytest.mark.parametrize("action", DATE_ACTIONS)
def test_every_action_refuses_every_bad_date_and_changes_nothing(ws, tmp_path, action):
    call = _date_actions(*errored_job(ws), tmp_path / "out.parquet")[action]
    before = snapshot(ws)
    no_filter = action.startswith(("query", "export"))  # there None means "no date filter"
    for value in [v for v in BAD_DATE_VALUES if not (no_filter and v is None)]:
        with pytest.raises(BadInput) as info:
            call(ws, value)
        assert not isinstance(info.value, ActionRefused)
        assert_one_line(str(info.value), "bad date")
    assert_unchanged(ws, before, action)
    assert not (tmp_path / "out.parquet").exists()


# ------------------------------------------------------------------------------------ unknown names
def _name_cases(job: str, code: str, account: str) -> list[tuple[str, Any, str, str]]:
    """(id, call, kind of the unknown name, the name as the message quotes it)."""
    cases = []
    for action, call in {
        "status": lambda ws, c, s: ws.execution(c, s, RUN),
        "create": lambda ws, c, s: ws.create(c, s, "2026-11-25"),
        "recreate": lambda ws, c, s: ws.recreate(c, s, PENDING_DAY),
        "process": lambda ws, c, s: ws.process(c, s, PENDING_DAY),
        "reprocess": lambda ws, c, s: ws.reprocess(c, s, RUN),
        "reset": lambda ws, c, s: ws.reset(c, s, RUN),
        "job stats": lambda ws, c, s: ws.job_stats(c, s, RUN, job),
        "job errors": lambda ws, c, s: ws.job_errors(c, s, RUN, job),
        "job retry": lambda ws, c, s: ws.retry_job(c, s, RUN, job),
        "history": lambda ws, c, s: ws.history(c, s),
        "config export": lambda ws, c, s: ws.export_config(c, s),
        "backfill": lambda ws, c, s: backfill_dates(ws, c, s, "2026-11-01", RUN),
    }.items():
        cases.append((f"{action}-client", lambda ws, f=call: f(ws, "nobody", S), "client", "'nobody'"))
        cases.append((f"{action}-schedule", lambda ws, f=call: f(ws, C, "weekly"), "schedule", "'acme/weekly'"))
    for action, call in {
        "job process": lambda ws, j: ws.process_job(C, S, PENDING_DAY, j),
        "job retry": lambda ws, j: ws.retry_job(C, S, RUN, j),
        "job stats": lambda ws, j: ws.job_stats(C, S, RUN, j),
        "job errors": lambda ws, j: ws.job_errors(C, S, RUN, j),
        "item retry": lambda ws, j: ws.retry_item(C, S, RUN, j, account),
    }.items():
        cases.append((f"{action}-job", lambda ws, f=call: f(ws, "no-such-job"), "job", "'no-such-job'"))
    cases += [
        ("job errors-code", lambda ws: ws.job_errors(C, S, RUN, job, code="NOPE"), "error code", "'NOPE'"),
        ("job retry-code", lambda ws: ws.retry_job(C, S, RUN, job, code="NOPE"), "error code", "'NOPE'"),
        ("item retry-account", lambda ws: ws.retry_item(C, S, RUN, job, "NO-SUCH-ACCOUNT"), "work item",
         "'NO-SUCH-ACCOUNT'"),
        ("schedules-client", lambda ws: ws.schedules("nobody"), "client", "'nobody'"),
    ]
    return cases


NAME_KINDS = sorted({c[2] for c in _name_cases("", "", "")})


@pytest.mark.parametrize("kind", NAME_KINDS)
def test_unknown_names_are_not_found_in_one_line_and_change_nothing(ws, kind):
    cases = [c for c in _name_cases(*errored_job(ws)) if c[2] == kind]
    before = snapshot(ws)
    failed = []
    for case, call, _, quoted in cases:
        with pytest.raises(NotFound) as info:
            call(ws)
        assert info.value.kind == kind, case
        assert_one_line(str(info.value), f"unknown {kind} {quoted}")
        failed.append(str(info.value))
    for entry in assert_unchanged(ws, before, kind):  # an audited action records the failure
        assert entry[6] == "failed" and entry[7] in failed


# ------------------------------------------------------------------------------------ the CLI
D = "{date}"


def _cli_date_commands(job: str, out: str) -> dict[str, tuple[str, ...]]:
    return {
        "status": ("status", C, S, D), "create": ("create", C, S, D), "recreate": ("recreate", C, S, D),
        "recreate dry-run": ("recreate", C, S, D, "--dry-run"), "process": ("process", C, S, D),
        "reprocess": ("reprocess", C, S, D), "reset": ("reset", C, S, D),
        "job process": ("job", "process", C, S, D, "usage-rating"), "job retry": ("job", "retry", C, S, D, job),
        "job retry code": ("job", "retry", C, S, D, job, "--code", "X"), "job stats": ("job", "stats", C, S, D, job),
        "job errors": ("job", "errors", C, S, D, job), "item retry": ("item", "retry", C, S, D, job, "ACC-1"),
        "run": ("run", C, S, D), "backfill from": ("backfill", C, S, "--from", D, "--to", RUN),
        "backfill to": ("backfill", C, S, "--from", "2026-11-01", "--to", D),
        "export from": ("export", "errors", "--from", D, "--to", RUN, out),
        "export to": ("export", "errors", "--from", "2026-11-01", "--to", D, out),
    }


@pytest.fixture
def cli(ws, capsys, monkeypatch):
    """``cli(*args)`` runs ``allegro-ops --home <ws> ...`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setenv("ALLEGRO_OPS_ACTOR", "cli-tester")
    monkeypatch.delenv("ALLEGRO_OPS_ROLE", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--home", str(ws.home), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize("command", list(_cli_date_commands("", "")))
def test_cli_refuses_every_bad_date_with_exit_2_and_one_line(ws, cli, tmp_path, command):
    job = errored_job(ws)[0]
    template = _cli_date_commands(job, str(tmp_path / "out.parquet"))[command]
    before = snapshot(ws)
    for value in BAD_DATES:
        code, out, err = cli(*(value if a == D else a for a in template))
        assert (code, out) == (2, ""), (value, err)
        assert err.startswith("error: bad date") and err.endswith("\n"), err
        assert_one_line(err[:-1])
    assert_unchanged(ws, before, command)
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("now", ["garbage", "", "2026-02-30T00:00:00", "2026-11-25T25:00"])
def test_scheduler_refuses_a_bad_now_with_exit_2(ws, cli, now):
    before = snapshot(ws)
    code, out, err = cli("scheduler", "--once", "--dry-run", "--now", now)
    assert (code, out) == (2, "")
    assert_one_line(err.rstrip("\n"), "error: bad timestamp")
    assert_unchanged(ws, before)


@pytest.mark.parametrize("now", ["9999-12-31T00:00:00", "0001-01-01T00:00:00", "1900-01-01T00:00:00"])
def test_scheduler_refuses_a_now_outside_the_run_dates_with_exit_2(ws, cli, now):
    code, out, err = cli("scheduler", "--once", "--dry-run", "--now", now)
    assert (code, out) == (2, "") and "\n" not in err.rstrip("\n")


def test_cli_unknown_names_exit_2_with_one_line(ws, cli):
    job, _code, _account = errored_job(ws)
    before = snapshot(ws)
    cases = [
        (("status", "nobody", S, RUN), "unknown client 'nobody'"),
        (("create", C, "weekly", "2026-11-25"), "unknown schedule 'acme/weekly'"),
        (("process", "nobody", S, PENDING_DAY), "unknown client 'nobody'"),
        (("reset", C, "weekly", RUN), "unknown schedule 'acme/weekly'"),
        (("recreate", C, S, PENDING_DAY, "--dry-run"), None),  # allowed: a control, exit 0
        (("job", "process", C, S, PENDING_DAY, "no-such-job"), "unknown job 'no-such-job'"),
        (("job", "retry", C, S, RUN, job, "--code", "NOPE"), "unknown error code 'NOPE'"),
        (("job", "errors", C, S, RUN, job, "--code", "NOPE"), "unknown error code 'NOPE'"),
        (("job", "stats", C, S, RUN, "no-such-job"), "unknown job 'no-such-job'"),
        (("item", "retry", C, S, RUN, job, "NO-SUCH-ACCOUNT"), "unknown work item 'NO-SUCH-ACCOUNT'"),
        (("run", "nobody", S, RUN), "unknown client 'nobody'"),
        (("backfill", C, "weekly", "--from", RUN, "--to", RUN), "unknown schedule 'acme/weekly'"),
        (("schedules", "--client", "nobody"), "unknown client 'nobody'"),
        (("config", "export", "nobody", S), "unknown client 'nobody'"),
    ]
    for args, fragment in cases:
        code, out, err = cli(*args)
        if fragment is None:
            assert code == 0, err
            continue
        assert (code, out) == (2, ""), (args, err)
        assert_one_line(err.rstrip("\n"), "error: ", fragment)
    assert_unchanged(ws, before)


# (arguments, exit code, a fragment of the one line on stderr); bytes arguments are not UTF-8.
SUBPROCESS_CASES = [
    (("status", C, S, "2026-02-30"), 2, b"bad date '2026-02-30'"),
    (("status", "nobody", S, RUN), 2, b"unknown client 'nobody'"),
    (("recreate", C, S, RUN), 3, b"recreate refused: "),
    (("export", "errors", "--from", RUN, "--to", RUN, "--client", b"acme\xff", "{out}"), 2, b"not UTF-8"),
]


def _run_all(cli_cmd, env, commands: list[list], at_once: int = 2) -> list[subprocess.CompletedProcess]:
    """Run the CLI for each argument list, a few processes at a time (the machine has 2 cores)."""
    done = []
    for i in range(0, len(commands), at_once):
        procs = [(args, subprocess.Popen([*cli_cmd, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
                 for args in commands[i:i + at_once]]
        for args, proc in procs:
            out, err = proc.communicate(timeout=120)
            done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def test_cli_as_a_process_exits_2_or_3_with_one_line_and_changes_nothing(ws, cli_cmd, cli_env, tmp_path):
    before = snapshot(ws)
    out = str(tmp_path / "out.parquet")
    commands = [[out if a == "{out}" else a for a in args] for args, _, _ in SUBPROCESS_CASES]
    results = _run_all(cli_cmd, dict(cli_env, ALLEGRO_OPS_HOME=str(ws.home), HOME=str(tmp_path)), commands)
    for (args, expected, fragment), proc in zip(SUBPROCESS_CASES, results):
        assert (proc.returncode, proc.stdout) == (expected, b""), (args, proc.stderr)
        err = proc.stderr
        assert err.count(b"\n") == 1 and err.endswith(b"\n") and b"Traceback" not in err, err
        assert err.startswith(b"error: ") and fragment in err, (args, err)
    added = assert_unchanged(ws, before)
    assert [(e[3], e[6]) for e in added] == [("recreate", "refused")]
    assert not Path(out).exists()


def test_cli_names_that_are_not_utf8_exit_2(ws, cli_cmd, cli_env, tmp_path):
    commands = [["status", b"\xff", S, RUN], ["audit", "--client", b"\xff"]]
    for proc in _run_all(cli_cmd, dict(cli_env, ALLEGRO_OPS_HOME=str(ws.home), HOME=str(tmp_path)), commands):
        assert proc.returncode == 2 and proc.stderr.count(b"\n") == 1 and b"Traceback" not in proc.stderr, proc


# ------------------------------------------------------------------------------------ configs
VALID = {
    "client": "acme", "name": "nightly", "description": "A nightly schedule.", "mode": "manual",
    "calendar": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"},
    "jobs": [{"name": "first", "type": "demo.noop", "params": {"count": 5}},
             {"name": "second", "type": "demo.noop", "batch_size": 2, "concurrency": 1}],
}
VALID_TEXT = yaml.safe_dump(VALID, sort_keys=False)
LAUGHS = "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))


def with_changes(**changes: Any) -> dict:
    return {**json.loads(json.dumps(VALID)), **changes}


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def job0(**changes: Any) -> dict:
    return with_changes(jobs=[{**VALID["jobs"][0], **changes}, VALID["jobs"][1]])


BAD_CONFIGS = [
    pytest.param("client: acme\n  name: [unclosed\n", "malformed YAML", id="malformed-yaml"),
    pytest.param(VALID_TEXT.replace("mode: manual", "\tmode: manual"), "malformed YAML", id="tab-indent"),
    pytest.param(dump(job0(batch_size="many")), "jobs.0.batch_size", id="batch-size-text"),
    pytest.param(dump(job0(batch_size=True)), "jobs.0.batch_size", id="batch-size-bool"),
    pytest.param(dump(job0(concurrency=-1)), "jobs.0.concurrency", id="concurrency-negative"),
    pytest.param(dump(job0(batch_size=2 ** 80)), "jobs.0.batch_size", id="batch-size-huge"),
    pytest.param(dump(job0(item_timeout_s=float("nan"))), "jobs.0.item_timeout_s", id="timeout-nan"),
    pytest.param(dump(with_changes(mode=5)), "mode", id="mode-int"),
    pytest.param(dump(with_changes(jobs={"first": "demo.noop"})), "jobs", id="jobs-mapping"),
    pytest.param(dump(with_changes(client=["acme"])), "client", id="client-list"),
    pytest.param(dump(with_changes(calendar="0 2 * * *")), "calendar", id="calendar-text"),
    pytest.param(dump(job0(type="no.such.type")), "unknown job type 'no.such.type'", id="unknown-job-type"),
    pytest.param(dump(with_changes(jobs=[VALID["jobs"][0], VALID["jobs"][0]])), "duplicate job name 'first'",
                 id="duplicate-job-names"),
    pytest.param(dump(with_changes(jobs=[])), "jobs", id="empty-job-list"),
    pytest.param(dump(with_changes(jobs=None)), "jobs", id="null-job-list"),
    pytest.param(dump(with_changes(calendar={"cron": "0 0 30 2 *"})), "never fires", id="cron-feb-30"),
    pytest.param(dump(with_changes(calendar={"cron": "0 0 31 4,6,9,11 *"})), "never fires", id="cron-31st-of-short"),
    pytest.param(dump(with_changes(calendar={"cron": "0 2 * *"})), "5-field cron", id="cron-4-fields"),
    pytest.param(dump(with_changes(calendar={"cron": "0 2 * * * *"})), "5-field cron", id="cron-6-fields"),
    pytest.param(dump(with_changes(calendar={"cron": "0 2 * * *", "timezone": "Mars/Olympus"})),
                 "unknown IANA timezone", id="unknown-timezone"),
    pytest.param(dump(with_changes(calendar={"cron": "0 2 * * *", "timezone": "../../../etc/passwd"})),
                 "unknown IANA timezone", id="timezone-path"),
    pytest.param(dump(with_changes(calendar={"cron": "0 2 * * *", "timezone": ""})), "unknown IANA timezone",
                 id="timezone-empty"),
    pytest.param(VALID_TEXT + "\0", "malformed YAML", id="nul-character"),
    pytest.param("!!python/object/apply:os.system ['true']\n", "malformed YAML", id="python-tag"),
    pytest.param("[" * 100_000, "malformed YAML", id="deep-nesting"),
    pytest.param(VALID_TEXT.replace("count: 5", "count: " + "9" * 5000), "malformed YAML", id="5000-digit-int"),
    pytest.param(b"client: acme\xff\xfe\n", "not UTF-8 text", id="not-utf8"),
    pytest.param(VALID_TEXT.encode("utf-16"), "not UTF-8 text", id="utf16"),
    pytest.param("", "holds no schedule", id="empty-file"),
    pytest.param("- just\n- a list\n", "expected a mapping", id="not-a-mapping"),
]


@pytest.mark.parametrize("content, fragment", BAD_CONFIGS)
def test_a_bad_config_is_refused_quickly_in_one_line_and_stores_nothing(workspace, tmp_path, content, fragment):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    before = snapshot(workspace)
    start = time.monotonic()
    with pytest.raises(InvalidConfig) as info:
        workspace.apply_config(path)
    assert time.monotonic() - start < 5
    err = info.value
    assert err.source == str(path) and str(err).startswith(f"invalid config {path}")
    assert_one_line(str(err))
    assert fragment in err.field or fragment in err.problem, str(err)
    assert_unchanged(workspace, before)
    assert workspace.schedules() == []


BOMBS = {  # YAML whose aliases would build billions of values, or a value that contains itself
    "billion-laughs": (LAUGHS + VALID_TEXT.replace("count: 5", "count: *l9"), "expand to more than"),
    "merge-key-bomb": ("m0: &m0 {k: v}\n" + "".join(
        f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}], k{i}: v}}\n" for i in range(1, 12)) + VALID_TEXT,
        "expand to more than"),
    "recursive-alias": (VALID_TEXT.replace("count: 5", "self: &p {again: *p}"), "recursive"),
    "holidays-bomb": (None, "expand to more than"),  # <home>/holidays.yaml, read by a backfill
}
# Run in a child process with a memory cap and a timeout, so that a regression fails the test
# instead of hanging it or taking the machine's memory.
_GUARDED = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (2 * 1024 ** 3, 2 * 1024 ** 3))
from allegro_ops import AllegroOpsError, Workspace
from allegro_ops.backfill import backfill_dates
home, files = sys.argv[1], sys.argv[2:]
ws = Workspace(home, actor="tester")
for path in files:
    start = time.monotonic()
    try:
        if path.endswith("holidays.yaml"):
            backfill_dates(ws, "acme", "nightly", "2026-11-01", "2026-11-30")
        else:
            ws.apply_config(path)
        outcome = ["applied", ""]
    except AllegroOpsError as exc:
        outcome = [type(exc).__name__, str(exc)]
    print(json.dumps([path, *outcome, time.monotonic() - start]), flush=True)
"""


def test_yaml_bombs_are_refused_at_once_and_store_nothing(tmp_path, cli_env):
    home = tmp_path / "home"
    home.mkdir()
    base = tmp_path / "base.yaml"
    base.write_text(dump(with_changes(calendar={"cron": "0 2 * * *", "holiday_set": "bank"})))
    Workspace(home, actor="tester").apply_config(base)
    (home / "holidays.yaml").write_text(LAUGHS.replace("lol, ", "2026-11-26, ").replace("lol]", "2026-11-26]")
                                        + "holiday_sets:\n  bank: *l9\n")
    files = {}
    for name, (text, _) in BOMBS.items():
        files[name] = home / "holidays.yaml" if text is None else tmp_path / f"{name}.yaml"
        if text is not None:
            files[name].write_text(text)
    before = snapshot(Workspace(home, actor="tester"))
    proc = subprocess.run([sys.executable, "-c", _GUARDED, str(home), *map(str, files.values())],
                          env=dict(cli_env, HOME=str(tmp_path)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = {path: (kind, message, seconds) for path, kind, message, seconds in map(json.loads,
                                                                                      proc.stdout.splitlines())}
    for name, (_, fragment) in BOMBS.items():
        kind, message, seconds = results[str(files[name])]
        assert kind == "InvalidConfig" and fragment in message, (name, kind, message)
        assert_one_line(message, f"invalid config {files[name]}")
        assert seconds < 2, (name, seconds)
    assert_unchanged(Workspace(home, actor="tester"), before)


def test_a_50_mb_config_is_refused_by_its_size_without_parsing(workspace, tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as f:
        f.write(VALID_TEXT)
        line = "# " + "x" * 1000 + "\n"
        for _ in range(50_000):
            f.write(line)
    assert path.stat().st_size > 50_000_000
    start = time.monotonic()
    with pytest.raises(InvalidConfig, match="larger than"):
        workspace.apply_config(path)
    assert time.monotonic() - start < 1.0
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a-good.yaml").write_text(VALID_TEXT)
    path.rename(tmp_path / "folder" / "b-huge.yaml")
    with pytest.raises(InvalidConfig, match="b-huge.yaml: file is larger than"):
        workspace.apply_config(tmp_path / "folder")
    assert workspace.schedules() == []
    (tmp_path / "folder" / "b-huge.yaml").unlink()  # pytest keeps the last runs' folders


def test_the_size_limit_is_on_bytes_not_content(tmp_path):
    """A valid file padded with a comment to exactly the limit loads; one byte more is refused."""
    limit = config_mod.MAX_CONFIG_BYTES
    padding = limit - len(VALID_TEXT.encode()) - 3
    path = tmp_path / "padded.yaml"
    path.write_text(VALID_TEXT + "# " + "x" * padding + "\n")
    assert path.stat().st_size == limit
    assert [c.name for c in config_mod.load_path(path)] == ["nightly"]
    path.write_text(VALID_TEXT + "# " + "x" * (padding + 1) + "\n")
    with pytest.raises(InvalidConfig, match=f"larger than {limit} bytes"):
        config_mod.load_path(path)


def test_anchors_and_merge_keys_within_reason_still_load(tmp_path):
    """The expansion limit is on what aliases would build, not on their use."""
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "client: acme\nname: nightly\nmode: manual\ncalendar: {cron: '0 2 * * *'}\n"
        "jobs:\n- &base {name: a, type: demo.noop, batch_size: 7, params: &p {plans: [gold, silver]}}\n"
        "- {<<: *base, name: b, batch_size: 3}\n- {<<: *base, name: c, params: {same: *p}}\n")
    (cfg,) = config_mod.load_path(path)
    assert [(j.name, j.batch_size) for j in cfg.jobs] == [("a", 7), ("b", 3), ("c", 7)]
    assert cfg.jobs[2].params == {"same": {"plans": ["gold", "silver"]}}


# Fuzzing: arbitrary bytes, YAML-ish token soup, and the valid document with one field replaced.
TOKENS = [
    "client: acme\n", "name: nightly\n", "mode: manual\n", "calendar: {cron: '0 2 * * *'}\n", "jobs:\n",
    "  - {name: a, type: demo.noop}\n", "- ", "&a ", "*a", "<<: *a\n", "[", "]", "{", "}", ", ", ": ", "? ",
    "---\n", "...\n", "!!binary ", "!!set ", "!!python/tuple ", "!!str ", "%YAML 1.1\n", "#", "\n", "  ", "\t",
    "'", '"', "\\", "1e9999", "2026-02-30", "~", "true", "0x1F", ".nan", "&b [*a, *a, *a]\n", "|\n", ">-\n",
    "\u2028", "\ufeff", "é", "0 0 30 2 *", "Mars/Olympus",
]
PATHS = [("client",), ("name",), ("mode",), ("description",), ("deadline",), ("calendar",), ("calendar", "cron"),
         ("calendar", "timezone"), ("calendar", "holidays"), ("calendar", "weekend"),
         ("calendar", "non_business_day"), ("jobs",), ("jobs", 0), ("jobs", 0, "name"), ("jobs", 0, "type"),
         ("jobs", 0, "batch_size"), ("jobs", 0, "concurrency"), ("jobs", 0, "params"),
         ("jobs", 0, "item_timeout_s"), ("jobs", 0, "max_errors"), ("jobs", 0, "max_error_rate")]
any_value = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=12)
    | st.dates() | st.datetimes() | st.sampled_from(["second", "0 0 30 2 *", "UTC", "demo.noop", "0.5%", "sat"]),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=6)


@st.composite
def one_field_replaced(draw) -> tuple[tuple, dict]:
    path = draw(st.sampled_from(PATHS))
    doc = json.loads(json.dumps(VALID))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = draw(any_value)
    return path, doc


def _check_loaded_or_refused(path: Path, replaced: tuple | None = None) -> None:
    start = time.monotonic()
    try:
        configs = config_mod.load_path(path)
    except InvalidConfig as exc:
        assert exc.source == str(path)
        assert_one_line(str(exc))
        if replaced is not None:  # the problem is the field that was replaced
            prefix = ".".join(str(p) for p in replaced)
            assert exc.field == prefix or exc.field.startswith(prefix + ".") or (
                exc.field == "" and "duplicate job name" in exc.problem), (prefix, str(exc))
    else:  # whatever validates survives storing and exporting unchanged
        for cfg in configs:
            again = config_mod.parse_document(yaml.safe_load(config_mod.to_yaml(cfg)), "again")
            assert config_mod.content_hash(again) == config_mod.content_hash(cfg)
    assert time.monotonic() - start < 10


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=400) | st.lists(st.sampled_from(TOKENS), max_size=40).map(
    lambda parts: "".join(parts).encode("utf-8")))
def test_loading_any_bytes_gives_configs_or_one_line_invalid_config(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"
    path.write_bytes(data)
    _check_loaded_or_refused(path)


@FUZZ
@given(case=one_field_replaced())
def test_a_wrong_value_in_any_field_is_refused_naming_that_field(tmp_path_factory, case):
    replaced, doc = case
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _check_loaded_or_refused(path, replaced)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=one_field_replaced())
def test_apply_config_stores_a_valid_version_or_nothing(workspace, tmp_path_factory, case):
    _, doc = case
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    before = snapshot(workspace)
    try:
        (applied,) = workspace.apply_config(path)
    except InvalidConfig as exc:
        assert_one_line(str(exc))
        assert_unchanged(workspace, before)
        return
    stored = workspace.config(applied["client"], applied["schedule"])
    assert config_mod.content_hash(stored) == config_mod.content_hash(config_mod.load_path(path)[0])


def test_cli_config_apply_of_a_bomb_exits_2_with_one_line(cli, tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(LAUGHS + VALID_TEXT.replace("count: 5", "count: *l9"))
    code, out, err = cli("config", "apply", str(path))
    assert (code, out) == (2, "")
    assert_one_line(err.rstrip("\n"), f"error: invalid config {path}", "expand to more than")


# ------------------------------------------------------------------------------------ work items
HOSTILE = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
HUGE = "x" * 10_000_000


class _Odd:
    def __repr__(self) -> str:
        return "<odd object>"


LISTINGS: dict[str, Any] = {
    "set": lambda: [("ACC-1", {"ok": 1}), ("ACC-SET", {"plans": {1, 2}})],
    "datetime": lambda: [("ACC-DT", {"when": dt.datetime(2026, 11, 24, 9, 0)})],
    "nan": lambda: [("ACC-NAN", {"amount": math.nan})],
    "infinity": lambda: [("ACC-INF", {"amount": math.inf})],
    "bytes": lambda: [("ACC-BYTES", {"blob": b"\x00\xff"})],
    "object": lambda: [("ACC-OBJ", _Odd())],
    "tuple-key": lambda: [("ACC-KEY", {(1, 2): "x"})],
    "bad-json-text": lambda: [("ACC-TEXT", "{not json")],
    "surrogate-payload": lambda: [("ACC-SUR", {"name": "bad \ud800 text"})],
    "surrogate-account": lambda: [("ACC-\ud800", {"n": 1})],
    "huge": lambda: [("ACC-HUGE", {"fail": True, "blob": HUGE}), ("ACC-SMALL", {"n": 1})],
    "markup": lambda: [(HOSTILE, {"fail": True, "code": f"CODE{HOSTILE}", "reason": f"reason {SCRIPT}",
                                  "note": HOSTILE, SCRIPT: "key"}), ("PLAIN-1", {"note": "plain"})],
    "surrogate-reason": lambda: [("ACC-R", {"fail": True, "code": "BAD_TEXT", "reason": None}),
                                 ("ACC-C", {"fail": True, "code": None})],
}
BAD_LISTINGS = {  # kind -> the account the message must name
    "set": "ACC-SET", "datetime": "ACC-DT", "nan": "ACC-NAN", "infinity": "ACC-INF", "bytes": "ACC-BYTES",
    "object": "ACC-OBJ", "tuple-key": "ACC-KEY", "bad-json-text": "ACC-TEXT",
}


@register
class ListsWhatItIsGiven(JobType):
    """Work items from LISTINGS[params.kind]; an item whose payload has ``fail`` fails with the
    payload's ``code`` and ``reason`` (a lone surrogate where they are None)."""

    name = "test.bad_input.items"

    def list_work_items(self, ctx: JobContext) -> list[tuple[str, Any]]:
        return LISTINGS[ctx.params["kind"]]()

    def process_item(self, item: ItemInput, state: Any, ctx: JobContext) -> None:
        if isinstance(item.payload, dict) and item.payload.get("fail"):
            code, reason = item.payload.get("code"), item.payload.get("reason")
            raise WorkItemError("\ud800" if code is None else code, f"bad \ud800 <b>{SCRIPT}" if reason is None
                                else reason)


def listing_schedule(ws: Workspace, tmp_path: Path, kind: str) -> str:
    """Apply a manual schedule of client ``hostile`` whose one job lists LISTINGS[kind]; create RUN."""
    doc = {"client": "hostile", "name": kind, "mode": "manual", "calendar": {"cron": "0 2 * * *"},
           "jobs": [{"name": "listing", "type": ListsWhatItIsGiven.name, "params": {"kind": kind}}]}
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(doc))
    ws.apply_config(path)
    ws.create("hostile", kind, RUN)
    return kind


def assert_listing_refused(ws: Workspace, schedule: str, account: str) -> None:
    before = snapshot(ws)
    with pytest.raises(BadInput) as info:
        ws.process("hostile", schedule, RUN)
    assert_one_line(str(info.value), "job listing", f"work item {account!r}")
    e = ws.execution("hostile", schedule, RUN)
    (job,) = e.jobs
    assert (e.status.value, job.status, job.total) == ("PENDING", JobStatus.PENDING, 0)
    assert e.actions[ScheduleAction.PROCESS]  # Process can be tried again
    added = assert_unchanged(ws, before)
    assert [(a[3], a[6], a[7]) for a in added] == [("process", "failed", str(info.value))]


@pytest.mark.parametrize("kind", list(BAD_LISTINGS))
def test_a_payload_that_is_not_json_fails_process_naming_the_item_and_stores_nothing(workspace, tmp_path, kind):
    assert_listing_refused(workspace, listing_schedule(workspace, tmp_path, kind), BAD_LISTINGS[kind])


def test_a_process_that_failed_listing_leaves_the_execution_not_started(workspace, tmp_path):
    schedule = listing_schedule(workspace, tmp_path, "set")
    with pytest.raises(BadInput):
        workspace.process("hostile", schedule, RUN)
    assert workspace.execution("hostile", schedule, RUN).started_at is None


def test_a_lone_surrogate_in_an_account_id_fails_process_naming_the_item(workspace, tmp_path):
    assert_listing_refused(workspace, listing_schedule(workspace, tmp_path, "surrogate-account"), "ACC-\ud800")


def test_a_lone_surrogate_in_a_payload_is_refused_or_kept_intact(workspace, tmp_path):
    schedule = listing_schedule(workspace, tmp_path, "surrogate-payload")
    try:
        workspace.process("hostile", schedule, RUN)
    except BadInput as exc:
        assert_one_line(str(exc), "work item 'ACC-SUR'")
        assert workspace.execution("hostile", schedule, RUN).jobs[0].total == 0
        return
    (row,) = workspace.account_history("hostile", "ACC-SUR")
    assert row["payload"] == {"name": "bad \ud800 text"}


def test_lone_surrogates_in_a_reason_or_error_code_are_recorded_as_text(workspace, tmp_path):
    schedule = listing_schedule(workspace, tmp_path, "surrogate-reason")
    assert workspace.process("hostile", schedule, RUN).status.value == "ERRORED"
    items = {i.account_id: i for i in workspace.job_errors("hostile", schedule, RUN, "listing")}
    assert items["ACC-R"].error_code == "BAD_TEXT"
    assert items["ACC-R"].reason == f"bad \\ud800 <b>{SCRIPT}"  # escaped, the markup kept as data
    assert items["ACC-C"].error_code == "BAD_ERROR_CODE" and "\\ud800" in items["ACC-C"].reason
    assert_one_line(items["ACC-C"].reason)


def test_a_10_mb_payload_is_stored_and_read_back_intact(workspace, tmp_path):
    schedule = listing_schedule(workspace, tmp_path, "huge")
    e = workspace.process("hostile", schedule, RUN)
    assert (e.jobs[0].total, e.jobs[0].processed, e.jobs[0].error) == (2, 1, 1)
    (item,) = workspace.job_errors("hostile", schedule, RUN, "listing")
    assert item.account_id == "ACC-HUGE" and item.payload == {"fail": True, "blob": HUGE}
    (row,) = workspace.account_history("hostile", "ACC-HUGE")
    assert row["payload"]["blob"] == HUGE
    df = q.errors(workspace, client="hostile", payload_fields=["blob"])
    assert df["blob"].tolist() == [HUGE]


class _Markup(HTMLParser):
    """The tags, attributes and text a browser would see in a piece of markup."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.text = ""
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]

    def handle_data(self, data: str) -> None:
        self.text += data


SAFE_TAGS = {"details", "summary", "pre", "table", "thead", "tbody", "tr", "th", "td", "span", "div", "b", "i"}


def assert_shown_as_text(markup: str, *texts: str) -> None:
    seen = _Markup(markup)
    assert set(seen.tags) <= SAFE_TAGS, seen.tags
    assert not [a for a in seen.attributes if a.startswith("on")]
    for text in texts:
        assert text in seen.text, (text, seen.text[:300])


def test_markup_in_work_item_data_comes_back_as_data_and_every_view_escapes_it(workspace, tmp_path):
    schedule = listing_schedule(workspace, tmp_path, "markup")
    assert workspace.process("hostile", schedule, RUN).status.value == "ERRORED"
    (item,) = workspace.job_errors("hostile", schedule, RUN, "listing")
    # the service hands out the data as it was given
    assert (item.account_id, item.error_code, item.reason) == (HOSTILE, f"CODE{HOSTILE}", f"reason {SCRIPT}")
    assert item.payload["note"] == HOSTILE and item.payload[SCRIPT] == "key"
    stats = workspace.job_stats("hostile", schedule, RUN, "listing")
    assert [e.error_code for e in stats.errors_by_code] == [f"CODE{HOSTILE}"]

    (row,) = item_rows([item])
    assert (row.account_id, row.error_code, row.reason) == (item.account_id, item.error_code, item.reason)
    assert_shown_as_text(esc(row.account_id) + esc(row.error_code), HOSTILE, f"CODE{HOSTILE}")
    assert_shown_as_text(expandable(row.reason_short, row.reason), f"reason {SCRIPT}")
    assert_shown_as_text(expandable(row.payload_short, row.payload), HOSTILE, SCRIPT)
    bar = progress_html(stats_view(HOSTILE, stats))
    assert_shown_as_text(bar, "Error")
    assert HOSTILE not in bar and esc(HOSTILE) in bar
    history = workspace.account_history("hostile", HOSTILE)
    assert_shown_as_text(account_table(account_rows(history)), f"CODE{HOSTILE}", f"reason {SCRIPT}", HOSTILE)


def test_the_audit_view_escapes_a_failure_that_quotes_hostile_data(workspace, tmp_path):
    LISTINGS["markup-set"] = lambda: [(HOSTILE, {"plans": {1}})]
    try:
        schedule = listing_schedule(workspace, tmp_path, "markup-set")
        with pytest.raises(BadInput):
            workspace.process("hostile", schedule, RUN)
    finally:
        del LISTINGS["markup-set"]
    entries = workspace.audit("hostile")
    assert HOSTILE in entries[0].reason and entries[0].outcome == "failed"
    assert_shown_as_text(audit_table(audit_rows(entries)), HOSTILE)


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_esc_makes_any_text_inert_and_keeps_it(text):
    out = esc(text)
    assert not set("<>\"'") & set(out)
    assert html.unescape(out) == text
    summary = _Markup(expandable(text, text))
    assert summary.tags == ["details", "summary", "pre"] and not summary.attributes[1:]
