"""An in-memory kernel: the same semantics as the Linux driver, no kernel."""

from __future__ import annotations

import errno
from collections.abc import Sequence

from .. import plan as p
from ..model import HostState
from . import KernelError, apply_each
from .view import apply_to


class MemoryKernel:
    def __init__(self, state: HostState | None = None) -> None:
        self.state = state or HostState()
        self.applied: list[p.Action] = []
        #: actions of these types fail with EPERM (fault injection for tests)
        self.fail: set[type] = set()

    async def read(self, full: bool = True) -> HostState:
        """A copy; with ``full=False`` the state itself, like the Linux driver's view
        (the caller must not change it)."""
        return self.state.copy() if full else self.state

    async def close(self) -> None:
        return None

    async def apply_many(self, actions: Sequence[p.Action]) -> list[KernelError | None]:
        return await apply_each(self, actions)

    async def apply(self, action: p.Action) -> None:
        if type(action) in self.fail:
            raise KernelError(type(action).__name__, str(action), errno.EPERM, "injected")
        self.applied.append(action)
        apply_to(self.state, action)
