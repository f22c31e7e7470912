"""What every ``plexus`` subcommand prints with: tables or JSON on stdout, one-line
errors on stderr."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console()
err = Console(stderr=True)


class Output(StrEnum):
    table = "table"
    json = "json"


ControllerOpt = Annotated[
    str, typer.Option("--controller", envvar="PLEXUS_CONTROLLER", help="controller URL")
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="return once every affected host applied")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="seconds to wait with --wait")]
ForceOpt = Annotated[bool, typer.Option("--force", help="also delete what depends on it")]
DEFAULT_CONTROLLER = "http://127.0.0.1:8470"

#: the REST API's bearer token, when the command line or environment gave one
_token: str | None = None


def set_token(token: str | None) -> None:
    global _token
    _token = token or None


def api_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {_token}"} if _token else {}


def say(text: str) -> None:
    """Print a line as it is: no rich markup, so server- or user-supplied text with square
    brackets (a regex, a path, a spec) is never eaten or parsed."""
    out.print(text, markup=False, highlight=False)


def fail(reason: str, code: int = 1) -> NoReturn:
    err.print(Text.assemble(("error:", "red"), " ", reason), soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def show(data: Any, output: Output, columns: list[str], title: str | None = None) -> None:
    if output is Output.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return
    rows = data if isinstance(data, list) else [data]
    table = Table(title=Text(title) if title else None, show_edge=False, header_style="bold")
    for c in columns:
        table.add_column(c.replace("_", " ").upper())
    for row in rows:
        table.add_row(*(Text(_cell(row.get(c))) for c in columns))
    out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}@{v}" for k, v in value.items()) or "-"
    return str(value)
