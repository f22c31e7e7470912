"""The ``plexus`` command: daemons, and a client of the controller's REST API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError

from broker.errors import BrokerError
from proto.settings import load_settings
from proto.types import ID_PATTERN, is_id

from .console import (
    DEFAULT_CONTROLLER,
    ControllerOpt,
    ForceOpt,
    Output,
    OutputOpt,
    TimeoutOpt,
    TokenFileOpt,
    TokenOpt,
    WaitOpt,
    api_headers,
    fail,
    out,
    say,
    show,
)
from .lab import lab_app

app = typer.Typer(
    help="Plexus: container networking control plane. The options below also go after a "
    "command: `plexus -o json status` and `plexus status -o json` are the same.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Help is Markdown, not rich markup: option syntax such as `[HOST_IP:]HOST_PORT` is
    # shown as written instead of being parsed as (broken) style tags. Sub-apps inherit it.
    rich_markup_mode="markdown",
)
network_app = typer.Typer(
    help="Networks: overlay, nat, transparent, internal.", no_args_is_help=True
)
compartment_app = typer.Typer(
    help="Compartments: one network namespace per container.", no_args_is_help=True
)
endpoint_app = typer.Typer(help="Endpoints: a container's vNIC in a network.", no_args_is_help=True)
host_app = typer.Typer(
    help="Hosts: one agent each; they appear when their agent reports.", no_args_is_help=True
)
broker_app = typer.Typer(help="The MQTT broker Plexus runs (Mosquitto).", no_args_is_help=True)
app.add_typer(network_app, name="network")
app.add_typer(compartment_app, name="compartment")
app.add_typer(endpoint_app, name="endpoint")
app.add_typer(host_app, name="host")
app.add_typer(broker_app, name="broker")
app.add_typer(lab_app, name="lab")


@app.callback()
def _options(
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    output: OutputOpt = Output.table,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """The options every command that talks to the controller takes (see _common_option)."""


def call(
    base: str,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    timeout: float = 30.0,
) -> Any:
    params = {k: v for k, v in (params or {}).items() if v is not None and v is not False}
    try:
        with api_client(base, timeout) as client:
            resp = client.request(method, path, params=params, json=body)
    except httpx.HTTPError as e:
        fail(f"cannot reach the controller at {base}: {e}")
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status_code >= 400:
        reason = data.get("reason") if isinstance(data, dict) else None
        fail(f"{resp.status_code} {reason or resp.text.strip()[:200]}")
    if not isinstance(data, dict | list):
        fail(f"{base} answered {path} with something other than Plexus JSON: is it a controller?")
    return data


def api_client(base: str, timeout: float) -> httpx.Client:
    """An HTTP client of the controller at ``base``, which must be an http(s) URL."""
    try:
        url = httpx.URL(base)
    except httpx.InvalidURL as e:
        fail(f"--controller {base!r} is not a URL: {e}")
    if url.scheme not in ("http", "https") or not url.host:
        fail(f"--controller {base!r}: expected http://HOST:PORT or https://HOST:PORT")
    return httpx.Client(base_url=url, timeout=timeout + 5, headers=api_headers())


def ident(value: str) -> str:
    """An id to put in a URL path: ids are what the wire allows, so that ``?``, ``/`` or
    ``..`` never address another resource (``network show '?'`` listed every network)."""
    if not is_id(value):
        fail(f"{value!r} is not an id: ids match {ID_PATTERN}")
    return value


def bad_settings(e: ValueError) -> str:
    """A settings error on one line (pydantic's spans several)."""
    if isinstance(e, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in e.errors()
        )
    return str(e)


def converged(data: dict[str, Any], output: Output) -> None:
    conv = data.get("convergence")
    if not conv or output is Output.json:
        if conv and not conv["converged"]:
            raise typer.Exit(3)
        return
    if conv["converged"]:
        say(f"applied by {len(conv['hosts'])} host(s) in {conv['elapsed_ms']:.1f} ms")
        return
    pending = "; ".join(f"{p['host']}: {', '.join(p['waiting_for'])}" for p in conv["pending"])
    fail(f"not applied in time by {len(conv['pending'])} host(s): {pending}", code=3)


# -- daemons ---------------------------------------------------------------------------


@app.command()
def controller(
    broker: Annotated[str | None, typer.Option(help="mqtt://HOST:PORT")] = None,
    store: Annotated[str | None, typer.Option(help="SQLite file")] = None,
    listen: Annotated[str | None, typer.Option(help="HOST:PORT of the REST API")] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML file ([controller] table)", envvar="PLEXUS_CONFIG")
    ] = None,
    snapshot_interval: Annotated[float | None, typer.Option(help="seconds")] = None,
    broker_credentials: Annotated[
        Path | None, typer.Option(help="identity directory from `plexus broker init`")
    ] = None,
    api_token_file: Annotated[
        Path | None, typer.Option(help="the REST API's bearer token (made at first start)")
    ] = None,
    log_level: Annotated[str | None, typer.Option()] = None,
    log_format: Annotated[str | None, typer.Option(help="auto, json or console")] = None,
) -> None:
    """Run the controller daemon (REST API + MQTT publisher)."""
    from controller.config import ControllerSettings
    from controller.daemon import run

    try:
        settings = load_settings(
            ControllerSettings,
            "controller",
            config,
            broker=broker,
            store=store,
            listen=listen,
            snapshot_interval=snapshot_interval,
            broker_credentials=broker_credentials,
            api_token_file=api_token_file,
            log_level=log_level,
            log_format=log_format,
        )
        settings.broker_url()
    except (ValidationError, ValueError) as e:
        fail(f"bad configuration: {bad_settings(e)}", code=2)
    run(settings)


@app.command()
def agent(
    host_id: Annotated[str | None, typer.Option(help="this host's id")] = None,
    broker: Annotated[str | None, typer.Option(help="mqtt://HOST:PORT")] = None,
    vtep_address: Annotated[str | None, typer.Option(help="underlay address for VXLAN")] = None,
    vtep_interface: Annotated[str | None, typer.Option(help="take the VTEP from this link")] = None,
    resync_interval: Annotated[
        float | None, typer.Option(help="seconds between full passes")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus metrics")] = None,
    broker_credentials: Annotated[
        Path | None, typer.Option(help="identity directory from `plexus broker init`")
    ] = None,
    allowed_uplink: Annotated[
        list[str] | None,
        typer.Option(help="a link transparent networks may enslave here (repeatable)"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML file ([agent] table)", envvar="PLEXUS_CONFIG")
    ] = None,
    log_level: Annotated[str | None, typer.Option()] = None,
    log_format: Annotated[str | None, typer.Option(help="auto, json or console")] = None,
) -> None:
    """Run the host agent daemon (programs this host's kernel)."""
    from agents.config import AgentSettings
    from agents.daemon import run as run_agent

    try:
        settings = load_settings(
            AgentSettings,
            "agent",
            config,
            host_id=host_id,
            broker=broker,
            vtep_address=vtep_address,
            vtep_interface=vtep_interface,
            resync_interval=resync_interval,
            metrics_port=metrics_port,
            broker_credentials=broker_credentials,
            allowed_uplinks=allowed_uplink or None,
            log_level=log_level,
            log_format=log_format,
        )
        settings.broker_url()
    except (ValidationError, ValueError) as e:
        fail(f"bad configuration: {bad_settings(e)}", code=2)
    run_agent(settings)


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

    try:
        if allow_anonymous:
            listeners = [mosquitto.parse_listen(v) for v in listen or ["127.0.0.1:1883"]]
            mosquitto.exec_broker(directory, listeners)
        if listen:
            fail("--listen goes to `plexus broker init` (or with --allow-anonymous)", code=2)
        if not identities.BrokerDir(directory).initialised():
            fail(
                f"{directory} holds no broker configuration: run `plexus broker init --dir "
                f"{directory}` first (or --allow-anonymous for a throwaway broker)",
                code=2,
            )
        mosquitto.exec_broker(directory, None)
    except BrokerError as e:
        fail(e.reason, code=2)


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
    output: OutputOpt = Output.table,
) -> None:
    """Make a broker configuration with authentication and ACLs on: one credential for
    the controller and one per host; with --tls-listen, a CA and client certificates."""
    from broker import identities, mosquitto

    try:
        plain = [mosquitto.parse_listen(v) for v in listen or []]
        tls = [mosquitto.parse_listen(v, 8883) for v in tls_listen or []]
        if not plain and not tls:
            plain = [("127.0.0.1", 1883)]
        if exist_ok and identities.BrokerDir(directory).initialised():
            _identities_out(directory, output)
            return
        bd = identities.init(
            directory, plain, list(host or []), tls_listeners=tls, tls_names=tls_name or []
        )
    except BrokerError as e:
        fail(e.reason, code=2)
    _identities_out(bd.path, output)


@broker_app.command("add-host")
def broker_add_host(
    hosts: Annotated[list[str], typer.Argument(help="host ids")],
    directory: BrokerDirOpt = DEFAULT_BROKER_DIR,
    output: OutputOpt = Output.table,
) -> None:
    """Issue credentials for hosts and reload the running broker."""
    from broker import identities

    try:
        identities.add_hosts(directory, hosts)
        identities.reload(directory)
    except BrokerError as e:
        fail(e.reason, code=2)
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

    try:
        identities.revoke(directory, hosts)
        identities.reload(directory)
    except BrokerError as e:
        fail(e.reason, code=2)
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


@app.command("apply")
def apply_topology(
    file: Annotated[Path, typer.Argument(help="topology file (TOML or JSON)")],
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="each create waits until applied")
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
    """Create the networks, compartments and endpoints a file describes (idempotent)."""
    from .apply import TopologyError, apply, load, wait_hosts

    try:
        topo = load(file)
        with api_client(controller, timeout) as http:
            wait_hosts(http, topo.hosts(), hosts_timeout)
            steps = apply(http, topo, wait=wait, timeout=timeout)
    except TopologyError as e:
        fail(e.reason, e.code)
    show([vars(s) for s in steps], output, ["kind", "id", "result", "elapsed_ms"])


# -- networks ---------------------------------------------------------------------------

NET_COLS = [
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
NET_OPTIONAL = ("table_generation", "hosts", "endpoints", "mtu", "vni", "mode")


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
            fail(f"--uplink-for {item!r}: expected HOST=LINK")
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
    data = call(
        controller,
        "POST",
        "/v1/networks",
        body={k: v for k, v in body.items() if v is not None},
        params={"wait": wait, "timeout": timeout},
        timeout=timeout,
    )
    show(data, output, NET_COLS, optional=NET_OPTIONAL)
    converged(data, output)


@network_app.command("list")
def network_list(
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """List networks."""
    show(call(controller, "GET", "/v1/networks"), output, NET_COLS, optional=NET_OPTIONAL)


@network_app.command("show")
def network_show(
    name: str,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show one network."""
    show(
        call(controller, "GET", f"/v1/networks/{ident(name)}"),
        output,
        NET_COLS,
        optional=NET_OPTIONAL,
    )


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
    data = call(
        controller,
        "DELETE",
        f"/v1/networks/{ident(name)}",
        params={"force": force, "wait": wait, "timeout": timeout},
        timeout=timeout,
    )
    show(data, output, ["id", "deleted"])
    converged(data, output)


# -- compartments -----------------------------------------------------------------------

COMP_COLS = ["id", "host", "endpoints"]
COMP_OPTIONAL = ("endpoints",)


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
        fail("--host is required")
    body: dict[str, Any] = {"host": host}
    if name:
        body["id"] = name
    data = call(
        controller,
        "POST",
        "/v1/compartments",
        body=body,
        params={"wait": wait, "timeout": timeout},
        timeout=timeout,
    )
    show(data, output, COMP_COLS, optional=COMP_OPTIONAL)
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
    show(
        call(controller, "GET", "/v1/compartments", params={"host": host}),
        output,
        COMP_COLS,
        optional=COMP_OPTIONAL,
    )


@compartment_app.command("show")
def compartment_show(
    name: str,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show one compartment."""
    show(
        call(controller, "GET", f"/v1/compartments/{ident(name)}"),
        output,
        COMP_COLS,
        optional=COMP_OPTIONAL,
    )


@compartment_app.command("delete")
def compartment_delete(
    name: str,
    force: ForceOpt = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 10.0,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Delete a compartment (refused while it has endpoints, unless --force)."""
    data = call(
        controller,
        "DELETE",
        f"/v1/compartments/{ident(name)}",
        params={"force": force, "wait": wait, "timeout": timeout},
        timeout=timeout,
    )
    show(data, output, ["id", "deleted"])
    converged(data, output)


# -- endpoints --------------------------------------------------------------------------

EP_COLS = [
    "id",
    "network",
    "compartment",
    "host",
    "interface",
    "ip",
    "mac",
    "default_route",
    "ports",
]
EP_OPTIONAL = ("default_route", "ports", "interface")
PublishOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--publish", "-p", help="[HOST_IP:]HOST_PORT:PORT[/tcp|udp] (nat networks, repeatable)"
    ),
]


def parse_publish(value: str) -> dict[str, Any]:
    """Docker's ``-p`` syntax: ``[HOST_IP:]HOST_PORT:PORT[/PROTO]``."""
    spec, _, proto_ = value.partition("/")
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[-2:]):
        fail(f"--publish {value!r}: expected [HOST_IP:]HOST_PORT:PORT[/tcp|udp]")
    out: dict[str, Any] = {
        "protocol": proto_ or "tcp",
        "host_port": int(parts[-2]),
        "port": int(parts[-1]),
    }
    if len(parts) == 3:
        out["host_ip"] = parts[0]
    return out


@endpoint_app.command("create")
def endpoint_create(
    name: Annotated[str | None, typer.Argument(help="endpoint id (generated if omitted)")] = None,
    network: Annotated[str, typer.Option(help="network id")] = "",
    compartment: Annotated[str, typer.Option(help="compartment id")] = "",
    ip: Annotated[str | None, typer.Option(help="static IPv4 address")] = None,
    mac: Annotated[str | None, typer.Option(help="static MAC address")] = None,
    default_route: Annotated[
        bool | None, typer.Option("--default-route/--no-default-route")
    ] = None,
    publish: PublishOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 10.0,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Attach a compartment to a network with a new endpoint."""
    if not network or not compartment:
        fail("--network and --compartment are required")
    body: dict[str, Any] = {"network": network, "compartment": compartment}
    for key, value in (("id", name), ("ip", ip), ("mac", mac), ("default_route", default_route)):
        if value is not None:
            body[key] = value
    if publish:
        body["ports"] = [parse_publish(p) for p in publish]
    data = call(
        controller,
        "POST",
        "/v1/endpoints",
        body=body,
        params={"wait": wait, "timeout": timeout},
        timeout=timeout,
    )
    show(data, output, EP_COLS, optional=EP_OPTIONAL)
    converged(data, output)


@endpoint_app.command("list")
def endpoint_list(
    network: Annotated[str | None, typer.Option()] = None,
    host: Annotated[str | None, typer.Option()] = None,
    compartment: Annotated[str | None, typer.Option()] = None,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """List endpoints."""
    data = call(
        controller,
        "GET",
        "/v1/endpoints",
        params={"network": network, "host": host, "compartment": compartment},
    )
    show(data, output, EP_COLS, optional=EP_OPTIONAL)


@endpoint_app.command("show")
def endpoint_show(
    name: str,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show one endpoint."""
    show(
        call(controller, "GET", f"/v1/endpoints/{ident(name)}"),
        output,
        EP_COLS,
        optional=EP_OPTIONAL,
    )


@endpoint_app.command("publish")
def endpoint_publish(
    name: str,
    publish: PublishOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 10.0,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Set an endpoint's published ports to exactly these (none: close them all)."""
    data = call(
        controller,
        "PUT",
        f"/v1/endpoints/{ident(name)}/ports",
        body={"ports": [parse_publish(p) for p in publish or []]},
        params={"wait": wait, "timeout": timeout},
        timeout=timeout,
    )
    show(data, output, EP_COLS, optional=EP_OPTIONAL)
    converged(data, output)


@endpoint_app.command("delete")
def endpoint_delete(
    name: str,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 10.0,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Delete an endpoint."""
    data = call(
        controller,
        "DELETE",
        f"/v1/endpoints/{ident(name)}",
        params={"wait": wait, "timeout": timeout},
        timeout=timeout,
    )
    show(data, output, ["id", "deleted"])
    converged(data, output)


# -- hosts and status -------------------------------------------------------------------

HOST_COLS = [
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
HOST_OPTIONAL = (
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
    show(call(controller, "GET", "/v1/hosts"), output, HOST_COLS, optional=HOST_OPTIONAL)


@host_app.command("show")
def host_show(
    name: str,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show one host."""
    show(
        call(controller, "GET", f"/v1/hosts/{ident(name)}"),
        output,
        [*HOST_COLS, "applied_networks"],
        optional=HOST_OPTIONAL,
    )


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
    show(
        call(controller, "DELETE", f"/v1/hosts/{ident(name)}", params={"force": force}),
        output,
        ["id", "deleted"],
    )


@app.command()
def status(
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Is every host in sync with the desired state?"""
    data = call(controller, "GET", "/v1/status")
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


def main() -> None:
    app()
