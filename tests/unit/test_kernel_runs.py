"""The messages of the driver's runs on a thread of their own (:mod:`agents.kernel.runs`,
:mod:`agents.kernel.veths`) are byte for byte what pyroute2 sends for the same requests
(the slow way's, one at a time), but for the sequence number; which actions go in a
run."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from pyroute2.iproute.linux import IPBatch

from agents import plan as p
from agents.kernel.runs import encode_route, run_of
from agents.kernel.veths import (
    NO_IPV6,
    encode_add,
    encode_address,
    encode_alias,
    encode_no_ipv6,
    encode_up,
)
from agents.model import HANDOVER, Veth
from proto import names

VETH = Veth(
    names.veth("e1"), "e1", "pxb1", "plexus:h1:c1", "eth0", "02:00:0a:0b:0c:0d", "10.1.2.3/16", 1450
)


def pyroute2_bytes(request: Callable[[Any], object]) -> bytes:
    ipb = IPBatch()
    request(ipb)
    data = bytes(ipb.batch)
    ipb.close()
    return data


def without_seq_and_pid(data: bytes) -> bytes:
    return data[:8] + b"\0" * 8 + data[16:]


def same(ours: bytes, theirs: bytes) -> None:
    assert struct.unpack_from("=I", ours)[0] == len(ours)
    assert struct.unpack_from("=I", ours, 8)[0] == 7
    assert without_seq_and_pid(ours) == without_seq_and_pid(theirs)


@pytest.mark.parametrize(
    "veth",
    [
        VETH,
        Veth("pxe-x", "a-much-longer-endpoint-id", "pxb2", "/proc/1/ns/net", "net1",
             "02:ff:ff:ff:ff:ff", "192.168.255.254/31", 9000),
    ],
)  # fmt: skip
def test_the_add_is_pyroute2s(veth: Veth) -> None:
    peer = {"ifname": veth.inner, "net_ns_fd": 37, "address": veth.mac, "mtu": veth.mtu}
    theirs = pyroute2_bytes(
        lambda b: b.link(
            "add",
            state="up",
            ifname=veth.name,
            kind="veth",
            address=names.host_mac(veth.endpoint),
            mtu=veth.mtu,
            master=12,
            peer=peer,
        )
    )
    same(encode_add(veth, 12, 37, 7), theirs)


def test_the_alias_the_address_no_ipv6_and_up_are_pyroute2s() -> None:
    alias = names.alias("veth", "e1")
    same(
        encode_alias(9, alias, 7),
        pyroute2_bytes(lambda b: b.link("set", index=9, ifalias=alias, state="up")),
    )
    same(
        encode_address(2, "10.1.2.3/16", 7),
        pyroute2_bytes(lambda b: b.addr("add", index=2, address="10.1.2.3", prefixlen=16)),
    )
    same(encode_up(2, 7), pyroute2_bytes(lambda b: b.link("set", index=2, state="up")))
    same(
        encode_no_ipv6(2, 7),
        pyroute2_bytes(lambda b: b.link("set", index=2, IFLA_AF_SPEC=NO_IPV6)),
    )


@pytest.mark.parametrize("gateway", ["10.1.0.1", None])
def test_the_default_route_is_pyroute2s(gateway: str | None) -> None:
    if gateway is None:
        theirs = pyroute2_bytes(lambda b: b.route("del", dst="0.0.0.0/0", table=254))
    else:
        theirs = pyroute2_bytes(
            lambda b: b.route("replace", dst="0.0.0.0/0", gateway=gateway, table=254)
        )
    same(encode_route(gateway, 7), theirs)


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        (p.AddVeth(VETH), "addveth"),
        (p.AddVeth(replace(VETH, netns="/proc/1/ns/net@4026531840")), "addveth"),
        (p.AddVeth(replace(VETH, netns=HANDOVER)), None),
        (p.SetRoute("plexus:h1:c1", "10.1.0.1"), "route"),
        (p.SetRoute("/proc/1/ns/net@4026531840", "10.1.0.1"), None),
        (p.AddNamespace("plexus:h1:c1"), "netns"),
        (p.DelVeth("pxe1"), "dellink"),
        (p.DelNamespace("plexus:h1:c1"), None),
    ],
)
def test_which_actions_go_in_a_run(action: p.Action, kind: str | None) -> None:
    assert run_of(action) == kind
