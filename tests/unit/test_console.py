"""How ``plexus`` prints tables and errors (``controller.console``), at a fixed width."""

from __future__ import annotations

import pytest
import typer

from cli import console
from cli.console import Output, fail, show


@pytest.fixture(autouse=True)
def eighty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console.out, "width", 80)
    monkeypatch.setattr(console.err, "width", 80)


ROW = {
    "id": "an-endpoint-id-that-is-quite-long-0001",
    "ip": "10.250.250.250",
    "mac": "02:42:0a:fa:fa:fa",
    "network": "a-network-with-a-long-name",
    "ports": ["8080:80/tcp", "192.0.2.1:5353:53/udp"],
}


def test_a_table_too_wide_for_the_terminal_runs_past_its_edge(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """When the columns that must stay do not fit, lines get longer rather than lose
    characters: nothing is cut with an ellipsis or folded inside a word."""
    show([ROW], Output.table, list(ROW), optional=("ports",))
    out = capsys.readouterr().out
    for value in ("an-endpoint-id-that-is-quite-long-0001", "10.250.250.250", "02:42:0a:fa:fa:fa"):
        assert value in out
    assert max(len(line) for line in out.splitlines()) > 80
    assert "not shown at this width: PORTS (-o wide shows them)" in out


def test_wide_shows_every_column(
    capsys: pytest.CaptureFixture[str],
) -> None:
    show([{**ROW, "id": "ep-1", "network": "n"}], Output.wide, list(ROW), optional=("ports",))
    out = capsys.readouterr().out
    assert "8080:80/tcp" in out and "192.0.2.1:5353:53/udp" in out
    assert "not shown" not in out


def test_cells_and_titles_are_text_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    show([{"id": "[/x]", "reason": "[bold]kept[/bold]"}], Output.table, ["id", "reason"], "[t]")
    out = capsys.readouterr().out
    assert "[/x]" in out and "[bold]kept[/bold]" in out and "[t]" in out


def test_fail_prints_one_line_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exc:
        fail("422 body.id: String should match pattern '^[a-z0-9][a-z0-9._-]{0,62}$'", code=2)
    assert exc.value.exit_code == 2
    err = capsys.readouterr().err
    assert err == "error: 422 body.id: String should match pattern '^[a-z0-9][a-z0-9._-]{0,62}$'\n"
