"""The compose lab, the image and the systemd units, checked against the CLI they
invoke. The compose lab also runs for real (tests/compose, ``scripts/compose-lab``)."""

from __future__ import annotations

import configparser
import json
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml

# typer ≥ 0.16 carries its own copy of click; its parser is what `plexus` runs
from typer._click.exceptions import UsageError

from agents.config import AgentSettings
from agents.main import load as agent_settings
from agents.main import parser as agent_parser
from cli.app import app
from cli.apply import load
from controller.config import ControllerSettings
from controller.main import load as controller_settings
from controller.main import parser as controller_parser
from lab import demo
from proto.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a plexus command line exactly as ``plexus`` would, without running it:
    returns the command path and its parameters (raises click's usage errors; ``plexus
    agent`` and ``plexus controller`` hand their arguments to the daemon's own parser,
    whose errors exit 2)."""
    if argv[:1] == ["agent"]:
        return "plexus agent", agent_args(argv[1:])
    if argv[:1] == ["controller"]:
        return "plexus controller", vars(controller_parser().parse_args(argv[1:]))
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("plexus", list(argv))
    while hasattr(ctx.command, "resolve_command"):  # a group: descend
        name, sub, rest = ctx.command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert sub is not None and name is not None, argv
        ctx = sub.make_context(name, rest, parent=ctx)
    return ctx.command_path, ctx.params


def daemon_command(service: dict[str, Any]) -> list[str]:
    """A compose service's command as a ``plexus`` command line: a daemon's own entry
    point takes what ``plexus agent`` / ``plexus controller`` take."""
    program = service.get("entrypoint", ["plexus"])
    return [*program[0].removeprefix("plexus").lstrip("-").split(), *service["command"]]


def agent_args(argv: list[str]) -> dict[str, Any]:
    """Parse a ``plexus-agent`` command line as it would (argparse: exits 2 on an error)."""
    return vars(agent_parser().parse_args(argv))


def test_the_parser_refuses_what_plexus_refuses() -> None:
    with pytest.raises(SystemExit, match="2"):
        parse(["agent", "--no-such-flag"])
    with pytest.raises(UsageError):
        parse(["nonsense"])
    assert parse(["lab", "up", "--hosts", "2"]) == (
        "plexus lab up",
        {
            "hosts": 2,
            "directory": Path("/run/plexus/lab"),
            "host_prefix": "h",
            "tls": False,
            "controllers": 1,
            "store": "sqlite",
            "relays": 0,
            "output": "table",
        },
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, rest of the line), continuation lines joined."""
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    out = []
    for ln in lines:
        if ln.strip() and not ln.startswith("#"):
            instr, _, rest = ln.partition(" ")
            out.append((instr, rest.strip()))
    return out


def test_image_runs_plexus_and_carries_the_demo_and_the_config() -> None:
    raw = dockerfile()
    assert [json.loads(r) for i, r in raw if i == "ENTRYPOINT"] == [["plexus"]]
    instrs = [[i, *shlex.split(r)] for i, r in raw]
    copies = {(i[1], i[2]) for i in instrs if i[0] == "COPY" and len(i) == 3}
    # every package the project installs is in the image's source
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [p.rstrip("*") for p in find["packages"]["find"]["include"]]
    assert {(p, f"./{p}") for p in packages} <= copies, copies
    assert ("deploy/demo.toml", "/etc/plexus/demo.toml") in copies
    assert ("deploy/plexus.toml", "/etc/plexus/plexus.toml") in copies
    apt = next(" ".join(i) for i in instrs if i[0] == "RUN" and "apt-get" in i)
    pkgs = apt.partition("pkgs=")[2].split(" &&")[0].split()
    for pkg in ("mosquitto", "iproute2", "nftables", "iputils-ping", "util-linux"):
        assert pkg in pkgs, apt
    # the local base (scripts/test-image --plexus-base) has all of them already
    base = (ROOT / "scripts" / "test-image").read_text().partition('--plexus-base" ]')[2]
    assert all(f" {pkg}" in base.partition(")")[0] for pkg in pkgs)


def test_image_takes_its_base_as_an_argument_and_trusts_the_context_s_certificates() -> None:
    raw = dockerfile()
    assert raw[0] == ("ARG", "BASE=python:3.11-slim-bookworm")
    assert raw[1] == ("FROM", "${BASE}")
    copies = [r for i, r in raw if i == "COPY"]
    assert "deploy/ca-certificates/ /tmp/plexus-ca/" in copies
    assert ("ENV", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt") in raw
    # the directory is in every clone (its README), the certificates never
    assert (ROOT / "deploy" / "ca-certificates" / "README").is_file()
    assert "deploy/ca-certificates/*.crt" in (ROOT / ".gitignore").read_text().splitlines()


def test_compose_file_is_one_docker_compose_v1_accepts() -> None:
    """v1 refuses a top-level ``name:``; the project is ``-p plexus``."""
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert set(data) == {"x-plexus", "x-agent", "services", "networks", "volumes"}


def test_compose_services_and_their_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"broker-init", "broker", "controller", "h1", "h2", "h3", "demo"}
    for name, svc in services.items():
        assert svc["image"] == "plexus:dev" and svc["build"] == ".", name
        assert svc["networks"] == ["underlay"], name
        # every command is a valid command line of its entrypoint: the image's
        # `plexus`, or a daemon's own, `plexus-agent` / `plexus-controller` (the parser
        # of `plexus agent` / `plexus controller`)
        program = svc.get("entrypoint", ["plexus"])
        assert program in (["plexus"], ["plexus-agent"], ["plexus-controller"]), name
        parse(daemon_command(svc))

    # credentials and ACLs on: init (idempotent) before the broker, no anonymous run
    path, init = parse(services["broker-init"]["command"])
    assert path == "plexus broker init" and init["listen"] == ["0.0.0.0:1883"]
    assert init["host"] == ["h1", "h2", "h3"] and init["exist_ok"] is True
    assert init["directory"] == Path("/etc/plexus/broker")
    assert "broker:/etc/plexus/broker" in services["broker-init"]["volumes"]
    path, broker = parse(services["broker"]["command"])
    assert path == "plexus broker run" and broker["allow_anonymous"] is False
    assert broker["directory"] == init["directory"] and not broker["listen"]
    cond = services["broker"]["depends_on"]["broker-init"]["condition"]
    assert cond == "service_completed_successfully"

    assert services["controller"]["entrypoint"] == ["plexus-controller"]
    ctl = controller_settings(services["controller"]["command"])  # as the controller loads them
    assert urlsplit(ctl.broker).hostname == "broker" and urlsplit(ctl.broker).port == 1883
    assert ctl.broker_credentials == Path("/etc/plexus/broker/identities/@controller")
    assert "broker:/etc/plexus/broker:ro" in services["controller"]["volumes"]
    assert ctl.listen == "0.0.0.0:8470"
    assert ctl.token_required  # beyond loopback: the API wants its token
    # not beyond loopback; the port on the machine is PLEXUS_API_PORT's (8470)
    assert services["controller"]["ports"] == ["127.0.0.1:${PLEXUS_API_PORT:-8470}:8470"]
    assert ctl.store.startswith("/var/lib/plexus/")
    assert "controller-data:/var/lib/plexus" in services["controller"]["volumes"]
    assert "healthz" in " ".join(services["controller"]["healthcheck"]["test"])


@pytest.mark.parametrize("host", ["h1", "h2", "h3"])
def test_compose_agents_are_hosts_with_least_privilege(compose: dict[str, Any], host: str) -> None:
    svc = compose["services"][host]
    assert "privileged" not in svc and svc["hostname"] == host
    assert svc["cap_add"] == ["NET_ADMIN", "SYS_ADMIN"]
    # the container's own namespace forwards (nat modes); set by compose, /proc/sys is
    # read-only in the container
    # (a list: every compose reads it; podman-compose 1.0.3 misreads a mapping)
    assert svc["sysctls"] == ["net.ipv4.ip_forward=1"]
    # the agent's own entry point: the image's `plexus agent` without the CLI's imports
    assert svc["entrypoint"] == ["plexus-agent"]
    agent = agent_settings(svc["command"])  # valid settings, as the agent loads them
    assert agent.host_id == host and agent.vtep_interface == "eth0"
    assert agent.broker == ["mqtt://broker:1883"]
    assert agent.broker_credentials == Path(f"/etc/plexus/broker/identities/{host}")
    assert "broker:/etc/plexus/broker:ro" in svc["volumes"]


def test_compose_demo_applies_the_lab_demo_topology(compose: dict[str, Any]) -> None:
    svc = compose["services"]["demo"]
    path, params = parse(svc["command"])
    assert path == "plexus apply" and params["file"] == Path("/etc/plexus/demo.toml")
    assert params["controller"] == "http://controller:8470"
    assert svc["restart"] == "no"
    # the controller's token, from its data volume
    assert svc["environment"]["PLEXUS_TOKEN_FILE"] == "/var/lib/plexus/api-token"
    assert "controller-data:/var/lib/plexus:ro" in svc["volumes"]
    assert svc["depends_on"]["controller"]["condition"] == "service_healthy"
    hosts = [h for h in compose["services"] if h.startswith("h")]
    assert set(svc["depends_on"]) == {"controller", *hosts}
    assert load(ROOT / "deploy" / "demo.toml") == demo.topology(sorted(hosts))


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(ROOT / "deploy" / "systemd" / name)
    return cp


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("plexus-controller.service", "controller"),
        ("plexus-agent.service", "agent"),
        ("plexus-broker.service", "broker run"),
    ],
)
def test_systemd_units_run_plexus_with_the_example_config(name: str, command: str) -> None:
    u = unit(name)
    argv = shlex.split(u["Service"]["ExecStart"])
    if command in ("agent", "controller"):  # the daemon's own entry point, no CLI tree
        assert argv[0].endswith(f"/bin/plexus-{command}")
        argv = ["plexus", command, *argv[1:]]
    assert argv[0].endswith("/bin/plexus") or argv[0] == "plexus"
    path, params = parse(argv[1:])
    assert path == f"plexus {command}"
    if command == "broker run":
        assert params["directory"] == Path("/etc/plexus/broker") and not params["allow_anonymous"]
    else:
        assert params["config"] == Path("/etc/plexus/plexus.toml")
    assert u["Install"]["WantedBy"] == "multi-user.target"
    assert u["Service"]["Restart"] in ("always", "on-failure")


def test_agent_unit_shares_the_hosts_mount_namespace() -> None:
    """Compartments are bind mounts in /run/netns: a private mount namespace would
    hide them from the host."""
    svc = unit("plexus-agent.service")["Service"]
    for private in ("PrivateTmp", "ProtectHome", "ProtectSystem", "PrivateMounts", "DynamicUser"):
        assert private not in svc


def test_example_config_loads_for_both_daemons() -> None:
    example = ROOT / "deploy" / "plexus.toml"
    ctl = load_settings(ControllerSettings, "controller", example)
    assert ctl.listen == "127.0.0.1:8470" and ctl.store == "/var/lib/plexus/plexus.db"
    assert ctl.broker_credentials == Path("/etc/plexus/broker/identities/@controller")
    assert not ctl.token_required  # loopback
    agent = load_settings(AgentSettings, "agent", example)
    assert agent.host_id == "node1" and agent.vtep_interface == "eth0"
    assert agent.broker_credentials == Path("/etc/plexus/credentials")
    assert agent.allowed_uplinks == []
    assert agent.metrics_port == 9470


def test_the_controller_unit_hands_over_its_broker_identity() -> None:
    """DynamicUser cannot read root's 0600 files: systemd passes them as credentials,
    in the layout an identity directory has."""
    text = (ROOT / "deploy" / "systemd" / "plexus-controller.service").read_text()
    lines = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("LoadCredential=")]
    loaded = dict(v.split(":", 1) for v in lines)
    assert loaded == {
        "username": "/etc/plexus/broker/identities/@controller/username",
        "password": "/etc/plexus/broker/identities/@controller/password",
    }
