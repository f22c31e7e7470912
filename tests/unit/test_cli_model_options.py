"""``plexus network create`` takes its options from ``proto.rest.NetworkCreate``: a
field added to the model is an option with no CLI edit (``cli.modelopts``)."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
import typer
from pydantic import Field
from typer.testing import CliRunner

from cli import modelopts
from cli.app import Commands, app
from cli.modelopts import Rename
from cli.networks import RENAMES
from proto.rest import Body, NetworkCreate
from proto.types import Cidr, Id, IfName, Mtu


class Widened(Body):
    """A request model as a later change might make it: every kind of field."""

    id: Id = Field(description="the name")
    subnet: str
    colour: Literal["red", "green"] = "red"
    mtu_override: Mtu | None = Field(default=None, description="an MTU of its own")
    dns_servers: list[Cidr] = Field(default_factory=list, description="resolvers")
    labels: dict[Id, IfName] = Field(default_factory=dict, description="labels")
    isolated: bool = Field(default=False, description="no traffic between endpoints")
    default_route: bool | None = None


def _run(*argv: str) -> tuple[int, str, dict[str, Any]]:
    """Invoke a command made from ``Widened``; what it would send."""
    sent: dict[str, Any] = {}

    def create(body: dict[str, Any], verbose: bool = False) -> None:
        """Create a widened thing."""
        sent.update(body)

    cli = typer.Typer(cls=Commands)  # the boundary that prints a Plexus error
    cli.command("create")(modelopts.command(Widened, create, {"id": Rename(argument="name")}))
    cli.command("other")(lambda: None)  # two commands: "create" is a subcommand
    result = CliRunner().invoke(cli, ["create", *argv], env={"COLUMNS": "300"})
    return result.exit_code, result.output, sent


def test_a_field_added_to_the_model_is_an_option() -> None:
    """Every field is an option named after it, typed as the field (int, flag,
    repeatable, KEY=VALUE repeatable), and only what was given is sent."""
    code, out, _ = _run("--help")
    assert code == 0, out
    for flag in ("--subnet", "--colour", "--mtu-override", "--dns-servers", "--labels"):
        assert flag in out, flag
    assert "--isolated" in out and "--no-isolated" in out and "--default-route" in out
    assert "an MTU of its own" in out and "red or green" in out and "(repeatable)" in out
    code, out, sent = _run(
        "n1", "--subnet", "10.0.0.0/24", "--mtu-override", "1400",
        "--dns-servers", "10.0.0.2/32", "--dns-servers", "10.0.0.3/32",
        "--labels", "a=b", "--isolated", "--no-default-route",
    )  # fmt: skip
    assert code == 0, out
    assert sent == {
        "id": "n1",
        "subnet": "10.0.0.0/24",
        "colour": "red",
        "mtu_override": 1400,
        "dns_servers": ["10.0.0.2/32", "10.0.0.3/32"],
        "labels": {"a": "b"},
        "isolated": True,
        "default_route": False,
    }
    code, _, sent = _run("n1", "--subnet", "10.0.0.0/24")
    assert code == 0 and sent == {"id": "n1", "subnet": "10.0.0.0/24", "colour": "red"}


def test_bad_values_are_refused_on_one_line_or_by_the_parser() -> None:
    code, out, _ = _run("n1", "--subnet", "s", "--labels", "nokey")
    assert code == 1 and "--labels 'nokey': expected KEY=VALUE" in out
    code, out, _ = _run("n1", "--subnet", "s", "--mtu-override", "x")
    assert code == 2 and "--mtu-override" in out
    code, out, _ = _run("n1")
    assert code == 2 and "--subnet" in out  # a required field is a required option


def test_a_rename_of_a_missing_field_or_a_clash_is_refused_at_build_time() -> None:
    def create(body: dict[str, Any], subnet: str = "") -> None: ...

    with pytest.raises(TypeError, match="clash"):
        modelopts.command(Widened, create)
    with pytest.raises(TypeError, match="nonesuch"):
        modelopts.command(Widened, lambda body: None, {"nonesuch": Rename(flag="--x")})


def test_network_create_has_an_option_for_every_field_of_the_model() -> None:
    """The real command: every NetworkCreate field, under its own name or its rename."""
    result = CliRunner().invoke(app, ["network", "create", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for name in NetworkCreate.model_fields:
        rename = RENAMES.get(name, Rename())
        if rename.argument:
            assert rename.argument in result.output
        else:
            flag = rename.flag or f"--{name.replace('_', '-')}"
            assert flag in result.output, name


def test_network_create_sends_what_it_did_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """The body of ``network create`` with every option: the keys and values the
    hand-written command sent (``--uplink-for HOST=LINK`` → ``uplinks``)."""
    import httpx

    from cli import options

    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(201, json={**seen[-1], "convergence": None})

    real = options.Client
    monkeypatch.setattr(
        options, "Client", lambda base, token: real(base, transport=httpx.MockTransport(handler))
    )
    argv = [
        "network", "create", "t1", "--subnet", "10.1.0.0/24", "--mode", "transparent",
        "--uplink", "eth1", "--uplink-for", "h2=eth2", "--mtu", "1400", "--vni", "7",
        "--gateway", "10.1.0.254", "--ip-range", "10.1.0.128/25", "--outbound-nat",
        "--nat-exception", "10.9.0.0/16", "-o", "json",
    ]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert seen == [
        {
            "id": "t1",
            "mode": "transparent",
            "subnet": "10.1.0.0/24",
            "gateway": "10.1.0.254",
            "vni": 7,
            "mtu": 1400,
            "uplink": "eth1",
            "uplinks": {"h2": "eth2"},
            "ip_range": "10.1.0.128/25",
            "outbound_nat": True,
            "nat_exceptions": ["10.9.0.0/16"],
        }
    ]


class Inner(Body):
    servers: list[str] = Field(default_factory=list, description="resolvers")
    domain: str | None = Field(default=None, description="the domain")


class Nested(Body):
    id: Id
    dns: Inner | None = Field(default=None, description="DNS settings")


def test_a_nested_models_fields_are_options_and_travel_as_one_object() -> None:
    """A field whose type is a model (a network's ``dns``) gives one option per field
    of it, ``--dns-servers``…; the body gets them as one object, and nothing when none
    of them was given."""
    sent: dict[str, Any] = {}

    def create(body: dict[str, Any]) -> None:
        sent.clear()
        sent.update(body)

    cli = typer.Typer(cls=Commands)
    cli.command("create")(modelopts.command(Nested, create, {"id": Rename(argument="name")}))
    cli.command("other")(lambda: None)
    run = CliRunner()
    out = run.invoke(cli, ["create", "--help"], env={"COLUMNS": "300"}).output
    assert "--dns-servers" in out and "--dns-domain" in out and "the domain" in out
    res = run.invoke(
        cli, ["create", "n1", "--dns-servers", "10.0.0.2", "--dns-servers", "10.0.0.3"]
    )
    assert res.exit_code == 0, res.output
    assert sent == {"id": "n1", "dns": {"servers": ["10.0.0.2", "10.0.0.3"]}}
    assert run.invoke(cli, ["create", "n2"]).exit_code == 0 and sent == {"id": "n2"}


def test_network_create_has_the_dns_options_of_the_model() -> None:
    out = CliRunner().invoke(app, ["network", "create", "--help"], env={"COLUMNS": "300"}).output
    for flag in ("--dns-nameservers", "--dns-domain", "--dns-search", "--dns-options"):
        assert flag in out, flag
