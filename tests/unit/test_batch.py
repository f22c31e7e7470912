"""The batched FDB/neighbour messages are byte for byte what pyroute2 sends."""

from __future__ import annotations

import struct

import pytest
from pyroute2.iproute.linux import IPBatch

from agents.kernel.batch import Entry, encode

MAC, VTEP, IP = "02:00:0a:0b:0c:0d", "198.18.0.7", "10.230.4.9"


def pyroute2_bytes(entry: Entry) -> bytes:
    ipb = IPBatch()
    if entry.fdb:
        op = "append" if entry.add else "del"
        extra = {"state": 0x80} if entry.add else {}
        ipb.fdb(op, ifindex=entry.ifindex, lladdr=entry.mac, dst=entry.addr, **extra)
    else:
        op = "replace" if entry.add else "del"
        extra = {"state": 0x80} if entry.add else {}
        ipb.neigh(op, ifindex=entry.ifindex, dst=entry.addr, lladdr=entry.mac, **extra)
    data = bytes(ipb.batch)
    ipb.close()
    return data


def without_seq_and_pid(data: bytes) -> bytes:
    return data[:8] + b"\0" * 8 + data[16:]


@pytest.mark.parametrize(
    "entry",
    [
        Entry(True, True, 7, MAC, VTEP),
        Entry(True, False, 7, MAC, VTEP),
        Entry(False, True, 12, MAC, IP),
        Entry(False, False, 12, MAC, IP),
        Entry(True, True, 2**31 - 1, "00:00:00:00:00:00", "255.255.255.255"),
    ],
)
def test_encoding_matches_pyroute2(entry: Entry) -> None:
    ours = encode(entry, 42)
    assert struct.unpack_from("=I", ours)[0] == len(ours)
    assert struct.unpack_from("=I", ours, 8)[0] == 42
    assert without_seq_and_pid(ours) == without_seq_and_pid(pyroute2_bytes(entry))
