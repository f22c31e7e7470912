"""A network's DNS settings reach its compartments on the real kernel: the agent writes
each compartment's resolv.conf where ``ip netns exec`` finds it, from the networks of
its endpoints (the default route's first), and removes it with the compartment."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.resolv import HEADER
from tests.kernel.lab import Lab
from tests.kernel.test_modes import comp_ns, sh
from tests.kernel.test_overlay import endpoint, hosts_online, post
from tests.support import InProcessController, wait_for

pytestmark = pytest.mark.kernel

ETC_NETNS = Path("/etc/netns")


async def test_a_networks_dns_settings_are_the_compartments_resolver(
    ctl: InProcessController, lab: Lab
) -> None:
    await hosts_online(ctl, lab)
    h1 = lab.hosts[0]
    dns = {"nameservers": ["10.1.0.53"], "search": ["Blue.Example"], "options": ["ndots:2"]}
    # nat networks only: no table refresh wakes a pass on the view while the test tampers
    blue = {"id": "blue", "mode": "nat", "subnet": "10.1.0.0/24", "dns": dns}
    created = await post(ctl, "/v1/networks", blue)
    assert created["dns"] == {**dns, "search": ["blue.example"], "domain": None}
    await post(ctl, "/v1/networks", {"id": "web", "mode": "nat", "subnet": "10.5.0.0/24"})
    await post(
        ctl,
        "/v1/networks",
        {
            "id": "corp",
            "mode": "nat",
            "subnet": "10.6.0.0/24",
            "dns": {"nameservers": ["10.6.0.53", "10.1.0.53"], "domain": "corp.example"},
        },
    )
    await endpoint(ctl, h1, "m", "web")  # no DNS settings: no file
    ns = comp_ns(lab, h1, "m")
    assert not (ETC_NETNS / ns).exists()
    await endpoint(ctl, h1, "m", "blue")
    await endpoint(ctl, h1, "m", "corp", default_route=True)
    want = HEADER + (
        "nameserver 10.6.0.53\nnameserver 10.1.0.53\n"
        "search corp.example blue.example\noptions ndots:2\n"
    )
    assert (ETC_NETNS / ns / "resolv.conf").read_text() == want
    # what a process in the compartment reads, through the iproute2 convention
    seen = await sh("ip", "netns", "exec", ns, "cat", "/etc/resolv.conf")
    assert seen.stdout == want, seen.stderr

    # an endpoint's own settings come before its network's, in its own compartment
    own = {"nameservers": ["10.5.0.53"], "search": ["own.example"]}
    e2 = await endpoint(ctl, h1, "o", "web", dns=own)
    assert e2["dns"] == {**own, "domain": None, "options": []}
    own_ns = comp_ns(lab, h1, "o")
    seen = await sh("ip", "netns", "exec", own_ns, "cat", "/etc/resolv.conf")
    assert seen.stdout == HEADER + "nameserver 10.5.0.53\nsearch own.example\n", seen.stderr
    r = await ctl.http.delete("/v1/compartments/o?force=true&wait=true&timeout=10")
    assert r.status_code == 200, r.text

    # removed by hand: repaired by the next full pass; with the compartment: gone
    (ETC_NETNS / ns / "resolv.conf").unlink()
    await wait_for((ETC_NETNS / ns / "resolv.conf").exists, timeout=60, what="the repair")
    assert (ETC_NETNS / ns / "resolv.conf").read_text() == want
    (ETC_NETNS / ns / "resolv.conf").unlink()  # and again, just before the delete
    r = await ctl.http.delete("/v1/compartments/m?force=true&wait=true&timeout=10")
    assert r.status_code == 200 and r.json()["convergence"]["converged"], r.text
    await wait_for(
        lambda: not (ETC_NETNS / ns).exists(), timeout=30, what=f"{ETC_NETNS / ns} removed"
    )
    assert not await asyncio.to_thread((ETC_NETNS / ns).exists)
