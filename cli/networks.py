"""``plexus network``: create, list, show, delete."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .console import Output, converged, show
from .errors import CliError
from .options import (
    DEFAULT_CONTROLLER,
    ControllerOpt,
    ForceOpt,
    OutputOpt,
    TimeoutOpt,
    TokenFileOpt,
    TokenOpt,
    WaitOpt,
    connect,
    ident,
    waiting,
)

network_app = typer.Typer(
    help="Networks: overlay, nat, transparent, internal.", no_args_is_help=True
)

COLUMNS = [
    "id",
    "mode",
    "subnet",
    "gateway",
    "vni",
    "mtu",
    "endpoints",
    "hosts",
    "table_generation",
]
#: left out, first one first, when the table is wider than the terminal
OPTIONAL = ("table_generation", "hosts", "endpoints", "mtu", "vni", "mode")


@network_app.command("create")
def network_create(
    name: Annotated[str, typer.Argument(help="network name (id)")],
    subnet: Annotated[str, typer.Option(help="e.g. 10.1.0.0/24")],
    mode: Annotated[str, typer.Option(help="overlay, nat, transparent or internal")] = "overlay",
    gateway: Annotated[str | None, typer.Option()] = None,
    vni: Annotated[int | None, typer.Option(help="overlay VNI (allocated if omitted)")] = None,
    mtu: Annotated[int | None, typer.Option()] = None,
    uplink: Annotated[
        str | None, typer.Option(help="transparent: the host link to enslave")
    ] = None,
    uplink_for: Annotated[
        list[str] | None,
        typer.Option(help="transparent: HOST=LINK, another uplink on that host (repeatable)"),
    ] = None,
    ip_range: Annotated[
        str | None, typer.Option(help="allocate addresses from this CIDR of the subnet")
    ] = None,
    outbound_nat: Annotated[
        bool, typer.Option(help="overlay: reach outside through the host's uplink, masqueraded")
    ] = False,
    nat_exception: Annotated[
        list[str] | None,
        typer.Option(help="overlay outbound NAT: a CIDR not to translate (repeatable)"),
    ] = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 10.0,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create a network."""
    uplinks = {}
    for item in uplink_for or []:
        host, sep, link = item.partition("=")
        if not sep or not host or not link:
            raise CliError(f"--uplink-for {item!r}: expected HOST=LINK")
        uplinks[host] = link
    body: dict[str, Any] = {
        "id": name,
        "mode": mode,
        "subnet": subnet,
        "gateway": gateway,
        "vni": vni,
        "mtu": mtu,
        "uplink": uplink,
        "ip_range": ip_range,
    }
    if uplinks:
        body["uplinks"] = uplinks
    if outbound_nat:
        body["outbound_nat"] = True
    if nat_exception:
        body["nat_exceptions"] = nat_exception
    body = {k: v for k, v in body.items() if v is not None}
    with connect(controller) as api:
        data = api.post("/v1/networks", body, wait=waiting(wait, timeout))
    show(data, output, COLUMNS, optional=OPTIONAL)
    converged(data, output)


@network_app.command("list")
def network_list(
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """List networks."""
    with connect(controller) as api:
        show(api.get("/v1/networks"), output, COLUMNS, optional=OPTIONAL)


@network_app.command("show")
def network_show(
    name: str,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show one network."""
    with connect(controller) as api:
        show(api.get(f"/v1/networks/{ident(name)}"), output, COLUMNS, optional=OPTIONAL)


@network_app.command("delete")
def network_delete(
    name: str,
    force: ForceOpt = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 10.0,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Delete a network (refused while it has endpoints, unless --force)."""
    path = f"/v1/networks/{ident(name)}"
    with connect(controller) as api:
        data = api.request("DELETE", path, params={"force": force}, wait=waiting(wait, timeout))
    show(data, output, ["id", "deleted"])
    converged(data, output)
