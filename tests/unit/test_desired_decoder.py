""":class:`proto.DesiredDecoder`: a desired document decoded with the compartments of
the one before reused is the document :func:`proto.decode` gives, and a document that
does not validate is refused with the very error :func:`proto.decode` gives."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

import proto


def doc(count: int, generation: int = 1, **changes: Any) -> proto.HostDesired:
    net = proto.NetworkSpec(
        id="blue", mode="overlay", subnet="10.1.0.0/16", gateway="10.1.0.1", vni=42,
        mtu=1450, generation=1,
    )  # fmt: skip
    comps = []
    for i in range(count):
        ip = changes.get(f"ip{i}", f"10.1.{i // 250}.{i % 250 + 2}")
        ep = proto.LocalEndpoint(
            id=f"e{i}", network="blue", index=0, mac=f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
            ip=ip, prefixlen=16, default_route=True,
        )  # fmt: skip
        comps.append(proto.Compartment(id=f"c{i}", endpoints=(ep,)))
    return proto.HostDesired(
        host="h1", generation=generation, networks=(net,), compartments=tuple(comps)
    )


def test_the_same_document_as_decode_with_unchanged_compartments_reused() -> None:
    dec = proto.DesiredDecoder()
    first = proto.encode(doc(50))
    a = dec(first, proto.HostDesired)
    assert a == proto.decode(first, proto.HostDesired)
    second = proto.encode(doc(51, generation=2, ip7="10.1.9.9"))
    b = dec(second, proto.HostDesired)
    assert b == proto.decode(second, proto.HostDesired)
    assert b.compartments[3] is a.compartments[3]  # the same bytes: the same model
    assert (
        b.compartments[7] is not a.compartments[7]
        and b.compartments[7].endpoints[0].ip == "10.1.9.9"
    )
    assert b.compartments[50].id == "c50"
    # only the last document's parts are held
    c = dec(proto.encode(doc(2, generation=3)), proto.HostDesired)
    assert len(dec._parts) == 2 and c.generation == 3
    # other kinds are decode's
    change = proto.NetworkChange(network="blue", generation=4)
    assert dec(proto.encode(change), proto.NetworkChange) == change


def bad(patch: Any) -> bytes:
    obj = msgpack.unpackb(proto.encode(doc(3)), raw=False)
    patch(obj)
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize(
    "frame",
    [
        bad(lambda o: o["compartments"][1]["endpoints"][0].update(ip="10.1.0.300")),
        bad(lambda o: o["compartments"][2].update(id="c0")),  # a compartment twice
        bad(lambda o: o["compartments"][0]["endpoints"][0].update(network="red")),
        bad(lambda o: o.update(v=2)),
        bad(lambda o: o.update(kind="status")),
        bad(lambda o: o.update(extra=1)),
        proto.encode(doc(3)) + b"\x00",
        proto.encode(doc(3))[:-3],
        b"",
        msgpack.packb([1, 2]),
    ],
)
def test_a_document_that_does_not_validate_gets_decodes_error(frame: bytes) -> None:
    dec = proto.DesiredDecoder()
    dec(proto.encode(doc(3)), proto.HostDesired)  # its parts are held: they must not help
    with pytest.raises(proto.WireError) as want:
        proto.decode(frame, proto.HostDesired)
    with pytest.raises(type(want.value)) as got:
        dec(frame, proto.HostDesired)
    assert str(got.value) == str(want.value)
