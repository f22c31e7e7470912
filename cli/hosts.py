"""``plexus host`` (list, show, decommission) and ``plexus status``."""

from __future__ import annotations

import typer

from .console import Output, out, show
from .options import (
    DEFAULT_CONTROLLER,
    ControllerOpt,
    ForceOpt,
    OutputOpt,
    TokenFileOpt,
    TokenOpt,
    connect,
    ident,
)

host_app = typer.Typer(
    help="Hosts: one agent each; they appear when their agent reports.", no_args_is_help=True
)

COLUMNS = [
    "id",
    "state",
    "vtep",
    "version",
    "desired_generation",
    "applied_generation",
    "in_sync",
    "compartments",
    "errors",
]
OPTIONAL = (
    "applied_networks",
    "version",
    "desired_generation",
    "applied_generation",
    "compartments",
    "errors",
    "in_sync",
    "state",
)


@host_app.command("list")
def host_list(
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """List hosts."""
    with connect(controller) as api:
        show(api.get("/v1/hosts"), output, COLUMNS, optional=OPTIONAL)


@host_app.command("show")
def host_show(
    name: str,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show one host."""
    with connect(controller) as api:
        data = api.get(f"/v1/hosts/{ident(name)}")
    show(data, output, [*COLUMNS, "applied_networks"], optional=OPTIONAL)


@host_app.command("decommission")
def host_decommission(
    name: str,
    force: ForceOpt = False,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Forget a host (refused while it has compartments, unless --force)."""
    with connect(controller) as api:
        data = api.request("DELETE", f"/v1/hosts/{ident(name)}", params={"force": force})
    show(data, output, ["id", "deleted"])


def status(
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Is every host in sync with the desired state?"""
    with connect(controller) as api:
        data = api.get("/v1/status")
    if output is Output.json:
        show(data, output, [])
    else:
        show(data["hosts"], output, ["id", "state", "in_sync", "behind"], title="hosts")
        show(
            data["networks"],
            output,
            ["id", "generation", "hosts", "hosts_in_sync", "in_sync"],
            title="networks",
        )
        out.print("in sync" if data["in_sync"] else "[yellow]not in sync[/yellow]")
    if not data["in_sync"]:
        raise typer.Exit(4)
