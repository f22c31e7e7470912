"""Kernel names derived from ids: stable across restarts, within IFNAMSIZ (15).

Ownership: interfaces are ``px`` + a kind letter + 10 hex digits of the id's hash and
carry the alias ``plexus:<kind>:<id>``; namespaces are ``plexus:<host>:<compartment>``
(``:`` cannot occur in an id, so one host's prefix never matches another's).
"""

from __future__ import annotations

import hashlib

ALIAS_PREFIX = "plexus:"
IF_PREFIX = "px"


def _h(ident: str) -> str:
    return hashlib.sha256(ident.encode()).hexdigest()[:10]


def bridge(network: str) -> str:
    return f"pxb{_h(network)}"


def vxlan(network: str) -> str:
    return f"pxv{_h(network)}"


def veth(endpoint: str) -> str:
    return f"pxe{_h(endpoint)}"


def handover(endpoint: str) -> str:
    """The inner end of a handed-over endpoint's veth while it is in the host's
    namespace, before the runtime takes it (libnetwork moves and renames it)."""
    return f"pxi{_h(endpoint)}"


#: the bridge of the overlay routers' transit segment in the host's namespace
TRANSIT_BRIDGE = "pxtransit"
TRANSIT_NETWORK = "@transit"


def gateway_leg(network: str) -> str:
    """Host end of the veth whose inner end (``gw``) is the network's gateway in its
    router namespace."""
    return f"pxg{_h(network)}"


def transit_leg(network: str) -> str:
    """Host end (on the transit bridge) of the veth whose inner end (``up``) is the
    router's way out."""
    return f"pxr{_h(network)}"


def leg_mac(host: str, network: str, leg: str) -> str:
    """A router leg's MAC: stable, distinct per host (the overlay's L2 spans hosts),
    locally administered, outside the controller's ``02:`` endpoint MACs."""
    d = hashlib.sha256(f"{host}/{network}/{leg}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x0A, *d[:5]))


def alias(kind: str, ident: str) -> str:
    return f"{ALIAS_PREFIX}{kind}:{ident}"


def parse_alias(value: str | None) -> tuple[str, str] | None:
    if not value or not value.startswith(ALIAS_PREFIX):
        return None
    kind, _, ident = value[len(ALIAS_PREFIX) :].partition(":")
    return (kind, ident) if ident else None


def netns_prefix(host: str) -> str:
    return f"plexus:{host}:"


def netns(host: str, compartment: str) -> str:
    return f"{netns_prefix(host)}{compartment}"


ROUTER_MARK = "@"  # cannot occur in an id: no compartment's namespace looks like it


def router_netns(host: str, network: str) -> str:
    """The router namespace of an overlay network on ``host``: its gateway, its NAT."""
    return f"{netns_prefix(host)}{ROUTER_MARK}{network}"


def is_router_netns(name: str) -> bool:
    return name.rpartition(":")[2].startswith(ROUTER_MARK)


def inner(index: int) -> str:
    return f"eth{index}"


def host_mac(endpoint: str) -> str:
    """The MAC of the host end of an endpoint's veth: stable, so that a CNI result can
    name it; locally administered, apart from endpoint (``02:``) and leg (``0a:``) MACs."""
    d = hashlib.sha256(f"host/{endpoint}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x06, *d[:5]))


def runtime_netns(path: str, inode: int) -> str:
    """How the agent names a runtime's namespace: its path and the inode it had when
    handed over (a namespace bound at that path later is another one)."""
    return f"{path}#{inode}"


def parse_runtime_netns(ns: str) -> tuple[str, int] | None:
    """``(path, inode)`` of a :func:`runtime_netns` name; None for the agent's own."""
    if not ns.startswith("/"):
        return None
    path, _, inode = ns.rpartition("#")
    return path, int(inode)
