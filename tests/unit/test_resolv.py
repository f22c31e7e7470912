"""A compartment's resolv.conf from its networks' DNS settings, and the files the driver
keeps for them (in a temporary directory standing for /etc/netns)."""

from __future__ import annotations

from pathlib import Path

import pytest

import proto
import proto.models
from agents.errors import KernelError
from agents.kernel import resolv as files
from agents.resolv import HEADER, resolv_conf
from proto import names


def spec(net: str, dns: dict[str, object] | None) -> proto.NetworkSpec:
    return proto.NetworkSpec.model_validate(
        {"id": net, "mode": "nat", "subnet": "10.9.0.0/24", "gateway": "10.9.0.1", "dns": dns},
        strict=False,
    )


def ep(net: str, index: int, default: bool = False) -> proto.LocalEndpoint:
    return proto.LocalEndpoint(
        id=f"e-{net}",
        network=net,
        index=index,
        mac=f"02:00:00:00:00:0{index + 1}",
        ip=f"10.9.{index}.5",
        prefixlen=24,
        default_route=default,
    )


def test_the_default_route_network_comes_first_and_entries_are_kept_once() -> None:
    nets = {
        "a": spec("a", {"nameservers": ["10.0.0.2", "10.0.0.3"], "search": ["a.example"]}),
        "b": spec(
            "b",
            {
                "nameservers": ["10.0.0.9", "10.0.0.2"],
                "domain": "b.example",
                "options": ["ndots:2"],
            },
        ),
        "c": spec("c", None),
    }
    comp = proto.Compartment(id="c1", endpoints=(ep("a", 0), ep("b", 1, default=True), ep("c", 2)))
    assert resolv_conf(comp, nets) == HEADER + (
        "nameserver 10.0.0.9\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
        "search b.example a.example\noptions ndots:2\n"
    )
    assert resolv_conf(proto.Compartment(id="c2", endpoints=(ep("c", 0),)), nets) is None
    assert resolv_conf(proto.Compartment(id="c3"), nets) is None


def test_an_endpoints_own_settings_come_before_its_networks() -> None:
    nets = {"a": spec("a", {"nameservers": ["10.0.0.2"], "search": ["a.example"]})}
    own = ep("a", 0).model_copy(
        update={"dns": proto.models.Dns(nameservers=("10.7.0.1",), options=("edns0",))}
    )
    comp = proto.Compartment(id="c1", endpoints=(own,))
    assert resolv_conf(comp, nets) == HEADER + (
        "nameserver 10.7.0.1\nnameserver 10.0.0.2\nsearch a.example\noptions edns0\n"
    )
    # an endpoint's settings alone, in a network without any, make a file too
    assert resolv_conf(comp, {"a": spec("a", None)}) == HEADER + (
        "nameserver 10.7.0.1\noptions edns0\n"
    )


def test_files_are_written_read_back_and_removed_only_when_ours(tmp_path: Path) -> None:
    mine, other = names.netns("h1", "c1"), names.netns("h2", "c1")
    files.write(tmp_path, mine, HEADER + "nameserver 10.0.0.2\n")
    files.write(tmp_path, other, HEADER + "nameserver 10.0.0.3\n")
    (tmp_path / "plexus:h1:hand").mkdir()
    (tmp_path / "plexus:h1:hand" / "resolv.conf").write_text("nameserver 1.1.1.1\n")
    assert files.read(tmp_path, names.netns_prefix("h1")) == {
        mine: HEADER + "nameserver 10.0.0.2\n"
    }
    files.remove(tmp_path, mine)
    files.remove(tmp_path, "plexus:h1:hand")  # not written by the agent: left alone
    assert not (tmp_path / mine).exists()
    assert (tmp_path / "plexus:h1:hand" / "resolv.conf").exists()
    assert files.read(tmp_path, names.netns_prefix("h1")) == {}
    files.remove(tmp_path, mine)  # nothing there: no error
    (tmp_path / names.netns("h1", "empty")).mkdir()  # a directory without the file
    assert files.read(tmp_path, names.netns_prefix("h1")) == {}


def test_an_option_is_kept_once_by_name_the_default_routes_first() -> None:
    nets = {
        "a": spec("a", {"options": ["ndots:1", "edns0"]}),
        "b": spec("b", {"options": ["ndots:5", "rotate"]}),
    }
    comp = proto.Compartment(id="c1", endpoints=(ep("a", 0, default=True), ep("b", 1)))
    assert resolv_conf(comp, nets) == HEADER + "options ndots:1 edns0 rotate\n"


def test_a_resolv_conf_the_agent_did_not_write_is_not_replaced(tmp_path: Path) -> None:
    ns = names.netns("h1", "c1")
    (tmp_path / ns).mkdir()
    (tmp_path / ns / "resolv.conf").write_text("nameserver 1.1.1.1\n")
    with pytest.raises(KernelError, match="did not write"):
        files.write(tmp_path, ns, HEADER + "nameserver 10.0.0.2\n")
    assert (tmp_path / ns / "resolv.conf").read_text() == "nameserver 1.1.1.1\n"
