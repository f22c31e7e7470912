"""Answers "has every affected host applied this?" from the hosts' status reports."""

from __future__ import annotations

import asyncio
import time

from proto.rest import Convergence, HostPending

from .service import Target
from .state import HostRow, State


class _Waiter:
    __slots__ = ("dirty", "event", "everything")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        #: hosts that reported since the waiter last looked (all of them: ``everything``)
        self.dirty: set[str] = set()
        self.everything = False


class Tracker:
    """Waiters are woken by status reports and re-check the hosts that reported, not
    their whole target: with N hosts reporting after a change, a waiter costs O(N) per
    change, not O(N²)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._waiters: set[_Waiter] = set()

    def notify(self, host: str | None = None) -> None:
        """``host`` reported (None: anything may have changed)."""
        for w in self._waiters:
            if host is None:
                w.everything = True
            else:
                w.dirty.add(host)
            w.event.set()

    def _look(self, host_id: str, target: Target) -> tuple[str, HostPending | None] | None:
        """("online" | "pending" | "offline", what it waits for); None: decommissioned."""
        host = self.state.hosts.get(host_id)
        if host is None:
            return None
        if host.state != "online":
            return "offline", None
        missing = target[host_id].missing(host)
        if missing:
            return "pending", HostPending(host=host_id, state=host.state, waiting_for=missing)
        return "online", None

    async def wait(self, target: Target, timeout: float) -> Convergence:
        start = time.monotonic()
        deadline = start + timeout
        waiter = _Waiter()
        self._waiters.add(waiter)
        try:
            seen = {h: self._look(h, target) for h in target}
            waiting = sum(1 for v in seen.values() if v is not None and v[0] == "pending")
            while True:
                remaining = deadline - time.monotonic()
                if not waiting or remaining <= 0:
                    return self._result(seen, start)
                try:
                    async with asyncio.timeout(remaining):
                        await waiter.event.wait()
                except TimeoutError:
                    pass
                waiter.event.clear()
                if waiter.everything:
                    hosts: set[str] | list[str] = list(target)
                else:
                    hosts = waiter.dirty & target.keys()
                waiter.dirty, waiter.everything = set(), False
                for h in hosts:
                    before, now = seen[h], self._look(h, target)
                    seen[h] = now
                    waiting += (now is not None and now[0] == "pending") - (
                        before is not None and before[0] == "pending"
                    )
        finally:
            self._waiters.discard(waiter)

    @staticmethod
    def _result(
        seen: dict[str, tuple[str, HostPending | None] | None], start: float
    ) -> Convergence:
        online, pending, offline = [], [], []
        for host_id, v in sorted(seen.items()):
            if v is None:
                continue  # decommissioned meanwhile
            if v[0] == "offline":
                offline.append(host_id)
                continue
            online.append(host_id)
            if v[1] is not None:
                pending.append(v[1])
        return Convergence(
            converged=not pending,
            elapsed_ms=round((time.monotonic() - start) * 1000, 3),
            hosts=online,
            pending=pending,
            offline=offline,
        )


def in_sync(state: State, host: HostRow) -> tuple[bool, list[str]]:
    """Whether a host reports the current generation of everything it must hold."""
    behind = []
    if host.applied_desired < host.desired_gen:
        behind.append(f"desired@{host.desired_gen} (has {host.applied_desired})")
    for net_id in sorted(state.host_networks.get(host.id, {})):
        net = state.networks.get(net_id)
        if net is not None and net.has_table:
            have = host.applied_networks.get(net_id, 0)
            if have < net.table_gen:
                behind.append(f"{net_id}@{net.table_gen} (has {have})")
    return not behind, behind
