"""Every CLI command is documented: the test walks the click command tree and looks for each
full command name ("allegro-ops job retry") in README.md or docs/cli.md."""
from __future__ import annotations

from pathlib import Path

import click
import pytest

from allegro_ops.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "cli.md"]


def command_names(group: click.Group, prefix: str = "allegro-ops") -> list[str]:
    """The full name of every leaf command under ``group``."""
    names = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix} {name}"
        if isinstance(command, click.Group):
            names.extend(command_names(command, full))
        else:
            names.append(full)
    return names


COMMANDS = command_names(cli)


def documented_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in DOCS if p.is_file())


def test_the_command_tree_has_the_documented_contract_commands():
    expected = {"allegro-ops status", "allegro-ops create", "allegro-ops recreate", "allegro-ops process",
                "allegro-ops reprocess", "allegro-ops reset", "allegro-ops job process", "allegro-ops job retry",
                "allegro-ops job stats", "allegro-ops job errors", "allegro-ops audit", "allegro-ops schedules",
                "allegro-ops config apply", "allegro-ops config export", "allegro-ops demo init",
                "allegro-ops demo resolve"}
    assert expected <= set(COMMANDS)


def test_the_cli_docs_exist():
    assert any(p.is_file() for p in DOCS), f"none of {[str(p.relative_to(ROOT)) for p in DOCS]} exists"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_cli_command_is_documented(command):
    documented = command in documented_text()
    assert documented, f"{command!r} appears in neither README.md nor docs/cli.md"
