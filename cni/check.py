"""CHECK: the controller still has the endpoint, it agrees with ``prevResult``, and the
namespace holds it as it should: the interface (up, its MAC), its address, the default
route via the gateway when the endpoint routes. The process enters the namespace
(``setns``) after it spoke to the controller; pyroute2 is imported here only.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys

from . import result
from .api import Controller, read_token
from .api import path as p
from .config import Config, Env, endpoint_id
from .errors import CHECK_FAILED, UNKNOWN_CONTAINER, CniError

# typing is for the type checker only: importing it costs a start a few ms
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


CLONE_NEWNET = 0x40000000
IFF_UP = 0x1


def _failed(msg: str, details: str = "") -> CniError:
    return CniError(CHECK_FAILED, msg, details)


def enter(netns: str) -> None:
    """Move this process (its only thread) into the namespace ``netns``."""
    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CniError(UNKNOWN_CONTAINER, f"CNI_NETNS {netns}: {e.strerror or e}") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise CniError(CHECK_FAILED, f"cannot enter {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def compare(view: dict[str, Any], prev: dict[str, Any] | None, netns: str) -> None:
    """The controller's endpoint against what ADD answered (pure)."""
    mac, ips = result.expected(prev, netns, view["interface"])
    if prev and mac is None:
        raise _failed(f"prevResult lists no interface {view['interface']} in {netns}")
    if mac is not None and mac.lower() != view["mac"].lower():
        raise _failed(f"the endpoint's MAC is {view['mac']}, prevResult says {mac}")
    address = f"{view['ip']}/{view['prefixlen']}"
    if prev and address not in ips:
        raise _failed(f"the endpoint's address is {address}, prevResult says {ips}")


def inspect(view: dict[str, Any], ifname: str) -> None:
    """The current namespace's interface against the endpoint (CHECK_FAILED if not)."""
    if sys.flags.no_site:  # the launcher's -S: site-packages (pyroute2) are not on the path
        import site

        site.main()
    from pyroute2 import IPRoute  # only CHECK reads the kernel

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise _failed(f"no interface {ifname} in the namespace")
        index = found[0]
        link = next(iter(ipr.get_links(index)))
        mac = (link.get("IFLA_ADDRESS") or link.get_attr("IFLA_ADDRESS") or "").lower()
        if mac != view["mac"].lower():
            raise _failed(f"{ifname} has MAC {mac}, the endpoint {view['mac']}")
        if not link["flags"] & IFF_UP:
            raise _failed(f"{ifname} is down")
        have = sorted(
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=index, family=socket.AF_INET)
        )
        address = f"{view['ip']}/{view['prefixlen']}"
        if address not in have:
            raise _failed(f"{ifname} lacks its address {address}", f"it has {have or 'none'}")
        gateway = view.get("gateway")
        if view.get("default_route") and gateway:
            routes = [
                (r.get_attr("RTA_GATEWAY"), r.get_attr("RTA_OIF"))
                for r in ipr.get_routes(family=socket.AF_INET)
                if r["dst_len"] == 0 and r.get_attr("RTA_TABLE") in (None, 254)
            ]
            if (gateway, index) not in routes:
                raise _failed(
                    f"no default route via {gateway} on {ifname}", f"default routes: {routes}"
                )


def check(conf: Config, env: Env) -> None:
    eid = endpoint_id(conf.host, env.container_id, env.ifname)
    api = Controller(conf.controller_host, conf.controller_port, read_token(conf.token_file))
    try:
        status, view = api.get(p("v1", "endpoints", eid))
    finally:
        api.close()
    if status == 404:
        raise _failed(f"endpoint {eid} does not exist at the controller")
    if view.get("network") != conf.network:
        raise _failed(f"endpoint {eid} is in network {view.get('network')}, not {conf.network}")
    compare(view, conf.prev_result, env.netns)
    enter(env.netns)
    inspect(view, env.ifname)
