"""The agent daemon's session logic on the in-memory broker (no Mosquitto) and the
in-memory kernel: what it subscribes to and when, what it publishes, and how it comes
back from a lost session. The broker-backed test of the same logic with the real
broker is tests/integration/test_snapshot_follow.py."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import proto
from agents.agent import Agent
from agents.daemon import AgentDaemon
from agents.kernel.memory import MemoryKernel
from proto import topics
from proto.membroker import MemoryBroker, MemorySession
from proto.mqtt import Connect, Received, Session, cancel_and_wait
from tests import samples
from tests.support import wait_for

H = "h1"
CLIENT = f"plexus-agent-{H}"
BLUE = samples.NETWORK
RED = BLUE.model_copy(update={"id": "red", "subnet": "10.2.0.0/24", "gateway": "10.2.0.1"})
RED = RED.model_copy(update={"vni": 4097})


def desired(generation: int, *networks: proto.NetworkSpec) -> bytes:
    doc = samples.DESIRED.model_copy(
        update={"generation": generation, "networks": networks, "compartments": ()}
    )
    return proto.encode(doc)


def rec(i: int, gen: int) -> proto.EndpointRecord:
    return proto.EndpointRecord(
        id=f"r{i}", host="h2", mac=f"02:00:00:00:01:{i:02x}", ip=f"10.1.0.{100 + i}",
        vtep="198.18.0.2", gen=gen,
    )  # fmt: skip


def snapshot(gen: int, *records: proto.EndpointRecord) -> bytes:
    return proto.encode(proto.NetworkSnapshot(network="blue", generation=gen, records=records))


def change(gen: int, *upserts: proto.EndpointRecord) -> bytes:
    return proto.encode(proto.NetworkChange(network="blue", generation=gen, upserts=upserts))


def session(broker: MemoryBroker) -> MemorySession | None:
    return broker.sessions.get(CLIENT)


def subscribed(broker: MemoryBroker) -> set[str]:
    s = session(broker)
    return set(s.filters) if s is not None else set()


def statuses(broker: MemoryBroker) -> list[proto.HostStatus]:
    return [
        proto.decode(m.payload, proto.HostStatus)
        for m in broker.published
        if m.topic == topics.host_status(H)
    ]


def passes(agent: Agent) -> float:
    n = agent.metrics.registry.get_sample_value("plexus_agent_pass_seconds_count")
    return n or 0.0


@asynccontextmanager
async def running(
    broker: MemoryBroker, connect: Connect | None = None
) -> AsyncIterator[tuple[Agent, AgentDaemon]]:
    """An agent daemon of host h1 on ``broker``; passes only when woken (a long resync)."""
    agent = Agent(H, MemoryKernel(), "198.18.0.1")
    daemon = AgentDaemon(agent, connect or broker.connect, resync_interval=600)
    tasks = [
        asyncio.create_task(daemon.session(), name="agent-mqtt"),
        asyncio.create_task(daemon.reconciler(), name="agent-reconciler"),
    ]
    try:
        yield agent, daemon
    finally:
        for t in tasks:
            await cancel_and_wait(t)


async def test_follows_the_networks_its_document_names() -> None:
    """Subscribed to its desired document; to the changes (and, unverified, the
    snapshots) of every network the document names; unsubscribed from a network the
    document no longer names, whose table goes."""
    broker = MemoryBroker()
    await broker.publish(topics.host_desired(H), desired(5, BLUE), retain=True)
    async with running(broker) as (agent, _):
        want = {
            topics.host_desired(H),
            topics.network_changes("blue"),
            topics.network_snapshots("blue"),
        }
        await wait_for(lambda: subscribed(broker) == want, what="blue followed")
        await broker.publish(topics.host_desired(H), desired(6, BLUE, RED), retain=True)
        red = {topics.network_changes("red"), topics.network_snapshots("red")}
        await wait_for(lambda: subscribed(broker) == want | red, what="red followed")
        assert set(agent.tables) == {"blue", "red"}
        await broker.publish(topics.host_desired(H), desired(7, RED), retain=True)
        await wait_for(
            lambda: subscribed(broker) == {topics.host_desired(H), *red}, what="blue unfollowed"
        )
        assert set(agent.tables) == {"red"}


async def test_snapshot_topic_only_while_behind_or_unverified() -> None:
    """The retained snapshot makes the table complete but not verified (it may predate
    a change published just before the subscription): the agent stays on the snapshot
    topic until a live refresh. A gap sends it back there; once it is filled, it waits
    for the next live refresh again."""
    broker = MemoryBroker()
    snaps = topics.network_snapshots("blue")
    await broker.publish(topics.host_desired(H), desired(5, BLUE), retain=True)
    await broker.publish(topics.network_snapshot("blue", 0), snapshot(2, rec(1, 2)), retain=True)
    async with running(broker) as (agent, _):
        await wait_for(lambda: agent.applied_networks.get("blue") == 2, what="snapshot 2")
        table = agent.tables["blue"]
        assert table.complete and not table.behind and not table.synced
        assert snaps in subscribed(broker)
        # the refresh published while subscribed: verified, off the snapshot topic
        await broker.publish(
            topics.network_snapshot("blue", 0), snapshot(2, rec(1, 2)), retain=True
        )
        await wait_for(lambda: snaps not in subscribed(broker), what="snapshot topic left")
        assert table.synced
        # change 3 is lost: change 4 reveals the gap, back to the snapshot topic
        await broker.publish(topics.network_changes("blue"), change(4, rec(4, 4)))
        await wait_for(lambda: snaps in subscribed(broker), what="snapshot topic again")
        assert table.behind and table.generation == 2
        # the retained snapshot (2) is delivered again; change 3 fills the gap
        await broker.publish(topics.network_changes("blue"), change(3, rec(3, 3)))
        await wait_for(lambda: table.generation == 4, what="changes 3 and 4 applied")
        assert not table.behind and not table.synced and snaps in subscribed(broker)
        await broker.publish(
            topics.network_snapshot("blue", 0),
            snapshot(4, rec(1, 2), rec(3, 3), rec(4, 4)),
            retain=True,
        )
        await wait_for(lambda: snaps not in subscribed(broker), what="snapshot topic left")
        await wait_for(lambda: agent.applied_networks.get("blue") == 4, what="generation 4")
        assert set(table.records) == {"r1", "r3", "r4"}


async def test_publishes_a_status_only_when_it_changed() -> None:
    """Online at connect; after a pass that changed what it reports; not after a pass
    that changed nothing."""
    broker = MemoryBroker()
    await broker.publish(topics.host_desired(H), desired(5, BLUE), retain=True)
    async with running(broker) as (agent, daemon):
        await wait_for(lambda: agent.applied_desired == 5, what="document 5 applied")
        await wait_for(lambda: any(s.desired_generation == 5 for s in statuses(broker)))
        sent = statuses(broker)
        assert sent[0].state == "online" and sent[0].desired_generation == 0  # at connect
        before, n = passes(agent), len(sent)
        daemon.wake.set()  # a pass with nothing new to report
        await wait_for(lambda: passes(agent) > before, what="another pass")
        # the next status (of document 6) is the next one published: the reconciler
        # publishes after each pass, in order, so one of the idle pass would be first
        await broker.publish(topics.host_desired(H), desired(6, BLUE), retain=True)
        await wait_for(lambda: statuses(broker)[-1].desired_generation == 6, what="status 6")
        assert len(statuses(broker)) == n + 1


async def test_will_says_offline_and_a_new_session_reverifies_the_tables() -> None:
    """A session lost abnormally: the broker publishes the Will (offline, retained). The
    daemon reconnects, reports online again, and checks every table against a live
    snapshot again (changes may have been missed while it had no session)."""
    broker = MemoryBroker()
    snaps = topics.network_snapshots("blue")
    await broker.publish(topics.host_desired(H), desired(5, BLUE), retain=True)
    await broker.publish(topics.network_snapshot("blue", 0), snapshot(2, rec(1, 2)), retain=True)

    def retained_state() -> str:
        return proto.decode(broker.retained[topics.host_status(H)], proto.HostStatus).state

    async with running(broker) as (agent, _):
        await wait_for(lambda: agent.applied_networks.get("blue") == 2, what="snapshot 2")
        await broker.publish(
            topics.network_snapshot("blue", 0), snapshot(2, rec(1, 2)), retain=True
        )
        await wait_for(lambda: snaps not in subscribed(broker), what="verified")
        first = session(broker)
        assert retained_state() == "online"
        broker.drop(CLIENT)
        assert retained_state() == "offline"  # the Will, at once
        await wait_for(lambda: session(broker) not in (None, first), what="reconnected")
        await wait_for(lambda: retained_state() == "online", what="online again")
        await wait_for(lambda: snaps in subscribed(broker), what="snapshot topic again")
        assert not agent.tables["blue"].synced
        await broker.publish(
            topics.network_snapshot("blue", 0), snapshot(2, rec(1, 2)), retain=True
        )
        await wait_for(lambda: snaps not in subscribed(broker), what="verified again")


async def test_reconnects_while_the_broker_is_down() -> None:
    """A broker that refuses connections: the daemon retries with backoff and connects
    once it is back."""
    broker = MemoryBroker()
    broker.up = False
    attempts = 0

    def counting(identifier: str, **kwargs: Any) -> AbstractAsyncContextManager[Session]:
        nonlocal attempts
        attempts += 1
        return broker.connect(identifier, **kwargs)

    async with running(broker, counting) as (agent, _):
        await wait_for(lambda: attempts >= 3, what="three refused attempts")
        assert session(broker) is None
        broker.up = True
        await wait_for(lambda: session(broker) is not None, what="connected")
        await wait_for(lambda: topics.host_desired(H) in subscribed(broker))
        assert agent.doc is None


async def test_a_dropped_message_sends_the_tables_back_to_the_snapshot() -> None:
    """The bounded receive queue refused a message, which may have been a change: the
    drop is counted and every table is checked against a snapshot again."""
    broker = MemoryBroker()
    snaps = topics.network_snapshots("blue")
    await broker.publish(topics.host_desired(H), desired(5, BLUE), retain=True)
    await broker.publish(topics.network_snapshot("blue", 0), snapshot(2, rec(1, 2)), retain=True)
    connect = functools.partial(broker.connect, max_queued=2)
    async with running(broker, connect) as (agent, _):
        await wait_for(lambda: agent.applied_networks.get("blue") == 2, what="snapshot 2")
        await broker.publish(
            topics.network_snapshot("blue", 0), snapshot(2, rec(1, 2)), retain=True
        )
        await wait_for(lambda: snaps not in subscribed(broker), what="verified")
        for gen in range(3, 8):  # all at once: the queue holds two
            broker.route(topics.network_changes("blue"), change(gen, rec(gen, gen)), False)
        dropped = agent.metrics.registry.get_sample_value("plexus_agent_dropped_messages_total")
        assert dropped == 3
        await wait_for(lambda: snaps in subscribed(broker), what="snapshot topic again")


class _SlowStatus:
    """A session whose publishes of the host's status for document 5 wait for
    ``release``: a broker slow to acknowledge them."""

    def __init__(self, inner: Session, release: asyncio.Event) -> None:
        self.inner, self.release = inner, release

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        status = topic == topics.host_status(H)
        if status and proto.decode(payload, proto.HostStatus).desired_generation == 5:
            await self.release.wait()
        await self.inner.publish(topic, payload, qos=qos, retain=retain)

    async def subscribe(self, topic: str, *, qos: int = 1) -> None:
        await self.inner.subscribe(topic, qos=qos)

    async def unsubscribe(self, topic: str) -> None:
        await self.inner.unsubscribe(topic)

    def messages(self) -> AsyncIterator[Received]:
        return self.inner.messages()


async def test_a_pass_does_not_wait_for_the_last_status_to_be_acknowledged() -> None:
    """The status of a pass is published beside the passes: while the broker has not
    acknowledged it, the next document is applied all the same, and its status follows
    once the last one went."""
    broker = MemoryBroker()
    release = asyncio.Event()

    @asynccontextmanager
    async def slow(identifier: str, **kwargs: Any) -> AsyncIterator[Session]:
        async with broker.connect(identifier, **kwargs) as inner:
            yield _SlowStatus(inner, release)

    await broker.publish(topics.host_desired(H), desired(5, BLUE), retain=True)
    async with running(broker, slow) as (agent, _):
        await wait_for(lambda: agent.applied_desired == 5, what="document 5 applied")
        await broker.publish(topics.host_desired(H), desired(6, BLUE), retain=True)
        await wait_for(lambda: agent.applied_desired == 6, what="document 6, status 5 held")
        assert [s.desired_generation for s in statuses(broker)] == [0]  # at connect
        release.set()
        await wait_for(lambda: statuses(broker)[-1].desired_generation == 6, what="status 6")
        assert [s.desired_generation for s in statuses(broker)] == [0, 5, 6]
