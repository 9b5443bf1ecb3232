"""Regenerate docs/screenshots/*.png: the dashboard's main states, taken in headless Chromium from
a real Voilà server over a fresh demo workspace (the same support code as tests/test_browser.py).

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--date 2026-11-24] [--history-days 6]

The story: acme/daily-billing on --date stops ERRORED at bill-run; the bill-run tile's menu, its
Stats, the errors by error code, the errored work items with a payload expanded; then the demo
data is repaired, Reprocess completes the run, and the Account view lists one account's attempts;
also the Edit & retry editor of a work item and the Audit view.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from browser_support import Browser, Dashboard, VoilaServer, browser_missing  # noqa: E402
from widgets.serve import prepare_workspace  # noqa: E402

SLOW_MS = 60_000
CLIENT, SCHEDULE, JOB = "acme", "daily-billing", "bill-run"
JOBS = ("usage-rating", "bill-run", "invoice-delivery", "payment-collection")


def take(out: Path, run_date: dt.date, history_days: int, keep: bool) -> list[Path]:
    """Build the workspace, serve it, walk the story and return the PNGs written."""
    root = Path(tempfile.mkdtemp(prefix="allegro-screenshots-"))
    home = root / "workspace"
    shots: list[Path] = []
    try:
        prepare_workspace(home, run_date, history_days=history_days, say=lambda line: print(line, flush=True))
        with VoilaServer(home, root / "voila") as server, Browser(root / "chromium") as browser:
            page = browser.new_page(width=1440, height=900)
            board = Dashboard(page, server.url)
            board.open()

            def shot(name: str) -> None:
                _settle(board)
                shots.append(board.screenshot(out / f"{name}.png"))
                print(f"  {name}.png", flush=True)

            try:
                _story(board, run_date, home, shot)
            except Exception:
                _diagnose(board, server, root)
                raise
            finally:
                page.context.close()
    finally:
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return shots


def _story(board: Dashboard, run_date: dt.date, home: Path, shot: Callable[[str], None]) -> None:
    from allegro_ops import Workspace
    from allegro_ops.demo import resolve
    from playwright.sync_api import expect

    page = board.page
    board.pick_schedule(CLIENT, SCHEDULE)
    board.pick_date(run_date)
    board.wait_status("ERRORED", SLOW_MS)
    board.wait_job_status(JOB, "ERRORED")
    shot("01-activity-errored")

    board.open_job_menu(JOB)
    expect(board.menu_button(JOB, "ao-job-stats")).to_be_visible()
    shot("02-job-menu")

    board.menu_button(JOB, "ao-job-stats").click()
    expect(board.drawer("ao-stats-drawer")).to_be_visible()
    shot("03-stats-drawer")

    board.drawer("ao-stats-drawer").locator("button.ao-errors-info").click()
    expect(board.drawer("ao-errors-drawer").locator(".ao-error-row").first).to_be_visible()
    shot("04-errors-by-code-drawer")

    board.drawer("ao-errors-drawer").locator(".ao-error-row").first.locator("button.ao-view").click()
    row = board.drawer("ao-items-drawer").locator(".ao-item-row").first
    expect(row).to_be_visible()
    account_id = row.locator(".ao-account-id").inner_text().strip()
    row.locator(".ao-reason summary").click()
    row.locator(".ao-payload summary").click()
    expect(row.locator(".ao-payload pre")).to_be_visible()
    shot("05-work-items-payload")

    row.locator("button.ao-edit-item").click()
    expect(board.drawer("ao-items-drawer").locator(".ao-item-editor")).to_be_visible()
    shot("08-edit-and-retry")
    board.drawer("ao-items-drawer").locator("button.ao-cancel-edit").click()

    for drawer in ("ao-items-drawer", "ao-errors-drawer", "ao-stats-drawer"):
        board.cancel(drawer)
    resolve(Workspace(home, actor="screenshots"), CLIENT)
    board.click("ao-refresh")
    board.click("ao-action-reprocess")
    board.wait_status("COMPLETED", SLOW_MS)
    for job in JOBS:
        board.wait_job_status(job, "COMPLETED")
    shot("06-completed-after-reprocess")

    page.locator(".ao-mode button", has_text="Account").click()
    account = page.locator(".ao-account")
    account.locator(".ao-account-client select").select_option(CLIENT)
    account.locator(".ao-account-id-input input").fill(account_id)
    account.locator("button.ao-account-lookup").click()
    expect(account.locator(".ao-account-summary")).to_contain_text(account_id)
    shot("07-account-view")

    page.locator(".ao-mode button", has_text="Audit").click()
    expect(page.locator(".ao-audit .ao-audit-table")).to_be_visible()
    shot("09-audit-view")


def _settle(board: Dashboard) -> None:
    """Let plotly draw and CSS settle before the picture."""
    page = board.page
    deadline = time.monotonic() + 10
    while (page.locator(".ao-charts .js-plotly-plot").count() == 0
           and page.locator(".ao-charts-empty").count() == 0 and time.monotonic() < deadline):
        page.wait_for_timeout(200)
    page.wait_for_timeout(600)


def _diagnose(board: Dashboard, server: VoilaServer, root: Path) -> None:
    """What the page and the server looked like when a step failed (then --keep shows the rest)."""
    picture = root / "failure.png"
    try:
        board.screenshot(picture)
        print(f"failure screenshot: {picture}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        print(f"no failure screenshot: {exc}", file=sys.stderr)
    print(f"message bar: {board.message()!r}\nconsole errors: {board.console_errors}\n"
          f"voila log ends:\n{server.log()[-3000:]}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/screenshots.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2026, 11, 24),
                        help="the run date shown (default 2026-11-24, so the pictures do not drift)")
    parser.add_argument("--history-days", type=int, default=6, help="daily billing days before --date (charts)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace and logs")
    args = parser.parse_args(argv)
    missing = browser_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 1
    started = time.monotonic()
    shots = take(args.out.resolve(), args.date, args.history_days, args.keep)
    print(f"{len(shots)} screenshots in {args.out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
