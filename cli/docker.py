"""``plexus docker-plugin``: Docker's remote network and IPAM driver on this host
(:mod:`dockerplugin`), as a daemon in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cni.config import DEFAULT_CONTROLLER, controller_address
from cni.errors import CniError

from .errors import CliError


def docker_plugin(
    name: Annotated[
        str,
        typer.Option(help="the plugin's name: `docker network create -d NAME --ipam-driver NAME`"),
    ] = "plexus",
    network_host: Annotated[
        str, typer.Option("--network-host", help="this host's id in Plexus (its agent's)")
    ] = ...,  # type: ignore[assignment]  # typer: a required option
    controller: Annotated[str, typer.Option(help="the controller's URL")] = DEFAULT_CONTROLLER,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="this host's token (binding, containers), or the admin's (also making "
            "and deleting networks)",
        ),
    ] = None,
    socket_dir: Annotated[
        Path, typer.Option("--socket-dir", help="where dockerd looks for plugins")
    ] = Path("/run/docker/plugins"),
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="where the plugin keeps what Docker told it")
    ] = Path("/var/lib/plexus/docker"),
    timeout: Annotated[
        float, typer.Option(help="seconds a container's start waits for this host's agent")
    ] = 10.0,
    log_format: Annotated[str, typer.Option(help="auto, json or console")] = "auto",
) -> None:
    """Serve Docker's NetworkDriver and IpamDriver on SOCKET_DIR/NAME.sock."""
    from cni.api import Controller, read_token
    from dockerplugin import Driver, State, serve
    from proto.logs import configure

    try:
        host, port = controller_address(controller)
        token = read_token(str(token_file) if token_file else None)
    except CniError as e:
        raise CliError(e.msg, code=2) from None
    configure("info", log_format)
    state = State(state_dir / f"{name}.json")
    driver = Driver(network_host, lambda: Controller(host, port, token), state, timeout)
    serve(name, socket_dir, driver)
