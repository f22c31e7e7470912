"""What stands in the way of a network on this host (pure: no I/O).

"In sync" promises that traffic flows. A network whose layer 3 lives in the host's
namespace (its bridge holds the gateway address, or a transparent bridge holds the
uplink's addresses) cannot work when another prefix in that namespace overlaps its
subnet: replies to its endpoints would follow the other route. The controller refuses
such overlaps between Plexus's own networks; what it cannot see (an address or route
someone else put on the host, or networks accepted before the check existed) the agent
finds here and reports in the host's status errors, which keeps the host out of sync.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from itertools import combinations

import proto
from proto import transit


def conflicts(
    host: str, networks: Collection[proto.NetworkSpec], foreign: Iterable[tuple[str, str]]
) -> list[str]:
    """One reason per conflict: two of the host's networks that overlap in its
    namespace, and prefixes of links Plexus does not own that overlap a network's
    subnet (a transparent network's own uplink excepted: its addresses are the
    network's)."""
    mine = [(n, ipaddress.IPv4Network(n.subnet)) for n in networks if n.host_l3]
    out = [
        f"network {a.id} ({a.subnet}) overlaps network {b.id} ({b.subnet}) in this host's "
        "namespace: traffic of one would be routed to the other"
        for (a, _), (b, _) in combinations(sorted(mine, key=lambda m: m[0].id), 2)
        if a.overlaps(b)
    ]
    for net, subnet in mine:
        uplink = net.uplink_of(host) if net.mode == "transparent" else None
        for prefix, device in foreign:
            if device == uplink:
                continue
            other = ipaddress.IPv4Network(prefix)
            if other.prefixlen > 0 and other.overlaps(subnet):
                out.append(
                    f"network {net.id} ({net.subnet}): {prefix} on {device}, which Plexus "
                    "does not own, overlaps it in this host's namespace"
                )
    if any(n.mode == "overlay" and n.outbound_nat for n in networks):
        for prefix, device in foreign:  # a more specific route takes the routers' replies
            other = ipaddress.IPv4Network(prefix)
            if other.prefixlen >= transit.SUBNET.prefixlen and other.overlaps(transit.SUBNET):
                out.append(
                    f"the overlay routers' transit segment ({transit.SUBNET}): {prefix} on "
                    f"{device}, which Plexus does not own, overlaps it"
                )
    return out
