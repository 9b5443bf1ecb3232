"""Helpers for the automation tests (scheduler, backfill, dated notebook runs): small demo
workspaces built once per module and copied per test, configs edited in place, the CLI in a
subprocess, and a private Jupyter/IPython home so nothing is written outside test folders."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from allegro_ops import Workspace
from allegro_ops.demo import init_demo

ROOT = Path(__file__).resolve().parent.parent
OPS = [sys.executable, "-m", "allegro_ops.cli"]


def build_demo(folder: Path, accounts: int = 20) -> Path:
    """A demo workspace (acme in New York, globex in Berlin) with nothing executed yet."""
    init_demo(Workspace(folder, actor="tester"), accounts=accounts, seed=7, batch_size=10)
    return folder


def copy_workspace(template: Path, dest: Path, **kwargs: Any) -> Workspace:
    shutil.copytree(template, dest)
    return Workspace(dest, **kwargs)


def edit_schedule(ws: Workspace, client: str, schedule: str, **changes: Any) -> None:
    """Apply a new config version with top-level keys (or calendar.<key> via calendar={...}) changed."""
    doc = yaml.safe_load(ws.export_config(client, schedule))
    calendar = changes.pop("calendar", None)
    doc.update(changes)
    if calendar:
        doc["calendar"].update(calendar)
    path = ws.home / f"edit-{client}-{schedule}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    ws.apply_config(path)


def jupyter_env(base: Path) -> dict[str, str]:
    """HOME, Jupyter and IPython folders under ``base``."""
    dirs = {"HOME": "home", "JUPYTER_CONFIG_DIR": "jupyter/config", "JUPYTER_DATA_DIR": "jupyter/data",
            "JUPYTER_RUNTIME_DIR": "jupyter/runtime", "IPYTHONDIR": "ipython"}
    env = {}
    for var, sub in dirs.items():
        path = base / sub
        path.mkdir(parents=True, exist_ok=True)
        env[var] = str(path)
    return env


def cli_environment(home: Path, base: Path, actor: str = "tester") -> dict[str, str]:
    env = dict(os.environ)
    env.update(jupyter_env(base))
    env["ALLEGRO_OPS_HOME"] = str(home)
    env["ALLEGRO_OPS_ACTOR"] = actor
    env["PYTHONPATH"] = str(ROOT)
    return env


def ops(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*OPS, *args], env=env, capture_output=True, text=True, timeout=timeout)
