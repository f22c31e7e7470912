"""A running lab (TLS, client certificates) under a flood of hostile messages from an
intruder holding a valid host credential: 10,000 messages on every topic that
credential can reach or try. The broker's ACL keeps them from the agents; the
controller refuses what it receives and folds in only the newest status; every
daemon stays up with bounded memory, and a change made through the API during the
flood converges."""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import proto
from proto import topics
from proto.mqtt import MAX_QUEUED_BYTES, BrokerURL, client
from tests.e2e.test_lab import LabUnderTest, bring_up, plexus
from tests.support import LogWatch

pytestmark = pytest.mark.kernel

PER_TOPIC = 10_000
GOLDEN = [p.read_bytes() for p in sorted((Path(__file__).parents[1] / "golden").glob("*.msgpack"))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def hostile_payloads(intruder: str, victim: str) -> list[bytes]:
    rng = random.Random(7)
    out: list[bytes] = []
    for i in range(64):
        out.append(rng.randbytes(rng.randint(0, 300)))
        frame = bytearray(rng.choice(GOLDEN))
        for _ in range(rng.randint(1, 6)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        out.append(bytes(frame))
        # valid frames that lie: another host's status, a VTEP that keeps changing
        for host in (intruder, victim):
            status = proto.HostStatus(
                host=host, state="online", version="x", vtep=f"198.18.200.{i % 250 + 1}"
            )
            out.append(proto.encode(status))
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabUnderTest]:
    lab = bring_up(tmp_path_factory.mktemp("flood"), 2, "--tls")
    try:
        yield lab
    finally:
        plexus("lab", "down", "--dir", str(lab.dir), check=False)


async def flood(
    url: BrokerURL, targets: list[str], payloads: list[bytes], under_way: asyncio.Event
) -> int:
    """Publish ``PER_TOPIC`` messages on each of ``targets``; ``under_way`` is set once
    the first topic's are out."""
    sent = 0
    async with client(url, "intruder", timeout=30) as mqtt:
        for topic in targets:
            for i in range(PER_TOPIC):
                await mqtt.publish(topic, payloads[i % len(payloads)], qos=i % 2)
                sent += 1
                if i % 500 == 0:
                    await asyncio.sleep(0)  # let the converging change run alongside
            under_way.set()
    return sent


async def test_a_lab_survives_a_flood_from_a_host_credential(lab: LabUnderTest) -> None:
    h1, h2 = lab.hosts
    broker_dir = lab.dir / "broker"
    intruder = f"{h1}-intruder"
    reloads = LogWatch(lab.dir / "logs" / "broker.log")
    plexus("broker", "add-host", intruder, "--dir", str(broker_dir))
    await reloads.wait("Reloading config.")  # add-host reloaded the lab's broker
    url = BrokerURL.parse(f"mqtts://127.0.0.1:{lab.spec['broker_port']}").with_credentials(
        broker_dir / "identities" / intruder
    )
    assert url.cert is not None  # a client certificate, over TLS
    lab.run("network", "create", "blue", "--subnet", "10.77.0.0/24", "--vni", "7700")
    lab.run("compartment", "create", "a", "--host", h1, "--wait")
    lab.run("endpoint", "create", "--network", "blue", "--compartment", "a", "--wait")

    pids = {name: pid for name, pid in lab.spec["pids"].items()}
    before = {name: rss_mib(pid) for name, pid in pids.items()}
    targets = [
        topics.host_status(intruder),  # what the credential may write
        topics.host_events(intruder),
        topics.host_status(h2),  # what it may not: the broker drops these
        topics.host_events(h2),
        topics.host_desired(h2),
        topics.network("blue"),
        topics.network_snapshot("blue", 0),
        topics.network_changes("blue"),
        "plexus/v1/controller/fence",
    ]
    payloads = hostile_payloads(intruder, h2)
    under_way = asyncio.Event()

    async def change() -> tuple[float, object]:
        await under_way.wait()  # well into the flood
        start = time.monotonic()
        await asyncio.to_thread(lab.run, "compartment", "create", "b", "--host", h2, "--wait")
        r = await asyncio.to_thread(
            lab.run, "endpoint", "create", "--network", "blue", "--compartment", "b",
            "--wait", "--timeout", "30", "-o", "json",
        )  # fmt: skip
        return time.monotonic() - start, r

    start = time.monotonic()
    sent, (took, _) = await asyncio.gather(flood(url, targets, payloads, under_way), change())
    flood_s = time.monotonic() - start
    assert sent == PER_TOPIC * len(targets)

    after = {name: rss_mib(pid) for name, pid in pids.items()}
    for pid in pids.values():
        os.kill(pid, 0)  # still running
    grown = {name: round(after[name] - before[name], 1) for name in pids}
    print(f"\nflood: {sent} messages in {flood_s:.1f} s; change converged in {took:.2f} s")
    print(f"RSS MiB before {before}\nRSS MiB after  {after}")
    # bounded by design: a receive queue holds at most MAX_QUEUED_BYTES of payloads
    # (their Python objects about as much again, and RSS keeps its peak); a process
    # that queued the flood unbounded would hold several times that
    bound = 2 * MAX_QUEUED_BYTES / 2**20 + 32
    assert all(g < bound for g in grown.values()), (grown, bound)

    # the new endpoint is reachable across hosts: the dataplane converged for real
    eps = {e["compartment"]: e for e in lab.json("endpoint", "list")}
    assert lab.ping(h1, "a", eps["b"]["ip"], count=2)
    status = lab.json("lab", "status")
    assert all(h["state"] == "online" and h["in_sync"] for h in status["hosts"]), status
    # the controller counted what it refused, against the intruder's host
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{lab.env['PLEXUS_CONTROLLER']}/metrics", timeout=5)).text
    refused = sum(
        float(v)
        for v in re.findall(
            rf'plexus_rejected_messages_total{{[^}}]*host="{re.escape(intruder)}"[^}}]*}} (\S+)',
            metrics,
        )
    )
    assert refused > 0, metrics[:2000]
    dropped = re.search(r"^plexus_dropped_messages_total (\S+)", metrics, re.M)
    print(f"controller: {refused:.0f} refused from the intruder, dropped {dropped and dropped[1]}")
    # the victim's status is still its own agent's: the intruder's lies never arrived
    hosts = {h["id"]: h for h in lab.json("host", "list")}
    assert not hosts[h2]["vtep"].startswith("198.18.200.")
