"""An agent reads a network's snapshot while it synchronises, then follows the changes
only (at N hosts each refresh would cost N copies). A gap sends it back to the snapshot.
Both forms of a snapshot (:mod:`proto.table`): every shard at one generation, and an
index naming shards published at different generations. Real Mosquitto, the real agent
daemon on the in-memory kernel; the test publishes as the controller."""

from __future__ import annotations

import asyncio

import pytest

import proto
from agents.agent import Agent
from agents.daemon import AgentDaemon
from agents.kernel.memory import MemoryKernel
from agents.tables import Table
from proto import topics
from proto.mqtt import BrokerURL, cancel_and_wait, connector
from tests import samples
from tests.support import Mosquitto, mqtt_client, wait_for

pytestmark = pytest.mark.broker


def rec(i: int, gen: int) -> proto.EndpointRecord:
    return proto.EndpointRecord(
        id=f"r{i}", host="h2", mac=f"02:00:00:00:01:{i:02x}", ip=f"10.1.0.{100 + i}",
        vtep="198.18.0.2", gen=gen,
    )  # fmt: skip


async def test_snapshot_only_while_behind(mosquitto: Mosquitto) -> None:
    agent = Agent("h1", MemoryKernel(), "198.18.0.1")
    daemon = AgentDaemon(agent, connector(BrokerURL.parse(mosquitto.url)))
    snap = topics.network_snapshot("blue", 0)
    async with mqtt_client(mosquitto.url, "controller") as ctl:
        await ctl.publish(topics.host_desired("h1"), proto.encode(samples.DESIRED), 1, True)
        two = proto.NetworkSnapshot(network="blue", generation=2, records=(rec(1, 2),))
        await ctl.publish(snap, proto.encode(two), 1, True)
        # change 3 goes out before the agent subscribes (so it never gets it), and the
        # retained snapshot is still 2: complete, but behind without knowing it
        three = proto.NetworkChange(network="blue", generation=3, upserts=(rec(2, 3),))
        await ctl.publish(topics.network_changes("blue"), proto.encode(three), 1)
        tasks = [asyncio.create_task(daemon.session()), asyncio.create_task(daemon.reconciler())]
        try:
            table = await wait_table(agent)
            # applied by a pass, which the session wakes only once it has folded the
            # snapshot in and chosen its subscriptions
            await wait_for(lambda: agent.applied_networks.get("blue") == 2)
            assert table.generation == 2
            assert daemon._snapshots == {"blue"}  # so it stays on the snapshot topic ...
            # ... until the refresh that follows every change comes
            refresh = proto.NetworkSnapshot(
                network="blue", generation=3, records=(rec(1, 2), rec(2, 3))
            )
            await ctl.publish(snap, proto.encode(refresh), 1, True)
            await wait_for(lambda: table.generation == 3 and daemon._snapshots == set())

            # a newer snapshot is not delivered to an agent that is in sync ...
            five = proto.NetworkSnapshot(
                network="blue", generation=5, records=tuple(rec(i, 5) for i in range(1, 5))
            )
            await ctl.publish(snap, proto.encode(five), 1, True)
            # ... the changes are
            four = proto.NetworkChange(network="blue", generation=4, upserts=(rec(3, 4),))
            await ctl.publish(topics.network_changes("blue"), proto.encode(four), 1)
            # change 4 applied by a pass: the broker delivers in publish order, so had
            # snapshot 5 (published before it) been delivered, it would have come first
            await wait_for(lambda: agent.applied_networks.get("blue") == 4)
            assert table.generation == 4 and set(table.records) == {"r1", "r2", "r3"}
            assert daemon._snapshots == set()

            # change 5 is lost and 6 reveals the gap: the agent takes the (retained)
            # snapshot 5 again, applies 6 on it, and leaves once the refresh at 6 comes
            six = proto.NetworkChange(network="blue", generation=6, upserts=(rec(5, 6),))
            await ctl.publish(topics.network_changes("blue"), proto.encode(six), 1)
            await wait_for(lambda: table.generation == 6 and "blue" in daemon._snapshots)
            assert set(table.records) == {"r1", "r2", "r3", "r4", "r5"} and not table.behind
            six_snap = proto.NetworkSnapshot(
                network="blue", generation=6, records=(*five.records, rec(5, 6))
            )
            await ctl.publish(snap, proto.encode(six_snap), 1, True)
            await wait_for(lambda: daemon._snapshots == set())
            await wait_for(lambda: agent.applied_networks.get("blue") == 6)
        finally:
            for t in tasks:
                await cancel_and_wait(t)


async def test_an_index_names_shards_no_change_touched(mosquitto: Mosquitto) -> None:
    """Shard 1 is published once, at generation 2, and never again: the agent assembles
    the table from it and newer publications of shard 0, both when it joins and after a
    gap, when the broker sends it the retained copies again."""
    agent = Agent("h1", MemoryKernel(), "198.18.0.1")
    daemon = AgentDaemon(agent, connector(BrokerURL.parse(mosquitto.url)))

    def shard(i: int, gen: int, *records: proto.EndpointRecord) -> bytes:
        msg = proto.NetworkSnapshot(
            network="blue", generation=gen, shard=i, shards=2, layout="ab", records=records
        )
        return proto.encode(msg)

    def index(gen: int, *shards: int) -> bytes:
        msg = proto.SnapshotIndex(network="blue", generation=gen, shards=shards, layout="ab")
        return proto.encode(msg)

    async with mqtt_client(mosquitto.url, "controller") as ctl:
        put = topics.network_snapshot
        await ctl.publish(topics.host_desired("h1"), proto.encode(samples.DESIRED), 1, True)
        await ctl.publish(put("blue", 1), shard(1, 2, rec(1, 2)), 1, True)
        await ctl.publish(put("blue", 0), shard(0, 3, rec(2, 3)), 1, True)
        await ctl.publish(topics.network_snapshot_index("blue"), index(3, 3, 2), 1, True)
        tasks = [asyncio.create_task(daemon.session()), asyncio.create_task(daemon.reconciler())]
        try:
            table = await wait_table(agent)
            await wait_for(lambda: agent.applied_networks.get("blue") == 3)
            assert set(table.records) == {"r1", "r2"} and daemon._snapshots == {"blue"}
            # the refresh after change 4 touched shard 0 only
            four = proto.NetworkChange(network="blue", generation=4, upserts=(rec(3, 4),))
            await ctl.publish(topics.network_changes("blue"), proto.encode(four), 1)
            await ctl.publish(put("blue", 0), shard(0, 4, rec(2, 3), rec(3, 4)), 1, True)
            await ctl.publish(topics.network_snapshot_index("blue"), index(4, 4, 2), 1, True)
            await wait_for(lambda: table.generation == 4 and daemon._snapshots == set())

            # change 5 is lost and 6 reveals the gap; the agent subscribes again, the
            # broker sends shard 1 (still at 2) with the rest, and the refresh at 6
            # (shard 0 and the index, nothing else) completes the table
            await ctl.publish(put("blue", 0), shard(0, 5, rec(2, 3), rec(3, 4), rec(4, 5)), 1, True)
            await ctl.publish(topics.network_snapshot_index("blue"), index(5, 5, 2), 1, True)
            six = proto.NetworkChange(network="blue", generation=6, upserts=(rec(5, 6),))
            await ctl.publish(topics.network_changes("blue"), proto.encode(six), 1)
            await wait_for(lambda: table.generation == 6 and "blue" in daemon._snapshots)
            assert set(table.records) == {"r1", "r2", "r3", "r4", "r5"}
            refresh = shard(0, 6, rec(2, 3), rec(3, 4), rec(4, 5), rec(5, 6))
            await ctl.publish(put("blue", 0), refresh, 1, True)
            await ctl.publish(topics.network_snapshot_index("blue"), index(6, 6, 2), 1, True)
            await wait_for(lambda: daemon._snapshots == set())
            await wait_for(lambda: agent.applied_networks.get("blue") == 6)
        finally:
            for t in tasks:
                await cancel_and_wait(t)


async def wait_table(agent: Agent) -> Table:
    await wait_for(lambda: "blue" in agent.tables)
    return agent.tables["blue"]
