"""Every ``--help`` of the real ``plexus`` command tree renders, brackets and all."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from cli.app import app

ROOT = typer.main.get_command(app)  # typer vendors click: its groups are TyperGroups


def _paths(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(cmd, TyperGroup):
        for name, sub in sorted(cmd.commands.items()):
            yield from _paths(sub, (*path, name))


def _command(path: tuple[str, ...]) -> Any:
    cmd = ROOT
    for name in path:
        assert isinstance(cmd, TyperGroup)
        cmd = cmd.commands[name]
    return cmd


PATHS = list(_paths(ROOT))


def test_the_walk_reaches_every_group() -> None:
    """The tree walked below holds the nested groups, so a new subcommand is walked too."""
    names = {" ".join(p) for p in PATHS}
    for expected in ("endpoint create", "endpoint publish", "lab up", "lab exec", "broker init"):
        assert expected in names
    assert len(PATHS) > 30


@pytest.mark.parametrize("columns", ["80", "400"])
@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "plexus")
def test_help_renders(path: tuple[str, ...], columns: str) -> None:
    """``--help`` exits 0 without a traceback at any width, and every bracketed part of a
    help text (``[HOST_IP:]``, ``[controller]``) is shown as written, not eaten as markup."""
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": columns})
    assert result.exception is None, result.output
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    if columns == "400":
        shown = " ".join(result.output.split())
        for param in _command(path).params:
            for part in re.findall(r"\[[^\]]*\]", getattr(param, "help", None) or ""):
                assert part in shown, f"{param.name}: {part} missing from --help"
