"""The controller's parts, wired so that data flows one way.

A write: API → :class:`~controller.service.Controller` (validate, commit: an
:class:`~controller.state.Applied` change) → :class:`~controller.publication.Publication`
(what the broker must get) → :class:`~controller.bus.Bus` (sends it); the
:class:`~controller.convergence.Tracker` then answers ``wait=true`` from the hosts'
reports. A report: bus → :meth:`Runtime.on_status` → the service → the same path. No part
calls back into the one before it.

Several controllers on one PostgreSQL store: every replica serves the API and commits;
:meth:`Runtime.follow` applies the others' commits from the log (woken by the store's
``NOTIFY``, and a poll), so reads and ``wait=true`` on any replica see every write; only
the leader's bus publishes (:mod:`controller.leader`, :mod:`controller.bus`), in commit
order: what it caught up with before what it commits, each change through
:meth:`Runtime.publish`. Every replica runs every change through the publication, so a
follower's caches are true to its state when it takes over, and each replica keeps the
table changes of its last commits (up to :data:`RECENT` bytes), which a new leader
publishes again from where the previous one stopped (:mod:`controller.leader`,
"Resuming"; a SQLite store's sole controller keeps none).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import structlog

import proto
from proto.errors import PlexusError
from proto.mqtt import Connect
from proto.rest import Convergence

from . import replica
from .bus import Bus
from .convergence import Tracker, target_of
from .errors import StoreError
from .fleet import Fleet
from .leader import Leadership, Sole
from .metrics import Metrics
from .publication import Publication, Publish
from .service import Controller, Outcome
from .state import Applied

log = structlog.get_logger("plexus.controller")

#: commits whose table changes each replica keeps, to resume a leader's publishing
RECENT = 64 << 20  # bytes; a tail that reaches further back: agents use the snapshot


class Runtime:
    def __init__(
        self,
        controller: Controller,
        connect: Connect,
        metrics: Metrics,
        *,
        snapshot_interval: float = 0.1,
        broker: str = "",
        lease: Leadership | None = None,
    ) -> None:
        self.controller = controller
        self.metrics = metrics
        self.publication = Publication(controller.state)
        self.tracker = Tracker(controller.state)
        #: relays' bridge states and the broker each host is on
        self.fleet = Fleet()
        self.bus = Bus(
            connect,
            self.publication,
            metrics,
            on_status=self.on_status,
            known_host=controller.state.hosts.__contains__,
            snapshot_interval=snapshot_interval,
            broker=broker,
            lease=lease,
            on_lead=self.take_over,
            fleet=self.fleet,
        )
        #: (sequence number, its table changes) of the last commits, up to RECENT bytes
        self.recent: collections.deque[tuple[int, list[Publish]]] = collections.deque()
        self._recent_bytes = 0
        self.lease = self.bus.lease

    def catch_up(self) -> bool:
        """Apply what the other replicas committed, and hand it to the bus (which
        publishes it only when leading); whether this replica is now at the log's head."""
        try:
            replica.catch_up(self.controller)
        except StoreError as e:
            log.error("catch_up_failed", error=e.reason)
            return False
        finally:
            self.publish(None)
        return True

    def take_over(self, after: int) -> list[Publish] | None:
        """This replica leads from now on: catch up with the log fully, and return the
        table changes of the commits after ``after`` (the change the previous leader
        published through), in commit order; None when the log cannot be read."""
        if not self.catch_up():
            return None
        return [p for seq, pubs in self.recent if seq > after for p in pubs]

    async def follow(self, listen: Callable[[], Awaitable[Any]], poll: float = 1.0) -> None:
        """Catch up whenever the store notifies a commit, and every ``poll`` seconds;
        ``listen`` makes the connection that listens (:func:`controller.leader.notified`),
        made again when it is lost."""
        conn: Any = None
        while True:
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = await listen()
                async for _ in conn.notifies(timeout=poll, stop_after=1):
                    pass
            except Exception as e:  # PostgreSQL gone: poll until it is back
                log.warning("follow_listen_failed", error=str(e)[:300])
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                conn = None
                await asyncio.sleep(poll)
            try:
                self.catch_up()
            except Exception:  # the controller never dies of the log; the next round retries
                log.exception("follow_failed")

    def publish(self, outcome: Outcome[Any] | None) -> None:
        """Hand what a committed change needs to the bus (a status that changed no row,
        the most frequent message, needs nothing). What catching up with other
        controllers brought goes first (:func:`controller.replica.catch_up`): published
        again, which duplicate delivery allows, and the publication's caches follow it."""
        if self.controller.news:
            for seq, change in self.controller.news:
                self._submit(seq, change)
            self.controller.news.clear()
        if outcome is not None and outcome.change:
            self._submit(self.controller.store.head, outcome.change)

    def _submit(self, seq: int, change: Applied) -> None:
        batch = self.publication.of(change)
        self.bus.submit(batch, seq)
        if isinstance(self.lease, Sole):
            return
        changes = [p for p in batch.publish if not p.retain]
        self.recent.append((seq, changes))
        self._recent_bytes += sum(len(p.payload) for p in changes)
        while self._recent_bytes > RECENT:
            self._recent_bytes -= sum(len(p.payload) for p in self.recent.popleft()[1])

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
        """Fold a host's report in (from the bus), publish what it changed, wake waits.
        A Last Will from a broker the host has left (it is online on another: a relay
        that lost it to a partition drops its session a keepalive later) is ignored."""
        was = self.controller.state.hosts.get(status.host)
        now = self.fleet.brokers.get(status.host, "")
        stale = status.broker and now and status.broker != now
        if stale and status.state == "offline" and was is not None and was.state == "online":
            log.info("stale_will_ignored", host=status.host, broker=status.broker, on=now)
            return
        self.publish(self.controller.host_reported(status))
        moved = now != status.broker
        self.fleet.on_status(status.host, status.broker)
        if was is None or was.state != status.state or moved:
            log.info(
                "host_state",
                host=status.host,
                state=status.state,
                vtep=status.vtep,
                version=status.version,
                broker=status.broker,
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
