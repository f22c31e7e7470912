"""The controller's bus on the in-memory broker (:mod:`proto.membroker`): the logic that
has no broker in it — reconciliation after a connect, publishing in commit order,
coalesced snapshots, statuses folded in, reconnection — without a Mosquitto. The
broker-backed tests (tests/integration) check the same paths against the real one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import proto
from controller.bus import coalesce
from controller.metrics import Metrics
from controller.publish import Publish
from controller.runtime import Runtime
from controller.service import Controller
from controller.store import SqliteStore
from proto import topics
from proto.membroker import MemoryBroker
from proto.rest import CompartmentCreate, EndpointCreate, NetworkCreate
from tests.support import wait_for


@contextlib.asynccontextmanager
async def running(tmp_path: Path, broker: MemoryBroker) -> AsyncIterator[Runtime]:
    rt = Runtime(
        Controller(SqliteStore(tmp_path / "plexus.db")),
        broker.connect,
        Metrics(),
        snapshot_interval=0.05,
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


def status(host: str, vtep: str, state: str = "online") -> bytes:
    return proto.encode(proto.HostStatus(host=host, state=state, vtep=vtep))  # type: ignore[arg-type]


async def test_a_connect_reconciles_the_broker_with_the_store(tmp_path: Path) -> None:
    broker = MemoryBroker()
    # left over from an earlier run: a network the store does not have, a stale desired
    await broker.publish(topics.network("gone"), b"\x80", retain=True)
    async with running(tmp_path, broker) as rt:
        await broker.publish(topics.host_status("h1"), status("h1", "198.18.0.1"), retain=True)
        await wait_for(lambda: "h1" in rt.controller.state.hosts, what="h1 folded in")
        out = rt.controller.create_network(NetworkCreate(id="blue", subnet="10.1.0.0/24"))
        rt.publish(out)
        await wait_for(lambda: topics.network("blue") in broker.retained, what="blue published")
        assert topics.network("gone") not in broker.retained  # cleared by the reconcile
        assert topics.network_snapshot("blue", 0) in broker.retained
        doc = proto.decode(broker.retained[topics.host_desired("h1")], proto.HostDesired)
        assert doc.generation == 1
    # the broker lost everything while the controller was away: it is all put back
    broker.retained.clear()
    async with running(tmp_path, broker) as rt:
        await wait_for(lambda: topics.network("blue") in broker.retained, what="republished")
        assert set(broker.retained) == {
            topics.network("blue"),
            topics.network_snapshot("blue", 0),
            topics.network_snapshot_index("blue"),
            topics.host_desired("h1"),
        }


async def test_changes_go_out_in_commit_order_and_snapshots_are_coalesced(
    tmp_path: Path,
) -> None:
    broker = MemoryBroker()
    async with running(tmp_path, broker) as rt:
        await broker.publish(topics.host_status("h1"), status("h1", "198.18.0.1"), retain=True)
        await wait_for(lambda: "h1" in rt.controller.state.hosts, what="h1 folded in")
        ctl = rt.controller
        rt.publish(ctl.create_network(NetworkCreate(id="blue", subnet="10.1.0.0/24")))
        for i in range(5):
            rt.publish(ctl.create_compartment(CompartmentCreate(id=f"c{i}", host="h1")))
            rt.publish(ctl.create_endpoint(EndpointCreate(network="blue", compartment=f"c{i}")))
        gen = ctl.state.networks["blue"].table_gen

        def snapshot_current() -> bool:
            frame = broker.retained.get(topics.network_snapshot("blue", 0))
            return frame is not None and proto.decode(frame).generation == gen  # type: ignore[union-attr]

        await wait_for(snapshot_current, what="the snapshot at the last generation")
        changes = [
            proto.decode(m.payload, proto.NetworkChange).generation
            for m in broker.published
            if m.topic == topics.network_changes("blue")
        ]
        assert changes == sorted(changes) and len(changes) == 5
        snaps = [m for m in broker.published if m.topic == topics.network_snapshot("blue", 0)]
        assert len(snaps) < 6  # coalesced: fewer refreshes than changes (plus the first)


async def test_statuses_are_folded_in_and_bad_ones_refused(tmp_path: Path) -> None:
    broker = MemoryBroker()
    async with running(tmp_path, broker) as rt:
        await broker.publish(topics.host_status("h1"), status("h2", "198.18.0.2"))
        await broker.publish(topics.host_status("h3"), b"\x00garbage")
        await broker.publish(topics.host_status("h1"), status("h1", "198.18.0.1"))
        await wait_for(lambda: "h1" in rt.controller.state.hosts, what="h1 folded in")
        assert set(rt.controller.state.hosts) == {"h1"}
        rejected = {
            s.labels["reason"]
            for fam in rt.metrics.rejected.collect()
            for s in fam.samples
            if s.name.endswith("_total") and s.value
        }
        assert rejected == {"host_mismatch", "malformed"}
        await broker.publish(topics.host_status("h1"), status("h1", "198.18.0.1", "offline"))
        await wait_for(
            lambda: rt.controller.state.hosts["h1"].state == "offline", what="h1 offline"
        )


async def test_the_bus_reconnects_and_reconciles_after_a_drop(tmp_path: Path) -> None:
    broker = MemoryBroker()
    async with running(tmp_path, broker) as rt:
        rt.publish(rt.controller.create_network(NetworkCreate(id="blue", subnet="10.1.0.0/24")))
        await wait_for(lambda: topics.network("blue") in broker.retained, what="published")
        broker.up = False
        broker.drop(rt.bus.identifier)
        await wait_for(lambda: not rt.bus.connected.is_set(), what="the bus saw the drop")
        del broker.retained[topics.network("blue")]  # lost while the bus was away
        broker.up = True
        await wait_for(lambda: topics.network("blue") in broker.retained, what="republished")
        assert rt.metrics.reconciles._value.get() == 2


@pytest.mark.parametrize("count", [3])
async def test_a_burst_of_changes_of_one_host_sends_one_document(
    tmp_path: Path, count: int
) -> None:
    """Desired documents are lazy: queued changes of one host before the publisher runs
    go out as one document, built from the state as it is then."""
    broker = MemoryBroker()
    async with running(tmp_path, broker) as rt:
        await broker.publish(topics.host_status("h1"), status("h1", "198.18.0.1"), retain=True)
        await wait_for(lambda: "h1" in rt.controller.state.hosts, what="h1 folded in")
        before = len(broker.published)
        for i in range(count):  # no await between them: one batch for the publisher
            rt.publish(rt.controller.create_compartment(CompartmentCreate(id=f"c{i}", host="h1")))
        gen = rt.controller.state.hosts["h1"].desired_gen

        def current() -> bool:
            frame = broker.retained.get(topics.host_desired("h1"))
            return frame is not None and proto.decode(frame).generation == gen  # type: ignore[union-attr]

        await wait_for(current, what="the last document")
        docs = [m for m in broker.published[before:] if m.topic == topics.host_desired("h1")]
        assert len(docs) == 1


async def test_a_hosts_document_goes_before_the_table_changes(tmp_path: Path) -> None:
    """An agent starts a pass on what it has read: a host's document (its own
    endpoints, what a change is waited for on it) goes before the table changes
    committed with it, and a batch's one document of a host keeps the place of the
    host's first change in the batch."""
    broker = MemoryBroker()
    async with running(tmp_path, broker) as rt:
        ctl = rt.controller
        for h, vtep in (("h1", "198.18.0.1"), ("h2", "198.18.0.2")):
            await broker.publish(topics.host_status(h), status(h, vtep), retain=True)
        await wait_for(lambda: {"h1", "h2"} <= set(ctl.state.hosts), what="hosts folded in")
        rt.publish(ctl.create_network(NetworkCreate(id="blue", subnet="10.1.0.0/24")))
        for i, h in enumerate(("h1", "h1", "h2", "h1")):
            rt.publish(ctl.create_compartment(CompartmentCreate(id=f"c{i}", host=h)))
        docs = {h: topics.host_desired(h) for h in ("h1", "h2")}

        def sent(host: str) -> bool:
            frame = broker.retained.get(docs[host])
            gen = ctl.state.hosts[host].desired_gen
            return frame is not None and proto.decode(frame).generation == gen  # type: ignore[union-attr]

        await wait_for(lambda: sent("h1") and sent("h2"), what="the documents before")
        before = len(broker.published)
        rt.publish(ctl.create_endpoint(EndpointCreate(network="blue", compartment="c0")))
        await wait_for(lambda: sent("h1"), what="h1's document")
        changes = topics.network_changes("blue")
        kept = (docs["h1"], docs["h2"], changes)
        order = [m.topic for m in broker.published[before:] if m.topic in kept]
        assert order == [docs["h1"], changes]

        before = len(broker.published)
        for i in (1, 2, 3):  # no await between them: one batch for the publisher (h1, h2, h1)
            rt.publish(ctl.create_endpoint(EndpointCreate(network="blue", compartment=f"c{i}")))
        await wait_for(lambda: sent("h1") and sent("h2"), what="the documents of the batch")
        await wait_for(
            lambda: sum(m.topic == changes for m in broker.published[before:]) == 3,
            what="the batch's table changes",
        )
        order = [m.topic for m in broker.published[before:] if m.topic in kept]
        assert order == [docs["h1"], changes, docs["h2"], changes, changes]


def test_coalescing_keeps_a_hosts_first_document_but_never_before_its_clearing() -> None:
    """A batch's documents of one host: the first keeps its place (before the table
    changes that came after it) and is built once; one that a clearing of the topic
    follows goes, and the first after the clearing takes its place (a host
    decommissioned and back within one batch still gets its document)."""
    built: list[int] = []

    def doc(tag: int) -> Publish:
        def build() -> bytes:
            built.append(tag)
            return bytes([tag])

        return Publish(topics.host_desired("h1"), None, True, build)

    one, two = (Publish(topics.network_changes("blue"), bytes([g]), False) for g in (1, 2))
    docs = [doc(i) for i in range(4)]
    assert coalesce([docs[0], one, docs[1], two]) == [docs[0], one, two]
    assert built == [0]
    clear = Publish(topics.host_desired("h1"), b"", True)
    assert coalesce([docs[1], one, clear, docs[2], two, docs[3]]) == [one, clear, docs[2], two]
    assert built == [0, 2]
