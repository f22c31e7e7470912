"""Announcements: a gratuitous ARP reply sent onto a bridge, as if from an endpoint.

The Linux driver sends one for each :class:`~agents.plan.Announce` a pass plans. The
frame leaves the bridge device itself (a packet socket in the host's namespace), so the
bridge floods it to every port: each compartment, router leg and uplink on that bridge
receives it, and a Linux peer that already holds a neighbour entry for the address
(INCOMPLETE: it asked before the endpoint existed; FAILED; or another MAC: the address
was reused) takes the announced MAC at once (a gratuitous ARP overrides) and sends what
it queued. A peer with no entry creates none (``arp_accept`` is off), and a permanent
entry is left alone. The frame teaches the bridge nothing (a bridge learns from what
comes in through its ports, not from what it sends), and an overlay's VXLAN device, an
ARP proxy, consumes it: it never crosses to other hosts (each host announces its own
remote entries as it programs them).

A reply, not a request: Linux takes a gratuitous reply whose target hardware address is
the sender's, and the VXLAN proxy answers requests (that answer would come back into
the bridge for nothing) but drops replies.
"""

from __future__ import annotations

import errno
import socket
import struct

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARPOP_REPLY = 2
BROADCAST = b"\xff" * 6
#: a frame that cannot leave now (the bridge has no carrier yet, is down or gone, or
#: the socket's buffer is full) is a frame lost, as any may be: nobody's state depends
#: on it, a peer's own ARP retry still resolves the address
DROPPED = frozenset({errno.ENOBUFS, errno.EAGAIN, errno.ENETDOWN, errno.ENODEV, errno.ENXIO})

_ARP = struct.Struct("!HHBBH6s4s6s4s")


def frame(ip: str, mac: str) -> bytes:
    """The Ethernet frame announcing that ``ip`` is at ``mac`` (42 bytes; the device
    pads it)."""
    hw = bytes.fromhex(mac.replace(":", ""))
    addr = socket.inet_aton(ip)
    arp = _ARP.pack(ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REPLY, hw, addr, hw, addr)
    return BROADCAST + hw + struct.pack("!H", ETH_P_ARP) + arp


class Announcer:
    """A packet socket of the calling thread's namespace (made at the first send)."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None

    def send(self, bridge: str, ip: str, mac: str) -> bool:
        """Send one announcement onto ``bridge``; False if it was dropped (see
        :data:`DROPPED`). Does not block. Raises ``OSError`` for any other failure."""
        if self._sock is None:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self._sock.setblocking(False)
        try:
            self._sock.sendto(frame(ip, mac), (bridge, ETH_P_ARP))
        except OSError as e:
            if e.errno in DROPPED:
                return False
            raise
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


__all__ = ["Announcer", "frame"]
