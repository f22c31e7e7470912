"""The one msgpack codec of the wire, with its size limit.

``decode`` either returns a fully validated model or raises a :class:`WireError`
subclass whose ``reason`` says why; nothing else escapes it. ``decode_rows`` is the same
for a table's snapshots and changes, with their records as rows (:mod:`proto.rows`):
what a host that keeps the table holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, overload

import msgpack
from pydantic import ValidationError

from .errors import (
    MalformedPayload,
    OversizePayload,
    SchemaViolation,
    UnknownKind,
    UnsupportedVersion,
    WireError,
    WrongKind,
)
from .models import KINDS, Compartment, HostDesired
from .rows import ChangeRows, Row, SnapshotRows, change_records, row, snapshot_records
from .table import MAX_RECORDS, EndpointRecord, NetworkChange, NetworkSnapshot
from .wire import SCHEMA_VERSION, Wire

#: the largest payload either side accepts (the broker is configured with the same)
MAX_PAYLOAD = 1 << 20

M = TypeVar("M", bound=Wire)


def encode(message: Wire) -> bytes:
    """Encode a message; raises :class:`OversizePayload` rather than emit a frame
    that receivers would refuse."""
    return pack(message.model_dump(mode="json"))


def pack(dump: dict[str, Any]) -> bytes:
    """Encode a message's ``model_dump(mode="json")``, possibly assembled from the dumps
    of its parts (the controller caches those of unchanged compartments)."""
    data: bytes = msgpack.packb(dump, use_bin_type=True)
    if len(data) > MAX_PAYLOAD:
        raise OversizePayload(len(data), MAX_PAYLOAD)
    return data


def pack_parts(dump: Mapping[str, Any], packed: Mapping[str, Sequence[bytes]]) -> bytes:
    """The same bytes as :func:`pack`, but the lists under the keys of ``packed`` come as
    the msgpack encodings of their items (cached by the caller): a document of many
    unchanged parts is assembled, not encoded again."""
    packer = msgpack.Packer(use_bin_type=True)
    out = [packer.pack_map_header(len(dump))]
    for key, value in dump.items():
        out.append(packer.pack(key))
        if key in packed:
            items = packed[key]
            out.append(packer.pack_array_header(len(items)))
            out.extend(items)
        else:
            out.append(packer.pack(value))
    data = b"".join(out)
    if len(data) > MAX_PAYLOAD:
        raise OversizePayload(len(data), MAX_PAYLOAD)
    return data


def _refuse_ext(code: int, data: bytes) -> Any:
    raise MalformedPayload(f"msgpack extension type {code} is not allowed")


def _unpack(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_PAYLOAD:
        raise OversizePayload(len(data), MAX_PAYLOAD)
    if not data:
        raise MalformedPayload("empty payload")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            ext_hook=_refuse_ext,
        )
    except MalformedPayload:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as e:
        # ExtraData, FormatError, StackError and UnicodeDecodeError are all ValueErrors
        raise MalformedPayload(f"not valid msgpack: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict):
        raise MalformedPayload(f"payload is a msgpack {type(obj).__name__}, not a map")
    return obj


@overload
def decode(data: bytes) -> Wire: ...
@overload
def decode(data: bytes, expect: type[M]) -> M: ...
def decode(data: bytes, expect: type[Wire] | None = None) -> Wire:
    """Decode and validate one frame; ``expect`` restricts the accepted kind."""
    obj = _unpack(data)
    model = _model(obj, expect)
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        raise SchemaViolation(str(obj["kind"]), _summarise(e)) from None


def _model(obj: dict[Any, Any], expect: type[Wire] | None) -> type[Wire]:
    """The model of a frame's map by its version and kind (``expect``: only that one)."""
    version = obj.get("v")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise UnsupportedVersion(version)
    kind = obj.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise UnknownKind(kind)
    if expect is not None and model is not expect:
        raise WrongKind(str(kind), (_kind_of(expect),))
    return model


class DesiredDecoder:
    """:func:`decode`, but a host's desired document reuses the validated compartments of
    the one before it: a host of 200 compartments gets its whole document again at
    every change of one of them, and validating it whole costs ~5 ms where the bytes of
    199 compartments are the same. A compartment whose bytes it held in the previous
    document is taken as it was (the models are frozen); the document's own checks run
    as always; anything that does not validate is decoded by :func:`decode`, so that
    the error is the one it gives. It holds the parts of the last document only."""

    def __init__(self) -> None:
        self._parts: dict[bytes, Compartment] = {}

    @overload
    def __call__(self, data: bytes) -> Wire: ...
    @overload
    def __call__(self, data: bytes, expect: type[M]) -> M: ...
    def __call__(self, data: bytes, expect: type[Wire] | None = None) -> Wire:
        if expect is not HostDesired or len(data) > MAX_PAYLOAD or not data:
            return decode(data, expect) if expect is not None else decode(data)
        try:
            fields, raws = _desired_fields(data)
            parts = {raw: self._parts.get(raw) or _compartment(raw) for raw in raws}
            doc = HostDesired.model_validate(
                {**fields, "compartments": tuple(parts[r] for r in raws)}
            )
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError, WireError):
            return decode(data, expect)  # ValidationError is a ValueError: the same error
        self._parts = parts
        return doc


def _desired_fields(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """A desired document's top-level fields, its compartments as the bytes of each."""
    unpacker = msgpack.Unpacker(
        raw=False, use_list=False, strict_map_key=True, ext_hook=_refuse_ext, max_buffer_size=0
    )
    unpacker.feed(data)
    fields: dict[str, Any] = {}
    raws: list[bytes] = []
    for _ in range(unpacker.read_map_header()):
        key = unpacker.unpack()
        if key != "compartments":
            fields[key] = unpacker.unpack()
            continue
        for _ in range(unpacker.read_array_header()):
            start = unpacker.tell()
            unpacker.skip()
            raws.append(data[start : unpacker.tell()])
    if unpacker.tell() != len(data):
        raise ValueError("extra data")
    if fields.get("v") != SCHEMA_VERSION or fields.get("kind") != "desired":
        raise ValueError("not a desired document of this version")
    return fields, raws


def _compartment(raw: bytes) -> Compartment:
    obj = msgpack.unpackb(raw, raw=False, use_list=False, strict_map_key=True, ext_hook=_refuse_ext)
    return Compartment.model_validate(obj)


def _kind_of(model: type[Wire]) -> str:
    return next(k for k, m in KINDS.items() if m is model)


def _summarise(err: ValidationError, limit: int = 5) -> list[str]:
    out = []
    for item in err.errors(include_url=False, include_input=False)[:limit]:
        loc = ".".join(str(p) for p in item["loc"]) or "<message>"
        out.append(f"{loc}: {item['msg']}")
    if err.error_count() > limit:
        out.append(f"... and {err.error_count() - limit} more")
    return out


#: the first byte of a msgpack array (fixarray, array 16, array 32)
_ARRAY_BYTES = frozenset(bytes([b]) for b in [*range(0x90, 0xA0), 0xDC, 0xDD])


@overload
def decode_rows(data: bytes, expect: type[NetworkSnapshot]) -> SnapshotRows: ...
@overload
def decode_rows(data: bytes, expect: type[NetworkChange]) -> ChangeRows: ...
def decode_rows(
    data: bytes, expect: type[NetworkSnapshot] | type[NetworkChange]
) -> SnapshotRows | ChangeRows:
    """:func:`decode` of a snapshot or a change, with its records as rows
    (:mod:`proto.rows`), never all of them models or unpacked maps at once.

    The frame is read twice: its own fields first, its records skipped, checked as
    :func:`decode` checks them (version, kind, the model's fields); then its records,
    each unpacked, validated by :class:`EndpointRecord` and kept as its row in turn,
    and the rules over them. What :func:`decode` refuses, this refuses, with the same
    error, but for one order: bytes that are not msgpack inside the records of a frame
    whose own fields are wrong too are found after those (decode unpacks the whole
    frame first)."""
    field = "records" if expect is NetworkSnapshot else "upserts"
    kind = _kind_of(expect)
    obj, at = _fields(data, field)
    model = _model(obj, expect)
    try:
        msg = model.model_validate({**obj, field: ()} if at is not None else obj)
    except ValidationError as e:
        raise SchemaViolation(kind, _summarise(e)) from None
    rows = _rows(data, field, kind, at) if at is not None else ()
    try:
        if isinstance(msg, NetworkSnapshot):
            snapshot_records(msg.generation, rows)
            return SnapshotRows(
                msg.network, msg.generation, msg.shard, msg.shards, rows, msg.layout
            )
        assert isinstance(msg, NetworkChange)
        change_records(msg.generation, rows, msg.deletes)
        return ChangeRows(msg.network, msg.generation, rows, msg.deletes)
    except ValueError as e:
        raise SchemaViolation(kind, [f"<message>: Value error, {e}"]) from None


def _unpacker(data: bytes) -> msgpack.Unpacker:
    if len(data) > MAX_PAYLOAD:
        raise OversizePayload(len(data), MAX_PAYLOAD)
    if not data:
        raise MalformedPayload("empty payload")
    unpacker = msgpack.Unpacker(
        raw=False,
        use_list=False,
        strict_map_key=True,
        ext_hook=_refuse_ext,
        max_buffer_size=MAX_PAYLOAD,
    )
    unpacker.feed(data)
    return unpacker


@contextmanager
def _malformed() -> Iterator[None]:
    """msgpack's errors as :func:`_unpack` translates them."""
    try:
        yield
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as e:
        raise MalformedPayload(f"not valid msgpack: {type(e).__name__}: {e}") from None


def _key(unpacker: msgpack.Unpacker) -> Any:
    key = unpacker.unpack()
    if not isinstance(key, str | bytes):  # what strict_map_key refuses in a map
        raise ValueError(f"{type(key).__name__} is not allowed for map key")
    return key


def _fields(data: bytes, field: str) -> tuple[dict[Any, Any], int | None]:
    """The frame's map without the array under ``field``, and which of the map's keys
    holds that array (None: none does; a key given twice counts once, the last)."""
    unpacker = _unpacker(data)
    obj: dict[Any, Any] = {}
    at = None
    with _malformed():
        for i in range(unpacker.read_map_header()):
            key = _key(unpacker)
            if key == field and data[unpacker.tell() : unpacker.tell() + 1] in _ARRAY_BYTES:
                unpacker.skip()  # unpacked by _rows
                obj.pop(key, None)
                at = i
            else:
                obj[key] = unpacker.unpack()
                at = None if key == field else at
        if unpacker.tell() != len(data):
            raise ValueError("unpack(b) received extra data.")
    return obj, at


def _rows(data: bytes, field: str, kind: str, at: int) -> tuple[Row, ...]:
    """The records of the array at the map's key number ``at``, as rows."""
    unpacker = _unpacker(data)
    rows: list[Row] = []
    with _malformed():
        for i in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if i != at:
                if key == field:  # an array given before the last: unpacked as decode does
                    unpacker.unpack()
                else:
                    unpacker.skip()
                continue
            count = unpacker.read_array_header()
            if count > MAX_RECORDS:
                reason = f"at most {MAX_RECORDS} items after validation, not {count}"
                raise SchemaViolation(kind, [f"{field}: Tuple should have {reason}"])
            for n in range(count):
                try:
                    rows.append(row(EndpointRecord.model_validate(unpacker.unpack())))
                except ValidationError as e:
                    raise SchemaViolation(
                        kind, [f"{field}.{n}.{line}" for line in _summarise(e)]
                    ) from None
    return tuple(rows)
