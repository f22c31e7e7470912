"""What the Linux driver's modules share about netlink: "ensure" semantics (an object
already there on an add, already gone on a delete, is success) and interface lookups
that fail as :class:`~agents.errors.KernelError`."""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .. import plan as p
from ..errors import KernelError

NUD_PERMANENT = 0x80
IFF_UP = 0x1
#: the errnos of a delete whose object is already gone
GONE = {errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.EADDRNOTAVAIL}


@asynccontextmanager
async def ensure(*ok: int) -> AsyncIterator[None]:
    """A netlink request whose failure with one of the errnos ``ok`` is success."""
    try:
        yield
    except NetlinkError as e:
        if e.code not in ok:
            raise


async def index(name: str, ipr: AsyncIPRoute | None = None) -> int:
    """The ifindex of ``name``: in the host's namespace (``ipr`` None; the event loop
    thread's, so an ioctl, no netlink round trip), or in the namespace of ``ipr``."""
    if ipr is None:
        try:
            return socket.if_nametoindex(name)
        except OSError:
            raise KernelError("lookup", name, errno.ENODEV, "no such device") from None
    found = await ipr.link_lookup(ifname=name)
    if not found:
        raise KernelError("lookup", name, errno.ENODEV, "no such device")
    return int(found[0])


def link_kind(link: Any) -> str | None:
    """A link's kind (``bridge``, ``vxlan``, ``veth``…) as its link info says."""
    value: str | None = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return value


def subject(action: p.Action) -> str:
    """What an action acts on, as a :class:`~agents.errors.KernelError` names it."""
    if isinstance(action, p.SetRules | p.DelRules):
        return "nftables table inet plexus" + (f" in {action.netns}" if action.netns else "")
    if isinstance(action, p.SetHostRoute | p.DelHostRoute):
        return f"route {action.prefix}"
    if isinstance(action, p.SetSysctl):
        return action.key
    for attr in ("name", "bridge", "vxlan", "veth", "fdb", "neigh", "netns", "new"):
        value = getattr(action, attr, None)
        if value is not None:
            return str(getattr(value, "name", value))
    return repr(action)


async def pair_of(
    root: AsyncIPRoute, inner: AsyncIPRoute, inner_index: int, host_name: str
) -> bool:
    """The link ``inner_index`` of ``inner``'s namespace and the link ``host_name`` of
    ``root``'s (the host's) are the two ends of one veth (each names the other's index)."""
    try:
        host_index = socket.if_nametoindex(host_name)
    except OSError:
        return False
    (host_ln,) = await root.link("get", index=host_index)
    (inner_ln,) = await inner.link("get", index=inner_index)
    return bool(host_ln.get("link") == inner_index and inner_ln.get("link") == host_index)
