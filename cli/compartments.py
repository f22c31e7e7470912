"""``plexus compartment``: create, list, show, delete."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .console import Output, converged, show
from .errors import CliError
from .options import (
    DEFAULT_CONTROLLER,
    ControllerOpt,
    OutputOpt,
    TimeoutOpt,
    TokenFileOpt,
    TokenOpt,
    WaitOpt,
    connect,
    waiting,
)
from .resource import add_delete, add_show

compartment_app = typer.Typer(
    help="Compartments: one network namespace per container.", no_args_is_help=True
)

COLUMNS = ["id", "host", "endpoints"]
OPTIONAL = ("endpoints",)


@compartment_app.command("create")
def compartment_create(
    name: Annotated[
        str | None, typer.Argument(help="compartment id (generated if omitted)")
    ] = None,
    host: Annotated[str, typer.Option(help="host id")] = "",
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 10.0,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create a compartment (a network namespace) on a host."""
    if not host:
        raise CliError("--host is required")
    body: dict[str, Any] = {"host": host}
    if name:
        body["id"] = name
    with connect(controller) as api:
        data = api.post("/v1/compartments", body, wait=waiting(wait, timeout))
    show(data, output, COLUMNS, optional=OPTIONAL)
    converged(data, output)


@compartment_app.command("list")
def compartment_list(
    host: Annotated[str | None, typer.Option()] = None,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """List compartments."""
    with connect(controller) as api:
        data = api.get("/v1/compartments", params={"host": host})
    show(data, output, COLUMNS, optional=OPTIONAL)


add_show(compartment_app, "/v1/compartments", "Show one compartment.", COLUMNS, OPTIONAL)


add_delete(
    compartment_app,
    "/v1/compartments",
    "Delete a compartment (refused while it has endpoints, unless --force).",
    force=True,
    wait=True,
)
