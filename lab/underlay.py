"""The lab's underlay: one namespace per host on a bridge of the machine's namespace.

Each host namespace gets ``lo`` and ``uplink`` (its VTEP address); the machine side of
each veth is a port of the lab bridge, which holds the gateway address where the broker
and the controller listen. No route leads anywhere else: lab traffic cannot leave the
machine. Removal is idempotent and also removes the compartments the lab's agents made.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import shutil
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agents.kernel import netns
from proto import names

from .records import record
from .spec import LabError, LabSpec

#: where agents keep their compartments' resolver files (agents.kernel.resolv)
ETC_NETNS = Path("/etc/netns")

UPLINK = "uplink"


def addresses_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this namespace has an address or a route in."""
    out: list[ipaddress.IPv4Network] = []
    with IPRoute() as ipr:
        for a in ipr.get_addr(family=2):
            out.append(ipaddress.IPv4Network(f"{a.get('address')}/{a['prefixlen']}", strict=False))
        for r in ipr.get_routes(family=2, table=254):
            if r.get("dst"):
                out.append(ipaddress.IPv4Network(f"{r.get('dst')}/{r['dst_len']}", strict=False))
    return out


def conflicts(spec: LabSpec) -> list[str]:
    """What already exists under a name this lab would create."""
    found = []
    existing = set(netns.listnetns())
    for h in spec.hosts:
        if spec.host_ns(h) in existing:
            found.append(f"namespace {spec.host_ns(h)}")
        found += [f"namespace {ns}" for ns in existing if ns.startswith(names.netns_prefix(h))]
    with IPRoute() as ipr:
        if ipr.link_lookup(ifname=spec.bridge):
            found.append(f"link {spec.bridge}")
    return found


def create(spec: LabSpec) -> None:
    prefix = spec.network.prefixlen
    record("link", spec.bridge)
    for host in spec.hosts:
        record("netns", spec.host_ns(host))
        record("netns-prefix", names.netns_prefix(host))
        record("link", spec.port(host))
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=spec.bridge, kind="bridge")
            (br,) = ipr.link_lookup(ifname=spec.bridge)
            ipr.link("set", index=br, ifalias=f"plexus-lab:{spec.dir}")
            ipr.addr("add", index=br, address=spec.gateway, prefixlen=prefix)
            ipr.link("set", index=br, state="up")
            for host in spec.hosts:
                ns = spec.host_ns(host)
                netns.create(ns)
                port = spec.port(host)
                ipr.link("add", ifname=port, kind="veth", peer={"ifname": UPLINK, "net_ns_fd": ns})
                (idx,) = ipr.link_lookup(ifname=port)
                ipr.link("set", index=idx, master=br, state="up")
                with netns.iproute(ns) as inner:
                    (up,) = inner.link_lookup(ifname=UPLINK)
                    inner.addr("add", index=up, address=spec.vtep(host), prefixlen=prefix)
                    inner.link("set", index=up, state="up")
    except (NetlinkError, OSError) as e:
        raise LabError(f"cannot build the underlay: {e}") from None


def host_namespaces(spec: LabSpec) -> list[str]:
    """The lab's namespaces that exist now: compartments first, then hosts."""
    existing = netns.listnetns()
    comps = [ns for ns in existing if any(ns.startswith(names.netns_prefix(h)) for h in spec.hosts)]
    hosts = [spec.host_ns(h) for h in spec.hosts if spec.host_ns(h) in existing]
    return sorted(comps) + hosts


def destroy(spec: LabSpec) -> list[str]:
    """Remove what exists of the lab's namespaces and links; returns what it removed."""
    removed = []
    for ns in host_namespaces(spec):
        try:
            netns.remove(ns)
            removed.append(f"namespace {ns}")
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise LabError(f"cannot remove namespace {ns}: {e}") from None
    # the resolver files the lab's agents kept for their compartments (/etc/netns)
    prefixes = tuple(names.netns_prefix(h) for h in spec.hosts)
    with contextlib.suppress(FileNotFoundError):
        for entry in ETC_NETNS.iterdir():
            if entry.name.startswith(prefixes) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(f"directory {entry}")
    with IPRoute() as ipr:
        ports = [spec.port(h) for h in spec.hosts]
        for name in [*ports, spec.bridge]:
            for idx in ipr.link_lookup(ifname=name):
                with contextlib.suppress(NetlinkError):  # a port goes with its namespace
                    ipr.link("del", index=idx)
                    removed.append(f"link {name}")
    return removed
