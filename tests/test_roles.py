"""Roles and actors: a viewer sees everything and every action is refused (exit 3 in the CLI) with
a reason naming the role, audited; the role comes from ALLEGRO_OPS_ROLE or <home>/access.yaml
(which an environment variable may lower, never raise); the audit log names the actor."""
from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from allegro_ops import ActionRefused, BadInput, InvalidConfig, JobAction, ScheduleAction, Workspace
from allegro_ops.access import resolve_access
from allegro_ops.states import Role
from conftest import FixedClock, init_small_demo
from test_widgets import make_dashboard, menu_button, one, text  # noqa: F401  (make_dashboard: a fixture)

DAY = dt.date(2026, 11, 24)
TARGET = ("acme", "daily-billing", DAY)


def tables(ws: Workspace) -> dict[str, list[tuple]]:
    names = ("config_versions", "executions", "jobs", "work_items", "attempts", "archived_generations")
    return ws.store.read(lambda con: {n: sorted(con.execute(f"SELECT * FROM {n}").fetchall(), key=repr)
                                      for n in names})


@pytest.fixture
def errored_small(prepared) -> Workspace:
    """acme/daily-billing processed once: ERRORED at bill-run (60 accounts)."""
    def build(ws: Workspace) -> None:
        init_small_demo(ws)
        ws.create(*TARGET)
        ws.process(*TARGET)

    return prepared("roles-errored", build)


def as_viewer(ws: Workspace, actor: str = "vera") -> Workspace:
    return Workspace(ws.home, clock=ws.clock, actor=actor, role="viewer")


# ------------------------------------------------------------------------------------ resolution
def test_a_workspace_without_access_file_or_variable_belongs_to_its_user(tmp_path: Path) -> None:
    access = resolve_access(tmp_path, env={})
    assert access.role is Role.OPERATOR and "default" in access.source


def test_the_environment_variable_sets_the_role_without_access_file(tmp_path: Path) -> None:
    assert resolve_access(tmp_path, env={"ALLEGRO_OPS_ROLE": "viewer"}).role is Role.VIEWER
    assert resolve_access(tmp_path, env={"ALLEGRO_OPS_ROLE": " Operator "}).role is Role.OPERATOR
    with pytest.raises(BadInput, match="bad role 'admin' in ALLEGRO_OPS_ROLE: expected viewer or operator"):
        resolve_access(tmp_path, env={"ALLEGRO_OPS_ROLE": "admin"})


def test_access_file_maps_hub_users_and_the_variable_may_only_lower_a_role(tmp_path: Path) -> None:
    (tmp_path / "access.yaml").write_text("default: viewer\nusers:\n  alice: operator\n  bob: viewer\n")
    alice = {"JUPYTERHUB_USER": "alice"}
    assert resolve_access(tmp_path, env=alice).role is Role.OPERATOR
    assert resolve_access(tmp_path, env={**alice, "ALLEGRO_OPS_ROLE": "viewer"}).role is Role.VIEWER
    bob = resolve_access(tmp_path, env={"JUPYTERHUB_USER": "bob", "ALLEGRO_OPS_ROLE": "operator"})
    assert bob.role is Role.VIEWER and "users.bob" not in bob.source and "bob" in bob.source
    stranger = resolve_access(tmp_path, env={"JUPYTERHUB_USER": "mallory", "ALLEGRO_OPS_ROLE": "operator"})
    assert stranger.role is Role.VIEWER and "default" in stranger.source


def test_actor_is_the_named_actor_else_the_hub_user_else_the_os_user(tmp_path: Path) -> None:
    assert resolve_access(tmp_path, env={"ALLEGRO_OPS_ACTOR": "scheduler", "JUPYTERHUB_USER": "a"}).actor == "scheduler"
    assert resolve_access(tmp_path, env={"JUPYTERHUB_USER": "alice"}).actor == "alice"
    import getpass
    assert resolve_access(tmp_path, env={}).actor == getpass.getuser()


@pytest.mark.parametrize("content, problem", [
    ("users: [alice]\n", "users: expected a mapping"),
    ("default: root\n", "default: bad role 'root'"),
    ("users:\n  alice: superuser\n", "users.alice: bad role"),
    ("roles: {}\n", "roles: unknown key"),
    ("users: {a: [\n", "invalid config"),
])
def test_a_bad_access_file_is_one_line_invalid_config(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "access.yaml").write_text(content)
    with pytest.raises(InvalidConfig) as err:
        resolve_access(tmp_path, env={"JUPYTERHUB_USER": "alice"})
    assert problem in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------ service
@pytest.mark.parametrize("action", list(ScheduleAction))
def test_a_viewer_is_refused_every_schedule_action_and_nothing_changes(errored_small: Workspace,
                                                                       action: ScheduleAction) -> None:
    before = tables(errored_small)
    viewer = as_viewer(errored_small)
    with pytest.raises(ActionRefused) as err:
        getattr(viewer, action.value)(*TARGET)
    assert str(err.value) == (f"{action.value} refused: role viewer may not {action.value}; only an operator "
                              "may act (ALLEGRO_OPS_ROLE, access.yaml)")
    assert tables(errored_small) == before
    entry = errored_small.audit(limit=1)[0]
    assert (entry.actor, entry.action, entry.outcome) == ("vera", action.value, "refused")
    assert "role viewer" in entry.reason and entry.target == "acme/daily-billing 2026-11-24"


def test_a_viewer_is_refused_job_actions_config_and_demo_repairs_but_reads_everything(errored_small: Workspace,
                                                                                     tmp_path: Path) -> None:
    viewer = as_viewer(errored_small)
    before = tables(errored_small)
    for call in (lambda: viewer.retry_job(*TARGET, "bill-run"), lambda: viewer.process_job(*TARGET, "usage-rating"),
                 lambda: viewer.apply_config(errored_small.home / "configs")):
        with pytest.raises(ActionRefused, match="role viewer may not"):
            call()
    from allegro_ops.demo import resolve
    with pytest.raises(ActionRefused, match="demo resolve refused: role viewer"):
        resolve(viewer, "acme")
    assert tables(errored_small) == before
    # Reading: status, stats, errors, history and the audit log.
    execution = viewer.execution(*TARGET)
    assert execution.status.value == "ERRORED" and execution.role is Role.VIEWER
    assert not any(execution.actions.values())
    assert all(not on for j in execution.jobs for a, on in j.actions.items() if a is not JobAction.STATS)
    assert all(j.actions[JobAction.STATS] for j in execution.jobs)
    assert execution.to_dict()["role"] == "viewer"
    stats = viewer.job_stats(*TARGET, "bill-run")
    assert stats.error > 0 and viewer.job_errors(*TARGET, "bill-run", limit=5)
    assert viewer.history("acme", "daily-billing") and len(viewer.audit()) >= 4


def test_the_operator_sees_the_same_execution_with_its_actions_enabled(errored_small: Workspace) -> None:
    execution = errored_small.execution(*TARGET)
    assert execution.role is Role.OPERATOR
    assert execution.actions[ScheduleAction.REPROCESS] and execution.actions[ScheduleAction.RESET]


# ------------------------------------------------------------------------------------ CLI
def test_cli_viewer_action_exits_3_naming_the_role_and_status_still_answers(errored_small: Workspace, cli_cmd,
                                                                          cli_env) -> None:
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(errored_small.home), "ALLEGRO_OPS_ROLE": "viewer",
           "ALLEGRO_OPS_ACTOR": "vera"}
    before = tables(errored_small)
    run = subprocess.run([*cli_cmd, "reprocess", *TARGET[:2], str(DAY)], env=env, capture_output=True, text=True)
    assert run.returncode == 3
    assert run.stderr.strip().splitlines() == [
        "error: reprocess refused: role viewer may not reprocess; only an operator may act "
        "(ALLEGRO_OPS_ROLE, access.yaml)"]
    assert tables(errored_small) == before
    status = subprocess.run([*cli_cmd, "status", *TARGET[:2], str(DAY), "--json"], env=env, capture_output=True,
                            text=True)
    assert status.returncode == 0 and '"role": "viewer"' in status.stdout and '"reprocess": false' in status.stdout
    audit = subprocess.run([*cli_cmd, "audit", "--json", "--limit", "1"], env=env, capture_output=True, text=True)
    assert '"actor": "vera"' in audit.stdout and '"outcome": "refused"' in audit.stdout
    bad = subprocess.run([*cli_cmd, "status", *TARGET[:2], str(DAY)], env={**env, "ALLEGRO_OPS_ROLE": "root"},
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: bad role 'root' in ALLEGRO_OPS_ROLE: expected viewer or operator"]


# ------------------------------------------------------------------------------------ dashboard
def test_viewer_dashboard_disables_every_action_with_the_role_as_reason(errored_small: Workspace,
                                                                        make_dashboard) -> None:
    dash = make_dashboard(as_viewer(errored_small, actor='<img src=x onerror="alert(1)">'))
    one(dash, "ao-date").value = DAY
    for action in ScheduleAction:
        button = one(dash, f"ao-action-{action.value}")
        assert button.disabled and "role viewer may not" in button.tooltip
    retry = menu_button(dash, "bill-run", "retry")
    assert retry.disabled and "role viewer may not job retry" in retry.tooltip
    stats = menu_button(dash, "bill-run", "stats")
    assert not stats.disabled
    banner = one(dash, "ao-role-bar").value
    assert "role <b>viewer</b>" in banner and "every action is disabled" in banner
    assert "<img" not in banner and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in banner


def test_audit_view_lists_entries_newest_first_with_refusals_marked_and_escaped(errored_small: Workspace,
                                                                               make_dashboard) -> None:
    hostile = as_viewer(errored_small, actor="<script>alert(1)</script>")
    with pytest.raises(ActionRefused):
        hostile.reset(*TARGET)
    dash = make_dashboard(errored_small)
    one(dash, "ao-mode").value = "Audit"
    view = one(dash, "ao-audit")
    assert view.layout.display != "none" and one(dash, "ao-activity").layout.display == "none"
    table = one(view, "ao-audit-results").value
    assert "<script>" not in table and "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    first_row = table.split("<tbody>")[1].split("</tr>")[0]
    assert "ao-audit-refused" in first_row and "reset" in first_row and "role viewer" in first_row
    assert "refused or failed" in text(one(view, "ao-audit-summary"))
    one(view, "ao-audit-client").value = "globex"
    globex = one(view, "ao-audit-results").value
    assert "globex/daily-billing" in globex and "acme/" not in globex
