"""Three ``plexus controller`` processes on one PostgreSQL database, a real Mosquitto:
one elected leader publishes, a killed leader is replaced, a stopped one is fenced.

A recorder subscribes to everything the controllers publish (hosts' desired documents,
network specs, snapshots, table changes, and the reconciliation's fence, which only a
leader taking over publishes) and checks every message: on each topic, a generation is
either new and higher than every one before it, or a repeat of a message already seen
with the very same bytes (QoS 1 is at-least-once). Which replica published what is read
from the broker's own log (``Received PUBLISH from CLIENT``: each controller's client
id carries its replica name), nothing added to the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from controller.bus import FENCE
from controller.leader import Lease
from controller.pgstore import PostgresStore
from controller.service import Controller
from proto import topics
from tests.support import (
    PLEXUS,
    ControllerProcess,
    LogWatch,
    Mosquitto,
    SimAgent,
    mqtt_client,
    wait_for,
)


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


@pytest.fixture
def debug_broker(tmp_path: Path) -> Any:
    broker = Mosquitto(tmp_path)
    # "Received PUBLISH from CLIENT": who published what, from the broker's side
    broker.conf.write_text(broker.conf.read_text() + "log_type debug\n")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


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
            mine = {e for e in acked if int(e[1:]) % len(agents) + 1 == int(a.host[1:])}
            if not mine <= eps:
                return False
        return True

    await wait_for(done, 30, "every acknowledged endpoint at every host")


async def started(
    cl: Cluster, broker: Mosquitto, hosts: int = 2
) -> tuple[list[str], tuple[str, int], list[SimAgent]]:
    """The replicas' names, the first leader (name, epoch), ``hosts`` hosts' simulated
    agents started (h1, h2, ...), and network ``blue`` made through the first replica."""
    names = list(cl.procs)
    first = await wait_for(lambda: cl.leader(names), 15, "one leader")
    agents = [SimAgent(f"h{i}", broker.url, f"198.18.0.{i}") for i in range(1, hosts + 1)]
    for a in agents:
        await a.start()
    r = await cl.http.post(
        f"{cl.procs[names[0]].url}/v1/networks",
        json={"id": "blue", "subnet": "10.1.0.0/21"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return names, first, agents


WRITES = 1000  # endpoints, spread over the three replicas: e{i} in k{i}, on h{i % 2 + 1}
IN_FLIGHT = 12


async def endpoint(cl: Cluster, name: str, i: int, acked: list[str]) -> None:
    """Endpoint e{i} in compartment k{i} (made beforehand), through replica ``name``; recorded
    once acknowledged (201). A refusal or a dead replica: not acknowledged."""
    try:
        r = await cl.http.post(
            f"{cl.procs[name].url}/v1/endpoints",
            json={"id": f"e{i}", "network": "blue", "compartment": f"k{i}"},
            timeout=10,
        )
    except httpx.HTTPError:
        return
    if r.status_code == 201:
        acked.append(f"e{i}")


def leading_at(log: Path, epoch: int) -> float:
    """When the replica logging to ``log`` began to publish for ``epoch`` (its
    ``leading`` line, just before the tail's first publish), in seconds since the epoch."""
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if rec.get("event") == "leading" and rec.get("epoch") == epoch:
                return datetime.fromisoformat(rec["timestamp"]).timestamp()
    raise AssertionError(f"no 'leading' at epoch {epoch} in {log}")


def stored_endpoints(pg_url: str) -> set[str]:
    """What the database holds, read by a controller of its own."""
    store = PostgresStore(pg_url)
    try:
        return set(Controller(store).state.endpoints)
    finally:
        store.close()


async def test_a_killed_leader_is_replaced_and_every_acknowledged_write_arrives(
    debug_broker: Mosquitto, pg_url: str, tmp_path: Path
) -> None:
    """1,000 endpoint writes, 12 at a time, round-robin over the three replicas; the
    leader SIGKILLed once half are acknowledged, with writes in flight (those to it
    fail: not acknowledged; the ones after go to the other two). Then, all quiet, the
    new leader is killed too and an endpoint is written through the last replica at
    once: kill -> applied at every host (the simulated agents share the test's event
    loop, which the storm keeps seconds behind: timed there, it would time the test)."""
    async with three(debug_broker, pg_url, tmp_path) as cl, recording(debug_broker.url) as rec:
        names, first, agents = await started(cl, debug_broker)
        ops = [
            {
                "op": "create",
                "kind": "compartment",
                "body": {"id": f"k{i}", "host": f"h{i % 2 + 1}"},
            }
            for i in range(WRITES + 2)
        ]
        r = await cl.http.post(f"{cl.procs[names[1]].url}/v1/batch", json={"ops": ops}, timeout=30)
        assert r.status_code == 200, r.text
        acked: list[str] = []
        alive = list(names)
        killed = killed_at = 0.0
        todo = iter(range(WRITES))

        async def writer() -> None:
            nonlocal killed, killed_at
            for i in todo:
                await endpoint(cl, alive[i % len(alive)], i, acked)
                if not killed and len(acked) >= WRITES // 2:
                    killed, killed_at = time.monotonic(), time.time()
                    cl.procs[first[0]].kill()
                    alive.remove(first[0])

        await asyncio.gather(*(writer() for _ in range(IN_FLIGHT)))
        then = await wait_for(lambda: cl.leader(alive, above=first[1]), 15, "a new leader")
        leads = leading_at(cl.procs[then[0]].log, then[1]) - killed_at
        await converged(cl, agents, acked)
        # the new leader killed in the quiet, an endpoint written at once through the last
        last = next(n for n in alive if n != then[0])
        probe = f"e{WRITES}"
        again, again_at = time.monotonic(), time.time()
        cl.procs[then[0]].kill()
        await endpoint(cl, last, WRITES, acked)
        await wait_for(
            lambda: all(probe in a.tables.get("blue", {}) for a in agents),
            15,
            "the probe at every host",
            interval=0.002,
        )
        applied = time.monotonic() - again
        third = await wait_for(lambda: cl.leader([last], above=then[1]), 15, "the last leads")
        await wait_for(lambda: [t for t in rec.fences if t > again], 15, "its fence")
        fence = min(t for t in rec.fences if t > again) - again
        second = leading_at(cl.procs[last].log, third[1]) - again_at
        await converged(cl, agents, acked)
        for a in agents:
            await a.stop()
        table = (await cl.status(last) or {})["networks"][0]["generation"]
    # an agent that only follows the changes misses none: the new leader published the
    # changes after the old one's mark, also those committed while nobody led
    changes = rec.generations(topics.network_changes("blue"))
    assert changes == list(range(changes[0], table + 1)), changes
    print(
        f"{len(acked) - 1} of {WRITES} writes acknowledged; leader killed mid-writes -> the"
        f" new leader ({then[0]}) publishes (its log's 'leading'): {leads * 1000:.0f} ms."
        f" Killed in the quiet -> the last publishes: {second * 1000:.0f} ms; its fence at a"
        f" subscriber: {fence * 1000:.0f} ms; an endpoint written after the kill applied"
        f" at every host: {applied * 1000:.0f} ms"
    )
    assert probe in acked and len(acked) >= WRITES - IN_FLIGHT
    assert set(acked) <= await asyncio.to_thread(stored_endpoints, pg_url)
    assert rec.seen and rec.problems == []
    assert leads <= 2.0 and second <= 2.0


async def test_a_stopped_leader_that_wakes_up_publishes_nothing(
    debug_broker: Mosquitto, pg_url: str, tmp_path: Path
) -> None:
    async with three(debug_broker, pg_url, tmp_path) as cl, recording(debug_broker.url) as rec:
        names, first, agents = await started(cl, debug_broker)
        acked: list[str] = []
        for i in range(9):
            await write(cl, names[i % 3], i, acked)
        # stopped once what it had to publish is out: a publish already handed to the
        # MQTT client when the process stops leaves when it resumes (controller.leader)
        await converged(cl, agents, acked)
        old = cl.procs[first[0]]
        assert old.proc is not None
        os.kill(old.proc.pid, signal.SIGSTOP)
        rest = [n for n in names if n != first[0]]
        now = await wait_for(lambda: cl.leader(rest, above=first[1]), 15, "a new leader")
        for i in range(9, 20):  # the stopped one's state is behind these
            await write(cl, rest[i % 2], i, acked)
        # wait=true answered by a follower: it follows the hosts' statuses too
        follower = next(n for n in rest if n != now[0])
        for name, epoch in ((now[0], now[1]), (follower, 0)):
            r = await cl.http.get(f"{cl.procs[name].url}/metrics", timeout=5)
            assert f"plexus_leader_epoch {float(epoch)}" in r.text
        r = await cl.http.post(
            f"{cl.procs[follower].url}/v1/compartments?wait=true&timeout=10",
            json={"id": "kw", "host": "h1"},
            timeout=15,
        )
        assert r.status_code == 201 and r.json()["convergence"]["converged"], r.text
        cli = [PLEXUS, "--controller", cl.procs[follower].url, "status"]
        done = await asyncio.to_thread(
            subprocess.run, cli, capture_output=True, text=True, timeout=30
        )
        shown = done.stdout
        assert f"store postgresql, replica {follower}, leader {now[0]} (epoch {now[1]})" in shown
        broker_log = LogWatch(debug_broker.workdir / "mosquitto.log")
        own_log = LogWatch(old.log)
        os.kill(old.proc.pid, signal.SIGCONT)
        await own_log.wait("leader_deposed", 15)
        for i in range(20, 26):  # through every replica, the woken one too
            await write(cl, names[i % 3], i, acked)
        await converged(cl, agents, acked)
        await wait_for(lambda: cl.leader(names, above=first[1]), 15, "all agree")
        for a in agents:
            await a.stop()
    published = [
        line
        for line in broker_log.lines()
        if "Received PUBLISH from" in line and f"plexus-controller-{first[0]}-" in line
    ]
    assert published == []
    assert len(acked) == 26
    assert rec.problems == []


async def test_the_lease_goes_to_one_and_to_another_only_after_the_first_is_fenced(
    pg_url: str,
) -> None:
    """Two leases on one store: one takes it, renews it; when it stops renewing, its own
    check (``live``) turns false before the deadline lets the other take it; its next
    renewal finds the epoch gone (deposed); resigning hands the lease over at once."""
    PostgresStore(pg_url).close()  # the schema
    a, b = (Lease(pg_url, {}, n, ttl=0.6, renew=0.1, poll=0.1, margin=0.2) for n in "ab")
    try:
        await a.step()
        await b.step()
        assert (a.epoch, b.epoch, a.live(), b.live()) == (1, 0, True, False)
        assert a.leader == b.leader == ("a", 1)
        await a.step()  # renewed
        assert a.epoch == 1 and a.live()
        while not b.epoch:  # a stops renewing
            await b.step()
            if b.epoch:
                assert not a.live()  # fenced before anybody else could lead
            await asyncio.sleep(0.05)
        assert (b.epoch, b.leader) == (2, ("b", 2))
        await a.step()
        assert (a.epoch, a.live(), a.leader) == (0, False, ("b", 2))
        await b.resign()
        await a.step()  # at once, no deadline to wait for
        assert a.epoch == 3 and a.live()
    finally:
        await a.resign()
        await b.resign()
