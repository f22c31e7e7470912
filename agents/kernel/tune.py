"""The sysctls of the namespaces and interfaces the agent makes: forwarding in a router,
announcements and a short ARP retry on a compartment's interfaces. Each function runs in
the namespace (:func:`.netns.run_in`), where ``/proc/sys/net`` is that namespace's."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from .netns import netlink_socket

#: ARP retry interval of a compartment's interfaces (the kernel's default is 1 s)
ARP_RETRANS_MS = 100


def tune_router() -> int:
    """A router namespace forwards (between its gateway and its way out); otherwise a
    compartment's."""
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    return tune_compartment()


def tune_compartment() -> int:
    """Interfaces made in the compartment from now on announce their address when they
    come up (a gratuitous ARP): peers on the same host's bridge learn it at once.
    Returns a netlink socket of the compartment."""
    Path("/proc/sys/net/ipv4/conf/default/arp_notify").write_text("1")
    return netlink_socket()


def tune_interface(ifname: str) -> Callable[[], int]:
    """Retry an unanswered ARP after 100 ms, not 1 s: a peer that asked for an endpoint
    before it existed reaches it at most 100 ms after its own host's agent added the
    neighbour entry the overlay's ARP proxy answers from. (The proxy consumes ARP
    requests, gratuitous ones too: an announcement cannot cross the overlay.) Per
    interface: ``neigh/default`` exists in the initial namespace only. Returns the
    interface's index."""

    def tune() -> int:
        path = Path(f"/proc/sys/net/ipv4/neigh/{ifname}/retrans_time_ms")
        path.write_text(str(ARP_RETRANS_MS))
        # a runtime's namespace keeps its own defaults: the announcement is per link
        Path(f"/proc/sys/net/ipv4/conf/{ifname}/arp_notify").write_text("1")
        return socket.if_nametoindex(ifname)  # no netlink round trip for it

    return tune
