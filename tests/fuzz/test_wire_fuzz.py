"""Hostile input on the wire (hypothesis, thousands of cases per run): random bytes,
byte-level mutations of the golden frames, structural mutations of their maps (values
replaced by random msgpack, keys dropped or added), on every topic shape.

- the codec returns a valid model or raises a :class:`proto.WireError`, nothing else;
- the agent's and the controller's message handlers never raise and never take their
  catch-all path; every message they refuse is logged with its reason and counted, and
  leaves their valid state exactly as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

import proto
from agents.agent import Agent
from agents.kernel.memory import MemoryKernel
from controller.config import ControllerSettings
from controller.daemon import build
from proto import rows, topics
from proto.rest import NetworkCreate
from proto.table import MAX_SHARDS
from tests import samples

pytestmark = pytest.mark.fuzz

GOLDEN = sorted((Path(__file__).parents[1] / "golden").glob("*.msgpack"))
FRAMES = [p.read_bytes() for p in GOLDEN]
CASES = settings(
    max_examples=2500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

ids = st.sampled_from(["h1", "h2", "blue", "red"]) | st.from_regex(
    r"[a-z0-9][a-z0-9._-]{0,8}", fullmatch=True
)
topic_st = st.one_of(
    st.builds(topics.host_desired, ids),
    st.builds(topics.host_status, ids),
    st.builds(topics.host_events, ids),
    st.builds(topics.network, ids),
    st.builds(topics.network_snapshot, ids, st.integers(0, MAX_SHARDS - 1)),
    st.builds(topics.network_snapshot_index, ids),
    st.builds(topics.network_changes, ids),
    st.just("plexus/v1/controller/fence"),
    st.text(max_size=80),
    st.builds(lambda a, b: f"plexus/v1/{a}/{b}", st.text(max_size=20), st.text(max_size=20)),
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30)
)
values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)


@st.composite
def byte_mutation(draw: st.DrawFn, frames: list[bytes] = FRAMES) -> bytes:
    data = bytearray(draw(st.sampled_from(frames)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def structure_mutation(draw: st.DrawFn, frames: list[bytes] = FRAMES) -> bytes:
    """A golden frame whose map has a value replaced, a key removed or one added:
    often still msgpack with the right kind, so it reaches schema validation."""
    obj = msgpack.unpackb(draw(st.sampled_from(frames)), raw=False)
    obj = msgpack.unpackb(msgpack.packb(obj), raw=False, use_list=True)  # lists, editable
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(obj)[1:] or [("v",)]))
        parent = obj
        for step in path[:-1]:
            parent = parent[step]
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(values)
        elif op == "delete" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(values)
    return bytes(msgpack.packb(obj, use_bin_type=True))


#: each golden frame with the topic it travels on: mutations of these reach the
#: handlers' deepest checks (kind, schema, topic/payload agreement, generations)
ON_TOPIC = {
    "desired": topics.host_desired("h1"),
    "snapshot": topics.network_snapshot("blue", 0),
    "snapshot_index": topics.network_snapshot_index("blue"),
    "change": topics.network_changes("blue"),
    "status": topics.host_status("h1"),
    "event": topics.host_events("h1"),
    "network": topics.network("blue"),
}


@st.composite
def matched(draw: st.DrawFn) -> tuple[str, bytes]:
    path = draw(st.sampled_from(GOLDEN))
    frame = [path.read_bytes()]
    payload = draw(st.one_of(st.just(frame[0]), byte_mutation(frame), structure_mutation(frame)))
    return ON_TOPIC[path.stem], payload


payload_st = st.one_of(
    st.binary(max_size=400),
    st.sampled_from(FRAMES),
    byte_mutation(),
    structure_mutation(),
    st.builds(lambda v: bytes(msgpack.packb(v, use_bin_type=True)), values),
)


@CASES
@given(payload_st)
def test_the_codec_returns_a_valid_model_or_a_wire_error(data: bytes) -> None:
    try:
        msg = proto.decode(data)
    except proto.WireError as e:
        assert e.reason and e.code
    else:
        assert proto.decode(proto.encode(msg)) == msg  # what it accepts, it can re-encode


TABLE_FRAMES = [p.read_bytes() for p in GOLDEN if p.stem in ("snapshot", "change")]
table_payloads = st.one_of(
    st.sampled_from(TABLE_FRAMES),
    byte_mutation(TABLE_FRAMES),
    structure_mutation(TABLE_FRAMES),
    payload_st,
)


@CASES
@given(table_payloads, st.sampled_from([proto.NetworkSnapshot, proto.NetworkChange]))
def test_decode_rows_accepts_and_refuses_what_decode_does(data: bytes, expect: Any) -> None:
    """The agent decodes its tables with ``decode_rows``: the same verdict as
    ``decode``, the same records (as rows), the same class of error (but where the
    frame's own fields are wrong too, when decode found bytes that are not msgpack in
    its records: decode_rows reads those after the frame's own fields)."""
    try:
        model = proto.decode(data, expect)
    except proto.WireError as e:
        with pytest.raises(proto.WireError) as refused:
            proto.decode_rows(data, expect)
        if type(refused.value) is not type(e):
            assert isinstance(e, proto.MalformedPayload), (e, refused.value)
    else:
        assert proto.decode_rows(data, expect) == rows.of(model)


# -- the agent --------------------------------------------------------------------------


def _agent() -> Agent:
    agent = Agent("h1", MemoryKernel(), "198.18.0.1")
    assert agent.on_message(topics.host_desired("h1"), proto.encode(samples.DESIRED)) is None
    assert (
        agent.on_message(topics.network_snapshot("blue", 0), proto.encode(samples.SNAPSHOT)) is None
    )
    assert agent.complete
    return agent


def _agent_state(agent: Agent) -> Any:
    tables = {n: (t.generation, t.complete, dict(t.records)) for n, t in agent.tables.items()}
    return agent.doc, tables


messages = st.one_of(st.tuples(topic_st, payload_st), matched(), matched())


@CASES
@given(messages)
def test_the_agent_survives_any_message_and_keeps_its_state_on_refusal(
    message: tuple[str, bytes],
) -> None:
    topic, payload = message
    agent = _agent()
    before = _agent_state(agent)
    with capture_logs() as logs:
        reason = agent.on_message(topic, payload)
    assert reason != "internal", logs
    if reason is not None:
        assert _agent_state(agent) == before
        refused = [e for e in logs if e["event"] == "message_rejected"]
        assert [e["reason"] for e in refused] == [reason] and refused[0]["detail"]
        assert agent.metrics.rejected.labels(reason)._value.get() == 1


# -- the controller ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = tmp_path_factory.mktemp("fuzz") / "plexus.db"
    rt, _ = build(ControllerSettings(store=str(store)))
    ctl = rt.controller
    ctl.create_network(NetworkCreate(id="blue", subnet="10.1.0.0/24", vni=100))
    yield rt
    ctl.store.close()


def _controller_state(rt: Any) -> Any:
    s = rt.controller.state
    return dict(s.networks), dict(s.endpoints), dict(s.compartments), dict(s.hosts)


def _rejections(rt: Any) -> float:
    return sum(
        m.value
        for fam in rt.metrics.rejected.collect()
        for m in fam.samples
        if m.name.endswith("_total")
    )


@CASES
@given(messages, st.booleans())
def test_the_controller_survives_any_message_and_keeps_its_state_on_refusal(
    runtime: Any, message: tuple[str, bytes], retain: bool
) -> None:
    topic, payload = message
    bus = runtime.bus
    before, rejected = _controller_state(runtime), _rejections(runtime)
    with capture_logs() as logs:
        bus.on_message(topic, payload, retain)
        bus.fold_statuses()
    assert not [e for e in logs if e.get("log_level") in ("error", "critical")], logs
    refused = [e for e in logs if e["event"] == "message_rejected"]
    assert len(refused) == _rejections(runtime) - rejected
    for e in refused:
        assert e["reason"] and e["detail"]
    if refused:
        assert _controller_state(runtime) == before
    # desired state is the controller's alone: no message changes it
    assert _controller_state(runtime)[:3] == before[:3]
