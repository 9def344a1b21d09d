"""docs/cli.md documents every command, subcommand and option of the CLI
(regenerate it with ``typer improv_vcs.cli utils docs --name improv
--output docs/cli.md``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from improv_vcs.cli import app

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def commands(group: Any, path: str = "improv") -> dict[str, Any]:
    """Every command under ``group`` by its full name (groups included)."""
    found: dict[str, Any] = {}
    for name, command in group.commands.items():
        here = f"{path} {name}"
        found[here] = command
        if hasattr(command, "commands"):
            found.update(commands(command, here))
    return found


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^#{2,3} `([^`]+)`\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_every_command_and_option_is_documented():
    documented = sections(DOC.read_text(encoding="utf-8"))
    cli = commands(typer.main.get_command(app))
    assert len(cli) > 30
    missing = sorted(set(cli) - set(documented))
    assert not missing, f"undocumented commands (regenerate docs/cli.md): {missing}"
    for path, command in cli.items():
        for param in command.params:
            for flag in param.opts:
                if flag.startswith("-"):
                    assert f"`{flag}" in documented[path] or f" {flag}" in documented[path], (
                        f"{path}: {flag} undocumented"
                    )
