"""``plexus host`` (list, show, token, decommission) and ``plexus status``."""

from __future__ import annotations

import sys
import time

import typer

from .console import Output, out, show
from .options import (
    DEFAULT_CONTROLLER,
    ControllerOpt,
    OutputOpt,
    TokenFileOpt,
    TokenOpt,
    connect,
    ident,
)
from .resource import add_delete, add_show

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
    "broker",
    "errors",
]
OPTIONAL = (
    "applied_networks",
    "broker",
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


add_show(host_app, "/v1/hosts", "Show one host.", [*COLUMNS, "applied_networks"], OPTIONAL)


@host_app.command("token")
def host_token(
    host: str,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Print the API token of HOST's CNI plugin: it may act on HOST's compartments and
    endpoints only (asks with the admin token; changes when the admin token does)."""
    with connect(controller) as api:
        data = api.get(f"/v1/hosts/{ident(host)}/token")
    if output is Output.json:
        show(data, output, [])
    else:  # the bare token, whatever the terminal's width: for $(plexus host token h1)
        sys.stdout.write(data["token"] + "\n")


add_delete(
    host_app,
    "/v1/hosts",
    "Forget a host (refused while it has compartments, unless --force).",
    force=True,
    wait=False,
    command="decommission",
)


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
        hosts = ["id", "state", "in_sync", "behind", "broker"]
        show(data["hosts"], output, hosts, title="hosts", optional=("broker",))
        show(
            data["networks"],
            output,
            ["id", "generation", "hosts", "hosts_in_sync", "in_sync"],
            title="networks",
        )
        if data.get("relays"):
            relays = [{**r, "since": _when(r["since"])} for r in data["relays"]]
            show(relays, output, ["name", "state", "since"], title="relays")
        if data.get("replica"):
            leader = f"{data['leader']} (epoch {data['epoch']})" if data.get("leader") else "none"
            out.print(f"store {data['store']}, replica {data['replica']}, leader {leader}")
        out.print("in sync" if data["in_sync"] else "[yellow]not in sync[/yellow]")
    if not data["in_sync"]:
        raise typer.Exit(4)


def _when(t: float) -> str:
    """A controller's Unix time, in UTC to the second (``2026-12-03 06:40:12Z``)."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))
