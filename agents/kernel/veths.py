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
(``tests/unit/test_veths.py``).

A pair this path cannot make (a name taken: a pass cut short, a leftover, a link of a
runtime's; any other error) is returned as failed with its errno: the driver then
makes it the slow way (``LinuxKernel._add_veth``), which knows how to take a leftover
over and says why it cannot. Handed-over pairs (:data:`~agents.model.HANDOVER`) are
never made here.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from proto import names

from .. import plan as p
from ..errors import KernelError
from ..model import Veth
from .netns import NETLINK_ROUTE, in_netns, open_ns, setns
from .tune import tune_interface

RTM_NEWLINK, RTM_NEWADDR = 16, 20
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_NET_NS_FD = 18, 20, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefixlen, flags, scope, index
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
_SET = NLM_F_REQUEST | NLM_F_ACK


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _name(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _mac(value: str) -> bytes:
    return bytes.fromhex(value.replace(":", ""))


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HDR.pack(_HDR.size + len(body), kind, flags, seq, 0) + body


def encode_add(v: Veth, bridge: int, ns_fd: int, seq: int) -> bytes:
    """``link("add", state="up", ifname, kind="veth", address, mtu, master, peer={ifname,
    net_ns_fd, address, mtu})``: the host end up in its bridge, the inner end (down) in
    the compartment of ``ns_fd``."""
    peer = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(
        (
            _name(IFLA_IFNAME, v.inner),
            _u32(IFLA_NET_NS_FD, ns_fd),
            _attr(IFLA_ADDRESS, _mac(v.mac)),
            _u32(IFLA_MTU, v.mtu),
        )
    )
    info = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP) + b"".join(
        (
            _name(IFLA_IFNAME, v.name),
            _attr(IFLA_ADDRESS, _mac(names.host_mac(v.endpoint))),
            _u32(IFLA_MTU, v.mtu),
            _u32(IFLA_MASTER, bridge),
            _attr(IFLA_LINKINFO, info),
        )
    )
    return _message(RTM_NEWLINK, _CREATE, seq, body)


def encode_alias(index: int, alias: str, seq: int) -> bytes:
    """``link("set", index, ifalias, state="up")``."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP) + _name(IFLA_IFALIAS, alias)
    return _message(RTM_NEWLINK, _SET, seq, body)


def encode_address(index: int, address: str, seq: int) -> bytes:
    """``addr("add", index, address, prefixlen)`` of an IPv4 ``address`` (``ip/plen``)."""
    ip, _, plen = address.partition("/")
    packed = socket.inet_aton(ip)
    body = _IFADDR.pack(socket.AF_INET, int(plen), 0, 0, index)
    body += _attr(IFA_ADDRESS, packed) + _attr(IFA_LOCAL, packed)
    return _message(RTM_NEWADDR, _CREATE, seq, body)


def encode_up(index: int, seq: int) -> bytes:
    """``link("set", index, state="up")``."""
    return _message(
        RTM_NEWLINK, _SET, seq, _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP)
    )


def _socket() -> socket.socket:
    """A route netlink socket of the calling thread's namespace."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        s.bind((0, 0))
    except OSError:
        s.close()
        raise
    return s


def _send(sock: socket.socket, *messages: bytes) -> list[int]:
    """Send ``messages`` (sequence numbers 1…n) in one ``send``; each one's errno."""
    sock.send(b"".join(messages))
    codes: dict[int, int] = {}
    while len(codes) < len(messages):
        data = sock.recv(65536)
        off = 0
        while off + _HDR.size <= len(data):
            size, kind, _, seq, _ = _HDR.unpack_from(data, off)
            if kind == NLMSG_ERROR and 1 <= seq <= len(messages):
                codes[seq] = -struct.unpack_from("=i", data, off + _HDR.size)[0]
            off += max((size + 3) & ~3, _HDR.size)
    return [codes[i + 1] for i in range(len(messages))]


class Pair(NamedTuple):
    """A pair to make, with its bridge's ifindex in the host's namespace."""

    veth: Veth
    bridge: int


def _make(root: socket.socket, pair: Pair) -> None:
    """One pair (the calling thread in the host's namespace; it ends in the pair's)."""
    v = pair.veth
    fd = open_ns(v.netns)
    try:
        (code,) = _send(root, encode_add(v, pair.bridge, fd, 1))
        if code:
            raise OSError(code, f"add {v.name}: {os.strerror(code)}")
        idx = socket.if_nametoindex(v.name)
        (code,) = _send(root, encode_alias(idx, names.alias("veth", v.endpoint), 1))
        if code:
            raise OSError(code, f"alias of {v.name}: {os.strerror(code)}")
        setns(fd, v.netns)
    finally:
        os.close(fd)
    inner = tune_interface(v.inner, names.is_router_netns(v.netns))()
    with _socket() as sock:
        # up last, with its address: the namespace's arp_notify then announces it
        added, up = _send(sock, encode_address(inner, v.address, 1), encode_up(inner, 2))
    if added not in (0, errno.EEXIST):
        raise OSError(added, f"address of {v.inner} in {v.netns}: {os.strerror(added)}")
    if up:
        raise OSError(up, f"{v.inner} in {v.netns} up: {os.strerror(up)}")


def make(pairs: Sequence[Pair]) -> list[OSError | None]:
    """Make ``pairs`` in order; one outcome each (None: made). To be run on a thread of
    its own that starts in the host's namespace and ends after (:func:`.netns.in_netns`
    with ``ns`` None):
    it moves into each compartment in turn, and back to the host's namespace (a
    descriptor of it held from the start) before the next pair."""
    out: list[OSError | None] = []
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        with _socket() as root:
            for pair in pairs:
                try:
                    _make(root, pair)
                    out.append(None)
                except OSError as e:
                    out.append(e)
                setns(home, "back to the host's namespace")
    finally:
        os.close(home)
    return out


async def add_veths(
    run: Sequence[p.AddVeth],
    slow: Callable[[Sequence[p.Action]], Awaitable[list[KernelError | None]]],
) -> list[KernelError | None]:
    """Make a run of pairs (none handed over) on a thread of their own; those it could
    not make (and all, if the thread itself failed), the ``slow`` way; one outcome each."""
    pairs: list[Pair] = []
    sent: list[int] = []
    for i, action in enumerate(run):
        try:
            bridge = socket.if_nametoindex(action.veth.bridge)
        except OSError:
            continue  # the slow way says why
        pairs.append(Pair(action.veth, bridge))
        sent.append(i)
    try:
        made = await in_netns(None, lambda: make(pairs)) if pairs else []
    except OSError:  # the thread's own socket or namespace: none is known made
        made, sent = [], []
    done = {i for i, error in zip(sent, made, strict=False) if error is None}
    retried = iter(await slow([a for i, a in enumerate(run) if i not in done]))
    return [None if i in done else next(retried) for i in range(len(run))]


__all__ = ["Pair", "add_veths", "encode_add", "encode_address", "encode_alias", "encode_up", "make"]
