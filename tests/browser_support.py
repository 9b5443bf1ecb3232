"""Drive the real dashboard: a Voilà server on a free loopback port, headless Chromium through
Playwright, and a page object that speaks the dashboard's DOM conventions (ao-* classes).

Used by tests/test_browser.py and scripts/screenshots.py. Everything the servers and the browser
write (Jupyter/IPython config and runtime files, the Chromium profile, temp files) stays under
the folder they are given.

    python tests/browser_support.py measure [--runs 3]   # request -> interactive, preheat on/off
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from widgets.serve import NOTEBOOK, voila_command, voila_env  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
INSTALL_HINT = "install with `apt-get install -y chromium` (CI's .ci/run does this)"
RENDER_TIMEOUT_MS = 60_000  # first page: kernel start and notebook run on a busy 2-CPU machine
# One click's round trip to the kernel and back, on a busy 2-CPU machine: a Process of 400 accounts,
# or the first page's history figure (plotly.js, ~5 MB over the websocket, sent once per page).
STEP_TIMEOUT_MS = 60_000

__all__ = [
    "CHROMIUM", "INSTALL_HINT", "browser_missing", "isolated_env", "free_port", "build_demo_workspace",
    "VoilaServer", "Browser", "Dashboard",
]


# ------------------------------------------------------------------------------------ environment
def browser_missing() -> str | None:
    """Why browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"Chromium is missing at {CHROMIUM}: {INSTALL_HINT}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing: pip install -e '.[test]'; for Chromium " + INSTALL_HINT
    return None


def isolated_env(root: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment whose home, Jupyter, IPython, XDG and temp folders lie under root."""
    root = Path(root)
    env = dict(os.environ if base is None else base)
    folders = {
        "HOME": root / "home",
        "JUPYTER_CONFIG_DIR": root / "home" / ".jupyter",
        "JUPYTER_DATA_DIR": root / "home" / ".local" / "share" / "jupyter",
        "JUPYTER_RUNTIME_DIR": root / "home" / ".local" / "share" / "jupyter" / "runtime",
        "IPYTHONDIR": root / "home" / ".ipython",
        "XDG_CONFIG_HOME": root / "home" / ".config",
        "XDG_CACHE_HOME": root / "home" / ".cache",
        "XDG_DATA_HOME": root / "home" / ".local" / "share",
        "MPLCONFIGDIR": root / "home" / ".config" / "matplotlib",
        "TMPDIR": root / "tmp",
    }
    for name, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        env[name] = str(folder)
    # The venv's kernelspec, whatever the platform's data dirs say under the temporary HOME.
    venv_data = Path(sys.prefix) / "share" / "jupyter"
    if venv_data.exists():
        env["JUPYTER_PATH"] = os.pathsep.join(p for p in (env.get("JUPYTER_PATH", ""), str(venv_data)) if p)
    env.pop("JUPYTER_PREFER_ENV_PATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_demo_workspace(home: Path) -> Path:
    """The demo workspace (acme and globex, 400 accounts each), nothing executed."""
    from allegro_ops import Workspace
    from allegro_ops.demo import init_demo

    Path(home).mkdir(parents=True, exist_ok=True)
    init_demo(Workspace(home, actor="browser-test"))
    return Path(home)


# ------------------------------------------------------------------------------------ Voilà server
class VoilaServer:
    """`voila notebooks/dashboard.ipynb` as widgets.serve starts it, on a free loopback port, in its
    own process group; stop() ends the group and any kernel it leaves behind."""

    def __init__(self, home: Path, root: Path, *, preheat: bool = True, notebook: Path = NOTEBOOK,
                 port: int | None = None) -> None:
        self.home, self.root = Path(home), Path(root)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = self.root / f"voila-{self.port}.log"
        self.command = voila_command(Path(notebook).resolve(), port=self.port, preheat=preheat)
        self.env = voila_env(self.home, isolated_env(self.root))
        self.env["ALLEGRO_OPS_ACTOR"] = "browser-test"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "VoilaServer":
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=self.root, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        try:
            self.wait_until_answering(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_until_answering(self, timeout: float) -> None:
        """Until the server answers at all (a light static URL, not the notebook page)."""
        deadline = time.monotonic() + timeout
        probe = self.url + "voila/static/voila.js"
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"Voilà exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(probe, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Voilà did not answer at {self.url} within {timeout:.0f} s:\n{self.log()}")
            time.sleep(0.2)

    def wait_quiet(self, timeout: float = 120, *, cpu_percent: float = 10.0) -> None:
        """Until the server and its kernels are idle: a pre-heated kernel has finished running the
        notebook (Voilà logs "filled" when the kernel starts, before the notebook has run)."""
        try:
            import psutil
        except ImportError:
            time.sleep(10)
            return
        assert self.process is not None
        deadline = time.monotonic() + timeout
        calm = 0
        while calm < 3:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Voilà and its kernels still busy after {timeout:.0f} s")
            try:
                procs = [psutil.Process(self.process.pid), *_descendants(self.process.pid)]
                for p in procs:
                    p.cpu_percent(None)
                time.sleep(0.5)
                busy = sum(p.cpu_percent(None) for p in procs if p.is_running())
            except psutil.Error:
                busy = 100.0
            calm = calm + 1 if busy < cpu_percent else 0

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        kernels = _descendants(proc.pid)  # kernels run in sessions of their own
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # Voilà shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        for child in kernels:
            with contextlib.suppress(Exception):
                child.wait(5)
            with contextlib.suppress(Exception):
                if child.is_running():
                    child.kill()

    def __enter__(self) -> "VoilaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _descendants(pid: int) -> list[Any]:
    try:
        import psutil
    except ImportError:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


# ------------------------------------------------------------------------------------ Chromium
class Browser:
    """Headless Chromium through Playwright, its profile and temp files under root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._playwright = None
        self.browser = None

    def start(self) -> "Browser":
        from playwright.sync_api import expect, sync_playwright

        expect.set_options(timeout=STEP_TIMEOUT_MS)  # expect() defaults to 5 s, too short here

        env = isolated_env(self.root)
        # The Playwright driver makes the Chromium profile in its own temp folder; give it ours.
        with _patched_environ({k: env[k] for k in ("TMPDIR", "HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}):
            self._playwright = sync_playwright().start()
            try:
                self.browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                               env=env, headless=True)
            except BaseException:
                self.stop()
                raise
        return self

    def new_page(self, *, width: int = 1440, height: int = 1000):
        assert self.browser is not None, "start() first"
        context = self.browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(STEP_TIMEOUT_MS)
        return page

    def stop(self) -> None:
        if self.browser is not None:
            with contextlib.suppress(Exception):
                self.browser.close()
            self.browser = None
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                self._playwright.stop()
            self._playwright = None

    def __enter__(self) -> "Browser":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def _patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


# ------------------------------------------------------------------------------------ page object
class Dashboard:
    """The dashboard page in terms of the agreed DOM conventions (ao-* classes, button texts)."""

    def __init__(self, page, url: str) -> None:
        self.page, self.url = page, url
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text))
        page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
        page.on("request", lambda req: self.requests.append(req.url))

    # -- loading
    def open(self, timeout_ms: int = RENDER_TIMEOUT_MS) -> float:
        """Load the page; return seconds from the request to an interactive dashboard."""
        started = time.monotonic()
        self.page.goto(self.url, wait_until="commit", timeout=timeout_ms)
        self.wait_interactive(timeout_ms)
        return time.monotonic() - started

    def wait_interactive(self, timeout_ms: int = RENDER_TIMEOUT_MS) -> None:
        """The widgets are rendered (which needs the kernel connection) and the navigation lists schedules."""
        self.page.locator(".ao-dashboard").first.wait_for(state="visible", timeout=timeout_ms)
        self.page.locator(".ao-nav .ao-schedule-entry").first.wait_for(state="attached", timeout=timeout_ms)

    # -- navigation
    def pick_schedule(self, client: str, schedule: str) -> None:
        """Click the schedule's navigation entry; its activity pane shows a status circle."""
        self.page.locator(f".ao-nav .ao-schedule-{client}-{schedule}").first.click()
        from playwright.sync_api import expect

        expect(self.page.locator(".ao-activity")).to_contain_text(f"{client} / {schedule}")
        self.page.locator(".ao-status").first.wait_for(state="visible")

    def pick_date(self, day: dt.date | str) -> None:
        field = self.page.locator(".ao-date input[type=date]").first
        field.fill(str(day))  # fill dispatches input and change
        field.dispatch_event("change")
        field.blur()

    # -- reading
    def status(self) -> str:
        return self.page.locator(".ao-status").first.inner_text().strip()

    def wait_status(self, word: str, timeout_ms: int = STEP_TIMEOUT_MS) -> None:
        from playwright.sync_api import expect

        expect(self.page.locator(".ao-status").first).to_contain_text(word, timeout=timeout_ms)

    def tile(self, job: str):
        return self.page.locator(f".ao-job-tile.ao-job-{job}").first

    def job_status(self, job: str) -> str:
        return self.tile(job).locator(".ao-job-status").first.inner_text().strip()

    def wait_job_status(self, job: str, word: str, timeout_ms: int = STEP_TIMEOUT_MS) -> None:
        from playwright.sync_api import expect

        expect(self.tile(job).locator(".ao-job-status").first).to_contain_text(word, timeout=timeout_ms)

    def message(self) -> str:
        """The message bar's text, "" while it is hidden."""
        box = self.page.locator(".ao-message").first
        if not box.count() or not box.is_visible():
            return ""
        text = box.locator(".ao-message-text")
        return (text.first if text.count() else box).inner_text().strip()

    # -- acting
    def button(self, css_class: str):
        return self.page.locator(f"button.{css_class}").first

    def click(self, css_class: str) -> None:
        """Click a button by its ao-* class once it is enabled; confirm when a confirm bar asks."""
        from playwright.sync_api import expect

        button = self.button(css_class)
        expect(button).to_be_enabled()
        button.click()

    def confirm(self) -> None:
        self.page.locator(".ao-confirm button.ao-confirm-yes").first.click()

    def open_job_menu(self, job: str) -> None:
        self.tile(job).locator(".ao-job-menu").first.click()

    def menu_button(self, job: str, css_class: str):
        """An entry of a job tile's ⋮ menu: ao-job-process, ao-job-retry or ao-job-stats."""
        return self.tile(job).locator(f"button.{css_class}").first

    def job_action(self, job: str, css_class: str) -> None:
        """Open the tile's ⋮ menu and pick an entry."""
        self.open_job_menu(job)
        self.menu_button(job, css_class).click()

    def drawer(self, css_class: str):
        return self.page.locator(f".{css_class}").locator("visible=true").first

    def cancel(self, drawer_class: str) -> None:
        """Click the Cancel of one drawer (drawers stack; each has its own Cancel)."""
        self.drawer(drawer_class).locator("button.ao-cancel").first.click()

    def screenshot(self, path: Path, *, element: str | None = None, max_height: int = 4000) -> Path:
        """A PNG of one element, or of the whole dashboard: Voilà scrolls inside #rendered_cells,
        so the viewport is stretched to the content's height for the picture."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if element:
            self.page.locator(element).first.screenshot(path=str(path))
            return path
        size = self.page.viewport_size or {"width": 1440, "height": 900}
        height = self.page.evaluate(
            "(() => { const el = document.getElementById('rendered_cells');"
            " return el ? el.scrollHeight : document.scrollingElement.scrollHeight; })()")
        self.page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), max_height)})
        try:
            self.page.wait_for_timeout(400)  # relayout
            self.page.screenshot(path=str(path))
        finally:
            self.page.set_viewport_size(size)
        return path


# ------------------------------------------------------------------------------------ measuring
def measure_page_load(root: Path, *, runs: int = 3, preheat: bool = True,
                      notebook: Path = NOTEBOOK) -> dict[str, list[float]]:
    """Seconds from request to interactive dashboard against a fresh demo workspace: a first
    visit (empty browser cache: ~10 MB of JavaScript to load) and a repeat visit (cached) per run.
    Each load starts once the server is idle, i.e. with preheat once the pool's kernel has run
    the notebook: the steady state an operator meets."""
    home = build_demo_workspace(Path(root) / "workspace")
    server = VoilaServer(home, Path(root) / ("preheat" if preheat else "cold"), preheat=preheat,
                         notebook=notebook)
    times: dict[str, list[float]] = {"first visit": [], "repeat visit": []}
    with server, Browser(Path(root) / "browser") as browser:
        for _ in range(runs):
            page = browser.new_page()  # a new browser context: empty cache
            for visit in times:
                server.wait_quiet()
                times[visit].append(Dashboard(page, server.url).open())
                time.sleep(2)  # the left page's kernel shuts down; the pool refills
            page.context.close()
    return times


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python tests/browser_support.py")
    parser.add_argument("what", choices=["measure"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK)
    args = parser.parse_args(argv)
    missing = browser_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="allegro-measure-"))
    try:
        for preheat in (True, False):
            times = measure_page_load(root / ("on" if preheat else "off"), runs=args.runs, preheat=preheat,
                                      notebook=args.notebook)
            for visit, values in times.items():
                shown = ", ".join(f"{t:.2f}" for t in values)
                print(f"preheat {'on ' if preheat else 'off'}, {visit:<12}: request -> interactive "
                      f"median {sorted(values)[len(values) // 2]:.2f} s ({shown})", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
