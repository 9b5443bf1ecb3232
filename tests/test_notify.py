"""Notifications on ERRORED, LATE and COMPLETED after errors: sent once per execution, event and
channel target to a real local webhook server and a real local SMTP server (tests/notify_support.py),
whatever the retries, passes and racing processes; a dead webhook is a recorded, audited failure
that never fails the action, and --retry-failed sends it once the server is back.

The demo's acme/daily-billing runs in New York; its config here gets the deadline "+1 06:00", so
the execution of 2026-11-24 is due by 2026-11-25 06:00 EST = 11:00 UTC (the clock starts at 09:00 UTC).
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest
import yaml

from allegro_ops import ActionRefused, ExecutionStatus, InvalidConfig, Workspace
from allegro_ops.demo import resolve
from allegro_ops.notify import after_run, check_due, load_notifications, notifications
from allegro_ops.scheduler import run_pass

from conftest import init_small_demo
from notify_support import SmtpServer, WebhookServer, closed_port

C, S, DAY = "acme", "daily-billing", "2026-11-24"
UTC = dt.timezone.utc
DEADLINE_UTC = dt.datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
# Registers the notify commands on the CLI whether or not cli.py imports cli_notify yet.
CLI = [sys.executable, "-c", "import sys, allegro_ops.cli_notify; from allegro_ops.cli import main; "
       "sys.exit(main(sys.argv[1:]))"]


def _build(ws: Workspace) -> None:
    init_small_demo(ws)
    doc = yaml.safe_load(ws.export_config(C, S))
    doc["deadline"] = "+1 06:00"
    path = ws.home / "edited.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    ws.apply_config(path)


@pytest.fixture
def ws(prepared) -> Workspace:
    return prepared("notify-deadline", _build)


@pytest.fixture
def hooks():
    with WebhookServer() as server:
        yield server


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


def configure(ws: Workspace, webhook: str | None = None, smtp_port: int | None = None,
              events: list[str] | None = None, email: dict | None = None) -> None:
    """Write <home>/notifications.yaml for acme: a webhook, and email to two recipients."""
    entry: dict = {} if events is None else {"events": events}
    if webhook:
        entry["webhook"] = {"url": webhook, "timeout_s": 2}
    if smtp_port:
        entry["email"] = {"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "sender": "ops@acme.test",
                          "to": ["billing@acme.test", "ops-lead@acme.test"], **(email or {})}
    (ws.home / "notifications.yaml").write_text(yaml.safe_dump({C: entry}))


def sent(hooks: WebhookServer, smtp: SmtpServer) -> dict[str, list[str]]:
    """What each server received: the events, in arrival order."""
    return {"webhook": [h.json["event"] for h in hooks.requests],
            "email": [m.message["X-Allegro-Ops-Event"] for m in smtp.messages]}


def both(*events: str) -> dict[str, list[str]]:
    return {"webhook": list(events), "email": list(events)}


def rows(ws: Workspace) -> list[tuple[str, str, str]]:
    return sorted((d.event, d.channel, d.outcome) for d in notifications(ws))


def notify_audit(ws: Workspace) -> list:
    return [e for e in ws.audit() if e.action == "notify"]


# ------------------------------------------------------------------ after a run
def test_errored_process_notifies_webhook_and_email_once_with_the_facts(ws, hooks, smtp):
    configure(ws, hooks.url(), smtp.port)
    ws.create(C, S, DAY)
    e = ws.process(C, S, DAY)
    assert e.status is ExecutionStatus.ERRORED
    assert sent(hooks, smtp) == both("ERRORED")

    (hook,) = hooks.requests
    assert hook.path == "/hooks/billing" and hook.headers["content-type"] == "application/json"
    body = hook.json
    assert {k: body[k] for k in ("event", "client", "schedule", "run_date", "status", "late")} == {
        "event": "ERRORED", "client": C, "schedule": S, "run_date": DAY, "status": "ERRORED", "late": False}
    assert body["deadline"] == "2026-11-25T06:00:00-05:00"
    assert body["jobs"] == [{"name": j.name, "status": j.status.value, "total": j.total, "processed": j.processed,
                             "error": j.error} for j in e.jobs]
    assert dt.datetime.fromisoformat(body["sent_at"]) == ws.clock()

    (mail,) = smtp.messages
    assert mail.message["Subject"] == f"[allegro-ops] ERRORED {C}/{S} {DAY}"
    assert mail.sender == "ops@acme.test" and mail.recipients == ["billing@acme.test", "ops-lead@acme.test"]
    assert mail.message.get_content_type() == "text/plain"
    bill_run = e.job("bill-run")
    assert f"bill-run                 ERRORED     total {bill_run.total:>7}" in mail.text
    assert json.loads(mail.text.rsplit("As JSON:\n", 1)[1]) == body

    assert rows(ws) == [("ERRORED", "email", "sent"), ("ERRORED", "webhook", "sent")]
    audit = {(a.target, a.outcome) for a in notify_audit(ws)}
    assert audit == {(f"{C}/{S} {DAY} ERRORED -> webhook {hooks.url()}", "sent"),
                     (f"{C}/{S} {DAY} ERRORED -> email billing@acme.test, ops-lead@acme.test", "sent")}


def test_retry_and_reprocess_that_error_again_send_nothing_new(ws, hooks, smtp):
    configure(ws, hooks.url(), smtp.port)
    ws.create(C, S, DAY)
    ws.process(C, S, DAY)
    assert ws.retry_job(C, S, DAY, "bill-run").status is ExecutionStatus.ERRORED
    assert ws.reprocess(C, S, DAY).status is ExecutionStatus.ERRORED
    assert after_run(ws, ws.execution(C, S, DAY)) == []
    assert check_due(ws, ws.clock()) == []
    assert sent(hooks, smtp) == both("ERRORED")
    assert len(notify_audit(ws)) == 2


def test_reprocess_to_completed_sends_completed_after_errors_once(ws, hooks, smtp):
    configure(ws, hooks.url(), smtp.port)
    ws.create(C, S, DAY)
    ws.process(C, S, DAY)
    resolve(ws, C)
    e = ws.reprocess(C, S, DAY)
    assert e.status is ExecutionStatus.COMPLETED and all(j.error == 0 for j in e.jobs)
    assert sent(hooks, smtp) == both("ERRORED", "COMPLETED_AFTER_ERRORS")
    assert hooks.requests[-1].json["status"] == "COMPLETED"
    assert after_run(ws, ws.execution(C, S, DAY)) == []
    ws.clock.advance(hours=4)  # past the deadline: a COMPLETED execution is never LATE
    assert check_due(ws, ws.clock(), retry_failed=True) == []
    assert len(hooks.requests) == 2 and len(smtp.messages) == 2


def test_a_job_completed_with_accepted_errors_sends_completed_after_errors_only(ws, hooks, smtp, tmp_path):
    doc = yaml.safe_load(ws.export_config(C, S))
    for job in doc["jobs"]:
        job["max_errors"] = 50
    (tmp_path / "accepting.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    ws.apply_config(tmp_path / "accepting.yaml")
    configure(ws, hooks.url(), smtp.port)
    ws.create(C, S, DAY)
    e = ws.process(C, S, DAY)
    assert e.status is ExecutionStatus.COMPLETED and e.job("bill-run").error > 0
    assert sent(hooks, smtp) == both("COMPLETED_AFTER_ERRORS")


def test_a_client_without_channels_or_without_the_event_gets_nothing(ws, hooks, smtp):
    (ws.home / "notifications.yaml").write_text(f"{C}:\nglobex: {{events: [LATE]}}\n")
    assert load_notifications(ws.home)[C].targets() == []
    ws.create(C, S, DAY)
    ws.process(C, S, DAY)
    configure(ws, hooks.url(), smtp.port, events=["LATE"])  # ERRORED not wanted
    assert after_run(ws, ws.execution(C, S, DAY)) == []
    ws.clock.now = DEADLINE_UTC - dt.timedelta(minutes=1)
    assert check_due(ws, ws.clock()) == []
    assert sent(hooks, smtp) == both() and rows(ws) == []


# ------------------------------------------------------------------ LATE
def test_late_is_sent_once_however_often_check_due_runs(ws, hooks, smtp):
    configure(ws, hooks.url(), smtp.port)
    ws.create(C, S, DAY)
    assert check_due(ws, ws.clock()) == []  # 09:00 UTC: two hours before the deadline
    ws.clock.now = DEADLINE_UTC + dt.timedelta(minutes=1)
    first = check_due(ws, ws.clock())
    assert sorted((d.event, d.channel, d.outcome) for d in first) == [("LATE", "email", "sent"),
                                                                      ("LATE", "webhook", "sent")]
    for minutes in (2, 30, 600):
        ws.clock.now = DEADLINE_UTC + dt.timedelta(minutes=minutes)
        assert check_due(ws, ws.clock(), retry_failed=True) == []
    assert sent(hooks, smtp) == both("LATE")
    body = hooks.requests[0].json
    assert body["late"] is True and body["status"] == "PENDING"
    assert ws.execution(C, S, DAY).late


def test_a_run_past_its_deadline_is_late_too_but_a_backfilled_old_date_is_not(ws, hooks, smtp):
    configure(ws, hooks.url(), smtp.port)
    ws.clock.now = DEADLINE_UTC + dt.timedelta(hours=1)
    ws.create(C, S, DAY)
    ws.process(C, S, DAY)
    assert sent(hooks, smtp) == both("ERRORED", "LATE")
    old = "2026-10-01"  # its deadline passed weeks ago: a backfill's ERRORED is news, its LATE is not
    ws.create(C, S, old)
    ws.process(C, S, old)
    assert [(h.json["run_date"], h.json["event"]) for h in hooks.requests][2:] == [(old, "ERRORED")]
    assert check_due(ws, ws.clock()) == []


def test_a_deadline_older_than_the_window_is_not_news(ws, hooks, smtp):
    configure(ws, hooks.url(), smtp.port)
    ws.create(C, S, DAY)
    assert check_due(ws, DEADLINE_UTC + dt.timedelta(days=8)) == []
    assert check_due(ws, DEADLINE_UTC + dt.timedelta(days=8), window=dt.timedelta(days=9))[0].event == "LATE"


def test_the_scheduler_pass_sends_late_once_and_reports_it(ws, hooks, smtp):
    configure(ws, hooks.url(), smtp.port, events=["LATE"])
    ws.create(C, S, DAY)  # never processed: LATE once past its deadline
    now = DEADLINE_UTC + dt.timedelta(minutes=5)
    report = run_pass(ws, now, catch_up=dt.timedelta(hours=1))  # no run date due in the last hour
    notified = [(d.client, d.run_date, d.decision, d.reason.split(" ->")[0]) for d in report.decisions
                if d.decision.startswith("notif")]
    assert notified == [(C, dt.date(2026, 11, 24), "notified", "LATE")] * 2
    again = run_pass(ws, now + dt.timedelta(minutes=5), catch_up=dt.timedelta(hours=1))
    assert not [d for d in again.decisions if d.decision.startswith("notif")]
    assert sent(hooks, smtp) == both("LATE")
    assert {a.actor for a in notify_audit(ws)} == {"tester"}


def test_two_processes_checking_at_once_send_once(ws, hooks, smtp, cli_env):
    configure(ws, hooks.url(), smtp.port)
    ws.create(C, S, DAY)
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(ws.home), "HOME": str(ws.home.parent)}
    args = ["notify", "check", "--now", "2026-11-25T11:05:00Z", "--json"]
    procs = [subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    deliveries = [d for out, _ in outputs for d in json.loads(out)]
    assert sorted((d["event"], d["channel"], d["outcome"]) for d in deliveries) == [
        ("LATE", "email", "sent"), ("LATE", "webhook", "sent")]
    assert sent(hooks, smtp) == both("LATE")


# ------------------------------------------------------------------ failures and retries
def test_a_dead_webhook_is_a_recorded_failure_and_retry_failed_sends_it_when_back(ws, smtp):
    port = closed_port()
    url = f"http://127.0.0.1:{port}/hooks/billing"
    configure(ws, url, smtp.port)
    ws.create(C, S, DAY)
    assert ws.process(C, S, DAY).status is ExecutionStatus.ERRORED  # the action itself succeeds
    assert rows(ws) == [("ERRORED", "email", "sent"), ("ERRORED", "webhook", "failed")]
    (failed,) = [d for d in notifications(ws) if d.outcome == "failed"]
    assert failed.detail == "connection refused"
    (entry,) = [a for a in notify_audit(ws) if a.outcome == "failed"]
    assert entry.target == f"{C}/{S} {DAY} ERRORED -> webhook {url}" and entry.reason == "connection refused"

    ws.retry_job(C, S, DAY, "bill-run")  # errors again: no new try (no storm)
    assert check_due(ws, ws.clock()) == []
    assert len(notify_audit(ws)) == 2 and len(smtp.messages) == 1

    with WebhookServer(port=port) as hooks:
        retried = check_due(ws, ws.clock(), retry_failed=True)
        assert [(d.event, d.channel, d.outcome, d.detail) for d in retried] == [("ERRORED", "webhook", "sent",
                                                                                 "HTTP 200")]
        assert check_due(ws, ws.clock(), retry_failed=True) == []
        assert [h.json["event"] for h in hooks.requests] == ["ERRORED"]
    assert rows(ws) == [("ERRORED", "email", "sent"), ("ERRORED", "webhook", "sent")]
    assert len(smtp.messages) == 1


def test_a_webhook_answering_500_fails_with_the_status_and_the_cli_exits_1(ws, hooks, cli_env):
    hooks.status = 500
    configure(ws, hooks.url())
    ws.create(C, S, DAY)
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(ws.home), "HOME": str(ws.home.parent)}
    result = subprocess.run([*CLI, "notify", "check", "--now", "2026-11-25T11:05:00Z"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: 1 of 1 notifications failed (allegro-ops notify list; notify check --retry-failed tries them again)"]
    assert "LATE" in result.stdout and "HTTP 500 Internal Server Error" in result.stdout
    hooks.status = 204
    again = subprocess.run([*CLI, "notify", "check", "--retry-failed", "--now", "2026-11-25T11:10:00Z", "--json"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert [(d["event"], d["outcome"], d["detail"]) for d in json.loads(again.stdout)] == [("LATE", "sent", "HTTP 204")]
    listing = subprocess.run([*CLI, "notify", "list", "--client", C, "--json"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert [(d["event"], d["channel"], d["target"], d["outcome"]) for d in json.loads(listing.stdout)] == [
        ("LATE", "webhook", hooks.url(), "sent")]
    assert len(hooks.requests) == 2


def test_smtp_credentials_come_from_the_environment_only(ws, smtp, monkeypatch):
    configure(ws, smtp_port=smtp.port, email={"username_env": "ACME_SMTP_USER", "password_env": "ACME_SMTP_PW"})
    assert "secret" not in (ws.home / "notifications.yaml").read_text()
    monkeypatch.delenv("ACME_SMTP_USER", raising=False)
    monkeypatch.delenv("ACME_SMTP_PW", raising=False)
    ws.create(C, S, DAY)
    ws.process(C, S, DAY)
    (failed,) = notifications(ws)
    assert failed.outcome == "failed" and failed.detail == ("environment variable ACME_SMTP_USER is not set "
                                                            "(SMTP credentials)")
    monkeypatch.setenv("ACME_SMTP_USER", "acme-ops")
    monkeypatch.setenv("ACME_SMTP_PW", "s3cret")
    (retried,) = check_due(ws, ws.clock(), retry_failed=True)
    assert retried.outcome == "sent"
    assert [m.auth for m in smtp.messages] == [("acme-ops", "s3cret")]


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize("text, field, problem", [
    ("acme: {events: [ERRORED, EXPLODED]}", "acme.events.1", "Input should be 'ERRORED', 'LATE' or"),
    ("acme: {webhook: {url: 'ftp://x.test/h'}}", "acme.webhook.url", "is not an http:// or https:// URL"),
    ("acme: {webhook: {url: 'https://u:p@x.test/h'}}", "acme.webhook.url", "no credentials in the URL"),
    ("acme: {email: {smtp_host: h, sender: ops@acme.test}}", "acme.email.to", "Field required"),
    ("acme: {email: {smtp_host: h, sender: ops@acme.test, to: [billing], smtp_port: 25}}", "acme.email.to",
     "'billing' is not an email address"),
    ("acme: {email: {smtp_host: smtp.acme.test, sender: a@b.test, to: [c@d.test], username_env: ACME_SMTP_USER, "
     "password_env: ACME_SMTP_PW}}", "acme.email", "SMTP credentials need starttls: true"),
    ("acme: {email: {smtp_host: h, sender: a@b, to: [c@d], password: hunter2}}", "acme.email.password",
     "Extra inputs are not permitted"),
    ("acme: {email: {smtp_host: h, sender: a@b, to: [c@d], smtp_port: true}}", "acme.email.smtp_port",
     "Input should be a valid integer"),
    ("acme: {email: {smtp_host: h, sender: a@b, to: [c@d], username_env: U}}", "acme.email",
     "give username_env and password_env together"),
    ("Acme!: {}", "Acme!", "not a valid client name"),
    ("acme: [ERRORED", "line 2", "malformed YAML"),
    ("- acme", "", "expected a mapping of client"),
])
def test_a_bad_notifications_yaml_is_one_line_invalid_config(home, text, field, problem):
    path = home / "notifications.yaml"
    path.write_text(text + "\n")
    with pytest.raises(InvalidConfig) as caught:
        load_notifications(home)
    assert caught.value.source == str(path) and caught.value.field == field
    assert problem in caught.value.problem and "\n" not in str(caught.value)


def test_a_bad_notifications_yaml_fails_neither_the_action_nor_silently(ws, cli_env):
    (ws.home / "notifications.yaml").write_text("acme: {webhook: {url: nowhere}}\n")
    ws.create(C, S, DAY)
    assert ws.process(C, S, DAY).status is ExecutionStatus.ERRORED
    (entry,) = notify_audit(ws)
    assert entry.outcome == "failed" and entry.reason.startswith("invalid config ")
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(ws.home), "HOME": str(ws.home.parent)}
    result = subprocess.run([*CLI, "notify", "check"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "notifications.yaml: acme.webhook.url:" in result.stderr
    report = run_pass(ws, DEADLINE_UTC, catch_up=dt.timedelta(hours=1))
    assert [(d.decision, d.reason[:15]) for d in report.decisions if d.schedule == "notifications"] == [
        ("failed", "invalid config ")]


def test_a_viewer_may_not_check_and_the_refusal_is_audited(ws, hooks):
    configure(ws, hooks.url())
    ws.create(C, S, DAY)
    viewer = Workspace(ws.home, clock=ws.clock, actor="vera", role="viewer")
    with pytest.raises(ActionRefused, match="role viewer may not notify check"):
        check_due(viewer, DEADLINE_UTC + dt.timedelta(minutes=1))
    assert [(a.actor, a.outcome) for a in viewer.audit() if a.action == "notify check"] == [("vera", "refused")]
    assert hooks.requests == [] and rows(ws) == []


def test_notify_list_refuses_an_unknown_client(ws, cli_env):
    env = {**cli_env, "ALLEGRO_OPS_HOME": str(ws.home), "HOME": str(ws.home.parent)}
    result = subprocess.run([*CLI, "notify", "list", "--client", "nobody"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: unknown client 'nobody'")


def test_the_notify_commands_are_registered_with_their_options():
    import allegro_ops.cli_notify  # noqa: F401 - registers them (until cli.py imports it)
    from allegro_ops.cli import cli

    group = cli.commands["notify"]
    options = {name: {p.name for p in command.params} for name, command in group.commands.items()}
    assert options == {"check": {"retry_failed", "now_text", "window_days", "as_json"},
                       "list": {"client", "limit", "as_json"}}
