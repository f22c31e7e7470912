"""The bus's one rule, "publish iff leader with a live lease", on the in-memory broker
with a lease the test moves by hand: a follower publishes nothing; a replica that
becomes leader resumes (the table changes after the mark), reconciles, then publishes;
an unconfirmed lease holds a batch, a deposed one drops it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import proto
from controller.bus import FENCE
from controller.metrics import Metrics
from controller.publication import Batch
from controller.runtime import Runtime
from controller.service import Controller
from controller.store import SqliteStore
from proto import topics
from proto.membroker import MemoryBroker
from proto.rest import CompartmentCreate, EndpointCreate, NetworkCreate
from tests.support import wait_for


@dataclass
class HandLease:
    """A lease moved by the test (controller.leader.Leadership)."""

    replica: str = "r1"
    epoch: int = 0
    leader: tuple[str, int] = ("", 0)
    published: int = 0
    confirmed: bool = True

    def live(self) -> bool:
        return self.epoch > 0 and self.confirmed


@contextlib.asynccontextmanager
async def running(tmp_path: Path, broker: MemoryBroker, lease: HandLease) -> AsyncIterator[Runtime]:
    rt = Runtime(
        Controller(SqliteStore(tmp_path / "plexus.db")),
        broker.connect,
        Metrics(),
        snapshot_interval=0.05,
        lease=lease,
    )
    task = asyncio.create_task(rt.bus.run())
    try:
        await wait_for(rt.bus.connected.is_set, what="the bus connected")
        yield rt
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        rt.controller.store.close()


def ours(broker: MemoryBroker) -> list[str]:
    """The topics the controller published, in order (not the hosts' statuses)."""
    return [m.topic for m in broker.published if "/status" not in m.topic]


async def online(broker: MemoryBroker, rt: Runtime) -> None:
    """Host h1 reports online (retained) and the controller has folded it in."""
    status = proto.HostStatus(host="h1", state="online", vtep="198.18.0.1")  # type: ignore[arg-type]
    await broker.publish(topics.host_status("h1"), proto.encode(status), retain=True)
    await wait_for(lambda: "h1" in rt.controller.state.hosts, what="h1 folded in")


async def endpoint(rt: Runtime, comp: str) -> None:
    rt.publish(rt.controller.create_compartment(CompartmentCreate(id=comp, host="h1")))
    body = EndpointCreate(network="blue", compartment=comp)  # type: ignore[call-arg]
    rt.publish(rt.controller.create_endpoint(body))


async def test_a_follower_publishes_nothing_and_a_new_leader_resumes_then_reconciles(
    tmp_path: Path,
) -> None:
    broker, lease = MemoryBroker(), HandLease()
    async with running(tmp_path, broker, lease) as rt:
        await online(broker, rt)
        rt.publish(rt.controller.create_network(NetworkCreate(id="blue", subnet="10.1.0.0/24")))
        await endpoint(rt, "c1")
        assert ours(broker) == []  # not even the reconciliation's fence
        lease.epoch, lease.published = 1, 0  # elected: nothing was published before
        await wait_for(lambda: topics.host_desired("h1") in broker.retained, what="reconciled")
        sent = ours(broker)
        # the tail (the table change nobody published) first, then the fence, the plan
        assert sent[0] == topics.network_changes("blue") and sent[1] == FENCE, sent
        assert {topics.network("blue"), topics.network_snapshot("blue", 0)} <= set(broker.retained)
        # the mark moves once the whole plan is acknowledged, after its documents are
        # retained: wait for it (read at once it raced the plan's last acknowledgements)
        await wait_for(lambda: lease.published > 0, what="the published mark")
        assert lease.published == rt.controller.store.head
        await endpoint(rt, "c2")  # a leader publishes its commits
        await wait_for(lambda: ours(broker).count(topics.network_changes("blue")) == 2)


async def test_an_unconfirmed_lease_holds_a_batch_and_a_deposed_one_drops_it(
    tmp_path: Path,
) -> None:
    broker, lease = MemoryBroker(), HandLease(epoch=1)
    async with running(tmp_path, broker, lease) as rt:
        status = proto.HostStatus(host="h1", state="online", vtep="198.18.0.1")  # type: ignore[arg-type]
        await broker.publish(topics.host_status("h1"), proto.encode(status), retain=True)
        await wait_for(lambda: topics.host_desired("h1") in broker.retained, what="h1 known")
        lease.confirmed = False  # a renewal late: not live, not deposed
        rt.publish(rt.controller.create_network(NetworkCreate(id="blue", subnet="10.1.0.0/24")))
        await asyncio.sleep(0.2)  # held, not dropped: nothing of it went out yet
        assert topics.network("blue") not in broker.retained
        lease.confirmed = True
        await wait_for(lambda: topics.network("blue") in broker.retained, what="sent when live")
        lease.confirmed = False
        await endpoint(rt, "c1")
        await asyncio.sleep(0.2)
        before = len(broker.published)
        lease.epoch = 0  # deposed: another replica leads now
        await wait_for(lambda: rt.bus._queue.empty(), what="the queue dropped")
        await asyncio.sleep(0.1)
        assert len(broker.published) == before
        lease.confirmed = True
        await endpoint(rt, "c2")  # a follower's commits are not even queued
        assert rt.bus._queue.empty() and len(broker.published) == before
        assert topics.network_changes("blue") not in ours(broker)


async def test_a_snapshot_queued_before_a_newer_one_went_is_not_sent(tmp_path: Path) -> None:
    """A new leader's reconciliation publishes the snapshot of the state as it is then,
    while the snapshotter may have queued an older one meanwhile: the older one is not
    sent after it (the retained snapshot never goes backwards)."""
    broker, lease = MemoryBroker(), HandLease(epoch=1)
    snap = topics.network_snapshot("blue", 0)

    def generations() -> list[int]:
        return [
            int(proto.decode(m.payload).generation)  # type: ignore[union-attr]
            for m in broker.published
            if m.topic == snap and m.payload
        ]

    async with running(tmp_path, broker, lease) as rt:
        await online(broker, rt)
        rt.publish(rt.controller.create_network(NetworkCreate(id="blue", subnet="10.1.0.0/24")))
        await endpoint(rt, "c1")
        stale = rt.publication.snapshot("blue")
        await endpoint(rt, "c2")
        newer = rt.controller.state.networks["blue"].table_gen
        await wait_for(lambda: newer in generations(), what="the newer snapshot sent")
        rt.bus.submit(Batch(publish=stale))  # as if queued before the newer one went
        await endpoint(rt, "c3")  # a batch after it
        await wait_for(lambda: newer + 1 in generations(), what="the next snapshot sent")
    assert generations() == sorted(generations()), generations()
    assert stale[0].generation == newer - 1
