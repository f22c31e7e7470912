"""Many veth pairs deleted in one kernel operation.

Deleting a link takes the kernel an RCU grace period and more, and ``RTM_DELLINK`` of
one link waits for its own: deleting 200 veths one by one took 3.7 s here, the same
200 in one operation 0.2 s (``benchmarks.veth_floor`` measures both). The kernel deletes a
link *group* in one operation (``RTM_DELLINK`` with ``IFLA_GROUP``, ifindex 0: every
link of the namespace in that group, unregistered together). So a run of deletes puts
each link in :data:`DOOMED` (a cheap change), then deletes the group; a veth's peer
goes with it, as with a delete of one. A link of another owner in that group (the
number is Plexus's: "plxd") would go with them; a pass cut short between the two steps
leaves links the next pass deletes anyway (they were to go).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .. import plan as p
from ..errors import KernelError
from .netlink import GONE

#: the link group of the links a run deletes (ASCII "plxd")
DOOMED = 0x706C7864


async def delete_veths(ipr: AsyncIPRoute, run: Sequence[p.DelVeth]) -> list[KernelError | None]:
    """Delete the host ends (and so the pairs) of ``run`` in the namespace of ``ipr``,
    with ensure semantics (one already gone is done); one outcome each."""
    outcomes: list[KernelError | None] = [None] * len(run)
    doomed = []
    for i, action in enumerate(run):
        try:
            idx = socket.if_nametoindex(action.name)
        except OSError:
            continue  # gone already
        try:
            await ipr.link("set", index=idx, group=DOOMED)
        except NetlinkError as e:
            if e.code not in GONE:
                outcomes[i] = KernelError("DelVeth", action.name, e.code, str(e))
            continue
        doomed.append(i)
    if not doomed:
        return outcomes
    failure: NetlinkError | None = None
    try:
        await ipr.link("del", group=DOOMED)
    except NetlinkError as e:
        failure = e
    for i in doomed:  # what is still there failed, whatever the request answered
        try:
            socket.if_nametoindex(run[i].name)
        except OSError:
            continue
        code = failure.code if failure is not None else errno.EBUSY
        why = str(failure) if failure is not None else "still there after its group's delete"
        outcomes[i] = KernelError("DelVeth", run[i].name, code, why)
    return outcomes
