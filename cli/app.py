"""The ``plexus`` command tree: daemons (:mod:`.daemons`), one group per resource
(:mod:`.networks`, :mod:`.compartments`, :mod:`.endpoints`, :mod:`.policies`,
:mod:`.hosts`), ``apply``,
the lab (:mod:`.lab`) and the CNI plugin's installation (:mod:`.cni`), all speaking to
the controller through :mod:`.client`.

Every Plexus error that leaves a command, whichever package raised it, is printed here
as one line, ``error: REASON``, with its exit status (:func:`cli.errors.exit_code`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer import _click  # typer carries its own click (≥ 0.16): its Context
from typer.core import TyperGroup

from proto.errors import PlexusError

from . import daemons
from .cni import cni_app
from .compartments import compartment_app
from .console import Output, fail, show
from .docker import docker_plugin
from .endpoints import endpoint_app
from .errors import exit_code
from .hosts import host_app, status
from .lab import lab_app
from .networks import network_app
from .options import (
    DEFAULT_CONTROLLER,
    ControllerOpt,
    OutputOpt,
    TimeoutOpt,
    TokenFileOpt,
    TokenOpt,
    connect,
)
from .policies import policy_app


class Commands(TyperGroup):
    """The root group: where a Plexus error becomes its one line and exit status."""

    def invoke(self, ctx: _click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PlexusError as e:
            fail(e.reason, exit_code(e))


app = typer.Typer(
    cls=Commands,
    help="Plexus: container networking control plane. The options below also go after a "
    "command: `plexus -o json status` and `plexus status -o json` are the same.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Help is Markdown, not rich markup: option syntax such as `[HOST_IP:]HOST_PORT` is
    # shown as written instead of being parsed as (broken) style tags. Sub-apps inherit it.
    rich_markup_mode="markdown",
)
app.add_typer(network_app, name="network")
app.add_typer(compartment_app, name="compartment")
app.add_typer(endpoint_app, name="endpoint")
app.add_typer(policy_app, name="policy")
app.add_typer(host_app, name="host")
app.add_typer(daemons.broker_app, name="broker")
app.add_typer(lab_app, name="lab")
app.add_typer(cni_app, name="cni")
# `plexus controller` and `plexus agent` hand every argument (--help too) to the
# daemon's own parser (controller.main, agents.main): one definition of its options,
# made from its settings' fields
for daemon in (daemons.controller, daemons.agent):
    app.command(
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(daemon)
app.command("docker-plugin")(docker_plugin)


@app.callback()
def _options(
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    output: OutputOpt = Output.table,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """The options every command that talks to the controller takes (see _common_option)."""


@app.command("apply")
def apply_topology(
    file: Annotated[Path, typer.Argument(help="topology file (TOML or JSON)")],
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="wait until what is created is applied")
    ] = True,
    timeout: TimeoutOpt = 10.0,
    hosts_timeout: Annotated[
        float, typer.Option(help="seconds to wait for the file's hosts to come online")
    ] = 60.0,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create the networks, compartments, endpoints and policies a file describes
    (idempotent)."""
    from .apply import apply, load, wait_hosts

    topo = load(file)
    with connect(controller) as api:
        wait_hosts(api, topo.hosts(), hosts_timeout)
        steps = apply(api, topo, wait=wait, timeout=timeout)
    show([vars(s) for s in steps], output, ["kind", "id", "result", "elapsed_ms"])


app.command()(status)


def main() -> None:
    app()
