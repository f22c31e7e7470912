"""An in-memory kernel: the same semantics as the Linux driver, no kernel."""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Collection, Sequence

from .. import plan as p
from ..errors import KernelError
from ..model import HostState
from . import apply_each
from .view import apply_all, apply_to


class MemoryKernel:
    def __init__(self, state: HostState | None = None, keep: int = 10_000) -> None:
        self.state = state or HostState()
        #: the last ``keep`` actions applied (a simulator of many hosts keeps none)
        self.applied: deque[p.Action] = deque(maxlen=keep)
        #: actions of these types fail with EPERM (fault injection for tests)
        self.fail: set[type] = set()

    async def read(self, full: bool = True, runtime: Collection[str] = ()) -> HostState:
        """A copy; with ``full=False`` the state itself, like the Linux driver's view
        (the caller must not change it). Its ``runtime`` holds the runtime namespaces
        that exist (a test adds and removes them as a runtime would); all are shown."""
        return self.state.copy() if full else self.state

    async def close(self) -> None:
        return None

    async def apply_many(self, actions: Sequence[p.Action]) -> list[KernelError | None]:
        if self.fail:
            return await apply_each(self, actions)
        # what apply() does, without a coroutine per action
        outcomes = apply_all(self.state, actions)
        if self.applied.maxlen != 0:
            self.applied.extend(a for a, e in zip(actions, outcomes, strict=True) if e is None)
        return outcomes

    async def apply(self, action: p.Action) -> None:
        if type(action) in self.fail:
            raise KernelError(type(action).__name__, str(action), errno.EPERM, "injected")
        self.applied.append(action)
        apply_to(self.state, action)
