"""``plexus policy``: ACL policies (README, "Policies"): create and replace from a file
(JSON or TOML, one policy's fields as ``proto.policy.PolicyFields`` has them), list,
show, delete, and trace (which rule decides a flow, from the desired state)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .console import Output, converged, err, say, show
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
from .resource import add_delete

policy_app = typer.Typer(
    help="ACL policies: rules with priorities, directions and tiers, on a network's endpoints.",
    no_args_is_help=True,
)

COLUMNS = ["id", "network", "tier", "selector", "endpoints", "rules", "hosts", "generation"]
OPTIONAL = ("generation", "hosts", "endpoints")
RULE_COLUMNS = [
    "rule",
    "action",
    "protocol",
    "local_ports",
    "remote_addresses",
    "remote_selector",
    "remote_ports",
    "log",
]
FileArg = Annotated[Path, typer.Argument(help="one policy's fields, JSON or TOML")]


def load(path: Path) -> dict[str, Any]:
    """A policy file: JSON (``.json``) or TOML (anything else)."""
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected one policy (an object), not {type(data).__name__}")
    return data


def _table(data: dict[str, Any]) -> dict[str, Any]:
    """A policy's row: its rules counted, not listed (``show`` lists them)."""
    return {**data, "rules": len(data.get("rules", []))}


def _show(data: dict[str, Any], output: Output, *, rules: bool) -> None:
    if output is Output.json:
        show(data, output, COLUMNS)
        return
    show(_table(data), output, COLUMNS, optional=OPTIONAL)
    if rules and data.get("rules"):
        rows = [{"rule": f"{r['direction']}-{r['priority']}", **r} for r in data["rules"]]
        show(rows, output, RULE_COLUMNS, title="rules", optional=("log", "remote_ports"))
    for w in data.get("warnings", []):
        err.print(f"warning: {w}", markup=False, highlight=False)


def _write(method: str, file: Path, wait: bool, timeout: float, controller: str) -> Any:
    body = load(file)
    path = "/v1/policies"
    if method == "PUT":
        if not isinstance(body.get("id"), str):
            raise CliError(f"{file}: the policy has no id")
        path = f"{path}/{ident(body['id'])}"
    with connect(controller) as api:
        return api.request(method, path, body=body, wait=waiting(wait, timeout))


def _writer(method: str, doc: str) -> Callable[..., None]:
    """``create`` (POST) and ``replace`` (PUT): the same command but for the method."""

    def command(
        file: FileArg,
        wait: WaitOpt = False,
        timeout: TimeoutOpt = 10.0,
        controller: ControllerOpt = DEFAULT_CONTROLLER,
        token: TokenOpt = None,
        token_file: TokenFileOpt = None,
        output: OutputOpt = Output.table,
    ) -> None:
        data = _write(method, file, wait, timeout, controller)
        _show(data, output, rules=True)
        converged(data, output)

    command.__doc__ = doc
    return command


policy_app.command("create")(
    _writer("POST", "Create a policy from a file; selectors that match nothing are warnings.")
)
policy_app.command("replace")(
    _writer("PUT", "Replace the policy the file names (its id) with the file's (generation + 1).")
)


@policy_app.command("list")
def policy_list(
    network: Annotated[str | None, typer.Option(help="only this network's")] = None,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """List policies."""
    with connect(controller) as api:
        data = api.get("/v1/policies", params={"network": network})
    if output is Output.json:
        show(data, output, COLUMNS)
    else:
        show([_table(p) for p in data], output, COLUMNS, optional=OPTIONAL)


@policy_app.command("show")
def policy_show(
    name: str,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show one policy and its rules (and warnings: selectors that match nothing now)."""
    with connect(controller) as api:
        data = api.get(f"/v1/policies/{ident(name)}")
    _show(data, output, rules=True)


add_delete(policy_app, "/v1/policies", "Delete a policy.", force=False, wait=True)


@policy_app.command("trace")
def policy_trace(
    src: Annotated[str, typer.Argument(help="source endpoint")],
    dst: Annotated[str, typer.Argument(help="destination endpoint")],
    protocol: Annotated[str, typer.Argument(help="tcp, udp or icmp")],
    port: Annotated[int | None, typer.Argument(help="destination port (tcp, udp)")] = None,
    src_port: Annotated[int | None, typer.Option(help="source port (tcp, udp)")] = None,
    controller: ControllerOpt = DEFAULT_CONTROLLER,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Which rule decides a flow: at the source (out) and at the destination (in), from
    the controller's desired state."""
    params = {"src": src, "dst": dst, "protocol": protocol, "port": port, "src_port": src_port}
    with connect(controller) as api:
        data = api.get("/v1/policies/trace", params=params)
    if output is Output.json:
        show(data, output, [])
    else:
        sides = [
            {"side": "source", **data["source"]},
            {"side": "destination", **data["destination"]},
        ]
        columns = ["side", "endpoint", "direction", "verdict", "policy", "rule", "tier", "reason"]
        show(sides, output, columns, optional=("reason", "direction"))
        say(f"verdict: {data['verdict']}")
