"""Docker's ``-p`` bindings as Plexus published ports.

libnetwork hands the driver the container's bindings at ``ProgramExternalConnectivity``
(option ``com.docker.network.portmap``: ``Proto`` 6/17, ``Port``, ``HostIP``,
``HostPort``, ``HostPortEnd``). Plexus publishes a port on the endpoint's host (DNAT in
the agent's table) on ``nat`` networks only; the controller refuses the rest with its
reason, which Docker shows.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .errors import PluginError

PORTMAP = "com.docker.network.portmap"
PROTOCOLS = {6: "tcp", 17: "udp"}


def published(options: dict[str, Any]) -> list[dict[str, Any]]:
    """The Plexus ports of ``options``' bindings, each once; a binding Plexus cannot
    make is refused with what to give instead."""
    out: list[dict[str, Any]] = []
    for b in options.get(PORTMAP) or []:
        port = int(b.get("Port") or 0)
        proto = PROTOCOLS.get(int(b.get("Proto") or 0))
        if proto is None:
            raise PluginError(f"-p {port}: Plexus publishes tcp and udp ports only")
        host_ip = str(b.get("HostIP") or "")
        try:
            addr = ipaddress.ip_address(host_ip) if host_ip else None
        except ValueError:
            raise PluginError(f"-p {host_ip}:…:{port}/{proto}: not an address") from None
        if addr is not None and addr.version == 6:
            if addr.is_unspecified:  # Docker's IPv6 twin of an all-addresses binding
                continue
            raise PluginError(f"-p [{host_ip}]:…:{port}/{proto}: Plexus networks are IPv4 only")
        host_port = int(b.get("HostPort") or 0)
        if not host_port:
            raise PluginError(
                f"-p {port}/{proto}: Plexus publishes on the port you name: "
                f"give -p HOST_PORT:{port}/{proto}"
            )
        # a range (-p 8080-8090:80): its first port (Plexus refuses a taken one)
        entry: dict[str, Any] = {"protocol": proto, "host_port": host_port, "port": port}
        if addr is not None and not addr.is_unspecified:
            entry["host_ip"] = host_ip
        if entry not in out:
            out.append(entry)
    return out
