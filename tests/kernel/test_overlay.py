"""Real kernel: agents in host namespaces program compartments and VXLAN overlays."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agents.kernel import netns
from agents.kernel.netns import in_netns
from agents.kernel.tune import ARP_RETRANS_MS
from proto import names
from tests.kernel.lab import Lab
from tests.support import InProcessController, wait_for

pytestmark = pytest.mark.kernel


async def hosts_online(ctl: InProcessController, lab: Lab) -> None:
    """Until every agent of the lab reported online (agent processes start cold: on a
    busy machine that took more than the 10 s this used to allow)."""

    async def online() -> bool:
        hosts = (await ctl.http.get("/v1/hosts")).json()
        return {h["id"] for h in hosts if h["state"] == "online"} >= set(lab.hosts)

    await wait_for(online, timeout=60, what=f"hosts {', '.join(lab.hosts)} online")


async def post(ctl: InProcessController, path: str, body: dict[str, Any]) -> dict[str, Any]:
    sep = "&" if "?" in path else "?"
    r = await ctl.http.post(f"{path}{sep}wait=true&timeout=10", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    conv = data.get("convergence")
    assert conv is None or conv["converged"], conv
    return data


async def endpoint(
    ctl: InProcessController, host: str, comp: str, net: str, **kw: Any
) -> dict[str, Any]:
    if (await ctl.http.get(f"/v1/compartments/{comp}")).status_code == 404:
        await post(ctl, "/v1/compartments", {"id": comp, "host": host})
    return await post(ctl, "/v1/endpoints", {"network": net, "compartment": comp, **kw})


async def test_agent_programs_compartment_and_overlay(ctl: InProcessController, lab: Lab) -> None:
    """Links, addresses, routes, FDB and neighbours checked through netlink dumps."""
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    await post(ctl, "/v1/networks", {"id": "blue", "subnet": "10.1.0.0/24", "vni": 100})
    e1 = await endpoint(ctl, h1, "c1", "blue")
    e2 = await endpoint(ctl, h2, "c2", "blue")

    def check() -> None:
        with netns.iproute(lab.hostns[h1]) as ipr:
            links = {ln.get("ifname"): ln for ln in ipr.get_links()}
            br = links[names.bridge("blue")]
            vx = links[names.vxlan("blue")]
            veth = links[names.veth(e1["id"])]
            assert br.get("ifalias") == "plexus:bridge:blue" and br.get("mtu") == 1450
            data = vx.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
            assert (
                data.get("IFLA_VXLAN_ID"),
                data.get("IFLA_VXLAN_LOCAL"),
                data.get("IFLA_VXLAN_LEARNING"),
                data.get("IFLA_VXLAN_PORT"),
            ) == (100, lab.vtep[h1], 0, 4789)
            assert vx.get("master") == br["index"] and veth.get("master") == br["index"]
            # the gateway is the router's, not the bridge's: the bridge has no IPv4 address
            assert ipr.get_addr(index=br["index"], family=2) == ()
            gw_leg = links[names.gateway_leg("blue")]
            assert gw_leg.get("master") == br["index"]
            fdb = {
                (f.get("lladdr"), f.get("dst"))
                for f in ipr.fdb("dump")
                if f["ifindex"] == vx["index"] and f.get("dst")
            }
            assert fdb == {(e2["mac"], lab.vtep[h2]), ("00:00:00:00:00:00", lab.vtep[h2])}
            neigh = {
                (n.get("dst"), n.get("lladdr")) for n in ipr.get_neighbours(ifindex=vx["index"])
            }
            assert (e2["ip"], e2["mac"]) in neigh
            assert "uplink" in links  # the host's own link is untouched
        with netns.iproute(lab.compartment_ns(h1, "c1")) as ipr:
            (eth0,) = ipr.get_links(ifname="eth0")
            assert (eth0.get("address"), eth0.get("mtu")) == (e1["mac"], 1450)
            assert eth0["flags"] & 1
            addrs = {
                (a.get("address"), a["prefixlen"])
                for a in ipr.get_addr(index=eth0["index"], family=2)
            }
            assert addrs == {(e1["ip"], 24)}
            default = [r for r in ipr.get_routes(family=2, table=254) if r["dst_len"] == 0]
            assert [r.get("gateway") for r in default] == ["10.1.0.1"]
        with netns.iproute(names.router_netns(h1, "blue")) as ipr:
            (gw,) = ipr.get_links(ifname="gw")
            assert gw.get("address") == names.leg_mac(h1, "blue", "gw")
            addrs = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(family=2)}
            assert addrs == {("10.1.0.1", 24), ("127.0.0.1", 8)}

    await asyncio.to_thread(check)
    assert await asyncio.to_thread(lab.wait_ping, h1, "c1", e2["ip"])

    # the compartment's neighbour tuning: announce on up, retry ARP after 100 ms
    tuned: dict[str, str] = {}

    def read_sysctls() -> None:
        base = Path("/proc/sys/net/ipv4")
        tuned["arp_notify"] = (base / "conf/default/arp_notify").read_text().strip()
        tuned["retrans"] = (base / "neigh/eth0/retrans_time_ms").read_text().strip()

    await in_netns(lab.compartment_ns(h1, "c1"), read_sysctls)
    assert tuned == {"arp_notify": "1", "retrans": str(ARP_RETRANS_MS)}
    # passes woken by messages ran on the agent's view of the kernel, each checked
    # against a full read (the lab fixture fails the test on any divergence)
    passes = [ln for ln in lab.agent_log(h1).read_text().splitlines() if "reconcile_pass" in ln]
    assert any('"full": false' in ln for ln in passes)

    # deletion removes the kernel objects on every host
    r = await ctl.http.delete(f"/v1/endpoints/{e2['id']}?wait=true&timeout=10")
    assert r.json()["convergence"]["converged"]

    def gone() -> None:
        with netns.iproute(lab.hostns[h2]) as ipr:
            assert not ipr.link_lookup(ifname=names.veth(e2["id"]))
        with netns.iproute(lab.hostns[h1]) as ipr:
            (vx_idx,) = ipr.link_lookup(ifname=names.vxlan("blue"))
            assert not [f for f in ipr.fdb("dump") if f["ifindex"] == vx_idx and f.get("dst")]

    await asyncio.to_thread(gone)
    assert not await asyncio.to_thread(lab.ping, h1, "c1", e2["ip"])


async def test_overlapping_subnets_on_two_vnis_are_isolated(
    ctl: InProcessController, lab: Lab
) -> None:
    """Two overlays on one subnet, on the same two hosts, even with one address in
    both on one host: each compartment reaches its own gateway, its peers on the other
    host and (outbound NAT, through its own router) a server outside, and never the
    other overlay's addresses."""
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    far = str(lab.spec.network[250])
    out = await asyncio.to_thread(lab.outside, far)
    await asyncio.to_thread(lab.serve, out, 9000, "outside")
    for net, vni in (("blue", 100), ("red", 200)):
        body = {"id": net, "subnet": "10.1.0.0/24", "vni": vni, "outbound_nat": True}
        await post(ctl, "/v1/networks", body)
    await endpoint(ctl, h1, "b1", "blue", ip="10.1.0.10")
    await endpoint(ctl, h2, "b2", "blue", ip="10.1.0.20")
    await endpoint(ctl, h1, "r1", "red", ip="10.1.0.10")  # blue's b1 address, same host
    await endpoint(ctl, h2, "r2", "red", ip="10.1.0.21")
    assert await asyncio.to_thread(lab.wait_ping, h1, "b1", "10.1.0.20")
    assert await asyncio.to_thread(lab.wait_ping, h1, "r1", "10.1.0.21")
    # blue cannot reach red's addresses, on another host or on its own
    assert not await asyncio.to_thread(lab.ping, h1, "b1", "10.1.0.21")
    assert not await asyncio.to_thread(lab.ping, h2, "r2", "10.1.0.20")
    # each reaches its own gateway (the same address, in two router namespaces)
    for host, comp in ((h1, "b1"), (h1, "r1"), (h2, "b2"), (h2, "r2")):
        assert await asyncio.to_thread(lab.ping, host, comp, "10.1.0.1"), comp

    def ask(host: str, comp: str, ip: str, port: int) -> str | None:
        return lab.ask(lab.compartment_ns(host, comp), ip, port)

    # both 10.1.0.10s on h1 reach outside, leaving with h1's address, and each gets its
    # own replies; also both at once (one connection each, through the same host)
    for comp in ("b1", "r1"):
        assert await asyncio.to_thread(ask, h1, comp, far, 9000) == f"outside {lab.vtep[h1]}"
    both = await asyncio.gather(*(asyncio.to_thread(ask, h1, c, far, 9000) for c in ("b1", "r1")))
    assert both == [f"outside {lab.vtep[h1]}"] * 2
    # a server in blue's b1 answers blue's b2, never red's r2 (in red that address is
    # r1's, which serves nothing)
    await asyncio.to_thread(lab.serve, lab.compartment_ns(h1, "b1"), 7000, "b1")
    assert await asyncio.to_thread(ask, h2, "b2", "10.1.0.10", 7000) == "b1 10.1.0.20"
    assert await asyncio.to_thread(ask, h2, "r2", "10.1.0.10", 7000) is None
