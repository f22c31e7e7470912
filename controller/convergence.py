"""Answers "has every affected host applied this?" from the hosts' status reports."""

from __future__ import annotations

import asyncio
import time

from .schemas import Convergence, HostPending
from .service import Target
from .state import HostRow, State


class Tracker:
    """Waiters are woken on every status report and re-check their target."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._waiters: set[asyncio.Event] = set()

    def notify(self) -> None:
        for ev in self._waiters:
            ev.set()

    def _check(self, target: Target) -> tuple[list[str], list[HostPending], list[str]]:
        online, pending, offline = [], [], []
        for host_id, want in sorted(target.items()):
            host = self.state.hosts.get(host_id)
            if host is None:
                continue  # decommissioned meanwhile
            if host.state != "online":
                offline.append(host_id)
                continue
            online.append(host_id)
            missing = want.missing(host)
            if missing:
                pending.append(HostPending(host=host_id, state=host.state, waiting_for=missing))
        return online, pending, offline

    async def wait(self, target: Target, timeout: float) -> Convergence:
        start = time.monotonic()
        deadline = start + timeout
        while True:
            online, pending, offline = self._check(target)
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                return Convergence(
                    converged=not pending,
                    elapsed_ms=round((time.monotonic() - start) * 1000, 3),
                    hosts=online,
                    pending=pending,
                    offline=offline,
                )
            ev = asyncio.Event()
            self._waiters.add(ev)
            try:
                async with asyncio.timeout(remaining):
                    await ev.wait()
            except TimeoutError:
                pass
            finally:
                self._waiters.discard(ev)


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
