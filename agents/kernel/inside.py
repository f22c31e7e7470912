"""What the compartments hold, read on one thread: each namespace's links, IPv4
addresses and main-table default routes, three netlink dumps parsed here.

A full read of the kernel looks into every owned namespace (and every runtime
namespace asked for). Through pyroute2 that was a socket kept per namespace (~14 KiB
each, made through a thread entering it) and three awaited dumps, each parsed into
pyroute2's message objects. Here one thread made for the read (:func:`.netns.in_netns`
with ``ns`` None) enters each namespace in turn (:func:`.netns.visit_each`), dumps on a
raw socket made there, keeps the few fields the agent reads, and closes it.
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
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_LINKINFO = 1, 3, 4, 5, 18
IFLA_INFO_KIND = 1
IFA_ADDRESS = 1
RTA_OIF, RTA_GATEWAY, RTA_TABLE = 4, 5, 15
RT_TABLE_MAIN = 254

_U32 = struct.Struct("=I")


class Link(NamedTuple):
    """A link of a namespace, as the agent reads it."""

    ifindex: int
    ifname: str
    kind: str | None  # IFLA_INFO_KIND: "veth", …
    link: int  # IFLA_LINK (a veth's: its peer's index), 0 if none
    mac: str
    mtu: int
    flags: int


class Inside(NamedTuple):
    """What one namespace holds: its links, its IPv4 addresses (``ip/plen``) by
    ifindex, and its main table's default routes with a gateway, as (gateway, oif)."""

    links: list[Link]
    addrs: dict[int, list[str]]
    defaults: list[tuple[str, int]]


def _text(value: bytes | None) -> str:
    return value.split(b"\0", 1)[0].decode() if value else ""


def _u32(value: bytes | None) -> int:
    return _U32.unpack(value[:4])[0] if value and len(value) >= 4 else 0


def read_inside(ns: str) -> Inside:
    """Enter ``ns`` (the calling thread: see the module) and read it."""
    enter(ns, create=False)
    links: list[Link] = []
    addrs: dict[int, list[str]] = {}
    defaults: list[tuple[str, int]] = []
    with raw_socket() as sock:
        for msg, data, off, end in dump(sock, RTM_GETLINK, IFINFO.pack(0, 0, 0, 0, 0)):
            if msg != RTM_NEWLINK:
                continue
            _, _, index, flags, _ = IFINFO.unpack_from(data, off)
            a = attrs(data, off + IFINFO.size, end)
            info = a.get(IFLA_LINKINFO)
            kind = _text(attrs(info, 0, len(info)).get(IFLA_INFO_KIND)) if info else ""
            mac = a.get(IFLA_ADDRESS, b"")
            links.append(
                Link(
                    index,
                    _text(a.get(IFLA_IFNAME)),
                    kind or None,
                    _u32(a.get(IFLA_LINK)),
                    mac.hex(":") if len(mac) == 6 else "",
                    _u32(a.get(IFLA_MTU)),
                    flags,
                )
            )
        for msg, data, off, end in dump(sock, RTM_GETADDR, IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
            family, plen, _, _, index = IFADDR.unpack_from(data, off)
            ip = attrs(data, off + IFADDR.size, end).get(IFA_ADDRESS)
            if msg == RTM_NEWADDR and family == socket.AF_INET and ip and len(ip) == 4:
                addrs.setdefault(index, []).append(f"{socket.inet_ntoa(ip)}/{plen}")
        for msg, data, off, end in dump(
            sock, RTM_GETROUTE, RT.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        ):
            family, dst_len, _, _, table, _, _, _, _ = RT.unpack_from(data, off)
            a = attrs(data, off + RT.size, end)
            table = _u32(a[RTA_TABLE]) if RTA_TABLE in a else table
            gw = a.get(RTA_GATEWAY)
            default = msg == RTM_NEWROUTE and family == socket.AF_INET and dst_len == 0
            if default and table == RT_TABLE_MAIN and gw and len(gw) == 4:
                defaults.append((socket.inet_ntoa(gw), _u32(a.get(RTA_OIF))))
    return Inside(links, addrs, defaults)


async def read_all(spaces: Sequence[str]) -> list[Inside | OSError]:
    """:func:`read_inside` of each of ``spaces`` (one outcome each), on one thread."""
    if not spaces:
        return []
    return await in_netns(None, lambda: visit_each(spaces, read_inside))


__all__ = ["Inside", "Link", "read_all", "read_inside"]
