"""The daemons ``plexus`` runs (``controller``, ``agent``) and the broker's
administration (``plexus broker run | init | add-host | revoke | add-relay |
sync-identities``).

Each daemon's package is imported inside its command, so that ``plexus network list``
loads neither FastAPI nor pyroute2 (a test holds it). Errors of the broker package
(``broker.errors``) reach the command line as they are, with exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .console import Output, show
from .errors import CliError
from .options import OutputOpt

broker_app = typer.Typer(help="The MQTT broker Plexus runs (Mosquitto).", no_args_is_help=True)


def controller(ctx: typer.Context) -> None:
    """Run the controller daemon (REST API + MQTT publisher).

    The same program as `plexus-controller`, which starts without the CLI's imports;
    `plexus controller --help` lists its options."""
    from controller.main import main

    main(ctx.args, prog="plexus controller")


def agent(ctx: typer.Context) -> None:
    """Run the host agent daemon (programs this host's kernel).

    The same program as `plexus-agent`, which starts without the CLI's imports;
    `plexus agent --help` lists its options."""
    from agents.main import main

    main(ctx.args, prog="plexus agent")


BrokerDirOpt = Annotated[
    Path, typer.Option("--dir", help="the broker's directory (configuration, credentials)")
]
DEFAULT_BROKER_DIR = Path("/etc/plexus/broker")


@broker_app.command("run")
def broker_run(
    directory: BrokerDirOpt = DEFAULT_BROKER_DIR,
    listen: Annotated[
        list[str] | None,
        typer.Option(help="HOST:PORT to listen on (repeatable); only with --allow-anonymous"),
    ] = None,
    allow_anonymous: Annotated[
        bool, typer.Option(help="no credentials, no ACL: anyone may program any host")
    ] = False,
) -> None:
    """Run Mosquitto with Plexus's settings (MQTT 5, TCP_NODELAY, packet limit) and the
    credentials and ACL `plexus broker init` made in --dir."""
    from broker import identities, mosquitto

    if allow_anonymous:
        listeners = [mosquitto.parse_listen(v) for v in listen or ["127.0.0.1:1883"]]
        mosquitto.exec_broker(directory, listeners)
    if listen:
        raise CliError("--listen goes to `plexus broker init` (or with --allow-anonymous)", 2)
    if not identities.BrokerDir(directory).initialised():
        raise CliError(
            f"{directory} holds no broker configuration: run `plexus broker init --dir "
            f"{directory}` first (or --allow-anonymous for a throwaway broker)",
            code=2,
        )
    mosquitto.exec_broker(directory, None)


@broker_app.command("init")
def broker_init(
    directory: BrokerDirOpt = DEFAULT_BROKER_DIR,
    listen: Annotated[
        list[str] | None, typer.Option(help="HOST:PORT of a plain listener (repeatable)")
    ] = None,
    tls_listen: Annotated[
        list[str] | None,
        typer.Option(help="HOST:PORT of a TLS listener with client certificates (repeatable)"),
    ] = None,
    tls_name: Annotated[
        list[str] | None,
        typer.Option(help="another name or address clients reach the broker by (TLS)"),
    ] = None,
    host: Annotated[
        list[str] | None, typer.Option(help="issue a credential for this host (repeatable)")
    ] = None,
    exist_ok: Annotated[
        bool, typer.Option(help="an initialised --dir is kept as it is (for automation)")
    ] = False,
    relay_of: Annotated[
        str | None,
        typer.Option(help="mqtt[s]://HOST:PORT of the root broker: make a relay bridged to it"),
    ] = None,
    relay_credentials: Annotated[
        Path | None,
        typer.Option(help="the relay's identity directory (`plexus broker add-relay` on the root)"),
    ] = None,
    identities_from: Annotated[
        Path | None,
        typer.Option(help="the root broker's directory: its hosts' credentials are copied"),
    ] = None,
    controllers: Annotated[
        int,
        typer.Option(
            min=1, help="controller credentials (several controllers on one PostgreSQL store)"
        ),
    ] = 1,
    output: OutputOpt = Output.table,
) -> None:
    """Make a broker configuration with authentication and ACLs on: one credential for
    the controller and one per host; with --tls-listen, a CA and client certificates.
    With --relay-of, a relay: the root's host credentials and a bridge to the root."""
    from broker import identities, mosquitto, relays

    plain = [mosquitto.parse_listen(v) for v in listen or []]
    tls = [mosquitto.parse_listen(v, 8883) for v in tls_listen or []]
    if not plain and not tls:
        plain = [("127.0.0.1", 1883)]
    if relay_of is not None:
        if relay_credentials is None or identities_from is None:
            raise CliError("--relay-of needs --relay-credentials and --identities-from", 2)
        if tls or host or tls_name:
            raise CliError("a relay takes plain --listen only (its hosts are the root's)", 2)
        if not (exist_ok and identities.BrokerDir(directory).initialised()):
            relays.init_relay(directory, relay_of, relay_credentials, identities_from, plain)
    elif not (exist_ok and identities.BrokerDir(directory).initialised()):
        identities.init(
            directory,
            plain,
            list(host or []),
            tls_listeners=tls,
            tls_names=tls_name or [],
            controllers=controllers,
        )
    _identities_out(directory, output)


@broker_app.command("add-host")
def broker_add_host(
    hosts: Annotated[list[str], typer.Argument(help="host ids")],
    directory: BrokerDirOpt = DEFAULT_BROKER_DIR,
    output: OutputOpt = Output.table,
) -> None:
    """Issue credentials for hosts and reload the running broker (on the root; then
    `plexus broker sync-identities` on each relay)."""
    from broker import identities, relays

    if (directory / relays.RELAY_OF).exists():
        raise CliError(f"{directory} is a relay: add hosts on the root, then sync-identities", 2)
    identities.add_hosts(directory, hosts)
    identities.reload(directory)
    _identities_out(directory, output)


@broker_app.command("add-controller")
def broker_add_controller(
    names: Annotated[list[str], typer.Argument(help="replica names: @controller-NAME each")],
    directory: BrokerDirOpt = DEFAULT_BROKER_DIR,
    output: OutputOpt = Output.table,
) -> None:
    """Issue a credential for each further controller replica (its own client id) and
    reload the running broker."""
    from broker import identities

    identities.add_controllers(directory, names)
    identities.reload(directory)
    _identities_out(directory, output)


@broker_app.command("revoke")
def broker_revoke(
    hosts: Annotated[list[str], typer.Argument(help="host ids")],
    directory: BrokerDirOpt = DEFAULT_BROKER_DIR,
    output: OutputOpt = Output.table,
) -> None:
    """Revoke hosts' credentials (decommissioning) and reload the running broker: their
    connections may no longer read or write anything."""
    from broker import identities

    identities.revoke(directory, hosts)
    identities.reload(directory)
    _identities_out(directory, output)


@broker_app.command("add-relay")
def broker_add_relay(
    name: Annotated[str, typer.Argument(help="the relay's name (its identity: @relay-NAME)")],
    directory: BrokerDirOpt = DEFAULT_BROKER_DIR,
    output: OutputOpt = Output.table,
) -> None:
    """Issue a relay's credential on the root broker (reads every host's desired
    document and the networks, writes their status and events) and reload it."""
    from broker import identities, relays

    relays.add_relay(directory, name)
    identities.reload(directory)
    _identities_out(directory, output)


@broker_app.command("sync-identities")
def broker_sync_identities(
    directory: BrokerDirOpt = DEFAULT_BROKER_DIR,
    root: Annotated[
        Path | None,
        typer.Option("--from", help="the root broker's directory (default: as at init)"),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Copy the root's host credentials and revoked list to a relay again (after
    `add-host` or `revoke` on the root) and reload the relay."""
    from broker import identities, relays

    relays.sync_identities(directory, root)
    identities.reload(directory)
    _identities_out(directory, output)


def _identities_out(directory: Path, output: Output) -> None:
    from broker import identities

    bd = identities.BrokerDir(directory)
    rows = [
        {"identity": n, "credentials": str(bd.identity(n)), "client_certificate": bd.tls}
        for n in bd.names()
    ]
    revoked = bd.revoked()
    title = f"broker {directory}: copy each credentials directory to its host" + (
        f"; revoked: {', '.join(revoked)}" if revoked else ""
    )
    show(
        rows,
        output,
        ["identity", "credentials", "client_certificate"],
        title,
        ("client_certificate",),
    )
