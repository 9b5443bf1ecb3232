"""`make dashboard`: make sure the workspace has something to look at, then serve
notebooks/dashboard.ipynb with Voilà on 127.0.0.1.

    python -m widgets.serve [--home DIR] [--port N] [--date YYYY-MM-DD] [--no-demo] [--no-preheat]
                            [--role viewer|operator] [--ip ADDRESS --allow-remote [--token T]]

Without a database in --home, or with one that holds no schedule and no execution (nothing an
operator made), the demo workspace is built and a few days of daily billing are run so that the
charts have history; the demo date's acme/daily-billing is created and processed
(it stops ERRORED at bill-run, ready for the seed's story). Then this process becomes Voilà.

Voilà serves with a pre-heated kernel (the notebook already ran when the browser asks) and with
the `allegro` template, Voilà's lab template without its two CDN style sheets, so the page works
offline. voila_command() and voila_env() build the same server for the browser tests.

Network safety: a loopback address is served without a token, as before. Any other --ip is
refused (exit 2) unless --allow-remote is given, and --allow-remote always requires a token:
--token T, else $ALLEGRO_OPS_TOKEN, else a generated one printed once in the URL line (a token
given on loopback is required there too). The token reaches Voilà as $JUPYTER_TOKEN
(jupyter_server's identity provider reads it when Voilà's bare --token flag asks for one), so it
is in no file and not on Voilà's command line. --role sets $ALLEGRO_OPS_ROLE for the kernel;
<home>/access.yaml, when present, decides and the variable may only lower a role
(allegro_ops/access.py).
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["NOTEBOOK", "TEMPLATE", "TOKEN_ENV", "ROLE_ENV", "voila_command", "voila_env", "check_role",
           "choose_token", "prepare_workspace", "main"]

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "dashboard.ipynb"
TEMPLATE = "allegro"
# A Jupyter data directory holding voila/templates/allegro; prepended to JUPYTER_PATH.
TEMPLATE_DATA_DIR = Path(__file__).resolve().parent / "voila_template"
DEFAULT_PORT = 8866
LOOPBACK = "127.0.0.1"
DEMO_CLIENT, DEMO_SCHEDULE = "acme", "daily-billing"
TOKEN_ENV = "ALLEGRO_OPS_TOKEN"  # the token for --allow-remote when --token is not given
ROLE_ENV = "ALLEGRO_OPS_ROLE"  # read by allegro_ops.access in the kernel
JUPYTER_TOKEN_ENV = "JUPYTER_TOKEN"  # read by jupyter_server's IdentityProvider
MIN_TOKEN_LENGTH = 16
ROLES = ("viewer", "operator")


def voila_command(
    notebook: str | Path = NOTEBOOK,
    *,
    port: int = DEFAULT_PORT,
    ip: str = LOOPBACK,
    preheat: bool = True,
    token: bool = False,
    python: str = sys.executable,
) -> list[str]:
    """The Voilà command line that serves the dashboard (run it with voila_env()). With token, every
    request must carry the token that voila_env(token=...) passes in the environment."""
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
    if token:
        # The bare flag (Voila.auto_token) makes jupyter_server's IdentityProvider take its token
        # from $JUPYTER_TOKEN: the value never appears on a command line that `ps` shows.
        command.append("--token")
    return command


def voila_env(
    home: str | Path,
    base: Mapping[str, str] | None = None,
    *,
    ip: str = LOOPBACK,
    role: str | None = None,
    token: str | None = None,
) -> dict[str, str]:
    """The environment for voila_command(): the workspace and role for the kernel, the template
    path, the address at which a preheated kernel reaches the server to wait for its page request,
    and the token (only when given: a token inherited from the caller's environment is dropped, so
    that only voila_command(token=True) servers ask for one). A bad role raises BadInput."""
    env = dict(os.environ if base is None else base)
    for name in (JUPYTER_TOKEN_ENV, "JUPYTER_TOKEN_FILE", TOKEN_ENV):
        env.pop(name, None)
    if token:
        env[JUPYTER_TOKEN_ENV] = token
    if role is not None:
        env[ROLE_ENV] = check_role(role)
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
    """Build the demo workspace when home has no database or an empty one (no schedule and no
    execution: nothing an operator made is lost), with history_days of daily billing before
    run_date; then create and process acme/daily-billing for run_date if NOT_CREATED. A workspace
    with a schedule of its own is left as it is."""
    from allegro_ops import Workspace
    from allegro_ops.demo import init_demo

    ws = Workspace(home)
    existed = ws.store.exists
    if not existed or _holds_nothing(ws):
        started = time.monotonic()
        init_demo(ws)
        say(f"Built the demo workspace in {ws.home}" + ("" if not existed else
            " (its database held no schedule and no execution)"))
        _run_history(ws, run_date, history_days, say)
        say(f"  ({time.monotonic() - started:.1f} s)")
    if (DEMO_CLIENT, DEMO_SCHEDULE) not in {(s.client, s.schedule) for s in ws.schedules()}:
        return  # not a demo workspace
    execution = ws.execution(DEMO_CLIENT, DEMO_SCHEDULE, run_date)
    if execution.status.value == "NOT_CREATED":
        ws.create(DEMO_CLIENT, DEMO_SCHEDULE, run_date)
        execution = ws.process(DEMO_CLIENT, DEMO_SCHEDULE, run_date)
        say(f"  {DEMO_CLIENT}/{DEMO_SCHEDULE} {run_date}: created and processed, {execution.status.value}")


def _holds_nothing(ws) -> bool:
    """The workspace's database holds no schedule and no execution (e.g. one an older version made
    when it only read a deleted workspace)."""
    from allegro_ops import query

    return not ws.schedules() and query.executions(ws).empty


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


def check_role(role: str) -> str:
    """The role as the kernel reads it (viewer or operator); anything else raises BadInput."""
    value = str(role).strip().lower()
    if value not in ROLES:
        from allegro_ops.errors import BadInput

        raise BadInput(f"bad role {role!r} for --role: expected viewer or operator")
    return value


def choose_token(allow_remote: bool, given: str | None, env: Mapping[str, str]) -> tuple[str | None, bool]:
    """The token the server requires and whether it was generated here: --token, else
    $ALLEGRO_OPS_TOKEN, else (with allow_remote) a new one; None on loopback without either.
    A given token shorter than MIN_TOKEN_LENGTH or containing spaces raises BadInput."""
    token = given if given is not None else (env.get(TOKEN_ENV) or None)
    if token is not None:
        if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
            from allegro_ops.errors import BadInput

            source = "--token" if given is not None else TOKEN_ENV
            raise BadInput(f"the token from {source} must be at least {MIN_TOKEN_LENGTH} characters without "
                           "spaces; leave --token and ALLEGRO_OPS_TOKEN unset to have one generated")
        return token, False
    if allow_remote:
        return secrets.token_urlsafe(32), True
    return None, False


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


def _demo_today() -> dt.date:
    """Today where the demo's acme lives: the date its dashboard opens on (the machine's own date
    may already be tomorrow, e.g. in UTC at night in New York)."""
    from zoneinfo import ZoneInfo

    from allegro_ops.demo import DEMO_CLIENTS

    return dt.datetime.now(ZoneInfo(DEMO_CLIENTS[DEMO_CLIENT][0])).date()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m widgets.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", default=os.environ.get("ALLEGRO_OPS_HOME", ".demo"),
                        help="workspace folder (default: $ALLEGRO_OPS_HOME or .demo)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--ip", default=LOOPBACK,
                        help="address to listen on (default 127.0.0.1); any other address needs --allow-remote")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --ip; every request must then carry a token")
    parser.add_argument("--token", default=None,
                        help=f"the token to require (default ${TOKEN_ENV}, else one generated with --allow-remote "
                             "and printed once); prefer the variable: a command line shows in `ps`")
    parser.add_argument("--role", default=None,
                        help=f"viewer or operator, passed to the dashboard as ${ROLE_ENV}; <home>/access.yaml, "
                             "when present, decides and this may only lower the role")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=_demo_today(),
                        help="the demo run date (default: today in acme's timezone, America/New_York)")
    parser.add_argument("--history-days", type=int, default=3,
                        help="days of daily billing run before --date when the demo is built (default 3)")
    parser.add_argument("--no-demo", action="store_true",
                        help="serve the workspace as it is: build and run nothing")
    parser.add_argument("--no-preheat", action="store_true",
                        help="start a kernel per page request instead of keeping one ready")
    return parser.parse_args(argv)


def _dashboard_url(ip: str, port: int, token: str | None, generated: bool) -> str:
    """The URL line's address; a generated token is shown in full (this once), a given one is not."""
    host = socket.gethostname() if ip in ("", "0.0.0.0", "::") else (f"[{ip}]" if ":" in ip else ip)
    query = "" if token is None else f"?token={token if generated else '…'}"
    return f"http://{host}:{port}/{query}"


def _role_line(home: Path, env: Mapping[str, str], wanted: str | None) -> str:
    """What the dashboard's role will be, resolved as the kernel resolves it; warns when --role
    asked for more than access.yaml grants."""
    from allegro_ops.access import resolve_access

    access = resolve_access(home, env)
    if wanted == "operator" and access.role.value != wanted:
        print(f"warning: --role operator cannot raise the role {access.source} gives: the dashboard is "
              f"{access.role.value}-only", file=sys.stderr)
    return f"role {access.role.value} from {access.source}"


def _checked(args: argparse.Namespace, home: Path) -> tuple[dict[str, str], str, str | None, bool]:
    """The refusals that need no database (address, token, role), before anything is built: Voilà's
    environment, the role line, the token to require and whether it was generated here."""
    if not _is_loopback(args.ip) and not args.allow_remote:
        from allegro_ops.errors import BadInput

        raise BadInput(f"--ip {args.ip or '(all addresses)'} is not a loopback address: add --allow-remote to "
                       "serve the dashboard beyond this machine (a token is then required)")
    token, generated = choose_token(args.allow_remote, args.token, os.environ)
    env = voila_env(home, ip=args.ip, role=args.role, token=token)
    return env, _role_line(home, env, env[ROLE_ENV] if args.role is not None else None), token, generated


def main(argv: Sequence[str] | None = None) -> int:
    """Check the options, prepare the demo workspace, then become Voilà (exit 2 on a bad option)."""
    from allegro_ops.errors import AllegroOpsError

    args = _parse_args(argv)
    home = Path(args.home).resolve()
    try:
        env, role, token, generated = _checked(args, home)
    except AllegroOpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
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
        print(f"warning: listening on {args.ip or 'all addresses'} over plain HTTP: put HTTPS in front "
              "(a reverse proxy) before the token crosses a network", file=sys.stderr)
    print(f"Dashboard: {_dashboard_url(args.ip, args.port, token, generated)}   "
          f"(workspace {home}; {role}; Ctrl-C stops)", flush=True)
    command = voila_command(port=args.port, ip=args.ip, preheat=not args.no_preheat, token=token is not None)
    os.execve(command[0], command, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
