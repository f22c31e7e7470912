"""``plexus lab demo``: an overlay network with two compartments on every host, made
through the real API, and a ping matrix (who reaches whom, with latency)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from proto import names
from proto.rest import NamedCompartment, NamedEndpoint, NetworkCreate, Topology

NETWORK = "demo"
SUBNET = "10.100.0.0/24"
VNI = 100
PER_HOST = 2
_RTT = re.compile(r"time[=<]([\d.]+) ms")


def topology(hosts: list[str], per_host: int = PER_HOST) -> Topology:
    """The demo overlay: also what compose's one-shot ``demo`` service applies."""
    comps = [NamedCompartment(id=f"{h}-c{i + 1}", host=h) for h in hosts for i in range(per_host)]
    return Topology(
        networks=(NetworkCreate(id=NETWORK, mode="overlay", subnet=SUBNET, vni=VNI),),
        compartments=tuple(comps),
        endpoints=tuple(
            NamedEndpoint(id=f"{c.id}-{NETWORK}", network=NETWORK, compartment=c.id) for c in comps
        ),
    )


@dataclass(frozen=True)
class Target:
    """An endpoint to ping, and the namespace to ping from."""

    endpoint: str
    host: str
    compartment: str
    ip: str

    @property
    def netns(self) -> str:
        return names.netns(self.host, self.compartment)


@dataclass(frozen=True)
class Probe:
    source: str  # endpoint id
    target: str  # endpoint id
    rtt_ms: float | None  # None: unreachable


async def ping(netns: str, ip: str, attempts: int = 3) -> float | None:
    """Round-trip time of one echo from ``netns`` to ``ip``, in ms; None if no reply."""
    for _ in range(attempts):
        proc = await asyncio.create_subprocess_exec(
            "nsenter",
            f"--net=/run/netns/{netns}",
            "ping",
            "-n",
            "-c",
            "1",
            "-W",
            "1",
            ip,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
        m = _RTT.search(out.decode(errors="replace"))
        if proc.returncode == 0 and m:
            return float(m.group(1))
    return None


async def matrix(targets: list[Target], parallel: int = 8) -> list[Probe]:
    """Every endpoint pings every other one."""
    gate = asyncio.Semaphore(parallel)

    async def one(src: Target, dst: Target) -> Probe:
        async with gate:
            return Probe(src.endpoint, dst.endpoint, await ping(src.netns, dst.ip))

    pairs = [(s, d) for s in targets for d in targets if s != d]
    return list(await asyncio.gather(*(one(s, d) for s, d in pairs)))
