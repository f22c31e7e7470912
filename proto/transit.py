"""Addresses of the overlay routers' transit segment (contract: the agent programs
them, the controller keeps them unique).

Each overlay network's layer 3 (its gateway and its outbound NAT) lives on every host
in a router namespace of its own, so that overlays with overlapping subnets never share
a routing table. A router with outbound NAT reaches the host's namespace over one
transit bridge there: the host holds ``169.254.0.1/17``, each router an address derived
from its network's VNI. Two overlay networks whose VNIs give the same address cannot
both exist (the controller refuses the second with a 409).
"""

from __future__ import annotations

import ipaddress

SUBNET = ipaddress.IPv4Network("169.254.0.0/17")  # link-local, never routed
HOST = "169.254.0.1"
#: third octet 1..127, fourth 1..254: never the host's, never outside SUBNET
SLOTS = 127 * 254


def router_address(vni: int) -> str:
    """The transit address of the router of the overlay network with ``vni``."""
    slot = vni % SLOTS
    return f"169.254.{1 + slot // 254}.{1 + slot % 254}"
