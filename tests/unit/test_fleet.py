"""The broker layer in status: the ``broker`` a host's status names (left out of frames
while empty, never credentials) and each relay's bridge state (Mosquitto's plain
``1``/``0`` on ``plexus/relays/NAME``, validated strictly, never a crash). The real
brokers run in tests/integration/test_relay_status.py."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import msgpack
import pydantic
import pytest

import proto
from controller.fleet import Fleet, relay_state
from controller.metrics import Metrics
from controller.runtime import Runtime
from controller.service import Controller
from controller.store import SqliteStore
from proto import topics
from proto.errors import BadTopic, WireError
from proto.failover import Broker
from proto.membroker import MemoryBroker
from tests import samples
from tests.support import wait_for

GOLDEN = Path(__file__).parent.parent / "golden"


def keys(frame: bytes) -> set[str]:
    return set(msgpack.unpackb(frame, raw=False))


def test_an_empty_broker_is_left_out_of_the_frame_and_a_frame_without_it_decodes() -> None:
    """A status that names no broker is the frame it was before the field (agents of
    the previous build, the golden frame): controllers of either build read it."""
    frame = proto.encode(samples.STATUS)
    assert samples.STATUS.broker == "" and "broker" not in keys(frame)
    assert frame == (GOLDEN / "status.msgpack").read_bytes()
    assert proto.decode(frame, proto.HostStatus).broker == ""


def test_a_named_broker_goes_on_the_wire_and_round_trips() -> None:
    st = samples.STATUS.model_copy(update={"broker": "mqtt://relay-a:1883"})
    st = proto.HostStatus.model_validate(st.model_dump())
    frame = proto.encode(st)
    assert "broker" in keys(frame)
    assert proto.decode(frame, proto.HostStatus).broker == "mqtt://relay-a:1883"


@pytest.mark.parametrize(
    "value",
    [
        "mqtt://user:secret@relay-a:1883",  # credentials never
        "mqtt://@relay-a:1883",
        "relay-a:1883",  # a URL with its scheme
        "http://relay-a:1883",
        "mqtt://relay-a:1883/x",
        "mqtt://relay a:1883",
        "mqtt://" + "r" * 250,  # bounded
        1883,
    ],
)
def test_a_broker_that_is_not_a_plain_url_is_refused(value: Any) -> None:
    data = {**samples.STATUS.model_dump(mode="json"), "broker": value}
    with pytest.raises(pydantic.ValidationError):
        proto.HostStatus.model_validate(data)
    frame = msgpack.packb(data, use_bin_type=True)
    with pytest.raises(WireError):
        proto.decode(frame, proto.HostStatus)


def test_a_brokers_url_in_a_status_is_its_name_only_when_that_is_a_plain_url() -> None:
    async def nowhere(*a: Any, **kw: Any) -> Any:
        raise AssertionError

    assert Broker("mqtts://relay-b:8883", nowhere).url == "mqtts://relay-b:8883"  # type: ignore[arg-type]
    for name in ("", "relay-b", "mqtt://u:p@relay-b:1883"):
        assert Broker(name, nowhere).url == ""  # type: ignore[arg-type]


def test_a_relay_state_is_1_or_0_or_cleared() -> None:
    t = topics.relay_state("a")
    assert t == "plexus/relays/a"
    assert relay_state(t, b"1") == ("a", "connected")
    assert relay_state(t, b"0") == ("a", "disconnected")
    assert relay_state(t, b"") == ("a", None)


@pytest.mark.parametrize(
    "payload", [b"2", b"10", b"1\n", b" 1", b"true", b"\x80", b"\x01", b"1" * 4096]
)
def test_any_other_payload_is_refused(payload: bytes) -> None:
    with pytest.raises(WireError):
        relay_state("plexus/relays/a", payload)


@pytest.mark.parametrize(
    "topic",
    ["plexus/relays/", "plexus/relays/a/b", "plexus/relays/@relay-a", "plexus/relays/A", "x/a"],
)
def test_a_topic_that_names_no_relay_is_refused(topic: str) -> None:
    with pytest.raises(BadTopic):
        relay_state(topic, b"1")


def test_the_fleet_keeps_each_relays_state_and_since_when() -> None:
    now = [100.0]
    fleet = Fleet(clock=lambda: now[0])
    fleet.on_relay("plexus/relays/b", b"1")
    fleet.on_relay("plexus/relays/a", b"1")
    now[0] = 105.0
    fleet.on_relay("plexus/relays/a", b"1")  # the same state again: since stays
    assert fleet.view() == [
        {"name": "a", "state": "connected", "since": 100.0},
        {"name": "b", "state": "connected", "since": 100.0},
    ]
    fleet.on_relay("plexus/relays/a", b"0")
    assert fleet.relays["a"].state == "disconnected" and fleet.relays["a"].since == 105.0
    # garbage is logged and ignored: the state stays what it was, nothing raises
    for topic, payload in [
        ("plexus/relays/a", b"yes"),
        ("plexus/relays/a/x", b"1"),
        ("plexus/relays/" + "a" * 300, b"1"),
    ]:
        fleet.on_relay(topic, payload)
    assert fleet.relays["a"].state == "disconnected" and set(fleet.relays) == {"a", "b"}
    fleet.on_relay("plexus/relays/b", b"")  # a cleared retained state: forgotten
    assert [r["name"] for r in fleet.view()] == ["a"]


def test_a_new_broker_session_shows_the_relays_that_broker_holds() -> None:
    """After a reconnect (perhaps to a root restarted meanwhile) the relays are those
    whose state the broker sends with the subscription: one that died meanwhile is not
    left connected; one whose retained state is the same keeps its ``since``."""
    now = [100.0]
    fleet = Fleet(clock=lambda: now[0])
    fleet.on_relay("plexus/relays/a", b"1")
    fleet.on_relay("plexus/relays/b", b"1")
    now[0] = 200.0
    fleet.on_session()
    assert fleet.view() == []
    fleet.on_relay("plexus/relays/a", b"1", retained=True)
    assert fleet.view() == [{"name": "a", "state": "connected", "since": 100.0}]
    fleet.on_relay("plexus/relays/b", b"1")  # live: b's bridge back on the new root
    assert fleet.relays["b"].since == 200.0


async def test_the_bus_hands_relay_states_and_host_brokers_to_the_fleet(tmp_path: Path) -> None:
    """Through the controller's own bus (in-memory broker): a relay's state retained
    before the controller connected arrives with its subscription; a malformed one is
    ignored; a host's status names its broker."""
    broker = MemoryBroker()
    await broker.publish(topics.relay_state("a"), b"1", retain=True)
    await broker.publish(topics.relay_state("b"), b"garbage", retain=True)
    rt = Runtime(Controller(SqliteStore(tmp_path / "plexus.db")), broker.connect, Metrics())
    task = asyncio.create_task(rt.bus.run())
    try:
        await wait_for(lambda: "a" in rt.fleet.relays, what="relay a's state")
        assert rt.fleet.relays["a"].state == "connected" and "b" not in rt.fleet.relays
        await broker.publish(topics.relay_state("a"), b"0", retain=True)
        await wait_for(lambda: rt.fleet.relays["a"].state == "disconnected")
        st = proto.HostStatus(host="h1", state="online", broker="mqtt://relay-a:1883")
        await broker.publish(topics.host_status("h1"), proto.encode(st), retain=True)
        await wait_for(lambda: rt.fleet.brokers.get("h1") == "mqtt://relay-a:1883")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        rt.controller.store.close()


def test_a_last_will_from_a_broker_the_host_has_left_is_ignored(tmp_path: Path) -> None:
    """h1 online on relay a, then on relay b (a partition: a still holds its session);
    a's Last Will for it, a keepalive later, names a: the host stays online. Its Will
    from b, where it is, takes it offline."""
    rt = Runtime(Controller(SqliteStore(tmp_path / "plexus.db")), MemoryBroker().connect, Metrics())

    def report(state: str, on: str) -> str:
        rt.on_status(proto.HostStatus(host="h1", state=state, vtep="198.18.0.1", broker=on))  # type: ignore[arg-type]
        return rt.controller.state.hosts["h1"].state

    try:
        assert report("online", "mqtt://relay-a:1883") == "online"
        assert report("online", "mqtt://relay-b:1883") == "online"
        assert report("offline", "mqtt://relay-a:1883") == "online"
        assert rt.fleet.brokers["h1"] == "mqtt://relay-b:1883"
        assert report("offline", "mqtt://relay-b:1883") == "offline"
        assert report("online", "mqtt://relay-a:1883") == "online"  # back, anywhere
    finally:
        rt.controller.store.close()
