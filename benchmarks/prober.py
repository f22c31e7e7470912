"""Pings from inside a namespace until the first reply: run by the convergence
benchmark as ``nsenter --net=… python -m benchmarks.prober``.

Reads one target address per line on stdin; sends an ICMP echo every millisecond
(raw socket) until a reply comes or 5 s pass, then prints ``ADDRESS T`` with T the
CLOCK_MONOTONIC time of the reply (system-wide, comparable with the caller's), or
``ADDRESS none``."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"plexus-bench"
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload


def first_reply(sock: socket.socket, address: str, ident: int, within: float = 5.0) -> float | None:
    deadline = time.monotonic() + within
    seq = 0
    while time.monotonic() < deadline:
        seq = (seq + 1) & 0xFFFF
        with contextlib.suppress(OSError):  # no route yet
            sock.sendto(echo(ident, seq), (address, 0))
        until = time.monotonic() + 0.001
        while (left := until - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data, (src, _) = sock.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if kind == 0 and rid == ident and src == address:
                return time.monotonic()
    return None


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    print("ready", flush=True)
    for line in sys.stdin:
        address = line.strip()
        if not address:
            continue
        t = first_reply(sock, address, ident)
        print(f"{address} {t if t is not None else 'none'}", flush=True)


if __name__ == "__main__":
    main()
