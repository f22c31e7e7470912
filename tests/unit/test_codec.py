"""The codec: round trips, golden frames, and every class of rejection."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import proto
from proto import types
from tests import samples

GOLDEN = Path(__file__).parent.parent / "golden"


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def valid(kind: str) -> dict[str, Any]:
    return samples.ALL[kind].model_dump(mode="json")


@pytest.mark.parametrize("kind", sorted(samples.ALL))
def test_round_trip(kind: str) -> None:
    msg = samples.ALL[kind]
    assert proto.decode(proto.encode(msg)) == msg
    assert proto.decode(proto.encode(msg), type(msg)) == msg


@pytest.mark.parametrize("kind", sorted(samples.ALL))
def test_golden_frame(kind: str) -> None:
    """The bytes on the wire may not drift: a change here is a wire format change
    (regenerate with PLEXUS_REGEN_GOLDEN=1 and bump the schema version if breaking)."""
    path = GOLDEN / f"{kind}.msgpack"
    frame = proto.encode(samples.ALL[kind])
    if os.environ.get("PLEXUS_REGEN_GOLDEN"):
        path.write_bytes(frame)
    assert frame == path.read_bytes()
    assert proto.decode(path.read_bytes()) == samples.ALL[kind]


@pytest.mark.parametrize("kind", ["network", "desired"])
def test_frames_from_before_the_network_fields_were_defined_once_still_decode(kind: str) -> None:
    """Defining a network's fields once (``NetworkFields``) moved ``kind`` after them in
    the encoded map: msgpack maps are decoded by key, so frames of either order are the
    same message (agents and controllers of both builds understand each other)."""
    old = (GOLDEN / "before-fields" / f"{kind}.msgpack").read_bytes()
    assert old != proto.encode(samples.ALL[kind])
    assert proto.decode(old) == samples.ALL[kind]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", proto.MalformedPayload),
        (b"\xc1", proto.MalformedPayload),  # never-used msgpack byte
        (pack(valid("network"))[:-3], proto.MalformedPayload),  # truncated
        (pack(valid("network")) + b"\x00", proto.MalformedPayload),  # trailing bytes
        (pack([1, 2, 3]), proto.MalformedPayload),  # not a map
        (pack({1: 2}), proto.MalformedPayload),  # non-string key
        (msgpack.packb(msgpack.ExtType(5, b"x")), proto.MalformedPayload),
        (b"\xff" * (proto.MAX_PAYLOAD + 1), proto.OversizePayload),
        (pack({**valid("network"), "v": 2}), proto.UnsupportedVersion),
        (pack({**valid("network"), "v": True}), proto.UnsupportedVersion),
        ({k: v for k, v in valid("network").items() if k != "v"}, proto.UnsupportedVersion),
        (pack({**valid("network"), "kind": "nope"}), proto.UnknownKind),
        (pack({**valid("network"), "kind": 7}), proto.UnknownKind),
    ],
    ids=[
        "empty",
        "invalid-byte",
        "truncated",
        "trailing",
        "array",
        "int-key",
        "ext",
        "oversize",
        "version-2",
        "version-bool",
        "no-version",
        "unknown-kind",
        "int-kind",
    ],
)
def test_rejects_malformed_frames(data: Any, error: type[proto.WireError]) -> None:
    if isinstance(data, dict):
        data = pack(data)
    with pytest.raises(error) as info:
        proto.decode(data)
    assert info.value.reason


def test_wrong_kind_is_refused_where_another_is_expected() -> None:
    with pytest.raises(proto.WrongKind, match="'network' where desired was expected"):
        proto.decode(proto.encode(samples.NETWORK), proto.HostDesired)


@pytest.mark.parametrize(
    ("kind", "patch", "needle"),
    [
        ("network", {"extra": 1}, "extra"),
        ("network", {"vni": "100"}, "vni"),
        ("network", {"vni": 0}, "vni"),
        ("network", {"vni": 16_777_216}, "vni"),
        ("network", {"vni": True}, "vni"),
        ("network", {"mtu": 100}, "mtu"),
        ("network", {"subnet": "10.1.0.1/24"}, "subnet"),
        ("network", {"subnet": "10.1.0.0/33"}, "subnet"),
        ("network", {"gateway": "10.9.0.1"}, "outside"),
        ("network", {"gateway": "10.1.0.255"}, "broadcast"),
        ("network", {"mode": "bridge"}, "mode"),
        ("network", {"id": "Blue"}, "id"),
        ("network", {"id": "a/b"}, "id"),
        ("network", {"vni": None}, "VNI"),
        ("snapshot", {"shard": 1}, "shard"),
        ("snapshot", {"generation": 1}, "newer"),
        ("change", {"generation": 0}, "generation"),
        ("desired", {"generation": -1}, "generation"),
        ("desired", {"networks": []}, "not listed"),
        ("status", {"state": "maybe"}, "state"),
        ("status", {"vtep": "300.1.1.1"}, "vtep"),
        ("status", {"networks": {"blue": "3"}}, "networks"),
        ("status", {"errors": ["x" * 2000]}, "errors"),
        ("event", {"event": "Not Snake"}, "event"),
    ],
)
def test_schema_violations_name_the_field(kind: str, patch: dict[str, Any], needle: str) -> None:
    obj = {**valid(kind), **patch}
    with pytest.raises(proto.SchemaViolation) as info:
        proto.decode(pack(obj))
    assert needle in info.value.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mac", "01:00:00:00:00:01"),
        ("mac", "02:00:00:00:00"),
        ("mac", "00:00:00:00:00:00"),
        ("ip", "10.1.0"),
        ("ip", "::1"),
        ("gen", -1),
        ("host", ""),
    ],
)
def test_record_fields_out_of_range(field: str, value: Any) -> None:
    snap = valid("snapshot")
    snap["records"][0][field] = value
    with pytest.raises(proto.SchemaViolation, match=f"records.0.{field}"):
        proto.decode(pack(snap))


def test_missing_field() -> None:
    obj = valid("status")
    del obj["host"]
    with pytest.raises(proto.SchemaViolation, match="host: Field required"):
        proto.decode(pack(obj))


def test_local_endpoint_prefix_out_of_range() -> None:
    obj = valid("desired")
    obj["compartments"][0]["endpoints"][0]["prefixlen"] = 33
    with pytest.raises(proto.SchemaViolation, match="prefixlen"):
        proto.decode(pack(obj))


def test_encode_refuses_a_frame_receivers_would_refuse() -> None:
    big = proto.Event(host="h", event="x", detail="y" * 1000)
    status = proto.HostStatus(host="h", state="online", errors=tuple("e" * 1000 for _ in range(64)))
    assert len(proto.encode(big)) < proto.MAX_PAYLOAD
    assert len(proto.encode(status)) < proto.MAX_PAYLOAD


def test_models_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        samples.NETWORK.vni = 5  # type: ignore[misc]


def test_addresses_are_normalised() -> None:
    rec = proto.EndpointRecord(id="e", host="h", mac="02-AA-00-00-00-01", ip="10.1.0.2", gen=1)
    assert rec.mac == "02:aa:00:00:00:01"


@given(
    st.one_of(
        st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t))),
        st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(f"{o:03d}" for o in t)),
        st.from_regex(r"[0-9.\s٣+-]{1,17}", fullmatch=True),
        st.text(max_size=17),
    )
)
def test_an_address_is_normalised_as_ipaddress_does(value: str) -> None:
    """The canonical form is returned as it is (no parse): the same verdict and value
    as ``ipaddress`` gives, for any string."""
    try:
        slow = str(ipaddress.IPv4Address(value))
    except ValueError:
        with pytest.raises(ValueError):
            types._ipv4(value)
    else:
        assert types._ipv4(value) == slow


def test_exported_names_are_exactly_the_intended_ones() -> None:
    assert set(proto.__all__) == {
        "KINDS",
        "MAX_PAYLOAD",
        "SCHEMA_VERSION",
        "DesiredDecoder",
        "TABLE_MODES",
        "BadTopic",
        "Compartment",
        "EndpointRecord",
        "Event",
        "HostDesired",
        "HostStatus",
        "LocalEndpoint",
        "MalformedPayload",
        "Message",
        "NetworkChange",
        "NetworkMode",
        "NetworkSnapshot",
        "NetworkSpec",
        "OversizePayload",
        "PortMapping",
        "SchemaViolation",
        "SnapshotIndex",
        "UnknownKind",
        "UnsupportedVersion",
        "Wire",
        "WireError",
        "WrongKind",
        "decode",
        "decode_rows",
        "encode",
        "pack",
        "pack_parts",
        "topics",
    }
    # submodules are attributes once imported (by anything): they are not exports, but
    # ``topics`` is re-exported on purpose
    public = {
        n
        for n, v in vars(proto).items()
        if not n.startswith("_") and (not isinstance(v, ModuleType) or n == "topics")
    }
    assert public == set(proto.__all__)


def test_a_frame_assembled_from_packed_parts_is_the_frame_encoded_whole() -> None:
    dump = samples.DESIRED.model_dump(mode="json")
    parts = {k: [pack(x) for x in dump[k]] for k in ("networks", "compartments")}
    assert proto.pack_parts(dump, parts) == proto.encode(samples.DESIRED)
    with pytest.raises(proto.OversizePayload):
        proto.pack_parts(dump, {"compartments": [b"\xc4" + b"x" * (1 << 20)]})
