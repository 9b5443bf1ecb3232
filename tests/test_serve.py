"""The dashboard server's network safety and role: `python -m widgets.serve` refuses a non-loopback
address without --allow-remote, a bad role and a weak token (exit 2, one line) and a busy port
(exit 1); --allow-remote makes a real Voilà server require a token that is printed once and shows in
no file, log or command line; --role reaches the dashboard's kernel as ALLEGRO_OPS_ROLE."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from allegro_ops import BadInput
from browser_support import VoilaServer, free_port, isolated_env
from widgets.serve import (
    JUPYTER_TOKEN_ENV, MIN_TOKEN_LENGTH, ROLE_ENV, TOKEN_ENV, check_role, choose_token, voila_command, voila_env,
)

REPO = Path(__file__).resolve().parent.parent
SERVE = [sys.executable, "-m", "widgets.serve", "--no-demo"]


@pytest.fixture
def serve_env(tmp_path: Path) -> dict[str, str]:
    """A temporary HOME (and Jupyter folders) for `python -m widgets.serve`, no inherited token or role."""
    env = isolated_env(tmp_path / "root")
    for name in (TOKEN_ENV, JUPYTER_TOKEN_ENV, ROLE_ENV, "JUPYTERHUB_USER"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(REPO)
    return env


def serve(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVE, "--home", str(home), *args], env=env, cwd=home.parent,
                          capture_output=True, text=True, timeout=60)


def refusal(result: subprocess.CompletedProcess) -> str:
    """The one line a refused start prints; Voilà never started and nothing was printed on stdout."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "Dashboard:" not in result.stdout
    return lines[0]


# ------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("ip", ["0.0.0.0", "192.0.2.10", "::", ""])
def test_a_non_loopback_address_is_refused_without_allow_remote(home: Path, serve_env: dict[str, str],
                                                                 ip: str) -> None:
    result = serve(home, serve_env, "--ip", ip, "--port", str(free_port()))
    assert result.returncode == 2
    line = refusal(result)
    assert "not a loopback address" in line and "add --allow-remote" in line and "token" in line
    assert list(home.iterdir()) == []  # refused before anything was built


@pytest.mark.parametrize("args, extra_env, expected", [
    (["--role", "admin"], {}, "error: bad role 'admin' for --role: expected viewer or operator"),
    (["--allow-remote", "--token", "tooshort"], {}, f"the token from --token must be at least {MIN_TOKEN_LENGTH}"),
    (["--allow-remote"], {TOKEN_ENV: "a" * (MIN_TOKEN_LENGTH - 1)}, f"the token from {TOKEN_ENV} must be at least"),
    (["--allow-remote", "--token", "sixteen chars ok"], {}, "without spaces"),
    ([], {ROLE_ENV: "root"}, "error: bad role 'root' in ALLEGRO_OPS_ROLE: expected viewer or operator"),
])
def test_a_bad_role_or_a_weak_token_is_refused_in_one_line(home: Path, serve_env: dict[str, str], args: list[str],
                                                           extra_env: dict[str, str], expected: str) -> None:
    result = serve(home, {**serve_env, **extra_env}, "--port", str(free_port()), *args)
    assert result.returncode == 2
    assert expected in refusal(result)


def test_a_busy_port_is_refused_with_exit_1(home: Path, serve_env: dict[str, str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = serve(home, serve_env, "--port", str(port), "--role", "viewer")
    assert result.returncode == 1
    assert refusal(result) == f"error: 127.0.0.1:{port} is in use; pick another with --port N"


def test_role_operator_cannot_raise_the_role_access_yaml_grants(home: Path, serve_env: dict[str, str]) -> None:
    (home / "access.yaml").write_text("default: viewer\nusers:\n  alice: operator\n")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:  # stop right after the checks
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        bob = serve(home, {**serve_env, "JUPYTERHUB_USER": "bob"}, "--port", port, "--role", "operator")
        alice = serve(home, {**serve_env, "JUPYTERHUB_USER": "alice"}, "--port", port, "--role", "operator")
    assert bob.returncode == alice.returncode == 1
    warning, error = bob.stderr.splitlines()
    assert warning == ("warning: --role operator cannot raise the role access.yaml (default for bob) gives: "
                       "the dashboard is viewer-only") and "is in use" in error
    assert "cannot raise" not in alice.stderr and len(alice.stderr.splitlines()) == 1


# ------------------------------------------------------------------------------------ plumbing
def test_voila_env_carries_the_role_and_only_a_token_it_is_given(home: Path) -> None:
    inherited = {"PATH": "/usr/bin", JUPYTER_TOKEN_ENV: "from-the-shell", "JUPYTER_TOKEN_FILE": "/x",
                 TOKEN_ENV: "not-for-the-kernel-0123", ROLE_ENV: "operator"}
    plain = voila_env(home, inherited)
    assert JUPYTER_TOKEN_ENV not in plain and "JUPYTER_TOKEN_FILE" not in plain and TOKEN_ENV not in plain
    assert plain[ROLE_ENV] == "operator"  # no --role: the caller's variable goes on unchanged
    viewer = voila_env(home, inherited, role=" Viewer ", token="t" * 20)
    assert viewer[ROLE_ENV] == "viewer" and viewer[JUPYTER_TOKEN_ENV] == "t" * 20 and TOKEN_ENV not in viewer
    assert viewer["ALLEGRO_OPS_HOME"] == str(home.resolve())
    with pytest.raises(BadInput, match="bad role 'admin' for --role"):
        voila_env(home, inherited, role="admin")
    assert check_role("OPERATOR") == "operator"


def test_the_token_flag_is_bare_and_loopback_stays_token_free() -> None:
    assert "--token" not in " ".join(voila_command(port=9999))
    with_token = voila_command(port=9999, token=True)
    assert with_token.count("--token") == 1 and not any(a.startswith("--token=") for a in with_token)


def test_the_token_comes_from_the_flag_else_the_variable_else_is_generated_with_allow_remote() -> None:
    given, env_token = "g" * MIN_TOKEN_LENGTH, "e" * MIN_TOKEN_LENGTH
    assert choose_token(True, given, {TOKEN_ENV: env_token}) == (given, False)
    assert choose_token(False, None, {TOKEN_ENV: env_token}) == (env_token, False)
    assert choose_token(False, None, {}) == (None, False)  # loopback without a token: as before
    first, generated = choose_token(True, None, {TOKEN_ENV: ""})
    assert generated and len(first) >= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", first)
    assert choose_token(True, None, {})[0] != first
    with pytest.raises(BadInput, match=TOKEN_ENV):
        choose_token(True, None, {TOKEN_ENV: "short"})


# ------------------------------------------------------------------------------------ a real server
def _status(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """The status and Location of one GET, redirects not followed (only the headers are awaited)."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 - urllib's signature
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=60) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


@pytest.fixture
def remote_server(home: Path, serve_env: dict[str, str], tmp_path: Path) -> Iterator[VoilaServer]:
    """`python -m widgets.serve --allow-remote` (on 127.0.0.1: the token logic ignores the address)
    with a generated token; the process execs into Voilà, so VoilaServer can stop it."""
    server = VoilaServer(home, tmp_path / "root")
    server.command = [*SERVE, "--home", str(home), "--port", str(server.port), "--ip", "127.0.0.1",
                      "--allow-remote", "--no-preheat", "--role", "viewer"]
    server.env = serve_env
    try:
        yield server.start(timeout=90)
    finally:
        server.stop()


def test_allow_remote_requires_the_generated_token_printed_once_and_written_nowhere(
        remote_server: VoilaServer, home: Path, tmp_path: Path) -> None:
    log = remote_server.log()
    url_line = next(line for line in log.splitlines() if line.startswith("Dashboard: "))
    token = re.search(r"\?token=([A-Za-z0-9_-]+)", url_line)
    assert token, url_line
    token = token.group(1)
    assert f"http://127.0.0.1:{remote_server.port}/?token=" in url_line and "role viewer" in url_line
    base = remote_server.url

    status, location = _status(base)
    assert status in (302, 403) and (status == 403 or "/login" in location)
    assert _status(base + "?token=not-" + token)[0] in (302, 403)
    assert _status(base + "?token=" + token)[0] == 200
    assert _status(base, {"Authorization": f"token {token}"})[0] == 200

    # Printed once (Voilà's own URL line says ?token=...), and in no file, log line or command line.
    assert remote_server.log().count(token) == 1
    assert remote_server.process is not None
    cmdline = Path(f"/proc/{remote_server.process.pid}/cmdline").read_bytes().decode(errors="replace")
    assert "voila" in cmdline and token not in cmdline
    environ = Path(f"/proc/{remote_server.process.pid}/environ").read_bytes().decode(errors="replace")
    assert f"{JUPYTER_TOKEN_ENV}={token}" in environ.split("\0")
    assert f"{ROLE_ENV}=viewer" in environ.split("\0")  # what the dashboard's kernels inherit
    for path in (p for p in tmp_path.rglob("*") if p.is_file() and p != remote_server.log_path):
        assert token.encode() not in path.read_bytes(), path  # the workspace, HOME, Jupyter runtime
    assert os.environ.get(JUPYTER_TOKEN_ENV) != token
