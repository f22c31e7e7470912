"""Real kernel: the first packet to a new endpoint (issue 18). A peer that asked for an
address before its endpoint existed (its neighbour entry INCOMPLETE), or that holds
the MAC of the address's previous endpoint, is told the new MAC by its own host's agent
once that host can carry traffic to it, and does not wait for its ARP retry.

The proof is causal, not a timing: the peer's ARP retry is set to 10 minutes, so an
answer (and the neighbour entry holding the endpoint's MAC) within the test's deadline
comes from the announcement, however busy the machine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.kernel import netns
from agents.kernel.announce import Announcer
from agents.kernel.netns import in_netns
from lab.records import record_pid
from tests.kernel.lab import Lab
from tests.kernel.test_overlay import endpoint, hosts_online, post
from tests.support import InProcessController, wait_for

pytestmark = pytest.mark.kernel

#: the peers' ARP retry: far beyond every deadline of these tests
RETRY_MS = 600_000
#: an answer must come within this (the retry would take RETRY_MS)
DEADLINE = 60
NUD_INCOMPLETE, NUD_FAILED = 0x01, 0x20


def slow_retry(ns: str) -> None:
    """The compartment ``ns``'s ``eth0`` retries an unanswered ARP after RETRY_MS."""

    def write() -> None:
        Path("/proc/sys/net/ipv4/neigh/eth0/retrans_time_ms").write_text(str(RETRY_MS))

    netns.run_in(ns, write)


def neighbour(ns: str, ip: str) -> tuple[int, str | None] | None:
    """State and MAC of ``ns``'s neighbour entry for ``ip`` on eth0 (None: none)."""
    with netns.iproute(ns) as ipr:
        (eth0,) = ipr.link_lookup(ifname="eth0")
        for n in ipr.get_neighbours(ifindex=eth0, dst=ip):
            return int(n["state"]), n.get("lladdr")
    return None


async def asking(ns: str, ip: str) -> bool:
    """``ns`` asked for ``ip`` and got no answer: its entry is INCOMPLETE."""
    entry = await asyncio.to_thread(neighbour, ns, ip)
    return entry is not None and bool(entry[0] & (NUD_INCOMPLETE | NUD_FAILED))


@contextlib.asynccontextmanager
async def pinging(lab: Lab, ns: str, ip: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``ping`` from ``ns`` to ``ip`` every 200 ms until one reply (exit 0) or DEADLINE
    s (exit 1); killed on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *lab.nsenter(ns), "ping", "-c", "1", "-i", "0.2", "-w", str(DEADLINE), "-q", ip,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    record_pid(proc.pid)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def answered(proc: asyncio.subprocess.Process) -> bool:
    return await asyncio.wait_for(proc.wait(), DEADLINE + 30) == 0


#: (mode, where the peer is): a compartment on the other host across the overlay, one
#: on the same bridge, or (transparent) a machine on the uplink's segment
CASES = [
    ("overlay", "other host"),
    ("overlay", "same bridge"),
    ("nat", "same bridge"),
    ("transparent", "segment"),
]


@pytest.mark.parametrize(("mode", "where"), CASES, ids=[f"{m}-{w}" for m, w in CASES])
async def test_a_peer_that_asked_before_the_endpoint_existed_is_answered_at_once(
    ctl: InProcessController, lab: Lab, mode: str, where: str
) -> None:
    """The peer pings an address nobody has: its ARP goes unanswered (an overlay's
    proxy knows no such address). Then the endpoint is made (on h2; on h1 for the
    transparent network, whose uplink only h1 may enslave): the peer's entry takes the
    endpoint's MAC and its ping is answered, without an ARP retry."""
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    net: dict[str, object] = {"id": "blue", "mode": mode, "subnet": "10.7.0.0/24"}
    ip, home = "10.7.0.20", h2
    if mode == "overlay":
        net["vni"] = 700
    elif mode == "transparent":
        seg = lab.spec.network
        net.update(subnet=lab.spec.subnet, uplink="uplink", ip_range=f"{seg[128]}/26")
        ip, home = str(seg[140]), h1
    await post(ctl, "/v1/networks", net)
    if where == "segment":
        ns = await asyncio.to_thread(lab.outside, str(lab.spec.network[250]))
    else:
        host = h1 if where == "other host" else h2
        await endpoint(ctl, host, "peer", "blue", ip="10.7.0.10")
        ns = lab.compartment_ns(host, "peer")
    await asyncio.to_thread(slow_retry, ns)
    async with pinging(lab, ns, ip) as ping:
        await wait_for(lambda: asking(ns, ip), timeout=30, what=f"the peer asking for {ip}")
        new = await endpoint(ctl, home, "c1", "blue", ip=ip)
        assert await answered(ping), f"no answer from {ip}"
    state, mac = await asyncio.to_thread(neighbour, ns, ip) or (0, None)
    assert mac == new["mac"] and not state & (NUD_INCOMPLETE | NUD_FAILED), state


async def test_a_peer_holding_the_old_mac_of_a_reused_address_takes_the_new_one(
    ctl: InProcessController, lab: Lab
) -> None:
    """An address freed and given to a new endpoint (another MAC) on the other host: the
    peer's entry, valid with the old MAC, is overridden at once (it would otherwise
    keep sending to the old MAC until its entry is probed and fails)."""
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    await post(ctl, "/v1/networks", {"id": "blue", "subnet": "10.7.0.0/24", "vni": 701})
    await endpoint(ctl, h1, "peer", "blue", ip="10.7.0.10")
    ns = lab.compartment_ns(h1, "peer")
    await asyncio.to_thread(slow_retry, ns)
    old = await endpoint(ctl, h2, "c1", "blue", ip="10.7.0.30")
    assert await asyncio.to_thread(lab.wait_ping, h1, "peer", "10.7.0.30")
    assert (await asyncio.to_thread(neighbour, ns, "10.7.0.30") or (0, None))[1] == old["mac"]
    r = await ctl.http.delete(f"/v1/endpoints/{old['id']}?wait=true&timeout=10")
    assert r.json()["convergence"]["converged"]
    new = await endpoint(ctl, h2, "c2", "blue", ip="10.7.0.30")
    assert new["mac"] != old["mac"]

    async def new_mac() -> bool:
        entry = await asyncio.to_thread(neighbour, ns, "10.7.0.30")
        return entry is not None and entry[1] == new["mac"]

    await wait_for(new_mac, timeout=DEADLINE, what="the peer's entry taking the new MAC")
    async with pinging(lab, ns, "10.7.0.30") as ping:
        assert await answered(ping)


async def test_an_announcement_that_cannot_leave_is_dropped_not_raised(lab: Lab) -> None:
    """No such bridge (it went meanwhile): the frame is lost, as any frame may be."""
    announcer = Announcer()
    try:
        sent = await in_netns(
            lab.hostns[lab.hosts[0]],
            lambda: announcer.send("pxb-no-such", "10.7.0.1", "02:00:00:00:00:01"),
        )
    finally:
        announcer.close()
    assert sent is False
