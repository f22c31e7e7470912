"""``proto.decode_rows``: a table's snapshots and changes with their records as rows.
It accepts what ``proto.decode`` accepts (the same records, as rows) and refuses what it
refuses, with the same class of error; and it never holds a frame's records as models
all at once (its peak is a fraction of ``decode``'s). ``tests/fuzz`` compares the two on
thousands of hostile frames."""

from __future__ import annotations

import tracemalloc
from typing import Any

import msgpack
import pytest

import proto
from proto import rows
from proto.table import MAX_RECORDS
from tests import samples

KINDS = {"snapshot": proto.NetworkSnapshot, "change": proto.NetworkChange}
FIELD = {"snapshot": "records", "change": "upserts"}


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def valid(kind: str) -> dict[str, Any]:
    return samples.ALL[kind].model_dump(mode="json")


def record(i: int, gen: int, host: str = "h2") -> dict[str, Any]:
    return proto.EndpointRecord(
        id=f"e{i}", host=host, mac=f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
        ip=f"10.1.{i >> 8}.{i & 255}", vtep="198.18.0.2", gen=gen,
    ).model_dump(mode="json")  # fmt: skip


def same(data: bytes, kind: str) -> rows.SnapshotRows | rows.ChangeRows:
    """decode_rows and decode agree on ``data``: the same rows, or the same error."""
    model = KINDS[kind]
    try:
        expected: Any = rows.of(proto.decode(data, model))  # type: ignore[call-overload]
    except proto.WireError as e:
        with pytest.raises(type(e)):
            proto.decode_rows(data, model)
        raise
    got = proto.decode_rows(data, model)
    assert got == expected
    return got


@pytest.mark.parametrize("kind", ["snapshot", "change"])
def test_the_samples_decode_to_the_rows_of_their_models(kind: str) -> None:
    got = same(proto.encode(samples.ALL[kind]), kind)
    assert got == rows.of(samples.ALL[kind])  # type: ignore[call-overload]
    assert all(isinstance(r, rows.Row) for r in getattr(got, FIELD[kind]))


def test_records_as_rows_share_their_hosts_and_vteps() -> None:
    snap = {**valid("snapshot"), "generation": 9, "records": [record(i, 9) for i in range(4)]}
    got = same(pack(snap), "snapshot")
    assert isinstance(got, rows.SnapshotRows) and len(got.records) == 4
    first, second = got.records[:2]
    assert first.host is second.host and first.vtep is second.vtep
    assert first == rows.Row("e0", "h2", "02:00:00:00:00:00", "10.1.0.0", "198.18.0.2", 9)


def snapshot_with(**patch: Any) -> dict[str, Any]:
    return {**valid("snapshot"), **patch}


def change_with(**patch: Any) -> dict[str, Any]:
    return {**valid("change"), **patch}


BAD: list[tuple[str, Any, type[proto.WireError]]] = [
    ("snapshot", b"", proto.MalformedPayload),
    ("snapshot", b"\xc1", proto.MalformedPayload),
    ("snapshot", pack(valid("snapshot"))[:-3], proto.MalformedPayload),
    ("snapshot", pack(valid("snapshot")) + b"\x00", proto.MalformedPayload),
    ("snapshot", pack([1, 2, 3]), proto.MalformedPayload),
    ("snapshot", pack({1: 2}), proto.MalformedPayload),
    ("snapshot", pack({**valid("snapshot"), "records": [{1: 2}]}), proto.MalformedPayload),
    ("snapshot", b"\xff" * (proto.MAX_PAYLOAD + 1), proto.OversizePayload),
    ("snapshot", snapshot_with(v=2), proto.UnsupportedVersion),
    ("snapshot", snapshot_with(kind="nope"), proto.UnknownKind),
    ("snapshot", valid("change"), proto.WrongKind),
    ("change", valid("snapshot"), proto.WrongKind),
    ("snapshot", snapshot_with(extra=1), proto.SchemaViolation),
    ("snapshot", snapshot_with(shard=1), proto.SchemaViolation),
    ("snapshot", snapshot_with(generation=1), proto.SchemaViolation),  # a newer record
    ("snapshot", snapshot_with(records="e1"), proto.SchemaViolation),
    ("snapshot", snapshot_with(records=["e1"]), proto.SchemaViolation),
    (
        "snapshot",
        snapshot_with(records=[{**record(1, 1), "mac": "01:00:00:00:00:01"}]),
        proto.SchemaViolation,
    ),
    ("snapshot", snapshot_with(records=[{**record(1, 1), "extra": 1}]), proto.SchemaViolation),
    (
        "snapshot",
        snapshot_with(records=[{**record(1, 1), "kind": "change"}]),
        proto.SchemaViolation,
    ),
    (
        "snapshot",
        snapshot_with(records=[record(1, 1), {**record(2, 1), "gen": "1"}]),
        proto.SchemaViolation,
    ),
    ("change", change_with(upserts=[record(1, 2)]), proto.SchemaViolation),  # gen ≠ change's
    ("change", change_with(upserts=[record(1, 3)], deletes=["e1"]), proto.SchemaViolation),
    (
        "change",
        change_with(upserts=[record(1, 3), record(1, 3)], deletes=[]),
        proto.SchemaViolation,
    ),
    ("change", change_with(generation=0), proto.SchemaViolation),
]


@pytest.mark.parametrize(("kind", "data", "error"), BAD)
def test_refused_as_decode_refuses(kind: str, data: Any, error: type[proto.WireError]) -> None:
    data = data if isinstance(data, bytes) else pack(data)
    with pytest.raises(error) as info:
        same(data, kind)
    assert info.value.reason


def test_too_many_records_are_refused_before_any_is_validated() -> None:
    snap = snapshot_with(generation=9, records=[record(1, 9)] * (MAX_RECORDS + 1))
    with pytest.raises(proto.SchemaViolation, match="at most 10000 items"):
        proto.decode_rows(pack(snap), proto.NetworkSnapshot)


def test_the_last_of_a_key_given_twice_counts_as_in_a_map() -> None:
    """A map's key given twice: the last one counts, as msgpack's unpacking of a whole
    map has it (a refused first ``records`` does not matter, a refused last one does;
    bytes that are not msgpack refuse the frame wherever they are)."""
    good, bad = pack([record(1, 1)]), pack([{**record(1, 1), "mac": "bad"}])
    head = msgpack.Packer()
    fields = {k: v for k, v in valid("snapshot").items() if k != "records"}

    def frame(*values: bytes) -> bytes:
        out = head.pack_map_header(len(fields) + len(values))
        out += b"".join(head.pack(k) + head.pack(v) for k, v in fields.items())
        return out + b"".join(head.pack("records") + v for v in values)

    assert len(same(frame(bad, good), "snapshot").records) == 1  # type: ignore[union-attr]
    with pytest.raises(proto.SchemaViolation):
        same(frame(good, bad), "snapshot")
    with pytest.raises(proto.SchemaViolation):
        same(frame(good, pack("e1")), "snapshot")
    not_utf8 = b"\x91\xa1\x80"  # an array of one string whose byte is no UTF-8
    with pytest.raises(proto.MalformedPayload):  # the first is unpacked all the same
        same(frame(not_utf8, good), "snapshot")


def test_records_are_never_all_models_at_once() -> None:
    """The point of the rows: decoding a shard of 5,000 records peaks at a fraction of
    what decoding it into models (and then into rows) does."""
    recs = [record(i, 9) for i in range(5000)]
    data = pack(snapshot_with(generation=9, records=recs))
    del recs

    def peak(decode: Any) -> int:
        tracemalloc.start()
        try:
            kept = decode(data)
            return tracemalloc.get_traced_memory()[1] + 0 * len(kept.records)
        finally:
            tracemalloc.stop()

    as_rows = peak(lambda d: proto.decode_rows(d, proto.NetworkSnapshot))
    as_models = peak(lambda d: rows.of(proto.decode(d, proto.NetworkSnapshot)))
    assert as_rows * 3 < as_models, (as_rows, as_models)
