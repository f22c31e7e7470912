"""The sysctls of the namespaces and interfaces the agent makes: forwarding in a router,
announcements and a short ARP retry on a compartment's interfaces. Each function runs in
the namespace (:func:`.netns.run_in`), where ``/proc/sys/net`` is that namespace's.

Where ``/proc/sys`` is read-only (an agent in a container that is not privileged: the
compose lab), an interface's settings go through netlink instead: its IPv4
configuration by ``RTM_SETLINK`` (``IFLA_AF_SPEC``/``AF_INET``/``IFLA_INET_CONF``) and
its ARP retry by ``RTM_SETNEIGHTBL``. A namespace's own defaults (``ip_forward``,
``conf/default``) have no netlink request: there every interface the agent makes gets
them itself (a router's forwarding included: forwarding is decided per incoming
interface). The messages are built here, a few bytes each: pyroute2 encodes
``IFLA_INET_CONF`` as a fixed struct, where the kernel reads one attribute per setting.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from .netns import netlink_socket
from .rawnl import NLM_F_ACK, NLM_F_REQUEST, attr, message, raw_socket, send_all

#: ARP retry interval of a compartment's interfaces (the kernel's default is 1 s)
ARP_RETRANS_MS = 100


# linux/if_link.h, linux/neighbour.h, linux/ip.h
RTM_SETLINK, RTM_SETNEIGHTBL = 19, 67
IFLA_AF_SPEC, IFLA_INET_CONF = 26, 1
IPV4_DEVCONF_FORWARDING, IPV4_DEVCONF_ARP_NOTIFY = 1, 22
NDTA_NAME, NDTA_PARMS, NDTPA_IFINDEX, NDTPA_RETRANS_TIME = 1, 6, 1, 5


def _write(path: str, value: str) -> bool:
    """Writes a sysctl; False where ``/proc/sys`` is read-only (then netlink)."""
    try:
        Path(path).write_text(value)
    except OSError as e:
        if e.errno != errno.EROFS:
            raise
        return False
    return True


def _netlink(kind: int, body: bytes, what: str) -> None:
    """One request on a route netlink socket of the calling thread's namespace, and
    its acknowledgement (an error: ``OSError`` naming ``what``)."""
    with raw_socket() as s:
        (code,) = send_all(s, message(kind, NLM_F_REQUEST | NLM_F_ACK, 1, body))
    if code:
        raise OSError(code, f"{what}: {os.strerror(code)}")


def set_inet_conf(index: int, settings: dict[int, int]) -> None:
    """An interface's IPv4 settings (``IPV4_DEVCONF_*``: value), as
    ``/proc/sys/net/ipv4/conf/IF/`` would set them."""
    conf = b"".join(attr(k, struct.pack("=I", v)) for k, v in settings.items())
    af = attr(socket.AF_INET, attr(IFLA_INET_CONF, conf))
    ifinfo = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
    _netlink(RTM_SETLINK, ifinfo + attr(IFLA_AF_SPEC, af), f"inet conf of link {index}")


def set_arp_retrans(index: int, ms: int) -> None:
    """An interface's ARP retry interval, as ``neigh/IF/retrans_time_ms`` would."""
    parms = attr(NDTPA_IFINDEX, struct.pack("=I", index))
    parms += attr(NDTPA_RETRANS_TIME, struct.pack("=Q", ms))
    body = struct.pack("=BxH", socket.AF_INET, 0) + attr(NDTA_NAME, b"arp_cache\0")
    _netlink(RTM_SETNEIGHTBL, body + attr(NDTA_PARMS, parms), f"arp retry of link {index}")


def tune_router() -> int:
    """A router namespace forwards (between its gateway and its way out); otherwise a
    compartment's. (Read-only ``/proc/sys``: each interface, by :func:`tune_interface`.)"""
    _write("/proc/sys/net/ipv4/ip_forward", "1")
    return tune_compartment()


def tune_compartment() -> int:
    """Interfaces made in the compartment from now on announce their address when they
    come up (a gratuitous ARP): peers on the same host's bridge learn it at once.
    (Read-only ``/proc/sys``: each interface, by :func:`tune_interface`.) Returns a
    netlink socket of the compartment."""
    _write("/proc/sys/net/ipv4/conf/default/arp_notify", "1")
    return netlink_socket()


def tune_interface(ifname: str, router: bool = False) -> Callable[[], int]:
    """Retry an unanswered ARP after 100 ms, not 1 s. A peer that asked for an endpoint
    before it existed is told its address by the agent of the peer's host as soon as
    that agent can carry traffic to it (:class:`~agents.plan.Announce`); the retry
    covers what a pass does not announce (past its limit) and a lost announcement. (The
    overlay's ARP proxy consumes ARP, gratuitous too: the endpoint's own announcement
    on up cannot cross the overlay.) Per interface: ``neigh/default`` exists in the
    initial namespace only. ``router``: the interface of a router namespace, which
    forwards what comes in on it. Returns the interface's index."""

    def tune() -> int:
        index = socket.if_nametoindex(ifname)  # no netlink round trip for it
        if not _write(f"/proc/sys/net/ipv4/neigh/{ifname}/retrans_time_ms", str(ARP_RETRANS_MS)):
            set_arp_retrans(index, ARP_RETRANS_MS)
        # a runtime's namespace keeps its own defaults: the announcement is per link
        if not _write(f"/proc/sys/net/ipv4/conf/{ifname}/arp_notify", "1"):
            conf = {IPV4_DEVCONF_ARP_NOTIFY: 1}
            if router:
                conf[IPV4_DEVCONF_FORWARDING] = 1
            set_inet_conf(index, conf)
        return index

    return tune
