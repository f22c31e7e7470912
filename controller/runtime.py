"""The controller's parts, wired so that data flows one way.

A write: API → :class:`~controller.service.Controller` (validate, commit: an
:class:`~controller.state.Applied` change) → :class:`~controller.publication.Publication`
(what the broker must get) → :class:`~controller.bus.Bus` (sends it); the
:class:`~controller.convergence.Tracker` then answers ``wait=true`` from the hosts'
reports. A report: bus → :meth:`Runtime.on_status` → the service → the same path. No part
calls back into the one before it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import structlog

import proto
from proto.errors import PlexusError
from proto.mqtt import Connect
from proto.rest import Convergence

from .bus import Bus
from .convergence import Tracker, target_of
from .metrics import Metrics
from .publication import Publication
from .service import Controller, Outcome

log = structlog.get_logger("plexus.controller")


class Runtime:
    def __init__(
        self,
        controller: Controller,
        connect: Connect,
        metrics: Metrics,
        *,
        snapshot_interval: float = 0.1,
        broker: str = "",
    ) -> None:
        self.controller = controller
        self.metrics = metrics
        self.publication = Publication(controller.state)
        self.tracker = Tracker(controller.state)
        self.bus = Bus(
            connect,
            self.publication,
            metrics,
            on_status=self.on_status,
            known_host=controller.state.hosts.__contains__,
            snapshot_interval=snapshot_interval,
            broker=broker,
        )

    def publish(self, outcome: Outcome[Any]) -> None:
        """Hand what a committed change needs to the bus (a status that changed no row,
        the most frequent message, needs nothing). What catching up with other
        controllers brought goes first (:func:`controller.replica.catch_up`): published
        again, which duplicate delivery allows, and the publication's caches follow it."""
        if self.controller.news:
            for change in self.controller.news:
                self.bus.submit(self.publication.of(change))
            self.controller.news.clear()
        if outcome.change:
            self.bus.submit(self.publication.of(outcome.change))

    async def commit(
        self,
        outcome: Outcome[Any],
        wait: bool,
        timeout: float,
        only: Collection[str] | None = None,
    ) -> Convergence | None:
        """Publish a committed change; with ``wait``, until every affected online host
        (of ``only``, when given) applied it or ``timeout`` seconds passed."""
        self.publish(outcome)
        if not wait:
            return None
        target = target_of(outcome.change, self.controller.state)
        if only:
            target = {h: t for h, t in target.items() if h in only}
        result = await self.tracker.wait(target, timeout)
        self.metrics.waits.labels("converged" if result.converged else "timeout").inc()
        return result

    def on_status(self, status: proto.HostStatus) -> None:
        """Fold a host's report in (from the bus), publish what it changed, wake waits."""
        was = self.controller.state.hosts.get(status.host)
        self.publish(self.controller.host_reported(status))
        if was is None or was.state != status.state:
            log.info(
                "host_state",
                host=status.host,
                state=status.state,
                vtep=status.vtep,
                version=status.version,
            )
        if status.gone:
            self.collect(status)
        self.tracker.notify(status.host)

    def collect(self, status: proto.HostStatus) -> None:
        """Garbage: the runtime-owned compartments whose namespace the host found gone
        (the container died without a CNI DEL)."""
        try:
            out = self.controller.collect(status.host, status.gone)
        except PlexusError as e:  # the store refused: the next report asks again
            log.error("collect_failed", host=status.host, error=str(e))
            return
        if out.value:
            log.info("compartments_collected", host=status.host, compartments=out.value)
            self.metrics.collected.inc(len(out.value))
            self.publish(out)
