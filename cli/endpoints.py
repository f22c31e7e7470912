"""``plexus endpoint``: create, list, show, publish (ports), label, delete."""

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
    ident,
    waiting,
)
from .resource import add_delete, add_show

endpoint_app = typer.Typer(help="Endpoints: a container's vNIC in a network.", no_args_is_help=True)

COLUMNS = [
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
OPTIONAL = ("default_route", "ports", "interface")
PublishOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--publish", "-p", help="[HOST_IP:]HOST_PORT:PORT[/tcp|udp] (nat networks, repeatable)"
    ),
]


LabelOpt = Annotated[
    list[str] | None,
    typer.Option("--label", "-l", help="KEY=VALUE: a label policies select by (repeatable)"),
]


def parse_labels(values: list[str]) -> dict[str, str]:
    """``["app=web", "tier=1"]`` → ``{"app": "web", "tier": "1"}`` (the controller checks
    keys and values)."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"label {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def parse_publish(value: str) -> dict[str, Any]:
    """Docker's ``-p`` syntax: ``[HOST_IP:]HOST_PORT:PORT[/PROTO]``."""
    spec, _, proto_ = value.partition("/")
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[-2:]):
        raise CliError(f"--publish {value!r}: expected [HOST_IP:]HOST_PORT:PORT[/tcp|udp]")
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
    label: LabelOpt = None,
    dns_nameservers: Annotated[
        list[str] | None, typer.Option(help="the endpoint's resolvers (repeatable)")
    ] = None,
    dns_domain: Annotated[str | None, typer.Option(help="its local domain")] = None,
    dns_search: Annotated[
        list[str] | None, typer.Option(help="its search domains (repeatable)")
    ] = None,
    dns_options: Annotated[
        list[str] | None, typer.Option(help="its resolver options (repeatable)")
    ] = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 10.0,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Attach a compartment to a network with a new endpoint (its DNS settings, if
    any, come before the network's in the compartment's resolver)."""
    if not network or not compartment:
        raise CliError("--network and --compartment are required")
    body: dict[str, Any] = {"network": network, "compartment": compartment}
    for key, value in (("id", name), ("ip", ip), ("mac", mac), ("default_route", default_route)):
        if value is not None:
            body[key] = value
    if publish:
        body["ports"] = [parse_publish(p) for p in publish]
    if label:
        body["labels"] = parse_labels(label)
    dns = {
        k: v
        for k, v in (
            ("nameservers", dns_nameservers),
            ("domain", dns_domain),
            ("search", dns_search),
            ("options", dns_options),
        )
        if v
    }
    if dns:
        body["dns"] = dns
    with connect(controller) as api:
        data = api.post("/v1/endpoints", body, wait=waiting(wait, timeout))
    show(data, output, COLUMNS, optional=OPTIONAL)
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
    params = {"network": network, "host": host, "compartment": compartment}
    with connect(controller) as api:
        data = api.get("/v1/endpoints", params=params)
    show(data, output, COLUMNS, optional=OPTIONAL)


add_show(endpoint_app, "/v1/endpoints", "Show one endpoint.", COLUMNS, OPTIONAL)


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
    body = {"ports": [parse_publish(p) for p in publish or []]}
    path = f"/v1/endpoints/{ident(name)}/ports"
    with connect(controller) as api:
        data = api.request("PUT", path, body=body, wait=waiting(wait, timeout))
    show(data, output, COLUMNS, optional=OPTIONAL)
    converged(data, output)


@endpoint_app.command("label")
def endpoint_label(
    name: str,
    labels: Annotated[
        list[str] | None,
        typer.Argument(help="KEY=VALUE to set, KEY- to remove", show_default=False),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="drop every label first: set exactly these")
    ] = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 10.0,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Set (KEY=VALUE) or remove (KEY-) an endpoint's labels, keeping the others unless
    --clear."""
    path = f"/v1/endpoints/{ident(name)}"
    with connect(controller) as api:
        have: dict[str, str] = {} if clear else api.get(path)["labels"]
        for item in labels or []:
            if item.endswith("-") and "=" not in item:
                have.pop(item[:-1], None)
            else:
                have.update(parse_labels([item]))
        data = api.request(
            "PUT", f"{path}/labels", body={"labels": have}, wait=waiting(wait, timeout)
        )
    if output is Output.json:
        show(data, output, [])
    else:
        shown = {**data, "labels": [f"{k}={v}" for k, v in sorted(data["labels"].items())]}
        show(shown, output, ["id", "network", "host", "labels", "generation"])
    converged(data, output)


add_delete(endpoint_app, "/v1/endpoints", "Delete an endpoint.", force=False, wait=True)
