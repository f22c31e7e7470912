"""Route netlink dumps parsed into what the agent reads of them: links, IPv4 addresses
and the main table's IPv4 routes (on a raw socket: :mod:`.rawnl`), of the host's own
namespace (:func:`read_here`) and of every compartment (:func:`read_all`).

Through pyroute2 each link became a message object of nested attribute lists, and each
compartment had a socket of its own. Here a message is unpacked once, only the fields
the driver reads are kept, and the compartments are read on one thread that enters each
in turn (``benchmarks.kernel_pass`` times a full read).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from typing import NamedTuple

from .netns import enter, in_netns, visit_each
from .rawnl import IFADDR, IFINFO, RT, attrs, dump, raw_socket

RTM_GETLINK, RTM_NEWLINK, RTM_GETADDR, RTM_NEWADDR, RTM_GETROUTE, RTM_NEWROUTE = (
    18, 16, 22, 20, 26, 24,
)  # fmt: skip
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_LINK_NETNSID = 18, 20, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_BR_NF_CALL_IPTABLES = 36
IFLA_VXLAN_ID, IFLA_VXLAN_LOCAL, IFLA_VXLAN_PORT = 1, 4, 15
IFA_ADDRESS = 1
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RT_TABLE_MAIN = 254

_U32 = struct.Struct("=I")
_BE16 = struct.Struct("!H")


class Link(NamedTuple):
    """A link as the agent reads it (0, "" or None where the kernel gave nothing)."""

    ifindex: int
    ifname: str
    kind: str | None  # IFLA_INFO_KIND: "veth", "bridge", "vxlan"…
    link: int  # IFLA_LINK (a veth's: its peer's index)
    mac: str
    mtu: int
    flags: int
    alias: str | None = None
    master: int = 0
    #: its peer is in another namespace (IFLA_LINK_NETNSID given)
    peer_elsewhere: bool = False
    #: a bridge's: br_netfilter hands its frames to iptables (IFLA_BR_NF_CALL_IPTABLES)
    filtered: bool = False
    #: a VXLAN device's VNI, local address and UDP port
    vni: int = 0
    local: str = ""
    port: int = 0


class Route(NamedTuple):
    """A main-table IPv4 route: its destination (None for the default), prefix
    length, output interface (None for a multipath one) and gateway."""

    dst: str | None
    dst_len: int
    oif: int | None
    gateway: str | None


def text(value: bytes | None) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace") if value else ""


def u32(value: bytes | None) -> int:
    return _U32.unpack(value[:4])[0] if value and len(value) >= 4 else 0


def _ip(value: bytes | None) -> str | None:
    return socket.inet_ntoa(value) if value and len(value) == 4 else None


def links(sock: socket.socket) -> list[Link]:
    out: list[Link] = []
    for msg, data, off, end in dump(sock, RTM_GETLINK, IFINFO.pack(0, 0, 0, 0, 0)):
        if msg != RTM_NEWLINK:
            continue
        _, _, index, flags, _ = IFINFO.unpack_from(data, off)
        a = attrs(data, off + IFINFO.size, end)
        info = a.get(IFLA_LINKINFO)
        i = attrs(info, 0, len(info)) if info else {}
        kind = text(i.get(IFLA_INFO_KIND)) or None
        raw = i.get(IFLA_INFO_DATA)
        d = attrs(raw, 0, len(raw)) if raw else {}
        mac = a.get(IFLA_ADDRESS, b"")
        alias = a.get(IFLA_IFALIAS)
        port = d.get(IFLA_VXLAN_PORT)
        out.append(
            Link(
                index,
                text(a.get(IFLA_IFNAME)),
                kind,
                u32(a.get(IFLA_LINK)),
                mac.hex(":") if len(mac) == 6 else "",
                u32(a.get(IFLA_MTU)),
                flags,
                text(alias) if alias is not None else None,
                u32(a.get(IFLA_MASTER)),
                IFLA_LINK_NETNSID in a,
                kind == "bridge" and any(d.get(IFLA_BR_NF_CALL_IPTABLES, b"")),
                u32(d.get(IFLA_VXLAN_ID)) if kind == "vxlan" else 0,
                (_ip(d.get(IFLA_VXLAN_LOCAL)) or "") if kind == "vxlan" else "",
                _BE16.unpack(port[:2])[0] if kind == "vxlan" and port and len(port) >= 2 else 0,
            )
        )
    return out


def addresses(sock: socket.socket) -> dict[int, list[str]]:
    """The IPv4 addresses (``ip/plen``) by ifindex."""
    out: dict[int, list[str]] = {}
    for msg, data, off, end in dump(sock, RTM_GETADDR, IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
        family, plen, _, _, index = IFADDR.unpack_from(data, off)
        ip = _ip(attrs(data, off + IFADDR.size, end).get(IFA_ADDRESS))
        if msg == RTM_NEWADDR and family == socket.AF_INET and ip:
            out.setdefault(index, []).append(f"{ip}/{plen}")
    return out


def routes(sock: socket.socket) -> list[Route]:
    """The main table's IPv4 routes."""
    out: list[Route] = []
    request = RT.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    for msg, data, off, end in dump(sock, RTM_GETROUTE, request):
        family, dst_len, _, _, table, _, _, _, _ = RT.unpack_from(data, off)
        a = attrs(data, off + RT.size, end)
        table = u32(a[RTA_TABLE]) if RTA_TABLE in a else table
        if msg != RTM_NEWROUTE or family != socket.AF_INET or table != RT_TABLE_MAIN:
            continue
        oif = u32(a[RTA_OIF]) if RTA_OIF in a else None
        out.append(Route(_ip(a.get(RTA_DST)), dst_len, oif, _ip(a.get(RTA_GATEWAY))))
    return out


class Namespace(NamedTuple):
    """What one namespace holds: its links, its IPv4 addresses by ifindex, and its
    main table's IPv4 routes."""

    links: list[Link]
    addrs: dict[int, list[str]]
    routes: list[Route]


def read_here() -> Namespace:
    """The calling thread's namespace, read."""
    with raw_socket() as sock:
        return Namespace(links(sock), addresses(sock), routes(sock))


def read_inside(ns: str) -> Namespace:
    """Enter ``ns`` (the calling thread: one that :func:`read_all` made) and read it."""
    enter(ns, create=False)
    return read_here()


async def read_all(spaces: Sequence[str]) -> list[Namespace | OSError]:
    """:func:`read_inside` of each of ``spaces`` (one outcome each), on one thread made
    for the read (:func:`.netns.in_netns` with ``ns`` None), which enters each in turn
    (:func:`.netns.visit_each`): no socket is kept per namespace."""
    if not spaces:
        return []
    return await in_netns(None, lambda: visit_each(spaces, read_inside))


__all__ = [
    "Link",
    "Namespace",
    "Route",
    "addresses",
    "links",
    "read_all",
    "read_here",
    "read_inside",
    "routes",
]
