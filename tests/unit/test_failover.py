"""Several brokers: a client starts on a random one (a fleet spreads over the relays)
and goes round the ring, one step per failed connect or dropped session."""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

import proto
from agents.agent import Agent
from agents.daemon import AgentDaemon
from agents.kernel.memory import MemoryKernel
from proto import topics
from proto.failover import Brokers
from proto.membroker import MemoryBroker
from proto.mqtt import Session, cancel_and_wait
from tests import samples
from tests.support import wait_for


def nowhere(identifier: str, **kw: Any) -> AbstractAsyncContextManager[Session]:
    raise AssertionError("not called")


def test_the_ring_starts_at_random_and_goes_round() -> None:
    names = ["mqtt://a:1", "mqtt://b:1", "mqtt://c:1"]
    starts = {Brokers.of([(n, nowhere) for n in names], random.Random(i)).current.name
              for i in range(50)}  # fmt: skip
    assert starts == set(names)
    ring = Brokers.of([(n, nowhere) for n in names])
    first = names.index(ring.current.name)
    seen = [ring.advance().name for _ in range(3)]
    assert seen == [names[(first + i) % 3] for i in (1, 2, 3)]
    one = Brokers.of([("mqtt://only:1", nowhere)])
    assert one.advance().name == one.current.name == "mqtt://only:1"
    with pytest.raises(ValueError):
        Brokers.of([])


def test_home_is_where_the_ring_started() -> None:
    ring = Brokers.of([(n, nowhere) for n in ("mqtt://a:1", "mqtt://b:1")], random.Random(1))
    home = ring.current
    assert ring.home is home and not ring.away
    ring.advance()
    assert ring.away and ring.current is not home and ring.home is home
    assert ring.go_home() is home and not ring.away


async def test_the_agent_moves_to_the_next_broker_and_rebuilds_its_session() -> None:
    """Its broker dies (the session drops, the broker refuses connections): the agent is
    on the other one, subscribed again, its tables unverified, its status online there."""
    a, b = MemoryBroker(), MemoryBroker()
    doc = proto.encode(samples.DESIRED)
    for m in (a, b):
        await m.publish(topics.host_desired("h1"), doc, retain=True)
    agent = Agent("h1", MemoryKernel(), "198.18.0.1")
    ring = Brokers.of([("mqtt://a:1", a.connect), ("mqtt://b:1", b.connect)], random.Random(0))
    first, other = (a, b) if ring.current.name == "mqtt://a:1" else (b, a)
    daemon = AgentDaemon(agent, ring, resync_interval=600)
    tasks = [asyncio.create_task(daemon.session()), asyncio.create_task(daemon.reconciler())]
    client = "plexus-agent-h1"
    try:
        await wait_for(lambda: client in first.sessions, what="on the first broker")
        await wait_for(lambda: agent.applied_desired == samples.DESIRED.generation)
        first.up = False
        first.drop(client)
        t0 = time.monotonic()
        await wait_for(lambda: client in other.sessions, what="on the other broker")
        assert time.monotonic() - t0 < 1.0
        await wait_for(lambda: topics.host_desired("h1") in other.sessions[client].filters)

        def states() -> list[str]:
            return [
                proto.decode(m.payload, proto.HostStatus).state
                for m in other.published
                if m.topic == topics.host_status("h1")
            ]

        await wait_for(lambda: "online" in states(), what="status online on the other broker")
        # and it names the broker it is on now (its Last Will there too)
        other_name = "mqtt://b:1" if other is b else "mqtt://a:1"
        names = [
            proto.decode(m.payload, proto.HostStatus).broker
            for m in other.published
            if m.topic == topics.host_status("h1")
        ]
        assert names and set(names) == {other_name}
        will = other.sessions[client].will
        assert will is not None
        assert proto.decode(will.payload, proto.HostStatus).broker == other_name
        # the session was rebuilt as after any reconnect: the desired document again
        assert agent.applied_desired == samples.DESIRED.generation
        assert ring.current.connect == other.connect
    finally:
        for t in tasks:
            await cancel_and_wait(t)
