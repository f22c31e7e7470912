"""Three ``plexus controller`` processes on one PostgreSQL database, a real Mosquitto:
one elected leader publishes, a killed leader is replaced, a stopped one is fenced.

Every message the controllers publish is checked by the recorder of
:mod:`tests.integration.replicas` (never backwards; a generation seen twice has the
same bytes). Which replica published what is read from the broker's own log
(``Received PUBLISH from CLIENT``: each controller's client id carries its replica
name), nothing added to the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import httpx
import pydantic
import pytest

from controller.config import ControllerSettings
from controller.daemon import build
from controller.leader import Lease
from controller.pgstore import PostgresStore
from controller.service import Controller
from proto import topics
from tests.integration.replicas import (
    Cluster,
    converged,
    recording,
    started,
    three,
    write,
)
from tests.support import PLEXUS, LogWatch, Mosquitto, wait_for

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


def test_the_lease_lasts_the_configured_ttl(pg_url: str, tmp_path: Path) -> None:
    """``lease_ttl`` (PLEXUS_LEASE_TTL): renewed every quarter of it, published under
    until a third of it is left; out of its range, refused by name."""
    settings = ControllerSettings(
        store=pg_url, api_auth="none", api_token_file=tmp_path / "api-token", lease_ttl=3.0
    )
    rt, _ = build(settings)
    try:
        lease = rt.lease
        assert isinstance(lease, Lease)
        assert (lease.ttl, lease.renew, lease.margin) == (3.0, 0.75, 1.0)
    finally:
        rt.controller.store.close()
    with pytest.raises(pydantic.ValidationError, match="lease_ttl"):
        ControllerSettings(store=pg_url, lease_ttl=0.1)
