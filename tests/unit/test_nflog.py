"""agents.kernel.nflog: nfnetlink_log datagrams parsed (the real kernel's in
tests/kernel/test_acl.py)."""

from __future__ import annotations

import struct

from agents.kernel import nflog


def _attr(kind: int, data: bytes) -> bytes:
    pad = (4 - len(data) % 4) % 4
    return struct.pack("=HH", 4 + len(data), kind) + data + b"\0" * pad


def packet(prefix: bytes, payload: bytes) -> bytes:
    body = struct.pack("=BBH", 2, 0, 0) + _attr(nflog.NFULA_PREFIX, prefix + b"\0")
    body += _attr(nflog.NFULA_PAYLOAD, payload)
    kind = (nflog.NFNL_SUBSYS_ULOG << 8) | nflog.NFULNL_MSG_PACKET
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


IP_TCP = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 44, 0, 11, 10, 44, 0, 10])
PORTS = struct.pack("!HH", 40000, 81)


def test_packets_of_a_datagram_with_prefix_addresses_and_ports() -> None:
    data = packet(b"plexus web-in:in-50 ", IP_TCP + PORTS) + packet(b"x", b"\x60" + b"\0" * 39)
    (got,) = nflog.parse(data)  # the IPv6 one skipped
    assert got == nflog.Logged("plexus web-in:in-50 ", "10.44.0.11", "10.44.0.10", "tcp", 40000, 81)
    assert got.rule == ("web-in", "in-50")


def test_icmp_has_no_ports_and_a_truncated_datagram_stops_cleanly() -> None:
    icmp = bytearray(IP_TCP)
    icmp[9] = 1
    (got,) = nflog.parse(packet(b"plexus p:out-1 ", bytes(icmp)))
    assert (got.protocol, got.sport, got.dport) == ("icmp", None, None)
    assert nflog.parse(packet(b"p", IP_TCP + PORTS)[:30]) == []
