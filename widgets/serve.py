"""`make dashboard`: make sure the workspace has something to look at, then serve
notebooks/dashboard.ipynb with Voilà on 127.0.0.1.

    python -m widgets.serve [--home DIR] [--port N] [--ip 127.0.0.1] [--date YYYY-MM-DD] [--no-demo]

Without a database in --home, the demo workspace is built and a few days of daily billing are
run so that the charts have history; the demo date's acme/daily-billing is created and processed
(it stops ERRORED at bill-run, ready for the seed's story). Then this process becomes Voilà.

Voilà serves with a pre-heated kernel (the notebook already ran when the browser asks) and with
the `allegro` template, Voilà's lab template without its two CDN style sheets, so the page works
offline. voila_command() and voila_env() build the same server for the browser tests.
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["NOTEBOOK", "TEMPLATE", "voila_command", "voila_env", "prepare_workspace", "main"]

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "dashboard.ipynb"
TEMPLATE = "allegro"
# A Jupyter data directory holding voila/templates/allegro; prepended to JUPYTER_PATH.
TEMPLATE_DATA_DIR = Path(__file__).resolve().parent / "voila_template"
DEFAULT_PORT = 8866
LOOPBACK = "127.0.0.1"
DEMO_CLIENT, DEMO_SCHEDULE = "acme", "daily-billing"


def voila_command(
    notebook: str | Path = NOTEBOOK,
    *,
    port: int = DEFAULT_PORT,
    ip: str = LOOPBACK,
    preheat: bool = True,
    python: str = sys.executable,
) -> list[str]:
    """The Voilà command line that serves the dashboard (run it with voila_env())."""
    command = [
        python, "-m", "voila", str(notebook),
        "--no-browser",
        f"--port={port}",
        f"--Voila.ip={ip}",
        "--Voila.port_retries=0",  # a busy port is an error, not a silent move to another one
        f"--template={TEMPLATE}",
        "--theme=light",
    ]
    if preheat:
        # One kernel runs the notebook before any request; the pool refills after each page.
        command += ["--preheat_kernel=True", "--pool_size=1"]
    return command


def voila_env(home: str | Path, base: Mapping[str, str] | None = None, *, ip: str = LOOPBACK) -> dict[str, str]:
    """The environment for voila_command(): the workspace for the kernel, the template path, and
    the address at which a preheated kernel reaches the server to wait for its page request."""
    env = dict(os.environ if base is None else base)
    env["ALLEGRO_OPS_HOME"] = str(Path(home).resolve())
    wildcard = ip in ("", "0.0.0.0", "::")
    env["VOILA_APP_IP"] = LOOPBACK if wildcard else (f"[{ip}]" if ":" in ip else ip)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(TEMPLATE_DATA_DIR), env.get("JUPYTER_PATH", "")) if p)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def prepare_workspace(
    home: str | Path,
    run_date: dt.date,
    *,
    history_days: int = 3,
    say: Callable[[str], None] = print,
) -> None:
    """Build the demo workspace when home has no database (with history_days of daily billing
    before run_date), then create and process acme/daily-billing for run_date if NOT_CREATED."""
    from allegro_ops import Workspace
    from allegro_ops.demo import init_demo

    ws = Workspace(home)
    if not ws.store.exists:
        started = time.monotonic()
        init_demo(ws)
        say(f"Built the demo workspace in {ws.home}")
        _run_history(ws, run_date, history_days, say)
        say(f"  ({time.monotonic() - started:.1f} s)")
    if (DEMO_CLIENT, DEMO_SCHEDULE) not in {(s.client, s.schedule) for s in ws.schedules()}:
        return  # not a demo workspace
    execution = ws.execution(DEMO_CLIENT, DEMO_SCHEDULE, run_date)
    if execution.status.value == "NOT_CREATED":
        ws.create(DEMO_CLIENT, DEMO_SCHEDULE, run_date)
        execution = ws.process(DEMO_CLIENT, DEMO_SCHEDULE, run_date)
        say(f"  {DEMO_CLIENT}/{DEMO_SCHEDULE} {run_date}: created and processed, {execution.status.value}")


def _run_history(ws, run_date: dt.date, days: int, say: Callable[[str], None]) -> None:
    """Daily billing of both demo clients on the days before run_date. acme keeps its data
    defects (its runs stop ERRORED); globex's defects are resolved after its runs and its last
    day is reprocessed, so the history shows both outcomes."""
    from allegro_ops.demo import resolve

    dates = [run_date - dt.timedelta(days=n) for n in range(days, 0, -1)]
    for client in ("acme", "globex"):
        for day in dates:
            ws.create(client, DEMO_SCHEDULE, day)
            status = ws.process(client, DEMO_SCHEDULE, day).status.value
            say(f"  {client}/{DEMO_SCHEDULE} {day}: {status}")
    if dates:
        resolve(ws, "globex")
        status = ws.reprocess("globex", DEMO_SCHEDULE, dates[-1]).status.value
        say(f"  globex: demo defects resolved; {DEMO_SCHEDULE} {dates[-1]} reprocessed, {status}")


def _port_free(ip: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return ip == "localhost"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m widgets.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", default=os.environ.get("ALLEGRO_OPS_HOME", ".demo"),
                        help="workspace folder (default: $ALLEGRO_OPS_HOME or .demo)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--ip", default=LOOPBACK,
                        help="address to listen on (default 127.0.0.1; anything else exposes the dashboard "
                             "and its actions, without login, to whoever can reach it)")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date.today(),
                        help="the demo run date (default today)")
    parser.add_argument("--history-days", type=int, default=3,
                        help="days of daily billing run before --date when the demo is built (default 3)")
    parser.add_argument("--no-demo", action="store_true",
                        help="serve the workspace as it is: build and run nothing")
    parser.add_argument("--no-preheat", action="store_true",
                        help="start a kernel per page request instead of keeping one ready")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    home = Path(args.home).resolve()
    if not NOTEBOOK.exists():
        print(f"error: {NOTEBOOK} is missing", file=sys.stderr)
        return 1
    if not _port_free(args.ip, args.port):
        print(f"error: {args.ip}:{args.port} is in use; pick another with --port N", file=sys.stderr)
        return 1
    if not args.no_demo:
        prepare_workspace(home, args.date, history_days=max(args.history_days, 0))
    elif not (home / "allegro_ops.duckdb").exists():
        print(f"warning: {home} has no workspace database yet; the dashboard will be empty", file=sys.stderr)
    if not _is_loopback(args.ip):
        print(f"warning: listening on {args.ip}: anyone who can reach it can run schedule actions "
              "(the dashboard has no login)", file=sys.stderr)
    host = f"[{args.ip}]" if ":" in args.ip else args.ip
    print(f"Dashboard: http://{host}:{args.port}/   (workspace {home}; Ctrl-C stops)", flush=True)
    command = voila_command(port=args.port, ip=args.ip, preheat=not args.no_preheat)
    os.execve(command[0], command, voila_env(home, ip=args.ip))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
