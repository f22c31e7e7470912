"""A compartment's resolver configuration, from the DNS settings of its networks.

The agent writes it where ``ip netns exec`` (and any runtime following the iproute2
convention) finds a namespace's own files: ``/etc/netns/<namespace>/resolv.conf`` is
bind-mounted over ``/etc/resolv.conf`` for what runs in the namespace. Pure: the driver
writes it (:mod:`agents.kernel.resolv`).
"""

from __future__ import annotations

from collections.abc import Mapping

import proto

#: what resolv.conf(5) reads: 3 nameservers, 6 search domains
MAX_NAMESERVERS = 3
MAX_SEARCH = 6
HEADER = "# written by the plexus agent: the DNS settings of this compartment's networks\n"


def resolv_conf(comp: proto.Compartment, networks: Mapping[str, proto.NetworkSpec]) -> str | None:
    """The compartment's resolv.conf, or None when none of its endpoints or their
    networks has DNS settings. The endpoint of the default route comes first, then the
    others by interface index; each endpoint's own settings before its network's;
    repeated entries are kept once, in their first place."""
    eps = sorted(comp.endpoints, key=lambda e: (not e.default_route, e.index))
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for dns in [d for ep in eps for d in (ep.dns, networks[ep.network].dns) if d is not None]:
        domains = ((dns.domain,) if dns.domain else ()) + dns.search
        for items, new in ((servers, dns.nameservers), (search, domains), (options, dns.options)):
            items.extend(x for x in new if x not in items)
    if not (servers or search or options):
        return None
    lines = [f"nameserver {s}" for s in servers[:MAX_NAMESERVERS]]
    if search:
        lines.append("search " + " ".join(search[:MAX_SEARCH]))
    if options:
        # one per option name, the first kept: glibc applies the last of ndots:1 ndots:5
        named: dict[str, str] = {}
        for opt in options:
            named.setdefault(opt.partition(":")[0], opt)
        lines.append("options " + " ".join(named.values()))
    return HEADER + "\n".join(lines) + "\n"
