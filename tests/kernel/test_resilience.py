"""Real kernel: restart without loss, fail static, hostile input at a running agent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path

import pytest

import proto
from agents.kernel import netns
from proto import topics
from tests.kernel.lab import Lab
from tests.kernel.test_overlay import endpoint, hosts_online, post
from tests.support import InProcessController, LogWatch, mqtt_client, wait_for

pytestmark = pytest.mark.kernel


def passes(log: Path, since: float = 0.0) -> list[dict[str, object]]:
    out = []
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "reconcile_pass" and rec.get("ts", 0) >= since:
            out.append(rec)
    return out


def start_ping(lab: Lab, host: str, comp: str, ip: str, count: int) -> subprocess.Popen[str]:
    ns = lab.compartment_ns(host, comp)
    return subprocess.Popen(
        [*lab.nsenter(ns), "ping", "-n", "-i", "0.01", "-c", str(count), "-W", "1", ip],
        stdout=subprocess.PIPE,
        text=True,
    )


def replying(proc: subprocess.Popen[str]) -> None:
    """Until the ping prints its first reply: packets are flowing (ping flushes each
    line; a ping that ends without one fails the test)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if "bytes from" in line:
            return
    raise AssertionError("the ping ended without a reply")


def loss(proc: subprocess.Popen[str]) -> tuple[int, int]:
    assert proc.stdout is not None
    out = proc.stdout.read()  # through the buffer :func:`replying` read from
    proc.wait(60)
    # "400 packets transmitted, 400 received, 0% packet loss, time 4012ms"
    line = next(ln for ln in out.splitlines() if "packets transmitted" in ln)
    sent = int(line.split()[0])
    received = int(line.split(", ")[1].split()[0])
    return sent, received


def netlink_monitor(lab: Lab, ns: str) -> subprocess.Popen[str]:
    """Every link, address and route change in ``ns``, one per line."""
    cmd = [*lab.nsenter(ns), "ip", "-o", "monitor", "link", "address", "route"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def is_pass(line: str, **fields: object) -> bool:
    """``line`` is an agent's ``reconcile_pass`` with ``fields`` (e.g. ``full=True``)."""
    if '"reconcile_pass"' not in line:
        return False
    rec = json.loads(line)
    return all(rec.get(k) == v for k, v in fields.items())


async def host_is(ctl: InProcessController, host: str, state: str) -> bool:
    return bool((await ctl.http.get(f"/v1/hosts/{host}")).json()["state"] == state)


async def in_sync(ctl: InProcessController) -> bool:
    """The controller reports every host online and holding everything."""
    status = (await ctl.http.get("/v1/status")).json()
    return bool(status["in_sync"]) and all(h["state"] == "online" for h in status["hosts"])


async def two_hosts_pinging(ctl: InProcessController, lab: Lab) -> str:
    await hosts_online(ctl, lab)
    h1, h2 = lab.hosts
    await post(ctl, "/v1/networks", {"id": "blue", "subnet": "10.1.0.0/24", "vni": 100})
    await endpoint(ctl, h1, "c1", "blue")
    e2 = await endpoint(ctl, h2, "c2", "blue")
    assert await asyncio.to_thread(lab.wait_ping, h1, "c1", e2["ip"])
    return str(e2["ip"])


def operstates(ns: str) -> dict[str, str]:
    """Each link's operational state in ``ns`` (``ifname`` → ``UP``, ``DOWN``, …)."""
    with netns.iproute(ns) as ipr:
        return {ln.get("ifname"): ln.get("operstate") for ln in ipr.get_links()}


async def settled(ns: str) -> bool:
    """Every bridge and veth of ``ns`` is operationally UP: the kernel announces such a
    transition (a bridge from UNKNOWN to UP once its ports have carrier) some time
    after the change that causes it, which a netlink monitor would count as a change.
    (VXLAN devices and ``lo`` stay UNKNOWN.)"""
    states = await asyncio.to_thread(operstates, ns)
    return all(
        state == "UP"
        for name, state in states.items()
        if name.startswith(("pxb", "pxe", "pxg", "pxr", "eth"))
    )


async def test_sigkill_and_restart_loses_no_packet_and_changes_nothing(
    ctl: InProcessController, lab: Lab
) -> None:
    h1, _ = lab.hosts
    peer = await two_hosts_pinging(ctl, lab)
    for ns in (lab.hostns[h1], lab.compartment_ns(h1, "c1")):
        await wait_for(lambda ns=ns: settled(ns), what=f"the links of {ns} settled")
    monitor = netlink_monitor(lab, lab.hostns[h1])
    cmon = netlink_monitor(lab, lab.compartment_ns(h1, "c1"))
    ping = start_ping(lab, h1, "c1", peer, 400)  # 4 s at 10 ms
    try:
        await asyncio.to_thread(replying, ping)
        lab.kill_agent(h1)
        lines_before = len(lab.agent_log(h1).read_text().splitlines())
        # the broker saw the agent die: the controller has its Last Will
        await wait_for(lambda: host_is(ctl, h1, "offline"), what=f"{h1} offline")
        watch = LogWatch(lab.agent_log(h1))
        lab.start_agent(h1)
        # the restarted agent becomes complete
        await watch.wait(lambda ln: is_pass(ln, complete=True))
        new = [
            json.loads(ln)
            for ln in lab.agent_log(h1).read_text().splitlines()[lines_before:]
            if ln.startswith("{")
        ]
        sent, received = await asyncio.to_thread(loss, ping)
    finally:
        monitor.terminate()
        cmon.terminate()
    # the kernel's own IPv6 link-local autoconfiguration (DAD finishing on links made
    # seconds ago) is not a change by the agent
    changes = "".join(
        ln
        for ln in (monitor.communicate()[0] + cmon.communicate()[0]).splitlines(True)
        if "fe80::" not in ln
    )
    assert (sent, received) == (400, 400)
    passes_after = [r for r in new if r.get("event") == "reconcile_pass"]
    assert passes_after and all(r["actions"] == 0 for r in passes_after), passes_after
    assert changes == "", changes
    # and reports it: its status after that pass reaches the controller
    await wait_for(lambda: in_sync(ctl), what="every host in sync")


async def test_fail_static_while_the_broker_is_down(ctl: InProcessController, lab: Lab) -> None:
    h1, h2 = lab.hosts
    peer = await two_hosts_pinging(ctl, lab)
    ping = start_ping(lab, h1, "c1", peer, 500)
    await asyncio.to_thread(replying, ping)
    logs = [LogWatch(lab.agent_log(h)) for h in lab.hosts]
    lab.broker.stop()
    for log in logs:  # every agent lost the broker, then made a full (periodic) pass
        await log.wait('"broker_disconnected"')
        full = json.loads(await log.wait(lambda ln: is_pass(ln, full=True)))
        assert (full["actions"], full["errors"]) == (0, 0), full  # fail static
    lab.broker.start()
    sent, received = await asyncio.to_thread(loss, ping)
    assert (sent, received) == (500, 500)
    await hosts_online(ctl, lab)
    await wait_for(ctl.rt.bus.connected.is_set, what="the controller reconnected")
    e3 = await endpoint(ctl, h2, "c3", "blue")  # converges again after the outage
    assert await asyncio.to_thread(lab.wait_ping, h1, "c1", e3["ip"])


async def test_hostile_input_is_rejected_and_the_agent_keeps_converging(
    ctl: InProcessController, lab: Lab
) -> None:
    h1, _ = lab.hosts
    peer = await two_hosts_pinging(ctl, lab)
    desired = topics.host_desired(h1)
    changes = topics.network_changes("blue")
    current = proto.decode(proto.encode(ctl.rt.publication.desired(h1)), proto.HostDesired)
    old = current.model_copy(update={"generation": 1})
    other = current.model_copy(update={"host": "intruder"})
    hostile = [
        (desired, b"\xc1\x00garbage"),
        (desired, b"\x80"),  # empty map
        (desired, b"A" * (proto.MAX_PAYLOAD + 10)),
        (desired, proto.encode(proto.NetworkSpec(id="x", mode="internal", subnet="10.9.0.0/24"))),
        (desired, proto.encode(other)),
        (desired, proto.encode(old)),
        (changes, b"\x93\x01\x02"),
        (changes, proto.encode(proto.NetworkChange(network="red", generation=99))),
        (
            topics.network_snapshot("blue", 0),
            proto.encode(
                proto.NetworkSnapshot(network="blue", generation=10**9, shard=0, shards=2)
            ),
        ),
    ]
    expected = {
        "malformed",
        "unsupported_version",
        "oversize",
        "wrong_kind",
        "other_host",
        "stale",
        "topic_mismatch",
    }

    def rejected() -> list[dict[str, object]]:
        return [
            json.loads(ln)
            for ln in lab.agent_log(h1).read_text().splitlines()
            if '"message_rejected"' in ln
        ]

    async with mqtt_client(lab.broker.url, "attacker") as m:
        for topic, payload in hostile:
            await m.publish(topic, payload, qos=1)
    with contextlib.suppress(TimeoutError):  # the assertions below say what is missing
        await wait_for(
            lambda: (
                expected <= {r["reason"] for r in rejected()} or lab.agents[h1].poll() is not None
            )
        )
    assert lab.agents[h1].poll() is None, "the agent died"
    reasons = {r["reason"] for r in rejected()}
    assert expected <= reasons, reasons
    assert all(r.get("detail") for r in rejected())
    # the dataplane is intact and a valid change still converges
    assert await asyncio.to_thread(lab.ping, h1, "c1", peer)
    e3 = await endpoint(ctl, lab.hosts[1], "c3", "blue")
    assert await asyncio.to_thread(lab.wait_ping, h1, "c1", e3["ip"])


async def test_sigterm_reports_offline_and_exits(ctl: InProcessController, lab: Lab) -> None:
    """A clean stop publishes offline itself (the Last Will is for crashes) and keeps
    the dataplane."""
    h1, _ = lab.hosts
    peer = await two_hosts_pinging(ctl, lab)
    proc = lab.agents[h1]
    lab.stop_agent(h1)  # SIGTERM
    assert proc.returncode == 0
    assert '"agent_stopped"' in lab.agent_log(h1).read_text()
    for _ in range(100):
        if (await ctl.http.get(f"/v1/hosts/{h1}")).json()["state"] == "offline":
            break
        await asyncio.sleep(0.05)
    assert (await ctl.http.get(f"/v1/hosts/{h1}")).json()["state"] == "offline"
    assert await asyncio.to_thread(lab.ping, h1, "c1", peer)


async def test_drift_made_by_hand_is_repaired_by_the_periodic_pass(
    ctl: InProcessController, lab: Lab
) -> None:
    """Delete an endpoint's veth and a remote endpoint's FDB entry by hand: the next
    periodic pass (2 s in the lab) puts both back."""
    from agents.kernel import netns
    from proto import names

    h1, h2 = lab.hosts
    peer = await two_hosts_pinging(ctl, lab)
    e1 = (await ctl.http.get("/v1/endpoints?compartment=c1")).json()[0]
    e2 = (await ctl.http.get("/v1/endpoints?compartment=c2")).json()[0]

    def break_it() -> None:
        with netns.iproute(lab.hostns[h1]) as ipr:
            (veth,) = ipr.link_lookup(ifname=names.veth(e1["id"]))
            ipr.link("del", index=veth)
            (vx,) = ipr.link_lookup(ifname=names.vxlan("blue"))
            ipr.fdb("del", ifindex=vx, lladdr=e2["mac"], dst=lab.vtep[h2])

    def repaired() -> bool:
        with netns.iproute(lab.hostns[h1]) as ipr:
            (vx,) = ipr.link_lookup(ifname=names.vxlan("blue"))
            fdb = {f.get("lladdr") for f in ipr.fdb("dump") if f["ifindex"] == vx}
            return bool(ipr.link_lookup(ifname=names.veth(e1["id"]))) and e2["mac"] in fdb

    await asyncio.to_thread(break_it)
    assert not await asyncio.to_thread(repaired)
    for _ in range(80):
        if await asyncio.to_thread(repaired):
            break
        await asyncio.sleep(0.1)
    assert await asyncio.to_thread(repaired)
    assert await asyncio.to_thread(lab.wait_ping, h1, "c1", peer)
