"""Forwarding and neighbour entries in batches: many netlink requests per ``send``, the
kernel's acknowledgements matched back by sequence number (what ``bridge -batch`` and
``ip -batch`` do). A host of a large overlay holds tens of thousands of these entries;
one awaited pyroute2 request each cost ~0.6 ms (FDB) and ~1.2 ms (neighbour), and
pyroute2's own message encoder ~70 µs per message, so the four fixed-layout messages
are packed here with :mod:`struct`. ``tests/unit/test_batch.py`` checks every byte
against pyroute2's encoding of the same request.

The socket is blocking and used from a worker thread (:func:`asyncio.to_thread`): a
batch of 20,000 entries never stalls the event loop. :func:`apply_run` is the Linux
driver's use of it: a run of FDB and neighbour actions, one outcome each.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import threading
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from .. import plan as p
from ..errors import KernelError
from ..model import Fdb, Neigh
from .netlink import GONE, index, subject
from .rawnl import dump

NETLINK_ROUTE = 0
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_REPLACE, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x400, 0x800
NDA_DST, NDA_LLADDR = 1, 2
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
NTF_SELF = 0x02
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acknowledgements without the request echoed back
#: requests per send; their acknowledgements (20 bytes each) are read before the next
CHUNK = 1024
BUFFER = 4 << 20

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_ND = struct.Struct("=BBHiHBB")  # ndmsg: family, pad, pad, ifindex, state, flags, type
_ERR = struct.Struct("=i")
_NLA = struct.Struct("=HH")


class Entry(NamedTuple):
    """One request: an FDB entry (``fdb``: ``addr`` is the remote VTEP) or a neighbour
    (``addr`` is its IP), to ``add`` (append / replace) or delete. A tuple: a cold
    start makes 20,000 of them."""

    fdb: bool
    add: bool
    ifindex: int
    mac: str
    addr: str


#: the whole message, one layout each (48 bytes): nlmsghdr, ndmsg, then the MAC and the
#: address as attributes (an FDB entry's MAC first, a neighbour's address first)
_FDB_MSG = struct.Struct("=IHHII BBHiHBB HH6s2x HH4s")
_NEIGH_MSG = struct.Struct("=IHHII BBHiHBB HH4s HH6s2x")
_LLADDR, _DST = (10, NDA_LLADDR), (8, NDA_DST)  # an attribute's length (unpadded), type


def encode(entry: Entry, seq: int) -> bytes:
    """The netlink message pyroute2 sends for ``fdb("append"|"del", ifindex, lladdr,
    dst)`` or ``neigh("replace"|"del", ifindex, dst, lladdr)``."""
    fdb, add, ifindex, mac, addr = entry
    lladdr, dst = bytes.fromhex(mac.replace(":", "")), socket.inet_aton(addr)
    kind = RTM_NEWNEIGH if add else RTM_DELNEIGH
    if fdb:
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_APPEND if add else 0)
        return _FDB_MSG.pack(
            _FDB_MSG.size, kind, flags, seq, 0,
            socket.AF_BRIDGE, 0, 0, ifindex, NUD_PERMANENT | NUD_NOARP, NTF_SELF, 0,
            *_LLADDR, lladdr, *_DST, dst,
        )  # fmt: skip
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_REPLACE if add else 0)
    return _NEIGH_MSG.pack(
        _NEIGH_MSG.size, kind, flags, seq, 0,
        socket.AF_INET, 0, 0, ifindex, NUD_PERMANENT, 0, 0,
        *_DST, dst, *_LLADDR, lladdr,
    )  # fmt: skip


class NetlinkBatch:
    """A route netlink socket of the calling thread's network namespace (made at the
    first :meth:`run`) that sends requests in chunks and returns each one's errno."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0
        self._lock = threading.Lock()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            try:
                for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                    s.setsockopt(socket.SOL_SOCKET, opt, BUFFER)
                s.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
                s.bind((0, 0))
            except OSError:
                s.close()
                raise
            self._sock = s
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def dump_neigh(
        self, family: int, devices: Mapping[int, str]
    ) -> list[tuple[str, int, str, str]]:
        """The neighbours (``AF_INET``) or forwarding entries (``AF_BRIDGE``) of the
        namespace's ``devices`` (ifindex → name) with an address and a MAC, as
        (device, state, lladdr, dst), parsed here: pyroute2 parses ~10,000 entries a
        second, 20,000 took 2 s of an agent's start; the others' entries are skipped
        without being made into objects. Blocking."""
        with self._lock:
            sock = self._socket()
            self._seq = self._seq + 1 if self._seq < 0xFFFFFFFF else 1
            out: list[tuple[str, int, str, str]] = []
            body = _ND.pack(family, 0, 0, 0, 0, 0, 0)
            for kind, data, start, end in dump(sock, RTM_GETNEIGH, body, self._seq):
                if kind == RTM_NEWNEIGH:
                    entry = _parse_neigh(data, start, end, devices)
                    if entry is not None:
                        out.append(entry)
            return out

    def run(self, entries: Sequence[Entry]) -> list[int]:
        """Send every entry; returns one errno per entry (0: done). Blocking."""
        with self._lock:
            sock = self._socket()
            result = [0] * len(entries)
            for start in range(0, len(entries), CHUNK):
                chunk = entries[start : start + CHUNK]
                if self._seq + len(chunk) >= 0xFFFFFFFF:  # the u32 sequence wraps
                    self._seq = 0
                first = self._seq + 1
                self._seq += len(chunk)
                sock.send(b"".join(encode(e, first + i) for i, e in enumerate(chunk)))
                pending = set(range(first, first + len(chunk)))
                while pending:
                    data = sock.recv(1 << 20)
                    off = 0
                    while off + _HDR.size <= len(data):
                        size, kind, _, seq, _ = _HDR.unpack_from(data, off)
                        if kind == NLMSG_ERROR and seq in pending:
                            pending.discard(seq)
                            code = -_ERR.unpack_from(data, off + _HDR.size)[0]
                            result[start + seq - first] = code
                        off += max((size + 3) & ~3, _HDR.size)
            return result


def _parse_neigh(
    data: bytes, off: int, end: int, devices: Mapping[int, str]
) -> tuple[str, int, str, str] | None:
    """device, state, lladdr, dst of one RTM_NEWNEIGH message body; None for another
    device's, or one without an address or a MAC."""
    _, _, _, ifindex, state, _, _ = _ND.unpack_from(data, off)
    device = devices.get(ifindex)
    if device is None:
        return None
    mac = dst = None
    off += _ND.size
    while off + _NLA.size <= end:
        size, kind = _NLA.unpack_from(data, off)
        if size < _NLA.size:
            break
        value = data[off + _NLA.size : off + size]
        kind &= 0x3FFF  # without the nested / byte-order flags
        if kind == NDA_LLADDR and len(value) == 6:
            mac = value.hex(":")
        elif kind == NDA_DST and len(value) in (4, 16):
            family = socket.AF_INET if len(value) == 4 else socket.AF_INET6
            dst = socket.inet_ntop(family, value)
        off += (size + 3) & ~3
    return (device, state, mac, dst) if mac and dst else None


#: the actions :func:`apply_run` sends in batches
BATCHED = (p.AddFdb, p.DelFdb, p.AddNeigh, p.DelNeigh)


async def apply_run(batch: NetlinkBatch, run: Sequence[p.Action]) -> list[KernelError | None]:
    """Apply a run of :data:`BATCHED` actions of the host's namespace with ensure
    semantics (as the driver's ``apply``: an entry already there / already gone is
    done); one outcome each, None for success."""
    targets = [_target(a) for a in run]
    ifindex: dict[str, int | KernelError] = {}
    for dev in {t.device for t in targets}:
        try:
            ifindex[dev] = await index(dev)
        except KernelError as e:
            ifindex[dev] = e
    outcomes: list[KernelError | None] = [None] * len(run)
    entries: list[Entry] = []
    sent: list[int] = []
    for i, (action, target) in enumerate(zip(run, targets, strict=True)):
        found = ifindex[target.device]
        if isinstance(found, KernelError):
            outcomes[i] = KernelError(
                type(action).__name__, target.device, found.errno, "no device"
            )
            continue
        fdb, add = _KINDS[type(action)]
        addr = target.dst if isinstance(target, Fdb) else target.ip
        entries.append(Entry(fdb, add, found, target.mac, addr))
        sent.append(i)
    try:
        codes = await asyncio.to_thread(batch.run, entries)
    except OSError as e:  # the socket failed: none of the batch is known done
        code = e.errno or errno.EIO
        return [KernelError(type(a).__name__, subject(a), code, str(e)) for a in run]
    for i, code in zip(sent, codes, strict=True):
        action = run[i]
        if isinstance(action, p.AddFdb):
            ok = {0, errno.EEXIST}
        elif isinstance(action, p.AddNeigh):
            ok = {0}
        else:
            ok = {0} | GONE
        if code not in ok:
            outcomes[i] = KernelError(
                type(action).__name__, subject(action), code, os.strerror(code)
            )
    return outcomes


#: a batched action's request: (an FDB entry, an add)
_KINDS: dict[type, tuple[bool, bool]] = {
    p.AddFdb: (True, True),
    p.DelFdb: (True, False),
    p.AddNeigh: (False, True),
    p.DelNeigh: (False, False),
}


def _target(action: p.Action) -> Fdb | Neigh:
    """The entry a batched action adds or deletes."""
    if isinstance(action, p.AddFdb | p.DelFdb):
        return action.fdb
    if isinstance(action, p.AddNeigh | p.DelNeigh):
        return action.neigh
    raise TypeError(f"not a batched action: {action!r}")


__all__ = ["BATCHED", "Entry", "NetlinkBatch", "apply_run", "encode"]
