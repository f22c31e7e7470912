"""Veth pairs made many per thread, each request packed here (as :mod:`.batch` packs
the entries').

Made one at a time through pyroute2's ``AsyncIPRoute``, a compartment's pair was four
awaited requests (the add, the host end's alias, the inner end's address, the inner end
up), each costing the agent more Python than the kernel's work on most of them, and a
thread made to enter the compartment for its sysctls; the kernel's add alone is the
floor (``benchmarks.veth_floor``). A run of pairs is made here instead on *one* thread
that never serves anything else: the add and the alias on a netlink socket of the
host's namespace (a socket stays in the namespace it was made in), then the thread
enters the compartment (``setns``), tunes the inner end (:func:`.tune.tune_interface`,
as before) and sends its address and its up in one ``send`` on a socket made there.
The messages are the bytes pyroute2 sends for the same requests
(``tests/unit/test_kernel_runs.py``).

Neither end gets an IPv6 address from the kernel (``IFLA_INET6_ADDR_GEN_MODE`` none,
set before the link has a carrier): a Plexus network carries IPv4, and a link-local
address costs each new interface its duplicate address detection, router solicitations
and MLD report, multicast that the bridge floods to every port, each received in each
compartment — per endpoint a cost that grows with the endpoints already on the bridge
(``benchmarks.kernel_pass --local 600``). A link the kernel keeps no IPv6 for (a
kernel without IPv6, an MTU under 1280) answers ``EAFNOSUPPORT``: nothing to quiet.

A pair this path cannot make (a name taken: a pass cut short, a leftover, a link of a
runtime's; any other error) is returned as failed with its errno: the driver then
makes it the slow way (:func:`add_one`, pyroute2's requests one at a time), which knows
how to take a leftover over and says why it cannot. Handed-over pairs
(:data:`~agents.model.HANDOVER`) are never made in a run.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from proto import names

from .. import plan as p
from ..errors import KernelError
from ..model import HANDOVER, Veth
from .netlink import GONE, ensure, index, pair_of
from .netns import in_netns, open_ns, setns, visit_each
from .rawnl import (
    IFADDR,
    IFINFO,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    attr,
    message,
    raw_socket,
    send_all,
)
from .runs import Slow, on_thread
from .tune import tune_interface

RTM_NEWLINK, RTM_NEWADDR = 16, 20
IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_NET_NS_FD = 18, 20, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFLA_AF_SPEC, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE = 26, 8, 1
#: a link's IPv6: no address made for it (pyroute2's ``IFLA_AF_SPEC`` for :func:`quiet`)
NO_IPV6 = {
    "attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE)]})]
}
#: what a link without IPv6 (no IPv6 in the kernel, an MTU under 1280) answers to it
NO_IPV6_HERE = errno.EAFNOSUPPORT

_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
_SET = NLM_F_REQUEST | NLM_F_ACK


def _u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def _name(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def _mac(value: str) -> bytes:
    return bytes.fromhex(value.replace(":", ""))


def encode_add(v: Veth, bridge: int, ns_fd: int, seq: int) -> bytes:
    """``link("add", state="up", ifname, kind="veth", address, mtu, master, peer={ifname,
    net_ns_fd, address, mtu})``: the host end up in its bridge, the inner end (down) in
    the compartment of ``ns_fd``."""
    peer = IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(
        (
            _name(IFLA_IFNAME, v.inner),
            _u32(IFLA_NET_NS_FD, ns_fd),
            attr(IFLA_ADDRESS, _mac(v.mac)),
            _u32(IFLA_MTU, v.mtu),
        )
    )
    info = attr(IFLA_INFO_KIND, b"veth\0") + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer))
    body = IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP) + b"".join(
        (
            _name(IFLA_IFNAME, v.name),
            attr(IFLA_ADDRESS, _mac(names.host_mac(v.endpoint))),
            _u32(IFLA_MTU, v.mtu),
            _u32(IFLA_MASTER, bridge),
            attr(IFLA_LINKINFO, info),
        )
    )
    return message(RTM_NEWLINK, _CREATE, seq, body)


def encode_alias(index: int, alias: str, seq: int) -> bytes:
    """``link("set", index, ifalias, state="up")``."""
    body = IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP) + _name(IFLA_IFALIAS, alias)
    return message(RTM_NEWLINK, _SET, seq, body)


def encode_address(index: int, address: str, seq: int) -> bytes:
    """``addr("add", index, address, prefixlen)`` of an IPv4 ``address`` (``ip/plen``)."""
    ip, _, plen = address.partition("/")
    packed = socket.inet_aton(ip)
    body = IFADDR.pack(socket.AF_INET, int(plen), 0, 0, index)
    body += attr(IFA_ADDRESS, packed) + attr(IFA_LOCAL, packed)
    return message(RTM_NEWADDR, _CREATE, seq, body)


def encode_no_ipv6(index: int, seq: int) -> bytes:
    """``link("set", index, IFLA_AF_SPEC=NO_IPV6)``: no IPv6 address made for it."""
    mode = attr(IFLA_INET6_ADDR_GEN_MODE, bytes([IN6_ADDR_GEN_MODE_NONE]))
    body = IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
    return message(RTM_NEWLINK, _SET, seq, body + attr(IFLA_AF_SPEC, attr(socket.AF_INET6, mode)))


def encode_up(index: int, seq: int) -> bytes:
    """``link("set", index, state="up")``."""
    return message(RTM_NEWLINK, _SET, seq, IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP))


class Pair(NamedTuple):
    """A pair to make, with its bridge's ifindex in the host's namespace."""

    veth: Veth
    bridge: int


def _make(root: socket.socket, pair: Pair) -> None:
    """One pair (the calling thread in the host's namespace; it ends in the pair's)."""
    v = pair.veth
    fd = open_ns(v.netns)
    try:
        (code,) = send_all(root, encode_add(v, pair.bridge, fd, 1))
        if code:
            raise OSError(code, f"add {v.name}: {os.strerror(code)}")
        idx = socket.if_nametoindex(v.name)
        alias = encode_alias(idx, names.alias("veth", v.endpoint), 1)
        code, quieted = send_all(root, alias, encode_no_ipv6(idx, 2))
        if code:
            raise OSError(code, f"alias of {v.name}: {os.strerror(code)}")
        _quieted(quieted, v.name)
        setns(fd, v.netns)
    finally:
        os.close(fd)
    inner = tune_interface(v.inner, names.is_router_netns(v.netns))()
    with raw_socket() as sock:
        # up last, with its address: the namespace's arp_notify then announces it
        added, quieted, up = send_all(
            sock, encode_address(inner, v.address, 1), encode_no_ipv6(inner, 2), encode_up(inner, 3)
        )
    if added not in (0, errno.EEXIST):
        raise OSError(added, f"address of {v.inner} in {v.netns}: {os.strerror(added)}")
    _quieted(quieted, f"{v.inner} in {v.netns}")
    if up:
        raise OSError(up, f"{v.inner} in {v.netns} up: {os.strerror(up)}")


def _quieted(code: int, what: str) -> None:
    if code not in (0, NO_IPV6_HERE):
        raise OSError(code, f"IPv6 address generation of {what}: {os.strerror(code)}")


def make(pairs: Sequence[Pair]) -> list[OSError | None]:
    """Make ``pairs`` in order; one outcome each (None: made). On a thread of its own
    that starts in the host's namespace (:func:`.netns.visit_each`)."""
    with raw_socket() as root:
        return visit_each(pairs, lambda pair: _make(root, pair))


async def add_veths(run: Sequence[p.AddVeth], slow: Slow) -> list[KernelError | None]:
    """Make a run of pairs (in the agent's own compartments) on a thread of their own;
    one outcome each."""
    pairs: list[Pair] = []
    sent: list[int] = []
    for i, action in enumerate(run):
        try:
            bridge = socket.if_nametoindex(action.veth.bridge)
        except OSError:
            continue  # the slow way says why
        pairs.append(Pair(action.veth, bridge))
        sent.append(i)
    outcomes, _ = await on_thread(run, sent, lambda: make(pairs), slow)
    return outcomes


# -- one pair at a time: the old way, which takes a leftover over


async def add_one(
    ipr: AsyncIPRoute, inner_of: Callable[[str], Awaitable[AsyncIPRoute]], v: Veth
) -> None:
    """One request makes the pair: the host end with its MTU in its bridge, the inner
    end in the compartment with its MAC and MTU (six round trips per compartment,
    not ten). Names already taken (a pass cut short, an unowned leftover): the
    leftover inner end goes, and what the add would have set is set on the pair."""
    bridge = await index(v.bridge)
    if v.netns == HANDOVER:
        await _add_handover(ipr, bridge, v)
        return
    inner = await inner_of(v.netns)
    if v.netns.startswith("/"):  # a runtime's: by a descriptor, checked for its inode
        fd = await asyncio.to_thread(open_ns, v.netns)
        try:
            await _add_pair(ipr, inner, bridge, v, fd)
        finally:
            os.close(fd)
    else:
        await _add_pair(ipr, inner, bridge, v, v.netns)
    await _host_end(ipr, v)
    router = names.is_router_netns(v.netns)
    in_idx = await in_netns(v.netns, tune_interface(v.inner, router))
    ip, _, plen = v.address.partition("/")
    async with ensure(errno.EEXIST):
        await inner.addr("add", index=in_idx, address=ip, prefixlen=int(plen))
    await quiet(inner, in_idx)
    # up last, with its address: the namespace's arp_notify then announces it
    await inner.link("set", index=in_idx, state="up")


async def _host_end(ipr: AsyncIPRoute, v: Veth) -> None:
    """The host end's alias and up, and no IPv6 address made for it, the slow way."""
    idx = await index(v.name)
    await ipr.link("set", index=idx, ifalias=names.alias("veth", v.endpoint), state="up")
    await quiet(ipr, idx)


async def quiet(ipr: AsyncIPRoute, idx: int) -> None:
    """No IPv6 address made for link ``idx`` (:data:`NO_IPV6`), the slow way."""
    async with ensure(NO_IPV6_HERE):
        await ipr.link("set", index=idx, IFLA_AF_SPEC=NO_IPV6)


async def _add_handover(ipr: AsyncIPRoute, bridge: int, v: Veth) -> None:
    """A pair whose inner end stays in the host's namespace, bare and down, for a
    runtime to take (it moves it, names it, sets its addresses and brings it up).
    A leftover of either name (a pass cut short, a pair handed back) goes first."""
    for name in (v.name, v.inner):
        try:
            leftover = await index(name)
        except KernelError:
            continue  # none: the usual case (the lookup raises, not netlink)
        async with ensure(*GONE):
            await ipr.link("del", index=leftover)
    peer = {"ifname": v.inner, "address": v.mac, "mtu": v.mtu}
    await ipr.link(
        "add",
        ifname=v.name,
        kind="veth",
        address=names.host_mac(v.endpoint),
        mtu=v.mtu,
        master=bridge,
        peer=peer,
    )
    await _host_end(ipr, v)  # the inner end, its IPv6 included, is the runtime's


async def _add_pair(
    ipr: AsyncIPRoute, inner: AsyncIPRoute, bridge: int, v: Veth, ns: int | str
) -> None:
    peer = {"ifname": v.inner, "net_ns_fd": ns, "address": v.mac, "mtu": v.mtu}
    pair = {
        "ifname": v.name,
        "kind": "veth",
        "address": names.host_mac(v.endpoint),
        "mtu": v.mtu,
        "master": bridge,
        "peer": peer,
    }
    try:
        await ipr.link("add", state="up", **pair)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise
        stale = await inner.link_lookup(ifname=v.inner)
        if stale and isinstance(ns, int):
            # in a runtime's namespace a link of that name is the agent's only if it
            # is the peer of its host end (a pass cut short before the alias was
            # set); else it is the runtime's, and stays
            if not await pair_of(ipr, inner, stale[0], v.name):
                raise NetlinkError(
                    errno.EEXIST, f"{v.inner} exists in {v.netns} and is not Plexus's"
                ) from None
            stale = []
        if stale:
            await inner.link("del", index=stale[0])
        async with ensure(errno.EEXIST):
            await ipr.link("add", **pair)
        await ipr.link("set", index=await index(v.name), mtu=v.mtu, master=bridge)
        in_idx = await index(v.inner, inner)
        await inner.link("set", index=in_idx, address=v.mac, mtu=v.mtu)


__all__ = [
    "Pair",
    "add_one",
    "add_veths",
    "encode_add",
    "encode_address",
    "encode_alias",
    "encode_no_ipv6",
    "encode_up",
    "make",
    "quiet",
]
