"""The ``http`` job type waits asynchronously: its work items share one keep-alive HTTP/1.1 session
per job run, many requests are in flight at once (never more than the job's concurrency), a timeout
cancels only its own item, the error codes are those of the blocking version, and the session is
closed when the job run ends. Against a real threaded HTTP/1.1 server that counts the requests in
flight and the TCP connections it accepted; on Dask against a real LocalCluster."""
from __future__ import annotations

import asyncio
import gc
import json
import socket
import threading
import time
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import pytest
import yaml

from allegro_ops import ExecutionStatus, JobStatus, Workspace
from allegro_ops.aio import run_batch
from allegro_ops.jobs import JobContext, registry
from conftest import RUN_DATE

SLOW_S = 1.5  # what a "slow-*" account makes the server wait, far beyond the timeouts below


class _Api(ThreadingHTTPServer):
    """An internal API: answers each account as its name says, counts connections and calls in flight."""

    daemon_threads = True
    request_queue_size = 128  # 16 clients connecting at once must not overflow the listen backlog

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = self.open = self.in_flight = self.peak = 0
        self.delay_s = 0.0
        self.slow_s = SLOW_S
        self.fixed = False  # the day the API accepts the declined accounts
        self.received: list[tuple[str, str, str | None, object]] = []  # (account, query, X-Token, payload)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as an internal API would answer
    server: _Api

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1  # socketserver makes one handler per TCP connection
            self.server.open += 1

    def finish(self) -> None:
        super().finish()
        with self.server.lock:
            self.server.open -= 1  # the client closed the connection (or the server did)

    def do_POST(self):  # noqa: N802 - http.server's naming
        api = self.server
        path, _, query = self.path.partition("?")
        account = urllib.parse.unquote(path.rsplit("/", 1)[-1])
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with api.lock:
            api.received.append((account, query, self.headers.get("X-Token"), body))
            api.in_flight += 1
            api.peak = max(api.peak, api.in_flight)
        try:
            time.sleep(api.slow_s if account.startswith("slow") else api.delay_s)
            if account.startswith("drop"):
                self.close_connection = True  # the connection breaks: no answer at all
                return
            status, text = _answer(account, api.fixed)
            self._send(status, text)
        finally:
            with api.lock:
                api.in_flight -= 1

    def _send(self, status: int, text: str) -> None:
        data = text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if text.startswith("{") else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a timeout)

    def log_message(self, *args):
        pass


def _answer(account: str, fixed: bool) -> tuple[int, str]:
    if account.startswith("declined") and not fixed:
        return 422, json.dumps({"error_code": "CARD_DECLINED", "reason": f"issuer said no to {account}"})
    if account.startswith("long500"):
        return 500, "E" * 1000
    if account.startswith("nojson404"):
        return 404, json.dumps({"detail": "no such account"})
    return 200, '{"ok": true}'


@pytest.fixture
def api():
    httpd = _Api()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(api: _Api) -> str:
    return f"http://127.0.0.1:{api.server_address[1]}/accounts/{{account_id}}?day={{run_date}}"


def _workspace(home, clock, api: _Api, accounts: list[str], *, concurrency: int, batch_size: int = 16,
               **job: object) -> Workspace:
    params = {"url": _url(api), "timeout_s": 5, "headers": {"X-Token": "t0k"},
              "items": [{"account_id": a, "payload": {"n": i, "account": a}} for i, a in enumerate(accounts)]}
    params.update(job.pop("params", {}))  # type: ignore[arg-type]
    cfg = {"client": "initech", "name": "api-calls", "mode": "manual", "calendar": {"cron": "0 3 * * *"},
           "jobs": [{"name": "post", "type": "http", "batch_size": batch_size, "concurrency": concurrency,
                     "params": params, **job}]}
    (home / "http.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    ws = Workspace(home, clock=clock, actor="tester")
    ws.apply_config(home / "http.yaml")
    ws.create("initech", "api-calls", RUN_DATE)
    return ws


def _open_after(api: _Api, wait_s: float = 3.0) -> int:
    """The connections still open once the server has had ``wait_s`` to see them closed."""
    end = time.monotonic() + wait_s
    while api.open and time.monotonic() < end:
        time.sleep(0.02)
    return api.open


def _errors(ws: Workspace) -> dict[str, tuple[str, str]]:
    return {i.account_id: (i.error_code, i.reason) for i in ws.job_errors("initech", "api-calls", RUN_DATE, "post")}


def test_http_process_item_is_async():
    assert asyncio.iscoroutinefunction(registry.get("http").process_item)


def test_many_items_wait_at_once_over_few_reused_keep_alive_connections(home, clock, api):
    api.delay_s = 0.05
    accounts = [f"acc-{i}" for i in range(63)] + ["a/b c%ü"]  # quoted into the URL, unquoted by the server
    ws = _workspace(home, clock, api, accounts, concurrency=16)
    started = time.monotonic()
    e = ws.process("initech", "api-calls", RUN_DATE)
    took = time.monotonic() - started

    assert (e.status, e.job("post").processed) == (ExecutionStatus.COMPLETED, 64)
    assert took < 64 * api.delay_s / 2, took  # one at a time would take 3.2 s; 16 at a time ~0.2 s
    assert 4 < api.peak <= 16  # many requests in flight, never more than the job's concurrency
    assert api.connections <= 16  # 64 requests over at most concurrency keep-alive connections
    assert sorted(r[0] for r in api.received) == sorted(accounts)
    assert {(q, token) for _, q, token, _ in api.received} == {(f"day={RUN_DATE.isoformat()}", "t0k")}
    assert {r[0]: r[3] for r in api.received}["a/b c%ü"] == {"n": 63, "account": "a/b c%ü"}


@pytest.mark.parametrize("which", ["http", "item"])
def test_a_timeout_cancels_only_its_item(home, clock, api, which):
    """The job's own timeout_s (aiohttp's) or the engine's item_timeout_s (the call is cancelled):
    either way the slow item alone is TIMEOUT, the items beside it on the same session answer."""
    api.delay_s = 0.02
    accounts = ["slow-1"] + [f"acc-{i}" for i in range(20)] + ["slow-2"]
    job = {"params": {"timeout_s": 0.3}} if which == "http" else {"item_timeout_s": 0.3}
    ws = _workspace(home, clock, api, accounts, concurrency=4, batch_size=8, **job)
    started = time.monotonic()
    e = ws.process("initech", "api-calls", RUN_DATE)
    took = time.monotonic() - started

    assert took < SLOW_S, took  # the run never waited for the slow answers
    assert (e.job("post").processed, e.job("post").error) == (20, 2)
    errors = _errors(ws)
    assert {a: code for a, (code, _) in errors.items()} == {"slow-1": "TIMEOUT", "slow-2": "TIMEOUT"}
    wording = "no answer from http://127.0.0.1:" if which == "http" else "no answer within 0.3s (the work item timeout)"
    assert all(wording in reason and "0.3s" in reason for _, reason in errors.values()), errors


def test_errors_keep_their_codes_and_reasons(home, clock, api):
    accounts = ["declined-1", "long500", "nojson404", "drop-1", "ok-1", "ok-2", "ok-3"]
    ws = _workspace(home, clock, api, accounts, concurrency=2, batch_size=7)
    e = ws.process("initech", "api-calls", RUN_DATE)

    assert (e.job("post").status, e.job("post").processed, e.job("post").error) == (JobStatus.ERRORED, 3, 4)
    errors = _errors(ws)
    assert {a: code for a, (code, _) in errors.items()} == {
        "declined-1": "CARD_DECLINED", "long500": "HTTP_500", "nojson404": "HTTP_404", "drop-1": "CONNECTION_ERROR"}
    assert errors["declined-1"][1] == "issuer said no to declined-1"
    assert errors["long500"][1] == "E" * 500  # the first 500 characters of a body that is not JSON
    assert errors["nojson404"][1] == '{"detail": "no such account"}'  # JSON without error_code: the body
    assert f"127.0.0.1:{api.server_address[1]}/accounts/drop-1" in errors["drop-1"][1]


def test_a_closed_port_is_a_connection_error_with_the_url(home, clock, api):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws = _workspace(home, clock, api, ["x-1", "x-2"], concurrency=2,
                    params={"url": f"http://127.0.0.1:{port}/post/{{account_id}}"})
    ws.process("initech", "api-calls", RUN_DATE)
    errors = _errors(ws)
    assert {code for code, _ in errors.values()} == {"CONNECTION_ERROR"} and set(errors) == {"x-1", "x-2"}
    assert all(f"127.0.0.1:{port}/post/" in reason for _, reason in errors.values())


def test_retry_of_the_errored_items_succeeds_once_the_api_accepts_them(home, clock, api):
    accounts = ["declined-1", "ok-1", "declined-2", "ok-2", "ok-3", "declined-3"]
    ws = _workspace(home, clock, api, accounts, concurrency=3, batch_size=2)
    assert ws.process("initech", "api-calls", RUN_DATE).job("post").error == 3
    api.fixed = True
    e = ws.retry_job("initech", "api-calls", RUN_DATE, "post")

    assert (e.status, e.job("post").processed, e.job("post").error) == (ExecutionStatus.COMPLETED, 6, 0)
    calls = [r[0] for r in api.received]
    assert {a: calls.count(a) for a in accounts} == {a: 2 if a.startswith("declined") else 1 for a in accounts}
    attempts = ws.store.read(lambda con: con.execute("SELECT count(*), max(attempt) FROM attempts").fetchall())
    assert attempts == [(9, 2)]


def test_the_session_is_closed_when_the_job_run_ends(home, clock, api, caplog):
    """No "Unclosed client session", "Unclosed connection" or unclosed transport (ResourceWarning, in
    any thread, or asyncio's log) after a run with timeouts and broken connections, on the job run's
    event loop and on a batch's own loop (aio.run_batch: what a Dask worker runs). The warnings are
    recorded rather than raised: raised in uvloop's close they hang it instead of failing the test."""
    accounts = ["slow-1", "drop-1", "declined-1", "ok-1", "ok-2"]
    job = registry.get("http")
    ctx = JobContext("initech", "api-calls", RUN_DATE, "post", {"url": _url(api), "timeout_s": 0.3})
    rows = [(i + 1, 1, a, json.dumps({"n": i})) for i, a in enumerate(accounts)]
    api.slow_s = 0.6
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ws = _workspace(home, clock, api, accounts, concurrency=3, batch_size=5, params={"timeout_s": 0.3})
        assert ws.process("initech", "api-calls", RUN_DATE).job("post").error == 3
        ran = api.connections
        assert _open_after(api) == 0  # the server ends the slow answer, and sees the pool closed
        table = run_batch(job, rows, job.prepare(ctx), ctx, clock, None, 3)
        assert api.connections > ran and _open_after(api) == 0
        gc.collect()
    assert table.column("error_code").to_pylist() == ["TIMEOUT", "CONNECTION_ERROR", "CARD_DECLINED", None, None]
    leaks = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
    assert leaks + [r.getMessage() for r in caplog.records if "nclosed" in r.getMessage()] == []


def test_an_unclosed_session_is_what_the_check_above_would_see():
    """The control of the test above: a session left open does warn, so that test can fail."""

    async def leak() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    session = asyncio.run(leak())
    with pytest.warns(ResourceWarning, match="Unclosed client session"):
        del session
        gc.collect()


@pytest.mark.slow
def test_http_on_dask_workers_gives_the_same_outcomes(home, clock, api, monkeypatch):
    distributed = pytest.importorskip("distributed")
    api.delay_s = 0.02
    accounts = ["declined-1", "slow-1", "drop-1"] + [f"acc-{i}" for i in range(30)]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as c:
        ws = _workspace(home, clock, api, accounts, concurrency=4, batch_size=12,
                        params={"timeout_s": 0.5, "executor": "dask", "dask_address": c.scheduler_address})
        e = ws.process("initech", "api-calls", RUN_DATE)
    assert (e.job("post").processed, e.job("post").error) == (30, 3)
    assert {a: code for a, (code, _) in _errors(ws).items()} == {
        "declined-1": "CARD_DECLINED", "slow-1": "TIMEOUT", "drop-1": "CONNECTION_ERROR"}
    assert api.peak > 1 and api.connections < len(accounts)  # each batch's loop reuses its connections
