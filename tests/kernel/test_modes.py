"""Real kernel: every network mode in a lab of 2 hosts, with an extra namespace on the
underlay segment playing the outside world (a server the lab made, never a real
address). NAT is observed, not assumed: echo servers answer with the peer address
they saw."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest

from agents.kernel import netns
from proto import names
from tests.kernel.lab import Lab
from tests.kernel.test_overlay import endpoint, hosts_online, post
from tests.support import InProcessController, LogWatch, wait_for

pytestmark = pytest.mark.kernel


async def sh(*cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, list(cmd), input=stdin, capture_output=True, text=True
    )


async def ping_from(lab: Lab, ns: str, ip: str) -> bool:
    return (await sh(*lab.nsenter(ns), "ping", "-c", "1", "-W", "1", ip)).returncode == 0


def host_ip(lab: Lab, last: int) -> str:
    return str(lab.spec.network[last])


async def ask(lab: Lab, ns: str, host: str, port: int) -> str | None:
    return await asyncio.to_thread(lab.ask, ns, host, port)


def comp_ns(lab: Lab, host: str, comp: str) -> str:
    return lab.compartment_ns(host, comp)


async def ipv4(ns: str, ifname: str) -> list[str]:
    return await asyncio.to_thread(_ipv4, ns, ifname)


def _ipv4(ns: str, ifname: str) -> list[str]:
    with netns.iproute(ns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return []
        return [
            f"{a.get('address')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx[0], family=2)
        ]


async def test_nat_masquerades_and_publishes_ports(ctl: InProcessController, lab: Lab) -> None:
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    out = await asyncio.to_thread(lab.outside, f"{host_ip(lab, 250)}")
    await asyncio.to_thread(lab.serve, out, 9000, "outside")
    await post(ctl, "/v1/networks", {"id": "web", "mode": "nat", "subnet": "10.5.0.0/24"})
    ep = await endpoint(ctl, h1, "c1", "web", ports=[{"host_port": 8080, "port": 80}])
    assert ep["ports"] == ["8080:80/tcp"]
    await asyncio.to_thread(lab.serve, comp_ns(lab, h1, "c1"), 80, "c1")

    # outbound: the outside server sees the host's address, not the endpoint's
    seen = await ask(lab, comp_ns(lab, h1, "c1"), host_ip(lab, 250), 9000)
    assert seen == f"outside {lab.vtep[h1]}"
    # inbound: the published port, from another host and from the host itself
    assert (await ask(lab, lab.hostns[h2], lab.vtep[h1], 8080) or "").startswith("c1 ")
    assert (await ask(lab, lab.hostns[h1], lab.vtep[h1], 8080) or "").startswith("c1 ")
    assert (await ask(lab, out, lab.vtep[h1], 8080)) == f"c1 {host_ip(lab, 250)}"

    # a second endpoint on the same host reaches the first through the published port
    await endpoint(ctl, h1, "c2", "web")
    assert (await ask(lab, comp_ns(lab, h1, "c2"), lab.vtep[h1], 8080) or "").startswith("c1 ")

    # the same host port elsewhere on h1 is refused; on h2 it is free
    r = await ctl.http.post(
        "/v1/endpoints",
        json={"network": "web", "compartment": "c2", "ports": [{"host_port": 8080, "port": 1}]},
    )
    assert r.status_code == 409

    # closing the mapping closes the port
    r = await ctl.http.put(
        f"/v1/endpoints/{ep['id']}/ports?wait=true&timeout=10", json={"ports": []}
    )
    assert r.status_code == 200 and r.json()["convergence"]["converged"]
    assert await ask(lab, lab.hostns[h2], lab.vtep[h1], 8080) is None
    assert await ask(lab, lab.hostns[h1], lab.vtep[h1], 8080) is None
    # and masquerade still works
    assert await ask(lab, comp_ns(lab, h1, "c1"), host_ip(lab, 250), 9000) == (
        f"outside {lab.vtep[h1]}"
    )


async def test_internal_reaches_its_host_peers_and_nothing_else(
    ctl: InProcessController, lab: Lab
) -> None:
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    out = await asyncio.to_thread(lab.outside, host_ip(lab, 250))
    await asyncio.to_thread(lab.serve, out, 9000, "outside")
    await post(ctl, "/v1/networks", {"id": "iso", "mode": "internal", "subnet": "10.8.0.0/24"})
    i1 = await endpoint(ctl, h1, "i1", "iso")
    i2 = await endpoint(ctl, h1, "i2", "iso")
    await endpoint(ctl, h2, "i3", "iso", ip="10.8.0.50")
    # a nat network on the same host turns forwarding on: isolation must not depend on it
    await post(ctl, "/v1/networks", {"id": "web", "mode": "nat", "subnet": "10.5.0.0/24"})
    await endpoint(ctl, h1, "n1", "web")
    assert await ask(lab, comp_ns(lab, h1, "n1"), host_ip(lab, 250), 9000)

    assert await asyncio.to_thread(lab.wait_ping, h1, "i1", i2["ip"])
    assert not await asyncio.to_thread(lab.ping, h1, "i1", "10.8.0.50")  # h3's: another host
    assert not await asyncio.to_thread(lab.ping, h1, "i1", host_ip(lab, 250))
    assert not await asyncio.to_thread(lab.ping, h1, "i1", lab.vtep[h1])
    assert "default" not in (await sh(*lab.nsenter(comp_ns(lab, h1, "i1")), "ip", "route")).stdout
    assert i1["default_route"] is False

    # with a gateway the host is reachable, yet nothing is routed beyond it
    await post(
        ctl,
        "/v1/networks",
        {"id": "iso2", "mode": "internal", "subnet": "10.9.0.0/24", "gateway": "10.9.0.1"},
    )
    await endpoint(ctl, h1, "g1", "iso2")
    assert await asyncio.to_thread(lab.wait_ping, h1, "g1", "10.9.0.1")
    assert await ask(lab, comp_ns(lab, h1, "g1"), host_ip(lab, 250), 9000) is None
    assert not await asyncio.to_thread(lab.ping, h1, "g1", host_ip(lab, 250))


async def test_overlay_outbound_nat_with_exceptions(ctl: InProcessController, lab: Lab) -> None:
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    far, near = host_ip(lab, 250), host_ip(lab, 251)
    out = await asyncio.to_thread(lab.outside, far, near)
    await asyncio.to_thread(lab.serve, out, 9000, "outside")
    # the outside knows the way back to the overlay through h1: untranslated replies work
    route = await sh(*lab.nsenter(out), "ip", "route", "add", "10.20.0.0/24", "via", lab.vtep[h1])
    assert route.returncode == 0
    body = {
        "id": "ov",
        "subnet": "10.20.0.0/24",
        "vni": 300,
        "outbound_nat": True,
        "nat_exceptions": [f"{near}/32"],
    }
    await post(ctl, "/v1/networks", body)
    o1 = await endpoint(ctl, h1, "o1", "ov")
    o2 = await endpoint(ctl, h2, "o2", "ov")
    # each endpoint leaves through its own host, with that host's address
    assert await ask(lab, comp_ns(lab, h1, "o1"), far, 9000) == f"outside {lab.vtep[h1]}"
    assert await ask(lab, comp_ns(lab, h2, "o2"), far, 9000) == f"outside {lab.vtep[h2]}"
    # an exception is not translated
    assert await ask(lab, comp_ns(lab, h1, "o1"), near, 9000) == f"outside {o1['ip']}"
    # overlay peers on another host see each other's own addresses
    await asyncio.to_thread(lab.serve, comp_ns(lab, h2, "o2"), 7000, "o2")
    assert await ask(lab, comp_ns(lab, h1, "o1"), o2["ip"], 7000) == f"o2 {o1['ip']}"


async def test_transparent_bridges_the_uplink_and_gives_it_back(
    ctl: InProcessController, lab: Lab
) -> None:
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    out = await asyncio.to_thread(lab.outside, host_ip(lab, 250))
    hostns = lab.hostns[h1]
    vtep = f"{lab.vtep[h1]}/{lab.spec.network.prefixlen}"

    def links() -> dict[str, Any]:
        with netns.iproute(hostns) as ipr:
            return {ln.get("ifname"): ln for ln in ipr.get_links()}

    mac = (await asyncio.to_thread(links))["uplink"].get("address")
    body = {
        "id": "phys",
        "mode": "transparent",
        "subnet": lab.spec.subnet,
        "uplink": "uplink",
        "ip_range": f"{lab.spec.network[128]}/26",
    }
    await post(ctl, "/v1/networks", body)
    t1 = await endpoint(ctl, h1, "t1", "phys")
    assert t1["ip"] == str(lab.spec.network[128]) and t1["default_route"] is False

    br = names.bridge("phys")
    now = await asyncio.to_thread(links)
    assert now["uplink"].get("master") == now[br]["index"] and now[br].get("address") == mac
    assert await ipv4(hostns, br) == [vtep] and await ipv4(hostns, "uplink") == []
    # the segment reaches the endpoint, and the host keeps its own connectivity
    assert await asyncio.to_thread(lab.wait_ping, h1, "t1", host_ip(lab, 250))
    assert await ping_from(lab, out, t1["ip"])
    for target in (lab.spec.gateway, lab.vtep[h2]):
        assert await ping_from(lab, hostns, target), target
    # the agent, whose broker is reached through that very uplink, stays in sync
    await hosts_online(ctl, lab)

    # h2's agent is not allowed to enslave its "uplink": it refuses, says so, keeps it
    await post(ctl, "/v1/compartments", {"id": "t2", "host": h2})
    r = await ctl.http.post(
        "/v1/endpoints?wait=true&timeout=3", json={"network": "phys", "compartment": "t2"}
    )
    assert r.status_code == 201 and not r.json()["convergence"]["converged"]
    host2 = (await ctl.http.get(f"/v1/hosts/{h2}")).json()
    assert any("'uplink' is not in this host's allowed_uplinks" in e for e in host2["errors"])

    def uplink2() -> Any:
        with netns.iproute(lab.hostns[h2]) as ipr:
            return {ln.get("ifname"): ln for ln in ipr.get_links()}["uplink"]

    assert (await asyncio.to_thread(uplink2)).get("master") is None
    assert await ping_from(lab, lab.hostns[h2], lab.spec.gateway)
    r = await ctl.http.delete("/v1/compartments/t2?force=true&wait=true&timeout=10")
    assert r.status_code == 200, r.text

    r = await ctl.http.delete(f"/v1/endpoints/{t1['id']}?wait=true&timeout=10")
    assert r.json()["convergence"]["converged"]
    r = await ctl.http.delete("/v1/networks/phys?wait=true&timeout=10")
    assert r.status_code == 200

    for _ in range(100):
        if br not in await asyncio.to_thread(links):
            break
        await asyncio.sleep(0.1)
    assert br not in await asyncio.to_thread(links)
    assert await ipv4(hostns, "uplink") == [vtep]
    assert await ping_from(lab, hostns, lab.spec.gateway)


async def test_a_compartment_in_two_networks(ctl: InProcessController, lab: Lab) -> None:
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    await post(ctl, "/v1/networks", {"id": "blue", "subnet": "10.1.0.0/24", "vni": 100})
    await post(ctl, "/v1/networks", {"id": "web", "mode": "nat", "subnet": "10.5.0.0/24"})
    first = await endpoint(ctl, h1, "m", "blue")
    second = await endpoint(ctl, h1, "m", "web")
    assert (first["interface"], second["interface"]) == ("eth0", "eth1")
    assert first["default_route"] and not second["default_route"]
    peer_blue = await endpoint(ctl, h2, "pb", "blue")
    peer_web = await endpoint(ctl, h1, "pw", "web")
    assert await asyncio.to_thread(lab.wait_ping, h1, "m", peer_blue["ip"])
    assert await asyncio.to_thread(lab.wait_ping, h1, "m", peer_web["ip"])
    routes = (await sh(*lab.nsenter(comp_ns(lab, h1, "m")), "ip", "-4", "route")).stdout
    assert "default via 10.1.0.1 dev eth0" in routes
    assert "10.1.0.0/24 dev eth0" in routes and "10.5.0.0/24 dev eth1" in routes


async def nft(ns: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return await sh("nsenter", f"--net=/run/netns/{ns}", "nft", *args, stdin=stdin)


async def test_the_nftables_table_is_repaired_and_others_are_left_alone(
    ctl: InProcessController, lab: Lab
) -> None:
    await hosts_online(ctl, lab)
    h1, _ = lab.hosts
    ns = lab.hostns[h1]
    await post(ctl, "/v1/networks", {"id": "web", "mode": "nat", "subnet": "10.5.0.0/24"})
    await endpoint(ctl, h1, "c1", "web", ports=[{"host_port": 8080, "port": 80}])
    before = (await nft(ns, "list", "table", "inet", "plexus")).stdout
    assert "masquerade" in before and "dnat ip to" in before
    rules = before.count("comment")

    async def repaired() -> None:
        for _ in range(100):  # the lab's agents repair drift every 2 s
            listing = (await nft(ns, "list", "table", "inet", "plexus")).stdout
            if listing.count("comment") == rules:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the table was not repaired")

    assert (await nft(ns, "flush", "ruleset")).returncode == 0
    assert (await nft(ns, "list", "table", "inet", "plexus")).returncode != 0
    await repaired()

    # somebody else's table; then one of our rules deleted by hand
    mine = (
        "table ip usertest {\n chain c {\n type filter hook input priority 10;\n counter\n }\n}\n"
    )
    assert (await nft(ns, "-f", "-", stdin=mine)).returncode == 0
    listing = (await nft(ns, "-a", "list", "chain", "inet", "plexus", "postrouting")).stdout
    handle = next(ln.rsplit("# handle ", 1)[1] for ln in listing.splitlines() if "masq" in ln)
    gone = await nft(ns, "delete", "rule", "inet", "plexus", "postrouting", "handle", handle)
    assert gone.returncode == 0
    assert (await nft(ns, "list", "table", "inet", "plexus")).stdout.count("comment") < rules
    await repaired()
    assert "chain c" in (await nft(ns, "list", "table", "ip", "usertest")).stdout


async def test_a_restarted_agent_adopts_every_mode_with_zero_changes(
    ctl: InProcessController, lab: Lab
) -> None:
    """nat with a published port, internal, overlay with outbound NAT and transparent on
    one host: a killed and restarted agent finds it all as it should be."""
    from tests.kernel.test_resilience import in_sync, is_pass

    await hosts_online(ctl, lab)
    h1, _ = lab.hosts
    nets: list[dict[str, Any]] = [
        {"id": "web", "mode": "nat", "subnet": "10.5.0.0/24"},
        {"id": "iso", "mode": "internal", "subnet": "10.8.0.0/24"},
        {"id": "ov", "subnet": "10.20.0.0/24", "vni": 300, "outbound_nat": True},
        {"id": "phys", "mode": "transparent", "subnet": lab.spec.subnet, "uplink": "uplink",
         "ip_range": f"{lab.spec.network[128]}/26"},
    ]  # fmt: skip
    for i, net in enumerate(nets):
        await post(ctl, "/v1/networks", net)
        ports = [{"host_port": 8080, "port": 80}] if net.get("mode") == "nat" else []
        await endpoint(ctl, h1, f"m{i}", net["id"], **({"ports": ports} if ports else {}))
    # every host applied everything, not only what the last call waited for
    await wait_for(lambda: in_sync(ctl), what="every host in sync before the kill")
    await asyncio.to_thread(lab.kill_agent, h1)
    since_kill, watch = LogWatch(lab.agent_log(h1)), LogWatch(lab.agent_log(h1))
    await asyncio.to_thread(lab.start_agent, h1)
    await watch.wait(lambda ln: is_pass(ln, complete=True))
    after = [json.loads(ln) for ln in since_kill.lines() if is_pass(ln)]
    assert after and all(r["actions"] == 0 for r in after), after
    await wait_for(lambda: in_sync(ctl), what="every host in sync after the restart")


async def host_errors(ctl: InProcessController, host: str) -> list[str]:
    hosts = {h["id"]: h for h in (await ctl.http.get("/v1/hosts")).json()}
    return list(hosts[host]["errors"])


async def test_a_route_made_by_hand_in_a_networks_way_is_reported(
    ctl: InProcessController, lab: Lab
) -> None:
    """A route someone else made over a network's subnet takes its traffic: the host
    reports the conflict in its status (not in sync) until the route is gone."""
    await hosts_online(ctl, lab)
    h1, _ = lab.hosts
    await post(ctl, "/v1/networks", {"id": "web", "mode": "nat", "subnet": "10.88.0.0/24"})
    await endpoint(ctl, h1, "c1", "web")
    assert await host_errors(ctl, h1) == []
    hostns = lab.hostns[h1]
    add = await sh(*lab.nsenter(hostns), "ip", "route", "add", "10.88.0.0/25", "dev", "uplink")
    assert add.returncode == 0, add.stderr
    # the agent's next full pass (every 2 s in the lab) reads the kernel and reports
    errors = await wait_for(lambda: host_errors(ctl, h1), 15, "the conflict reported")
    assert len(errors) == 1 and "10.88.0.0/25 on uplink" in errors[0], errors
    assert "network web (10.88.0.0/24)" in errors[0]
    # the gateway is unreachable while the route is there: the report is true
    assert not await ping_from(lab, comp_ns(lab, h1, "c1"), "10.88.0.1")
    await sh(*lab.nsenter(hostns), "ip", "route", "del", "10.88.0.0/25", "dev", "uplink")

    async def clear() -> bool:
        return await host_errors(ctl, h1) == []

    await wait_for(clear, 15, "the conflict cleared")
    assert await ping_from(lab, comp_ns(lab, h1, "c1"), "10.88.0.1")
