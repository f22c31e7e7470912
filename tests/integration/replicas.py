"""Several ``plexus controller`` processes on one PostgreSQL database, a real Mosquitto
and simulated hosts: what the tests of leadership (test_leader.py) and of a PostgreSQL
restart (test_pg_restart.py) share.

A recorder subscribes to everything the controllers publish (hosts' desired documents,
network specs, snapshots, table changes, and the reconciliation's fence, which only a
leader taking over publishes) and checks every message: on each topic, a generation is
either new and higher than every one before it, or a repeat of a message already seen
with the very same bytes (QoS 1 is at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgpack

from controller.bus import FENCE
from proto import topics
from tests.support import ControllerProcess, Mosquitto, SimAgent, mqtt_client, wait_for


@dataclass
class Recorder:
    """Every message the controllers publish, checked as it arrives."""

    #: (arrival, topic, payload)
    seen: list[tuple[float, str, bytes]] = field(default_factory=list)
    fences: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _top: dict[str, int] = field(default_factory=dict)
    _payloads: dict[tuple[str, int], bytes] = field(default_factory=dict)

    def generations(self, topic: str) -> list[int]:
        return sorted(g for t, g in self._payloads if t == topic)

    def add(self, topic: str, payload: bytes) -> None:
        now = time.monotonic()
        if topic == FENCE:
            self.fences.append(now)
            return
        if not payload:
            return  # a cleared retained message
        self.seen.append((now, topic, payload))
        gen = int(msgpack.unpackb(payload)["generation"])  # no validation: cheap
        before = self._payloads.get((topic, gen))
        if before is not None:
            if before != payload:
                self.problems.append(f"{topic} generation {gen} published with other content")
            return
        top = self._top.get(topic, 0)
        if gen <= top:
            self.problems.append(f"{topic} generation {gen} after {top}")
        self._top[topic] = max(top, gen)
        self._payloads[(topic, gen)] = payload


@contextlib.asynccontextmanager
async def recording(url: str) -> AsyncIterator[Recorder]:
    rec = Recorder()
    async with mqtt_client(url, "recorder") as c:
        for filt in (topics.ALL_HOST_DESIRED, topics.ALL_NETWORKS, FENCE):
            await c.subscribe(filt, qos=1)

        async def read() -> None:
            async for msg in c.messages:
                rec.add(str(msg.topic), bytes(msg.payload))  # type: ignore[arg-type]

        task = asyncio.create_task(read(), name="recorder")
        try:
            yield rec
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class Cluster:
    procs: dict[str, ControllerProcess]
    http: httpx.AsyncClient

    async def status(self, name: str) -> dict[str, Any] | None:
        try:
            r = await self.http.get(f"{self.procs[name].url}/v1/status", timeout=2)
        except httpx.HTTPError:
            return None
        out: dict[str, Any] = r.json()
        return out

    async def leader(self, among: list[str], above: int = 0) -> tuple[str, int] | None:
        """The leader every one of ``among`` names, at an epoch above ``above``."""
        found = set()
        for name in among:
            s = await self.status(name)
            if s is None:
                return None
            found.add((s["leader"], s["epoch"]))
        if len(found) == 1:
            leader, epoch = found.pop()
            if leader and epoch > above:
                return leader, epoch
        return None


@contextlib.asynccontextmanager
async def three(broker: Mosquitto, pg_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    token = ["--api-token-file", str(tmp_path / "api-token")]
    procs = {
        f"c{i}": ControllerProcess(
            broker.url, pg_url, tmp_path / f"c{i}.log", extra=token, env={"PLEXUS_REPLICA": f"c{i}"}
        )
        for i in (1, 2, 3)
    }
    try:
        for p in procs.values():
            p.start()
        async with httpx.AsyncClient() as http:
            yield Cluster(procs, http)
    finally:
        for p in procs.values():
            if p.proc is not None and p.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.proc.pid, signal.SIGCONT)
            p.stop()


async def write(cl: Cluster, name: str, i: int, acked: list[str]) -> None:
    """Compartment k{i} (on h1 or h2) and its endpoint, through replica ``name``."""
    url = cl.procs[name].url
    try:
        r = await cl.http.post(
            f"{url}/v1/compartments", json={"id": f"k{i}", "host": f"h{i % 2 + 1}"}, timeout=10
        )
        if r.status_code != 201:
            return
        r = await cl.http.post(
            f"{url}/v1/endpoints",
            json={"id": f"e{i}", "network": "blue", "compartment": f"k{i}"},
            timeout=10,
        )
        if r.status_code == 201:
            acked.append(f"e{i}")
    except httpx.HTTPError:
        pass  # the replica was killed: not acknowledged


async def converged(cl: Cluster, agents: list[SimAgent], acked: list[str]) -> None:
    """Every acknowledged endpoint in every agent's table, and in its host's document."""

    def done() -> bool:
        for a in agents:
            if not set(acked) <= set(a.tables.get("blue", {})):
                return False
            eps = {
                ep.id for c in (a.desired.compartments if a.desired else ()) for ep in c.endpoints
            }
            mine = {e for e in acked if int(e[1:]) % 2 + 1 == int(a.host[1:])}
            if not mine <= eps:
                return False
        return True

    try:
        await wait_for(done, 60, "every acknowledged endpoint at every host")
    except TimeoutError:
        for a in agents:
            table = set(a.tables.get("blue", {}))
            missing = sorted(set(acked) - table)[:10]
            t = a._task
            ended = t.exception() if t is not None and t.done() and not t.cancelled() else None
            print(f"{a.host}: table gen {a.gens.get('blue')}, missing {missing}, ended: {ended!r}")
        print("controller:", (await cl.status(next(iter(cl.procs))) or {}).get("networks"))
        raise


async def started(
    cl: Cluster, broker: Mosquitto
) -> tuple[list[str], tuple[str, int], list[SimAgent]]:
    """The replicas' names, the first leader (name, epoch), two hosts' simulated agents
    started, and network ``blue`` made through the first replica."""
    names = list(cl.procs)
    first = await wait_for(lambda: cl.leader(names), 15, "one leader")
    agents = [SimAgent(f"h{i}", broker.url, f"198.18.0.{i}") for i in (1, 2)]
    for a in agents:
        await a.start()
    r = await cl.http.post(
        f"{cl.procs[names[0]].url}/v1/networks",
        json={"id": "blue", "subnet": "10.1.0.0/21"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return names, first, agents
