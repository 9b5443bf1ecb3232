"""The ``http`` job type against a real local HTTP server: each answer becomes the documented outcome."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from allegro_ops import BadInput, ExecutionStatus, JobStatus

DAY = "2026-11-24"
ITEMS = [
    {"account_id": "ok-1", "payload": {"amount": 12.5, "lines": [1, 2], "note": "ünïcode"}},
    {"account_id": "ok-2", "payload": {"amount": 0}},
    {"account_id": "created", "payload": {"kind": "create"}},
    {"account_id": "declined", "payload": {"amount": 99}},
    {"account_id": "plain-500", "payload": {}},
    {"account_id": "slow", "payload": {"wait": True}},
]
SLOW_S, TIMEOUT_S = 1.5, 0.3


class _Handler(BaseHTTPRequestHandler):
    received: dict[str, object] = {}

    def do_POST(self):  # noqa: N802 - http.server's naming
        account = self.path.rsplit("/", 1)[-1]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received[account] = json.loads(body)
        if account == "slow":
            time.sleep(SLOW_S)
        status, payload, ctype = {
            "ok-1": (200, b'{"ok": true}', "application/json"),
            "ok-2": (204, b"", "text/plain"),
            "created": (201, b"created", "text/plain"),
            "declined": (422, json.dumps({"error_code": "CARD_DECLINED", "reason": "issuer said no"}).encode(),
                         "application/json"),
            "plain-500": (500, b"<html>Internal Server Error</html>", "text/html"),
        }.get(account, (200, b"{}", "application/json"))
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the timeout case)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.received = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.received
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_config(tmp_path, jobs: list[dict]) -> str:
    doc = {"client": "initech", "name": "api-calls", "mode": "manual", "calendar": {"cron": "0 3 * * *"},
           "jobs": jobs}
    path = tmp_path / "http.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_http_job_turns_each_answer_into_the_documented_outcome(workspace, server, tmp_path):
    base, received = server
    workspace.apply_config(http_config(tmp_path, [{
        "name": "post-items", "type": "http", "batch_size": 2, "concurrency": 3,
        "params": {"url": base + "/accounts/{account_id}", "timeout_s": TIMEOUT_S, "items": ITEMS},
    }]))
    workspace.create("initech", "api-calls", DAY)
    e = workspace.process("initech", "api-calls", DAY)

    assert e.status is ExecutionStatus.ERRORED
    job = e.job("post-items")
    assert (job.status, job.total, job.processed, job.error) == (JobStatus.ERRORED, 6, 3, 3)
    errors = {i.account_id: i for i in workspace.job_errors("initech", "api-calls", DAY, "post-items")}
    assert {a: i.error_code for a, i in errors.items()} == {
        "declined": "CARD_DECLINED", "plain-500": "HTTP_500", "slow": "TIMEOUT"}
    assert errors["declined"].reason == "issuer said no"
    assert "Internal Server Error" in errors["plain-500"].reason
    assert f"{TIMEOUT_S}s" in errors["slow"].reason
    # the server got every item's stored payload, as JSON
    assert received == {i["account_id"]: i["payload"] for i in ITEMS}
    assert {a: i.payload for a, i in errors.items()} == {a: received[a] for a in errors}


def test_http_job_against_a_closed_port_is_a_connection_error(workspace, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/post"
    workspace.apply_config(http_config(tmp_path, [{
        "name": "unreachable", "type": "http",
        "params": {"url": url, "timeout_s": 2, "items": ITEMS[:2]},
    }]))
    workspace.create("initech", "api-calls", DAY)
    workspace.process("initech", "api-calls", DAY)
    stats = workspace.job_stats("initech", "api-calls", DAY, "unreachable")
    assert (stats.error, [(e.error_code, e.count) for e in stats.errors_by_code]) == (2, [("CONNECTION_ERROR", 2)])
    assert all(url in i.reason for i in workspace.job_errors("initech", "api-calls", DAY, "unreachable"))


def test_http_job_retry_succeeds_once_the_endpoint_answers(workspace, server, tmp_path):
    base, received = server
    workspace.apply_config(http_config(tmp_path, [{
        "name": "post", "type": "http",
        "params": {"url": base + "/accounts/{account_id}", "timeout_s": TIMEOUT_S, "items": ITEMS[3:4]},
    }, {
        "name": "after", "type": "demo.noop", "params": {"count": 3},
    }]))
    workspace.create("initech", "api-calls", DAY)
    assert workspace.process("initech", "api-calls", DAY).job("after").status is JobStatus.PENDING
    original = _Handler.do_POST

    def accept(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    _Handler.do_POST = accept  # the API was fixed
    try:
        e = workspace.retry_job("initech", "api-calls", DAY, "post")
    finally:
        _Handler.do_POST = original
    assert e.status is ExecutionStatus.COMPLETED
    assert [(j.name, j.processed) for j in e.jobs] == [("post", 1), ("after", 3)]


def test_http_job_without_url_or_items_fails_the_run_not_the_items(workspace, tmp_path):
    workspace.apply_config(http_config(tmp_path, [{"name": "no-items", "type": "http", "params": {"url": "x"}}]))
    workspace.create("initech", "api-calls", DAY)
    with pytest.raises(BadInput, match="needs params.items or params.items_url"):
        workspace.process("initech", "api-calls", DAY)
    e = workspace.execution("initech", "api-calls", DAY)
    assert e.job("no-items").status is JobStatus.PENDING and e.lease is None
    assert workspace.audit()[0].outcome == "failed"
