"""Runtime-owned compartments on the real kernel: the agent plumbs endpoints into a
namespace someone else made (named by path and inode), under the interface name asked
for; it never creates or deletes that namespace and touches nothing in it but its own
interfaces; a namespace that vanishes (the container was killed) or is replaced at its
path is reported, and the controller collects its endpoints."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable
from typing import Any

import pytest
from pyroute2 import IPRoute

from agents.kernel import netns
from proto import names
from tests.kernel.lab import Lab
from tests.kernel.test_modes import sh
from tests.kernel.test_overlay import hosts_online, post
from tests.support import InProcessController, wait_for

pytestmark = pytest.mark.kernel


def ns_run(path: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={path}", *cmd], capture_output=True, text=True)


def links(path: str) -> dict[str, dict[str, Any]]:
    """Name → {index, mac, mtu, addresses} of the links in the namespace at ``path`` (or
    the named namespace ``path``)."""

    def read() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with IPRoute(fileno=netns.netlink_socket()) as ipr:
            for ln in ipr.link("dump"):
                out[ln.get("ifname")] = {
                    "index": ln["index"],
                    "mac": ln.get("address"),
                    "mtu": ln.get("mtu"),
                    "addresses": [],
                }
            by_index = {v["index"]: v for v in out.values()}
            for a in ipr.addr("dump", family=2):
                # (a link made since the links' dump, while the agent repairs: not seen)
                if a["index"] in by_index:
                    by_index[a["index"]]["addresses"].append(f"{a.get('address')}/{a['prefixlen']}")
        return out

    if not path.startswith("/"):
        return netns.run_in(path, read)
    fd = os.open(path, os.O_RDONLY)
    try:
        return netns.run_in(names.runtime_netns(path, os.fstat(fd).st_ino), read)
    finally:
        os.close(fd)


async def _is(value: Awaitable[str], want: str) -> bool:
    return await value == want


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


async def in_sync(ctl: InProcessController, host: str) -> bool:
    return bool((await ctl.http.get(f"/v1/hosts/{host}")).json()["in_sync"])


async def attach(
    ctl: InProcessController, host: str, comp: str, path: str, net: str, **kw: Any
) -> dict[str, Any]:
    ref = {"path": path, "inode": os.stat(path).st_ino, "container": f"ctr-{comp}"}
    await post(ctl, "/v1/compartments", {"id": comp, "host": host, "netns": ref})
    return await post(ctl, "/v1/endpoints", {"network": net, "compartment": comp, **kw})


async def test_endpoints_are_plumbed_into_a_runtimes_namespace_and_only_theirs_removed(
    ctl: InProcessController, lab: Lab
) -> None:
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    dns = {"nameservers": ["10.1.0.53"], "search": ["blue.example"]}
    await post(ctl, "/v1/networks", {"id": "blue", "subnet": "10.1.0.0/24", "dns": dns})
    a = lab.runtime_netns()  # /run/netns/…, as podman binds them
    b = lab.runtime_netns(held=True)  # /proc/PID/ns/net, as containerd hands them over
    # something of the runtime's own in the namespace, which Plexus must leave alone
    assert (
        ns_run(
            a, "ip", "link", "add", "keepme", "type", "veth", "peer", "name", "keepme-p"
        ).returncode
        == 0
    )

    e1 = await attach(ctl, h1, "ca", a, "blue", ifname="eth0")
    e2 = await attach(ctl, h2, "cb", b, "blue", ifname="net1", mac="02:00:00:aa:bb:01")
    assert e1["interface"] == "eth0" and e2["interface"] == "net1"
    assert e1["host_mac"] == names.host_mac(e1["id"]) and e1["resolver"]["nameservers"]
    comp = (await ctl.http.get("/v1/compartments/cb")).json()
    assert comp["netns"] == {"path": b, "inode": os.stat(b).st_ino, "container": "ctr-cb"}

    seen = await asyncio.to_thread(links, b)
    assert seen["net1"]["mac"] == "02:00:00:aa:bb:01"
    assert seen["net1"]["addresses"] == [f"{e2['ip']}/24"]
    assert seen["net1"]["mtu"] == 1450
    route = ns_run(b, "ip", "-4", "route", "show", "default")
    assert f"via {e2['gateway']} dev net1" in route.stdout, route
    ping = await asyncio.to_thread(ns_run, a, "ping", "-c", "3", "-i", "0.2", "-W", "2", e2["ip"])
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # the host end has the MAC the API names (a CNI result gives it)
    host_links = await asyncio.to_thread(links, lab.hostns[h1])
    assert host_links[e1["host_interface"]]["mac"] == e1["host_mac"]

    # drift inside the runtime's namespace is repaired by the next full pass
    assert ns_run(a, "ip", "addr", "flush", "dev", "eth0").returncode == 0
    await wait_for(
        lambda: links(a).get("eth0", {}).get("addresses") == [f"{e1['ip']}/24"],
        timeout=30,
        what="repair",
    )

    # a restarted agent adopts what is there: the same interface, not a new one
    before = (await asyncio.to_thread(links, a))["eth0"]["index"]
    lab.stop_agent(h1)

    async def state(host: str) -> str:
        return str((await ctl.http.get(f"/v1/hosts/{host}")).json()["state"])

    await wait_for(lambda: _is(state(h1), "offline"), timeout=30, what="h1 offline")
    lab.start_agent(h1)
    await hosts_online(ctl, lab)
    await wait_for(lambda: in_sync(ctl, h1), timeout=30, what="h1 in sync after its restart")
    assert (await asyncio.to_thread(links, a))["eth0"]["index"] == before

    # deleted: the agent's interface leaves the namespace; the namespace and the
    # runtime's own link stay
    r = await ctl.http.delete("/v1/compartments/ca?force=true&wait=true&timeout=10")
    assert r.status_code == 200 and r.json()["convergence"]["converged"], r.text
    assert h1 in r.json()["convergence"]["hosts"], r.text
    left = await asyncio.to_thread(links, a)
    assert "eth0" not in left and "keepme" in left and await asyncio.to_thread(os.path.exists, a)

    # an interface name the runtime's own link holds: refused, reported, left alone
    ref = {"path": a, "inode": os.stat(a).st_ino}
    await post(ctl, "/v1/compartments", {"id": "cz", "host": h1, "netns": ref})
    r = await ctl.http.post(
        "/v1/endpoints?wait=true&timeout=3",
        json={"network": "blue", "compartment": "cz", "ifname": "keepme"},
    )
    assert r.status_code == 201 and not r.json()["convergence"]["converged"], r.text

    async def reported() -> bool:
        errors = (await ctl.http.get(f"/v1/hosts/{h1}")).json()["errors"]
        return any("keepme exists in /run/netns/" in e for e in errors)

    await wait_for(reported, timeout=30, what="the refusal in h1's status")
    kept = (await asyncio.to_thread(links, a))["keepme"]
    assert kept["addresses"] == [] and kept["mtu"] == 1500
    r = await ctl.http.delete("/v1/compartments/cz?force=true&wait=true&timeout=10")
    assert r.json()["convergence"]["converged"], r.text
    assert "keepme" in await asyncio.to_thread(links, a)


async def test_a_vanished_or_replaced_namespace_is_collected_and_never_plumbed(
    ctl: InProcessController, lab: Lab
) -> None:
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    await post(ctl, "/v1/networks", {"id": "blue", "subnet": "10.1.0.0/24"})
    killed = lab.runtime_netns(held=True)
    e1 = await attach(ctl, h1, "k", killed, "blue", ifname="eth0")
    named = lab.runtime_netns()
    await attach(ctl, h2, "r", named, "blue", ifname="eth0")

    # the container is killed without a CNI DEL: its namespace goes with its process
    holder = next(p for p in lab.holders if killed == f"/proc/{p.pid}/ns/net")
    holder.kill()
    holder.wait()

    async def collected(ep: str) -> bool:
        return (await ctl.http.get(f"/v1/endpoints/{ep}")).status_code == 404

    await wait_for(lambda: collected(e1["id"]), timeout=30, what="the endpoint collected")
    assert (await ctl.http.get("/v1/compartments/k")).status_code == 404

    await wait_for(lambda: in_sync(ctl, h1), timeout=30, what="h1 in sync again")

    # the other host no longer holds the endpoint in its overlay
    # (its static entry towards h1's VTEP; the bridge may still have learned the MAC)
    async def forwarded() -> bool:
        fdb = await sh(*lab.nsenter(lab.hostns[h2]), "bridge", "fdb", "show")
        return any(e1["mac"] in ln and " dst " in ln for ln in fdb.stdout.splitlines())

    await wait_for(lambda: _not(forwarded()), timeout=30, what="h2's FDB entry removed")

    # another namespace at the same path (a recycled name) is not the compartment's
    name = named.rsplit("/", 1)[1]
    netns.remove(name)
    netns.create(name)

    async def compartment_gone() -> bool:
        return (await ctl.http.get("/v1/compartments/r")).status_code == 404

    await wait_for(compartment_gone, timeout=30, what="the replaced one collected")
    assert "eth0" not in await asyncio.to_thread(links, named)
    await wait_for(lambda: in_sync(ctl, h2), timeout=30, what="h2 in sync again")


async def test_a_runtimes_own_default_route_is_never_replaced(
    ctl: InProcessController, lab: Lab
) -> None:
    """Another plugin routed the container's default: Plexus's endpoint that would route
    it too is refused and reported; one that does not is plumbed beside it."""
    await hosts_online(ctl, lab)
    h1 = lab.hosts[0]
    await post(ctl, "/v1/networks", {"id": "blue", "subnet": "10.1.0.0/24"})
    await post(ctl, "/v1/networks", {"id": "red", "subnet": "10.2.0.0/24"})
    a = lab.runtime_netns()
    for cmd in (
        ("ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1"),
        ("ip", "addr", "add", "192.168.77.2/24", "dev", "other0"),
        ("ip", "link", "set", "other0", "up"),
        ("ip", "route", "add", "default", "via", "192.168.77.1"),
    ):
        assert ns_run(a, *cmd).returncode == 0, cmd
    foreign = "default via 192.168.77.1 dev other0"
    ref = {"path": a, "inode": os.stat(a).st_ino}
    await post(ctl, "/v1/compartments", {"id": "c", "host": h1, "netns": ref})
    r = await ctl.http.post(
        "/v1/endpoints?wait=true&timeout=3",
        json={"network": "blue", "compartment": "c", "ifname": "eth0", "default_route": True},
    )
    assert r.status_code == 201 and not r.json()["convergence"]["converged"], r.text

    async def reported() -> bool:
        errors = (await ctl.http.get(f"/v1/hosts/{h1}")).json()["errors"]
        return any("a default route not Plexus's is in /run/netns/" in e for e in errors)

    await wait_for(reported, timeout=30, what="the refusal in h1's status")
    assert foreign in ns_run(a, "ip", "-4", "route", "show", "default").stdout
    # without a default route of its own, an endpoint is plumbed beside the runtime's
    r = await ctl.http.delete("/v1/compartments/c?force=true&wait=true&timeout=10")
    assert r.json()["convergence"]["converged"], r.text
    await post(ctl, "/v1/compartments", {"id": "d", "host": h1, "netns": ref})
    e = await post(
        ctl,
        "/v1/endpoints",
        {"network": "red", "compartment": "d", "ifname": "eth1", "default_route": False},
    )
    assert (await asyncio.to_thread(links, a))["eth1"]["addresses"] == [f"{e['ip']}/24"]
    (only,) = ns_run(a, "ip", "-4", "route", "show", "default").stdout.strip().splitlines()
    assert only.startswith(foreign)
    await wait_for(lambda: in_sync(ctl, h1), timeout=30, what="h1 in sync")
