"""The packets ACL rules with ``log`` send to nflog group :data:`agents.acl.LOG_GROUP`,
read from the kernel (``NETLINK_NETFILTER``, the ``nfnetlink_log`` subsystem) in the
host's namespace: each one's prefix (``plexus POLICY:RULE``), addresses, protocol and
ports. pyroute2 has no nflog socket; the protocol is small (``linux/netfilter/
nfnetlink_log.h``), so this module speaks it with ``socket`` and ``struct``.

Only one listener may bind a group in a namespace: a second agent (or ulogd) on the
same host gets :class:`OSError` from :func:`open_group`."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
#: bytes of each packet copied: the IPv4 header and the ports after it
COPY = 64
_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp"}


@dataclass(frozen=True, slots=True)
class Logged:
    prefix: str
    src: str
    dst: str
    protocol: str
    sport: int | None = None
    dport: int | None = None

    @property
    def rule(self) -> tuple[str, str]:
        """(policy, rule) named by a Plexus prefix (``plexus POLICY:RULE``)."""
        _, _, name = self.prefix.strip().partition(" ")
        policy, _, rule = name.partition(":")
        return policy, rule


def _attr(kind: int, data: bytes) -> bytes:
    pad = (4 - len(data) % 4) % 4
    return struct.pack("=HH", 4 + len(data), kind) + data + b"\0" * pad


def _config(group: int, *attrs: bytes, seq: int) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(group)) + b"".join(attrs)
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def open_group(group: int) -> socket.socket:
    """A non-blocking socket bound to nflog ``group`` (packets copied, :data:`COPY`
    bytes each); OSError when the kernel refuses (another listener holds the group)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.bind((0, 0))
        bind = _attr(NFULA_CFG_CMD, struct.pack("=B", NFULNL_CFG_CMD_BIND))
        mode = _attr(NFULA_CFG_MODE, struct.pack("!IBB", COPY, NFULNL_COPY_PACKET, 0))
        for seq, attr in enumerate((bind, mode), start=1):
            sock.send(_config(group, attr, seq=seq))
            _ack(sock.recv(65536))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _ack(data: bytes) -> None:
    _, kind, _, _, _ = struct.unpack_from("=IHHII", data)
    if kind == NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", data, 16)
        if code:
            raise OSError(-code, f"nflog: {os.strerror(-code)}")


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out = {}
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        if offset + length > end:
            break
        out[kind & 0x7FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def _packet(prefix: str, payload: bytes) -> Logged | None:
    if len(payload) < 20 or payload[0] >> 4 != 4:
        return None
    ihl = (payload[0] & 15) * 4
    proto = payload[9]
    src = str(ipaddress.IPv4Address(payload[12:16]))
    dst = str(ipaddress.IPv4Address(payload[16:20]))
    sport = dport = None
    if proto in (6, 17) and len(payload) >= ihl + 4:
        sport, dport = struct.unpack_from("!HH", payload, ihl)
    return Logged(prefix, src, dst, _PROTOCOLS.get(proto, str(proto)), sport, dport)


def parse(data: bytes) -> list[Logged]:
    """The logged IPv4 packets of one datagram (anything else skipped)."""
    out = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _, _, _ = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            attrs = _attrs(data, offset + 20, min(offset + length, len(data)))
            prefix = attrs.get(NFULA_PREFIX, b"").rstrip(b"\0").decode(errors="replace")
            got = _packet(prefix, attrs.get(NFULA_PAYLOAD, b""))
            if got is not None:
                out.append(got)
        offset += (length + 3) & ~3
    return out


def drain(sock: socket.socket) -> list[Logged]:
    """Every packet waiting on ``sock`` (non-blocking)."""
    out: list[Logged] = []
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return out
        except OSError as e:
            if e.errno == errno.ENOBUFS:  # the kernel dropped some: read on
                continue
            raise
        out += parse(data)
