"""The kernel seam: read the owned state, apply one action.

Two drivers: :class:`~agents.kernel.linux.LinuxKernel` (pyroute2 ``AsyncIPRoute``) and
:class:`~agents.kernel.memory.MemoryKernel` (in-memory, for unit tests and simulation).
Nothing above this seam imports pyroute2; every failure crosses it as a
:class:`~agents.errors.KernelError` (translated once, in the driver).

The Linux driver's modules: ``linux`` (the driver: its connections, its view, apply),
``read`` (the owned state read back), ``uplink`` (a transparent network's host link),
``batch`` (FDB and neighbour entries many per send), ``netlink`` (ensure semantics and
lookups shared by those), ``announce`` (gratuitous ARP onto a bridge), ``nft`` (the
nftables table), ``netns`` (namespaces without forking), ``view`` (what an action does
to a state: the in-memory kernel's semantics and the Linux driver's view), ``memory``
(the in-memory driver), ``lazy`` (pyroute2 without its package ``__init__``: what the
agent's process imports of it), ``dellinks`` (many veths deleted in one operation),
``runs`` and ``veths`` (a run of namespaces, default routes, veth pairs on one thread of
its own, entering each compartment in turn), ``inside`` (what the compartments hold,
read the same way), ``rawnl`` (the netlink these modules pack by hand).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from ..errors import KernelError
from ..model import HostState
from ..plan import Action


class Kernel(Protocol):
    async def read(self, full: bool = True, runtime: Collection[str] = ()) -> HostState:
        """The Plexus-owned objects of this host, as they are now. ``full=False`` lets a
        driver answer from its view: its last full read with its own successful
        actions since applied to it (a pass woken by a message then costs O(change),
        not O(host); periodic passes read in full and repair drift). ``runtime``: the
        runtime namespaces (:func:`proto.names.runtime_netns`) to look into; those that
        are there are in the state's ``runtime``. Raises :class:`KernelError`."""
        ...

    async def apply(self, action: Action) -> None:
        """Apply one action; "ensure" semantics (already there / already gone is success).
        Raises :class:`KernelError`."""
        ...

    async def apply_many(self, actions: Sequence[Action]) -> list[KernelError | None]:
        """Apply the actions in order, each as :meth:`apply` would (a failed one does
        not stop the rest); one outcome each, None for success. A driver may send
        several in one request."""
        ...

    async def close(self) -> None: ...


async def apply_each(kernel: Kernel, actions: Sequence[Action]) -> list[KernelError | None]:
    """:meth:`Kernel.apply_many` one action at a time."""
    outcomes: list[KernelError | None] = []
    for action in actions:
        try:
            await kernel.apply(action)
            outcomes.append(None)
        except KernelError as e:
            outcomes.append(e)
    return outcomes


__all__ = ["Kernel", "KernelError", "apply_each"]
