"""What stands in a network's way on a host, from plain values."""

from __future__ import annotations

import proto
from agents.conflicts import conflicts


def spec(ident: str, subnet: str, **kw: object) -> proto.NetworkSpec:
    return proto.NetworkSpec.model_validate({"id": ident, "subnet": subnet, **kw})


NAT = spec("web", "10.88.0.0/24", mode="nat", gateway="10.88.0.1")


def test_nothing_in_the_way() -> None:
    assert conflicts("h1", [NAT], [("198.18.1.0/24", "uplink"), ("127.0.0.0/8", "lo")]) == []


def test_a_foreign_route_or_address_over_the_subnet_is_reported() -> None:
    found = conflicts("h1", [NAT], [("10.88.0.0/25", "eth5"), ("10.0.0.0/8", "wg0")])
    assert len(found) == 2
    assert "10.88.0.0/25 on eth5" in found[0] and "network web (10.88.0.0/24)" in found[0]
    assert "10.0.0.0/8 on wg0" in found[1]


def test_a_default_route_is_not_in_the_way() -> None:
    assert conflicts("h1", [NAT], [("0.0.0.0/0", "eth0")]) == []


def test_two_of_the_hosts_networks_that_overlap_in_its_namespace() -> None:
    """An overlay's subnet is routed in the host's namespace only for its NAT
    exceptions' replies; otherwise its router keeps it apart."""
    kw = {"mode": "overlay", "vni": 5, "gateway": "10.88.1.1", "outbound_nat": True}
    routed = spec("ov", "10.88.0.0/16", nat_exceptions=("192.0.2.0/24",), **kw)
    (found,) = conflicts("h1", [NAT, routed], [])
    assert "network ov (10.88.0.0/16) overlaps network web (10.88.0.0/24)" in found
    assert conflicts("h1", [NAT, spec("ov", "10.88.0.0/16", **kw)], []) == []


def test_networks_without_an_address_on_the_host_may_overlap() -> None:
    l2 = spec("l2", "10.88.0.0/24", mode="overlay", vni=6)  # no gateway
    internal = spec("iso", "10.88.0.0/24", mode="internal")
    assert conflicts("h1", [NAT, l2, internal], [("10.88.0.0/24", "eth5")])[0].startswith(
        "network web"
    )
    assert conflicts("h1", [l2, internal], [("10.88.0.0/24", "eth5")]) == []


def test_a_transparent_networks_own_uplink_is_not_in_its_way() -> None:
    tr = spec("phys", "192.0.2.0/24", mode="transparent", uplink="eth1", uplinks={"h2": "eth2"})
    assert conflicts("h1", [tr], [("192.0.2.0/24", "eth1")]) == []
    assert conflicts("h2", [tr], [("192.0.2.0/24", "eth2")]) == []
    assert len(conflicts("h2", [tr], [("192.0.2.0/24", "eth1")])) == 1


def test_a_foreign_route_into_the_routers_transit_segment_is_reported() -> None:
    ov = spec("ov", "10.9.0.0/24", mode="overlay", vni=5, gateway="10.9.0.1", outbound_nat=True)
    zeroconf = ("169.254.0.0/16", "eth0")  # less specific than the transit /17: harmless
    assert conflicts("h1", [ov], [zeroconf]) == []
    (found,) = conflicts("h1", [ov], [zeroconf, ("169.254.17.0/24", "eth3")])
    assert "transit segment (169.254.0.0/17): 169.254.17.0/24 on eth3" in found
    no_nat = ov.model_copy(update={"outbound_nat": False})  # no router on the segment
    assert conflicts("h1", [no_nat], [("169.254.17.0/24", "eth3")]) == []
