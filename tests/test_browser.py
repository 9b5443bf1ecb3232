"""The seed's story in headless Chromium against a real Voilà server serving notebooks/dashboard.ipynb.

One server and one browser for the module (starting them is most of the cost); each test opens a
fresh page. Skipped with an install hint when Chromium or Playwright is missing.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from browser_support import Browser, Dashboard, VoilaServer, browser_missing, build_demo_workspace

pytestmark = pytest.mark.browser

_MISSING = browser_missing()
if _MISSING:
    pytest.skip(_MISSING, allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

RUN_DATE = "2026-11-20"  # not created by the fixtures
SLOW_MS = 60_000  # Process and Reprocess of 400 accounts, with the page refreshing meanwhile

HOSTILE_ACCOUNT = '<img src=x onerror="window.__xss=1">'
HOSTILE_NOTE = "<script>window.__xss=2</script>"
HOSTILE_REASON = '<img src=x onerror="window.__xss=3">'
HOSTILE_CODE = 'REJECTED<img src=x onerror="window.__xss=4">'


class _Rejecting(BaseHTTPRequestHandler):
    """An internal API stub that refuses every work item with markup in its error code and reason."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error_code": HOSTILE_CODE, "reason": HOSTILE_REASON}).encode()
        self.send_response(422)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def rejecting_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rejecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/bill"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, rejecting_api: str) -> Path:
    """The demo workspace plus evil/markup, an http job whose work items carry markup."""
    from allegro_ops import Workspace

    home = build_demo_workspace(tmp_path_factory.mktemp("browser") / "workspace")
    config = home / "evil-markup.yaml"
    config.write_text(yaml.safe_dump({
        "client": "evil", "name": "markup", "mode": "manual",
        "description": "Work items whose account id, payload, error code and reason are markup.",
        "calendar": {"cron": "0 3 * * *", "timezone": "UTC"},
        "jobs": [{"name": "post", "type": "http", "batch_size": 10, "params": {
            "url": rejecting_api, "timeout_s": 5,
            "items": [{"account_id": HOSTILE_ACCOUNT, "payload": {"note": HOSTILE_NOTE}},
                      {"account_id": "EVIL-000002", "payload": {"note": "plain"}}],
        }}],
    }))
    Workspace(home, actor="browser-test").apply_config(config)
    return home


@pytest.fixture(scope="module")
def server(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoilaServer]:
    with VoilaServer(workspace, tmp_path_factory.mktemp("voila")) as voila:
        yield voila


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(tmp_path_factory.mktemp("chromium")) as chromium:
        yield chromium


@pytest.fixture
def dashboard(server: VoilaServer, browser: Browser, tmp_path: Path) -> Iterator[Dashboard]:
    """A fresh page on the dashboard; what it looked like last, its console errors and the server
    log's tail are printed (pytest shows them when the test fails)."""
    page = browser.new_page()
    board = Dashboard(page, server.url)
    try:
        board.open()
        yield board
    finally:
        with contextlib.suppress(Exception):
            print(f"last page: {board.screenshot(tmp_path / 'last-page.png')}")
        print(f"console errors: {board.console_errors}")
        print(f"voila log {server.log_path} ends:\n{server.log()[-3000:]}")
        page.context.close()


def _counts(board: Dashboard) -> dict[str, int]:
    drawer = board.drawer("ao-stats-drawer")
    return {name: int(drawer.locator(f".ao-count-{name}").inner_text().split()[-1])
            for name in ("total", "pending", "processed", "error")}


def test_page_comes_from_a_preheated_kernel_without_any_request_off_this_machine(
        dashboard: Dashboard, server: VoilaServer) -> None:
    expect(dashboard.page.locator(".ao-nav .ao-schedule-acme-daily-billing")).to_be_visible()
    assert "Using pre-heated kernel" in server.log()
    outside = [u for u in dashboard.requests if not u.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert outside == []
    assert "cdn.jsdelivr.net" not in dashboard.page.content()


def test_errored_bill_run_drill_down_then_resolve_and_reprocess(dashboard: Dashboard, workspace: Path,
                                                                server: VoilaServer) -> None:
    board, page = dashboard, dashboard.page
    board.pick_schedule("acme", "daily-billing")
    board.pick_date(RUN_DATE)
    board.wait_status("NOT_CREATED")
    expect(board.button("ao-action-process")).to_be_disabled()

    board.click("ao-action-create")
    board.wait_status("PENDING")
    expect(board.button("ao-action-create")).to_be_disabled()

    board.click("ao-action-process")
    board.wait_status("ERRORED", SLOW_MS)
    board.wait_job_status("usage-rating", "COMPLETED")
    board.wait_job_status("bill-run", "ERRORED")
    board.wait_job_status("invoice-delivery", "PENDING")
    board.wait_job_status("payment-collection", "PENDING")
    expect(board.button("ao-action-reprocess")).to_be_enabled()
    expect(board.button("ao-action-process")).to_be_disabled()

    # The bill-run tile's ⋮ menu: Process is off for an errored job, Retry and Stats are on.
    board.open_job_menu("bill-run")
    expect(board.menu_button("bill-run", "ao-job-process")).to_be_disabled()
    expect(board.menu_button("bill-run", "ao-job-retry")).to_be_enabled()
    board.menu_button("bill-run", "ao-job-stats").click()
    expect(board.drawer("ao-stats-drawer")).to_be_visible()
    counts = _counts(board)
    assert counts["total"] == 400
    assert counts["error"] > 0
    assert counts["processed"] + counts["error"] + counts["pending"] == counts["total"]

    board.drawer("ao-stats-drawer").locator("button.ao-errors-info").click()
    errors = board.drawer("ao-errors-drawer")
    expect(errors.locator(".ao-error-row").first).to_be_visible()
    expect(errors).to_contain_text("RATE_PLAN_NOT_FOUND")
    expect(errors).to_contain_text("TAX_RULE_MISSING")
    codes_total = sum(int(n) for n in errors.locator(".ao-error-count").all_inner_texts())
    assert codes_total == counts["error"]

    errors.locator(".ao-error-row", has_text="RATE_PLAN_NOT_FOUND").locator("button.ao-view").click()
    items = board.drawer("ao-items-drawer")
    row = items.locator(".ao-item-row").first
    expect(row).to_be_visible()
    account_id = row.locator(".ao-account-id").inner_text().strip()
    assert account_id.startswith("ACME-")
    expect(row).to_contain_text("ERROR")
    row.locator(".ao-payload summary").click()
    expect(row.locator(".ao-payload pre")).to_be_visible()
    assert account_id in row.locator(".ao-payload pre").inner_text()
    row.locator(".ao-reason summary").click()
    assert row.locator(".ao-reason pre").inner_text().strip() != ""

    # Cancel closes one drawer level at a time, back to the activity pane.
    board.cancel("ao-items-drawer")
    expect(page.locator(".ao-items-drawer")).to_have_count(0)
    expect(board.drawer("ao-errors-drawer")).to_be_visible()
    board.cancel("ao-errors-drawer")
    expect(page.locator(".ao-errors-drawer")).to_have_count(0)
    board.cancel("ao-stats-drawer")
    expect(page.locator(".ao-stats-drawer")).to_have_count(0)

    # The operator repairs the data behind the errors, outside the dashboard (the CLI waits for the DB lock).
    resolved = subprocess.run([sys.executable, "-m", "allegro_ops.cli", "--home", str(workspace), "demo",
                               "resolve", "acme"], capture_output=True, text=True, timeout=120, env=server.env)
    assert resolved.returncode == 0, resolved.stderr
    board.click("ao-refresh")
    board.wait_status("ERRORED")

    board.click("ao-action-reprocess")
    board.wait_status("COMPLETED", SLOW_MS)
    for job in ("usage-rating", "bill-run", "invoice-delivery", "payment-collection"):
        board.wait_job_status(job, "COMPLETED")
    expect(board.button("ao-action-reprocess")).to_be_disabled()


def test_markup_in_work_items_shows_as_text_and_never_runs(dashboard: Dashboard) -> None:
    board, page = dashboard, dashboard.page
    board.pick_schedule("evil", "markup")
    board.pick_date(RUN_DATE)
    board.click("ao-action-create")
    board.wait_status("PENDING")
    board.click("ao-action-process")
    board.wait_status("ERRORED", SLOW_MS)
    board.wait_job_status("post", "ERRORED")

    board.job_action("post", "ao-job-stats")
    board.drawer("ao-stats-drawer").locator("button.ao-errors-info").click()
    errors = board.drawer("ao-errors-drawer")
    expect(errors.locator(".ao-error-code").first).to_have_text(HOSTILE_CODE)
    errors.locator("button.ao-view").first.click()
    row = board.drawer("ao-items-drawer").locator(".ao-item-row", has_text=HOSTILE_ACCOUNT)
    expect(row.locator(".ao-account-id")).to_have_text(HOSTILE_ACCOUNT)
    row.locator(".ao-payload summary").click()
    row.locator(".ao-reason summary").click()
    expect(row.locator(".ao-payload pre")).to_contain_text(HOSTILE_NOTE)
    expect(row.locator(".ao-reason pre")).to_contain_text(HOSTILE_REASON)

    # The account view of the same account id.
    page.locator(".ao-mode button", has_text="Account").click()
    account = page.locator(".ao-account")
    account.locator(".ao-account-client select").select_option("evil")
    account.locator(".ao-account-id-input input").fill(HOSTILE_ACCOUNT)
    account.locator("button.ao-account-lookup").click()
    expect(account.locator(".ao-account-results")).to_contain_text(HOSTILE_CODE)
    expect(account.locator(".ao-account-summary")).to_contain_text(HOSTILE_ACCOUNT)

    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator('img[src="x"]').count() == 0
    assert page.evaluate("[...document.scripts].filter(s => s.textContent.includes('__xss')).length") == 0


def test_a_preheated_page_shows_what_changed_after_its_kernel_ran_the_notebook(
        server: VoilaServer, browser: Browser, workspace: Path) -> None:
    """The pool's kernel ran the notebook before anyone asked for the page; an execution the CLI
    creates meanwhile shows on the page at once, without Refresh (nor the 30 s schedules timer)."""
    from allegro_ops import Workspace
    from widgets.views import default_run_date

    deadline = time.monotonic() + 120
    while server.log().count("is filled with") <= server.log().count("Using pre-heated kernel"):
        assert time.monotonic() < deadline, "the kernel pool did not refill"
        time.sleep(0.2)
    server.wait_quiet()  # the pool's kernel has run the notebook: the dashboard waits for its request
    timezone = Workspace(workspace, actor="browser-test").config("acme", "daily-billing").calendar.timezone
    today = default_run_date(dt.datetime.now(dt.timezone.utc), timezone).isoformat()
    created = subprocess.run([sys.executable, "-m", "allegro_ops.cli", "--home", str(workspace), "create", "acme",
                              "daily-billing", today], capture_output=True, text=True, timeout=120, env=server.env)
    assert created.returncode == 0, created.stderr

    page = browser.new_page()
    board = Dashboard(page, server.url)
    try:
        board.open()
        expect(page.locator(".ao-activity")).to_contain_text("acme / daily-billing", timeout=5_000)
        expect(page.locator(".ao-date input[type=date]").first).to_have_value(today, timeout=5_000)
        board.wait_status("PENDING", 5_000)
        board.wait_job_status("bill-run", "PENDING", 5_000)
        # and the history chart, updated in place before the browser connected, has the new date
        ticks = page.locator(".ao-charts .xaxislayer-above text", has_text=today)
        expect(ticks.first).to_be_attached(timeout=15_000)
    finally:
        page.context.close()


def test_fix_and_retry_of_one_work_item_in_the_payload_editor(dashboard: Dashboard, workspace: Path,
                                                              server: VoilaServer) -> None:
    """An errored work item's payload edited as JSON in the work items drawer: invalid JSON is an
    error line in the editor (nothing runs); valid JSON is saved beside the original and the item
    alone runs again, leaving the errored list once its data is repaired."""
    from allegro_ops import Workspace

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "allegro_ops.cli", "--home", str(workspace), *args],
                              capture_output=True, text=True, timeout=120, env=server.env)

    assert cli("create", "globex", "daily-billing", RUN_DATE).returncode == 0
    cli("process", "globex", "daily-billing", RUN_DATE)  # stops ERRORED at bill-run (exit code aside)
    board, page = dashboard, dashboard.page
    board.pick_schedule("globex", "daily-billing")
    board.pick_date(RUN_DATE)
    board.wait_status("ERRORED")
    board.wait_job_status("bill-run", "ERRORED")

    board.job_action("bill-run", "ao-job-stats")
    board.drawer("ao-stats-drawer").locator("button.ao-errors-info").click()
    code_row = board.drawer("ao-errors-drawer").locator(".ao-error-row").first
    expect(code_row.locator("button.ao-retry-code")).to_be_enabled()
    code = code_row.locator(".ao-error-code").inner_text().strip()
    code_row.locator("button.ao-view").click()
    row = board.drawer("ao-items-drawer").locator(".ao-item-row").first
    account = row.locator(".ao-account-id").inner_text().strip()
    row.locator("button.ao-edit-item").click()
    editor = page.locator(".ao-item-editor")
    expect(editor).to_be_visible()
    expect(editor).to_contain_text(account)
    area = editor.locator(".ao-editor-text textarea")
    original = json.loads(area.input_value())
    assert original and "\n" in area.input_value()  # the payload, pretty-printed

    attempts_before = len(Workspace(workspace, actor="browser-test").account_history("globex", account))
    area.fill('{"checked_by": ')
    editor.locator("button.ao-retry-item").click()
    expect(editor.locator(".ao-editor-error")).to_contain_text("bad payload: not valid JSON")
    assert len(Workspace(workspace, actor="browser-test").account_history("globex", account)) == attempts_before

    resolved = cli("demo", "resolve", "globex", "--code", code)
    assert resolved.returncode == 0, resolved.stderr
    area.fill(json.dumps({**original, "checked_by": "browser"}, indent=2))
    editor.locator("button.ao-retry-item").click()
    expect(page.locator(".ao-item-editor")).to_have_count(0)
    expect(page.locator(".ao-items-drawer .ao-item-row", has_text=account)).to_have_count(0)
    assert board.message() == ""
    ws = Workspace(workspace, actor="browser-test")
    history = ws.account_history("globex", account)
    assert len(history) == attempts_before + 1 and history[0]["status"] == "PROCESSED"
    edit = next(e for e in ws.audit(limit=20) if e.action == "item payload edit")
    assert account in edit.target and '"checked_by": "browser"' in edit.reason and edit.actor == "browser-test"
