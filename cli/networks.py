"""``plexus network``: create (its options made from ``proto.rest.NetworkCreate``),
list, show, delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from proto.rest import NetworkCreate

from . import modelopts
from .console import Output, converged, show
from .modelopts import Rename
from .options import (
    DEFAULT_CONTROLLER,
    ControllerOpt,
    OutputOpt,
    TimeoutOpt,
    TokenFileOpt,
    TokenOpt,
    WaitOpt,
    connect,
    ident,
    waiting,
)
from .resource import add_delete, add_show

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

#: where ``network create`` differs from NetworkCreate's field names (flags in use in
#: scripts and the README); every other field is its own option, as it is named
RENAMES = {
    "id": Rename(argument="name"),
    "uplinks": Rename(flag="--uplink-for", metavar="HOST=LINK"),
    "nat_exceptions": Rename(flag="--nat-exception"),
}


def _create(
    body: dict[str, Any],
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 10.0,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create a network."""
    with connect(controller) as api:
        data = api.post("/v1/networks", body, wait=waiting(wait, timeout))
    show(data, output, COLUMNS, optional=OPTIONAL)
    converged(data, output)


network_app.command("create")(modelopts.command(NetworkCreate, _create, RENAMES))


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


add_show(network_app, "/v1/networks", "Show one network.", COLUMNS, OPTIONAL)


add_delete(
    network_app,
    "/v1/networks",
    "Delete a network (refused while it has endpoints, unless --force).",
    force=True,
    wait=True,
)


def _held(
    method: str, name: str, host: str, wait: bool, timeout: float, controller: str, output: Output
) -> None:
    path = f"/v1/networks/{ident(name)}/hosts/{ident(host)}"
    with connect(controller) as api:
        data = api.request(method, path, wait=waiting(wait, timeout))
    show(data, output, [*COLUMNS, "pinned"], optional=OPTIONAL)
    converged(data, output)


def _holder(method: str, doc: str) -> Callable[..., None]:
    """``hold`` (PUT) and ``release`` (DELETE): the same command but for the method."""

    def command(
        name: Annotated[str, typer.Argument(help="the network")],
        host: Annotated[str, typer.Argument(help="the host")],
        wait: WaitOpt = False,
        timeout: TimeoutOpt = 10.0,
        controller: ControllerOpt = DEFAULT_CONTROLLER,
        token: TokenOpt = None,
        token_file: TokenFileOpt = None,
        output: OutputOpt = Output.table,
    ) -> None:
        _held(method, name, host, wait, timeout, controller, output)

    command.__doc__ = doc
    return command


network_app.command("hold")(
    _holder(
        "PUT",
        "Hold a network on a host without an endpoint there: its bridge (and an overlay's "
        "VXLAN device and router) stays between one container and the next.",
    )
)
network_app.command("release")(
    _holder(
        "DELETE",
        "Stop holding a network on a host for its own sake (its endpoints there still do).",
    )
)
