"""Dated runs through papermill: ``allegro-ops run`` executes notebooks/run_schedule.ipynb into
runs/<date>/<client>/, the outcome is read back from the output notebook, a refused action and
a raising notebook both leave the notebook and exit non-zero, and the HTML report needs no CDN.

Each kernel start costs a few seconds, so every test here runs at most one notebook.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from allegro_ops import Workspace
from allegro_ops.notebook_runs import build_notebook, read_outcome

from automation_support import ROOT, build_demo, cli_environment, copy_workspace, ops

pytestmark = pytest.mark.slow
ACME = ("acme", "daily-billing")
DATE = "2026-11-24"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("notebook-runs") / "template", accounts=60)


@pytest.fixture
def ws(template, tmp_path) -> Workspace:
    return copy_workspace(template, tmp_path / "ws", actor="tester")


@pytest.fixture
def env(ws, tmp_path) -> dict[str, str]:
    return cli_environment(ws.home, tmp_path)


def last_line_path(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1])


def cell_tagged(nb, tag: str):
    return next(c for c in nb.cells if tag in c.metadata.get("tags", []))


def test_run_processes_through_the_notebook_into_a_dated_report_with_offline_html(ws, env):
    ws.create(*ACME, DATE)
    result = ops(["run", *ACME, DATE, "--html"], env)
    assert result.returncode == 0, result.stderr  # ERRORED is a result, not a failure of the command
    path = last_line_path(result.stdout)
    assert path.parent == ws.home / "runs" / DATE / "acme"
    assert path.name.startswith("daily-billing-process-") and path.suffix == ".ipynb"
    nb = nbformat.read(path, as_version=4)
    outcome = read_outcome(nb)
    assert (outcome["action"], outcome["outcome"], outcome["status"]) == ("process", "done", "ERRORED")
    assert [j["status"] for j in outcome["jobs"]] == ["COMPLETED", "ERRORED", "PENDING", "PENDING"]
    assert outcome["errors_by_code"] == {"RATE_PLAN_NOT_FOUND": 1, "TAX_RULE_MISSING": 1}
    execution = ws.execution(*ACME, DATE).to_dict()
    assert {key: outcome[key] for key in execution} == execution
    assert nb.metadata.papermill.parameters == {"home": str(ws.home), "client": "acme", "schedule": "daily-billing",
                                                 "run_date": DATE, "action": "process", "actor": "tester"}
    tables = [o for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert any("usage-rating" in o["data"]["text/html"] for o in tables)  # the jobs DataFrame
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    html = path.with_suffix(".html")
    assert result.stdout.strip().splitlines()[-2] == str(html)
    text = html.read_text()
    assert 'src="http' not in text and "require.min.js" not in text  # nothing loaded from a CDN
    assert "Plotly.newPlot" in text and "plotly.js v" in text  # the chart, with plotly.js inlined
    audit = ws.audit()[0]
    assert (audit.actor, audit.action, audit.target, audit.outcome) == ("tester", "process", f"acme/daily-billing {DATE}",
                                                                        "ERRORED")


def test_a_refused_action_is_the_notebooks_outcome_and_exits_3_with_the_notebook_kept(ws, env):
    # a user kernelspec named python3 that points to another Python does not stand in the way
    bogus = Path(env["JUPYTER_DATA_DIR"]) / "kernels" / "python3"
    bogus.mkdir(parents=True)
    (bogus / "kernel.json").write_text(json.dumps({"argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f",
                                                            "{connection_file}"], "display_name": "elsewhere",
                                                   "language": "python"}))
    result = ops(["run", *ACME, DATE, "--action", "reprocess"], env)  # NOT_CREATED: nothing to reprocess
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: reprocess refused: execution acme/daily-billing {DATE} is NOT_CREATED; reprocess needs ERRORED, "
        "or an errored job and no live run")
    path = last_line_path(result.stdout)
    outcome = read_outcome(nbformat.read(path, as_version=4))
    assert (outcome["outcome"], outcome["status"]) == ("refused", "NOT_CREATED")


def test_a_notebook_that_raises_is_kept_and_the_command_exits_1_with_one_line(ws, env):
    broken = ws.home / "broken.yaml"
    broken.write_text("client: acme\nname: broken\nmode: manual\ncalendar: {cron: '0 3 * * *'}\n"
                      "jobs: [{name: post, type: http}]\n")
    ws.apply_config(broken)
    ws.create("acme", "broken", DATE)
    result = ops(["run", "acme", "broken", DATE], env)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    path = last_line_path(result.stdout)
    assert message == (f"error: run notebook failed: BadInput: job post: the http job type needs params.items or "
                       f"params.items_url (see {path})")
    nb = nbformat.read(path, as_version=4)
    errors = [o for o in cell_tagged(nb, "outcome").outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["BadInput"]


def test_unknown_names_fail_before_a_kernel_starts_and_leave_no_notebook(ws, env):
    result = ops(["run", "acme", "nightly", DATE], env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: unknown schedule 'acme/nightly'")
    assert not (ws.home / "runs").exists()


def test_the_same_notebook_runs_under_plain_papermill(ws, env, tmp_path):
    out = tmp_path / "out.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "run_schedule.ipynb"), str(out),
           "-p", "client", "acme", "-p", "schedule", "daily-billing", "-p", "run_date", DATE, "-p", "action", "create",
           "--kernel", "python3", "--no-progress-bar"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)  # home: $ALLEGRO_OPS_HOME
    assert result.returncode == 0, result.stderr
    outcome = read_outcome(nbformat.read(out, as_version=4))
    assert (outcome["action"], outcome["outcome"], outcome["status"]) == ("create", "done", "PENDING")
    assert ws.execution(*ACME, DATE).status.value == "PENDING"


def test_the_repository_notebook_is_the_one_the_adapter_builds_without_outputs():
    stored = nbformat.read(ROOT / "notebooks" / "run_schedule.ipynb", as_version=4)
    built = build_notebook()
    assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in stored.cells] == [
        (c.cell_type, c.source, c.metadata.get("tags")) for c in built.cells]
    assert stored.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") for c in stored.cells)
    assert cell_tagged(stored, "parameters").source.splitlines()[1:] == [
        'home = None  # workspace folder; None: $ALLEGRO_OPS_HOME, else the current folder',
        'client = None  # e.g. "acme"', 'schedule = None  # e.g. "daily-billing"', 'run_date = None  # YYYY-MM-DD',
        'action = "process"  # process | reprocess | create | reset | recreate',
        'actor = None  # who the audit log names; None: $ALLEGRO_OPS_ACTOR, else the OS user']


def test_the_engine_and_cli_load_without_papermill():
    code = ("import sys, allegro_ops.cli, allegro_ops.scheduler, allegro_ops.backfill, allegro_ops.notebook_runs, "
            "allegro_ops.run_report; bad = {'papermill', 'ipywidgets', 'voila', 'nbconvert', 'plotly'} & "
            "set(m.split('.')[0] for m in sys.modules); print(sorted(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
