"""Answers "has every affected host applied this?" from the hosts' status reports.

:func:`target_of` says which host must report which generation for a committed change;
:func:`behind` says what a host has not applied yet, against a target or against
everything it holds now — the one place that question is answered (the API's host
views and status, waits, metrics all ask it).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from proto.rest import Convergence, HostPending

from .state import Applied, HostRow, State


@dataclass
class HostTarget:
    """Generations one host must report before a change counts as applied there."""

    desired: int | None = None
    networks: dict[str, int] = field(default_factory=dict)


Target = dict[str, HostTarget]


def target_of(change: Applied, state: State) -> Target:
    """For a committed change: each host whose desired document it changed must report
    that document's generation, and each host that follows a network whose table it
    changed must report that table's generation."""
    target: Target = {}
    for host_id, (old, new) in change.hosts.items():
        if new is not None and (old is None or old.desired_gen != new.desired_gen):
            target.setdefault(host_id, HostTarget()).desired = new.desired_gen
    for net_id, (old_net, new_net) in change.networks.items():
        if old_net is None or new_net is None or new_net.table_gen <= old_net.table_gen:
            continue
        if new_net.has_table:
            for h in state.participants(net_id):
                target.setdefault(h, HostTarget()).networks[net_id] = new_net.table_gen
    return target


def behind(state: State, host: HostRow, target: HostTarget | None = None) -> list[str]:
    """What ``host`` has not applied: of ``target``, or (None) of the current generation
    of everything it holds; ``["desired@7 (has 6)", "blue@12 (has 11)"]``."""
    out = []
    want = host.desired_gen if target is None else target.desired
    if want is not None and host.applied_desired < want:
        out.append(f"desired@{want} (has {host.applied_desired})")
    if target is None:
        nets = {}
        for net_id in state.host_networks.get(host.id, {}):
            net = state.networks.get(net_id)
            if net is not None and net.has_table:
                nets[net_id] = net.table_gen
    else:
        nets = target.networks
    for net_id, gen in sorted(nets.items()):
        have = host.applied_networks.get(net_id, 0)
        if have < gen:
            out.append(f"{net_id}@{gen} (has {have})")
    return out


def in_sync(state: State, host: HostRow) -> bool:
    """Online and current with everything it must hold."""
    return host.state == "online" and not behind(state, host)


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
        missing = behind(self.state, host, target[host_id])
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
