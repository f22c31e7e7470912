"""What every ``plexus`` subcommand prints with: tables or JSON on stdout, one-line
errors on stderr (``fail``, where :mod:`cli.app` turns every Plexus error into one)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, NoReturn

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segments
from rich.table import Table
from rich.text import Text

from .errors import CliError

out = Console()
err = Console(stderr=True)


class Output(StrEnum):
    table = "table"  # the columns that fit the terminal
    wide = "wide"  # every column, however wide the table gets
    json = "json"


def say(text: str) -> None:
    """Print a line as it is: no rich markup, so server- or user-supplied text with square
    brackets (a regex, a path, a spec) is never eaten or parsed."""
    out.print(text, markup=False, highlight=False)


def fail(reason: str, code: int = 1) -> NoReturn:
    err.print(Text.assemble(("error:", "red"), " ", reason), soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def show(
    data: Any,
    output: Output,
    columns: list[str],
    title: str | None = None,
    optional: tuple[str, ...] = (),
) -> None:
    """``data`` (an object or a list) as JSON, or as a table of ``columns``.

    A table never cuts a word (an id, an address, a MAC): every column is at least as wide
    as its longest word and wraps only between words. When that does not fit the terminal,
    the ``optional`` columns are left out, first one first, and the caption names them
    (``-o wide`` or ``-o json`` shows everything). When even the rest does not fit, lines
    run past the terminal's edge rather than lose characters.
    """
    if output is Output.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return
    rows = data if isinstance(data, list) else [data]
    cells = {c: [_cell(row.get(c)) for row in rows] for c in columns}
    headers = {c: c.replace("_", " ").upper() for c in columns}
    shortest = {c: max(_longest_word(t) for t in [headers[c], *cells[c]]) for c in columns}
    widest = {c: max(cell_len(t) for t in [headers[c], *cells[c]]) for c in columns}
    room = out.width if output is Output.table else sys.maxsize
    shown = list(columns)
    for c in (c for c in optional if c in columns):
        if _table_width(shortest[s] for s in shown) <= room:
            break
        shown.remove(c)
    widths = _fit(room, [shortest[c] for c in shown], [widest[c] for c in shown])
    hidden = [headers[c] for c in columns if c not in shown]
    table = Table(
        title=Text(title) if title else None,
        caption=Text(f"not shown at this width: {', '.join(hidden)} (-o wide shows them)")
        if hidden
        else None,
        show_edge=False,
        header_style="bold",
    )
    for c, width in zip(shown, widths, strict=True):
        table.add_column(headers[c], width=width, overflow="fold")
    for i in range(len(rows)):
        table.add_row(*(Text(cells[c][i]) for c in shown))
    # rich narrows even fixed-width columns to the terminal: render a table that does not
    # fit at its own width, and let its lines run past the edge
    room = max(out.width, _table_width(widths))
    lines = out.render_lines(table, out.options.update_width(room), pad=False, new_lines=True)
    out.print(Segments(s for line in lines for s in line), crop=False, soft_wrap=True)


def _longest_word(text: str) -> int:
    return max((cell_len(w) for w in text.split()), default=1)


def _table_width(content: Iterable[int]) -> int:
    """A table's width from its columns' content widths: with ``show_edge=False`` each cell
    has a space either side and a rule stands between two columns."""
    widths = list(content)
    return sum(widths) + 3 * len(widths) - 1


def _fit(total: int, shortest: list[int], widest: list[int]) -> list[int]:
    """Column widths within ``total``: every column its ``shortest``, then what is left
    given out left to right, each column up to its ``widest``."""
    spare = max(0, total - _table_width(shortest))
    widths = []
    for low, high in zip(shortest, widest, strict=True):
        extra = min(spare, high - low)
        widths.append(low + extra)
        spare -= extra
    return widths


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


def converged(data: dict[str, Any], output: Output) -> None:
    """After a change made with --wait: say which hosts applied it, or fail (exit 3)
    naming those that did not in time."""
    conv = data.get("convergence")
    if not conv or output is Output.json:
        if conv and not conv["converged"]:
            raise typer.Exit(3)
        return
    if conv["converged"]:
        say(f"applied by {len(conv['hosts'])} host(s) in {conv['elapsed_ms']:.1f} ms")
        return
    pending = "; ".join(f"{p['host']}: {', '.join(p['waiting_for'])}" for p in conv["pending"])
    raise CliError(f"not applied in time by {len(conv['pending'])} host(s): {pending}", code=3)
