"""The in-memory broker keeps the broker behaviour Plexus relies on (the Mosquitto-backed
tests check the same things of the real one)."""

from __future__ import annotations

import asyncio

import pytest

from proto.errors import BrokerUnavailable
from proto.membroker import MemoryBroker, matches
from proto.mqtt import Connect, Received, Session, Will


async def take(session: Session, n: int) -> list[Received]:
    out: list[Received] = []
    async with asyncio.timeout(2):
        async for msg in session.messages():
            out.append(msg)
            if len(out) == n:
                break
    return out


def test_topic_filters_follow_mqtt() -> None:
    assert matches("a/+/c", "a/b/c") and not matches("a/+/c", "a/b/d")
    assert matches("a/#", "a/b/c") and matches("a/#", "a")
    assert not matches("a/+", "a/b/c") and not matches("a/b", "a/b/c")


async def test_retained_at_subscription_then_live_in_order() -> None:
    broker = MemoryBroker()
    connect: Connect = broker.connect
    await broker.publish("plexus/v1/x/1", b"old", retain=True)
    await broker.publish("plexus/v1/x/2", b"gone", retain=True)
    await broker.publish("plexus/v1/x/2", b"", retain=True)  # cleared
    async with connect("a") as a:
        await a.subscribe("plexus/v1/x/+")
        await broker.publish("plexus/v1/x/1", b"new")
        await a.publish("plexus/v1/x/3", b"mine")
        got = await take(a, 3)
    assert got == [
        Received("plexus/v1/x/1", b"old", True),
        Received("plexus/v1/x/1", b"new", False),
        Received("plexus/v1/x/3", b"mine", False),
    ]


async def test_a_dropped_session_raises_and_its_will_is_published() -> None:
    broker = MemoryBroker()
    async with broker.connect("watcher") as w:
        await w.subscribe("status/#")
        with pytest.raises(BrokerUnavailable):
            async with broker.connect("agent", will=Will("status/agent", b"offline")) as a:
                broker.drop("agent")
                await a.publish("status/agent", b"online")
        assert await take(w, 1) == [Received("status/agent", b"offline", False)]
    assert broker.retained == {"status/agent": b"offline"}


async def test_a_clean_exit_sends_no_will_and_a_second_client_takes_over() -> None:
    broker = MemoryBroker()
    async with broker.connect("a", will=Will("w", b"x")):
        pass
    assert broker.published == []
    async with broker.connect("b") as first, broker.connect("b"):
        with pytest.raises(BrokerUnavailable, match="taken over"):
            await first.publish("t", b"")
    broker.up = False
    with pytest.raises(BrokerUnavailable, match="down"):
        async with broker.connect("c"):
            pass


async def test_the_receive_queue_is_bounded_and_drops_are_reported() -> None:
    broker = MemoryBroker()
    drops: list[int] = []
    async with broker.connect("slow", on_drop=lambda: drops.append(1), max_queued=2) as s:
        await s.subscribe("t")
        for i in range(5):
            await broker.publish("t", bytes([i]))
        assert len(drops) == 3
        assert [m.payload for m in await take(s, 2)] == [b"\x00", b"\x01"]
