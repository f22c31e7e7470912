"""The lab's spec (names, addresses, state file) and the broker configuration."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from broker import mosquitto
from lab import ha
from lab.core import MAX_HOSTS, host_ids
from lab.spec import LabError, LabSpec, bridge_name, free_subnet


def spec(tmp_path: Path, hosts: int = 3) -> LabSpec:
    return LabSpec.new(tmp_path / "lab", host_ids(hosts, "h"), "198.18.7.0/24", 1883, 8470)


def test_addresses_and_names_of_a_lab(tmp_path: Path) -> None:
    s = spec(tmp_path)
    assert s.hosts == ["h1", "h2", "h3"]
    assert [s.vtep(h) for h in s.hosts] == ["198.18.7.1", "198.18.7.2", "198.18.7.3"]
    assert s.gateway == "198.18.7.254"
    assert s.broker_url == "mqtt://198.18.7.254:1883"
    assert s.controller_url == "http://127.0.0.1:8470"
    assert s.host_ns("h2") == "plab-h2" and s.compartment_ns("h2", "web") == "plexus:h2:web"


def test_interface_names_fit_the_kernel_limit(tmp_path: Path) -> None:
    s = spec(tmp_path, MAX_HOSTS)
    assert all(len(s.port(h)) <= 15 for h in s.hosts)
    assert len({s.port(h) for h in s.hosts}) == MAX_HOSTS
    assert bridge_name(Path("/a")) != bridge_name(Path("/b"))


def test_a_lab_is_found_by_files_only_its_processes_name(tmp_path: Path) -> None:
    s = spec(tmp_path)
    marks = s.marks()
    assert str(s.agent_config("h2")) in marks and str(s.controller_config) in marks
    assert str(s.dir) not in marks  # `plexus lab down --dir DIR` itself is not the lab's


def test_an_ha_lab_names_its_replicas_relays_and_store(tmp_path: Path) -> None:
    s = LabSpec.new(
        tmp_path / "lab", ["h1", "h2"], "198.18.7.0/24", 1883, 8470,
        store="postgresql", more_controller_ports=[8471, 8472], relay_ports=[1884, 1885],
    )  # fmt: skip
    assert s.controllers == ["controller", "controller-2", "controller-3"]
    assert s.controller_urls == [f"http://127.0.0.1:{p}" for p in (8470, 8471, 8472)]
    assert s.controller_config_of("controller") == s.controller_config
    assert ha.controller_identity(s, "controller-3") == "@controller-3"
    assert s.relays == ["relay-1", "relay-2"]
    # the agents get every relay, not the root broker
    assert s.agent_brokers == ["mqtt://198.18.7.254:1884", "mqtt://198.18.7.254:1885"]
    assert s.store_url == f"postgresql://plexus@/postgres?host={s.dir / 'postgres'}"
    conf = ha.controller_config(s, "controller-2")
    assert 'replica = "controller-2"' in conf and "127.0.0.1:8471" in conf
    assert f'api_token_file = "{s.dir / "api-token"}"' in conf
    marks = s.marks()
    assert {str(s.controller_config_of("controller-3")), str(s.relay_dir("relay-2"))} <= marks
    assert str(s.postgres_dir / "data") in marks  # the postmaster's -D
    assert s.log("relay-1").name == "relay-1.log" and s.log("controller-2").name.endswith(".log")


def test_a_lab_store_is_sqlite_postgresql_or_a_url() -> None:
    assert ha.check_store("postgresql") == "postgresql"
    assert ha.check_store("postgresql://u@db/plexus") == "postgresql://u@db/plexus"
    with pytest.raises(LabError, match="--store"):
        ha.check_store("mysql")


def test_state_file_round_trip(tmp_path: Path) -> None:
    s = spec(tmp_path)
    assert LabSpec.load(s.dir) is None
    s.pids["broker"] = 42
    s.save()
    assert LabSpec.load(s.dir) == s
    (s.dir / "lab.json").write_text("{")
    with pytest.raises(LabError, match="cannot read the lab's state"):
        LabSpec.load(s.dir)


def test_host_ids_are_checked() -> None:
    with pytest.raises(LabError, match="between 1 and"):
        host_ids(0, "h")
    with pytest.raises(LabError, match="--host-prefix"):
        host_ids(2, "Bad:")


def test_free_subnet_skips_what_is_in_use() -> None:
    used = [ipaddress.IPv4Network(n) for n in ("198.18.1.0/24", "198.18.2.64/26", "10.0.0.0/8")]
    assert free_subnet(used) == "198.18.3.0/24"
    with pytest.raises(LabError, match="no free /24"):
        free_subnet([ipaddress.IPv4Network("198.18.0.0/15")])


def test_broker_config_has_what_the_wire_contract_needs(tmp_path: Path) -> None:
    text = mosquitto.config([("127.0.0.1", 1883), ("198.18.7.254", 1883)], tmp_path / "m.log")
    lines = text.splitlines()
    assert "listener 1883 127.0.0.1" in lines and "listener 1883 198.18.7.254" in lines
    assert "set_tcp_nodelay true" in lines and "persistence false" in lines
    assert f"log_dest file {tmp_path / 'm.log'}" in lines
    assert "max_packet_size 1052672" in lines
    assert "log_dest stderr" in mosquitto.config([("0.0.0.0", 1883)])
    with pytest.raises(ValueError, match="at least one listener"):
        mosquitto.config([])


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("0.0.0.0:1883", ("0.0.0.0", 1883)), ("broker", ("broker", 1883)), ("[::1]:9", ("::1", 9))],
)
def test_parse_listen(value: str, parsed: tuple[str, int]) -> None:
    assert mosquitto.parse_listen(value) == parsed


@pytest.mark.parametrize("value", ["h:0", "h:65536", ":1883", "h:x"])
def test_parse_listen_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="not HOST:PORT"):
        mosquitto.parse_listen(value)
