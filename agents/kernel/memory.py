"""An in-memory kernel: the same semantics as the Linux driver, no kernel."""

from __future__ import annotations

import copy
import errno

from .. import plan as p
from ..model import HostState
from . import KernelError
from .view import apply_to


class MemoryKernel:
    def __init__(self, state: HostState | None = None) -> None:
        self.state = state or HostState()
        self.applied: list[p.Action] = []
        #: actions of these types fail with EPERM (fault injection for tests)
        self.fail: set[type] = set()

    async def read(self, full: bool = True) -> HostState:
        return copy.deepcopy(self.state)

    async def close(self) -> None:
        return None

    async def apply(self, action: p.Action) -> None:
        if type(action) in self.fail:
            raise KernelError(type(action).__name__, str(action), errno.EPERM, "injected")
        self.applied.append(action)
        apply_to(self.state, action)
