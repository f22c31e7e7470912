"""Route netlink by hand, what the driver's modules that pack their own requests share
(:mod:`.runs`, :mod:`.veths`, :mod:`.dumps`, :mod:`.batch`): the layouts of the
headers, an attribute, a socket, requests with their acknowledgements, and a dump."""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400

HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefixlen, flags, scope, index
#: rtmsg: family, dst and src lengths, tos, table, protocol, scope, type, flags
RT = struct.Struct("=BBBBBBBBI")
NLA = struct.Struct("=HH")
_ERR = struct.Struct("=i")


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded."""
    size = NLA.size + len(payload)
    return NLA.pack(size, kind) + payload + b"\0" * (-size % 4)


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return HDR.pack(HDR.size + len(body), kind, flags, seq, 0) + body


def raw_socket() -> socket.socket:
    """A route netlink socket of the calling thread's namespace."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        s.bind((0, 0))
    except OSError:
        s.close()
        raise
    return s


def send_all(sock: socket.socket, *messages: bytes) -> list[int]:
    """Send ``messages`` (sequence numbers 1…n) in one ``send``; each one's errno."""
    sock.send(b"".join(messages))
    codes: dict[int, int] = {}
    while len(codes) < len(messages):
        data = sock.recv(65536)
        off = 0
        while off + HDR.size <= len(data):
            size, kind, _, seq, _ = HDR.unpack_from(data, off)
            if kind == NLMSG_ERROR and 1 <= seq <= len(messages):
                codes[seq] = -_ERR.unpack_from(data, off + HDR.size)[0]
            off += max((size + 3) & ~3, HDR.size)
    return [codes[i + 1] for i in range(len(messages))]


def dump(
    sock: socket.socket, kind: int, body: bytes, seq: int = 1
) -> Iterator[tuple[int, bytes, int, int]]:
    """A dump request, then each of its messages as (type, data, start of its body,
    its end); an error answered raises ``OSError``."""
    sock.send(message(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, body))
    while True:
        data = sock.recv(1 << 20)
        off = 0
        while off + HDR.size <= len(data):
            size, msg, _, got, _ = HDR.unpack_from(data, off)
            if size < HDR.size:
                raise OSError(errno.EPROTO, "malformed netlink message")
            if got == seq:
                if msg == NLMSG_DONE:
                    return
                if msg == NLMSG_ERROR:
                    code = -_ERR.unpack_from(data, off + HDR.size)[0]
                    raise OSError(code, os.strerror(code))
                yield msg, data, off + HDR.size, off + size
            off += (size + 3) & ~3


def attrs(data: bytes, off: int, end: int) -> dict[int, bytes]:
    """The attributes between ``off`` and ``end`` by type (without the nested and
    byte-order flags)."""
    out: dict[int, bytes] = {}
    while off + NLA.size <= end:
        size, kind = NLA.unpack_from(data, off)
        if size < NLA.size:
            break
        out[kind & 0x3FFF] = data[off + NLA.size : off + size]
        off += (size + 3) & ~3
    return out


__all__ = ["attr", "attrs", "dump", "message", "raw_socket", "send_all"]
