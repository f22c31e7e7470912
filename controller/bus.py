"""The controller's side of the broker: it sends what it is given and reports what it
receives. What to send is :mod:`controller.publication`'s; statuses received are handed
to ``on_status`` (the runtime folds them into the service).

One session (:class:`proto.mqtt.Session`), four named tasks while connected:

- ``reader``: host status (and Last Will), host events, relays' bridge states (to the
  :class:`~controller.fleet.Fleet`), and during a reconciliation the broker's retained state;
- ``publisher``: publishes, in commit order, what each committed change needs — only
  while this replica leads (:mod:`controller.leader`);
- ``snapshotter``: refreshes network snapshots (the shards touched, and the index),
  at most one per network per ``snapshot_interval`` (the first after a quiet spell at once);
- ``status``: hands the newest status of each host that reported to ``on_status``.

After every (re)connect the broker's retained state is reconciled with the store
(:meth:`Publication.reconcile`): missing or stale records republished, gone ones cleared.

**One rule: publish iff leader with a live lease**, decided here. Every replica follows
the hosts' statuses; a follower publishes nothing, not even a fence. At a new epoch the
publisher has the runtime catch up with the log (``on_lead``), publishes the table
changes after the previous leader's mark, reconciles, then publishes new commits. Before
each batch it checks the lease (:meth:`Bus._may_publish`): live, it publishes;
unconfirmed, it holds the batch; deposed, it drops all queued. Each publish checks again
as it is handed to the client; one fenced there has its batch led again (tail, plan).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

import structlog

import proto
from proto import topics
from proto.backoff import Backoff
from proto.errors import BrokerUnavailable
from proto.mqtt import Connect, Session

from .errors import StoreError
from .fleet import Fleet
from .leader import Leadership, Sole
from .metrics import Metrics
from .publication import Batch, Publication, Publish

log = structlog.get_logger("plexus.controller.bus")

FENCE = f"{topics.ROOT}/controller/fence"
MAX_QUEUE = 100_000


class Bus:
    def __init__(
        self,
        connect: Connect,
        publication: Publication,
        metrics: Metrics,
        *,
        on_status: Callable[[proto.HostStatus], None],
        known_host: Callable[[str], bool],
        snapshot_interval: float = 0.1,
        identifier: str | None = None,
        broker: str = "",
        lease: Leadership | None = None,
        on_lead: Callable[[int], list[Publish] | None] = lambda after: [],
        fleet: Fleet | None = None,
    ) -> None:
        self.connect = connect
        self.publication = publication
        self.metrics = metrics
        self.on_status = on_status
        self.known_host = known_host
        self.broker = broker  # for logs
        self.snapshot_interval = snapshot_interval
        self.lease: Leadership = lease or Sole("")
        #: the MQTT client id: the replica's name in it, for the broker's log
        self.identifier = identifier or "-".join(
            p for p in ("plexus-controller", self.lease.replica, secrets.token_hex(3)) if p
        )
        self.on_lead = on_lead
        self.fleet = fleet or Fleet()  # relays' bridge states, and hosts' brokers
        self.connected = asyncio.Event()
        self._queue: asyncio.Queue[Publish] = asyncio.Queue()
        self._dirty: set[str] = set()
        self._dirty_event = asyncio.Event()
        self._last_snapshot: dict[str, float] = {}
        self._retained: dict[str, bytes] | None = None
        self._fence: tuple[str, asyncio.Event] | None = None
        self._overflow = False
        #: the last change submitted (the log's sequence number), leading or not
        self._seq = 0
        self._sent: dict[str, int] = {}  # topic -> generation of the last shard sent
        #: statuses received and not yet folded in: the newest per host
        self._statuses: dict[str, proto.HostStatus] = {}
        self._status_event = asyncio.Event()

    # -- called by the runtime -------------------------------------------------------

    def submit(self, batch: Batch, seq: int = 0) -> None:
        """Queue what a committed change must publish (never blocks, never drops
        silently: on overflow the next reconciliation republishes everything). A
        follower queues nothing (its publication's caches followed the change)."""
        self._seq = max(self._seq, seq)
        if not self.lease.epoch:
            return
        for pub in batch.publish:
            if self._queue.qsize() >= MAX_QUEUE:
                self._overflow = True
                log.warning("publish_queue_overflow", size=MAX_QUEUE)
                break
            self._queue.put_nowait(pub)
        if batch.snapshots:
            self._dirty |= batch.snapshots
            self._dirty_event.set()

    # -- connection loop -------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled, reconnecting with :class:`Backoff`."""
        backoff = Backoff()
        while True:
            try:
                async with self.connect(self.identifier, on_drop=self.metrics.dropped.inc) as mqtt:
                    backoff.reset()
                    await self._session(mqtt)
            except* BrokerUnavailable as group:
                errors = "; ".join(str(e) for e in group.exceptions)
                log.warning("broker_disconnected", broker=self.broker, error=errors)
            finally:
                self.connected.clear()
                self.metrics.broker_connected.set(0)
            await asyncio.sleep(backoff.next())

    async def _session(self, mqtt: Session) -> None:
        log.info("broker_connected", broker=self.broker)
        self._drain()  # what was queued while disconnected: superseded (_lead)
        self._overflow = False
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._reader(mqtt), name="controller-reader")
            await mqtt.subscribe(topics.ALL_HOST_STATUS, qos=1)
            await mqtt.subscribe(topics.ALL_HOST_EVENTS, qos=0)
            await mqtt.subscribe(FENCE, qos=1)
            self.fleet.on_session()  # the relays' states as this broker holds them
            await mqtt.subscribe(topics.ALL_RELAYS, qos=1)
            epoch = await self._lead(mqtt) if self.lease.epoch else 0
            self.connected.set()
            self.metrics.broker_connected.set(1)
            tg.create_task(self._publisher(mqtt, epoch), name="controller-publisher")
            tg.create_task(self._snapshotter(), name="controller-snapshotter")
            tg.create_task(self._status_folder(), name="controller-status")

    # -- reconciliation of retained state -------------------------------------------

    async def _lead(self, mqtt: Session) -> int:
        """A new epoch: catch up, the tail, reconcile; the epoch led (0: none, fenced)."""
        epoch, after = self.lease.epoch, self.lease.published
        tail = self.on_lead(after)
        if tail is None:  # behind the log: a plan from it could go backwards; soon again
            return await asyncio.sleep(0.2, 0)
        self._drain()  # the tail has its table changes, the plan the rest
        log.info("leading", replica=self.lease.replica, epoch=epoch, after=after, tail=len(tail))
        through = self._seq
        if not (await self._publish_many(mqtt, tail, epoch) and await self._reconcile(mqtt, epoch)):
            return 0
        self.lease.published = max(self.lease.published, through)
        return epoch if self.lease.epoch == epoch else 0

    async def _reconcile(self, mqtt: Session, epoch: int) -> bool:
        if not await self._may_publish(epoch):  # the fence is a publish too
            return False
        start = time.monotonic()
        self._retained = {}
        nonce = secrets.token_hex(8)
        fenced = asyncio.Event()
        self._fence = (nonce, fenced)
        await mqtt.subscribe(topics.ALL_HOST_DESIRED, qos=1)
        await mqtt.subscribe(topics.ALL_NETWORKS, qos=1)
        # retained messages are queued by the broker at subscribe time, before the fence
        await mqtt.publish(FENCE, nonce.encode(), qos=1)
        try:
            async with asyncio.timeout(30):
                await fenced.wait()
        except TimeoutError:
            log.warning("reconcile_fence_timeout")
        retained, self._retained, self._fence = self._retained, None, None
        await mqtt.unsubscribe(topics.ALL_HOST_DESIRED)
        await mqtt.unsubscribe(topics.ALL_NETWORKS)
        # what was queued is in the state the plan is made from: its retained documents
        # are superseded (one could be older than the plan's), its table changes still go,
        # before those committed while the plan went out (never a generation backwards)
        kept = [p for p in self._drain() if not p.retain]
        plan = self.publication.reconcile(retained)
        if not await self._publish_many(mqtt, plan, epoch):
            return False
        for pub in kept + self._drain():
            self._queue.put_nowait(pub)
        self.metrics.reconciles.inc()
        log.info(
            "broker_reconciled",
            retained=len(retained),
            published=sum(1 for p in plan if p.payload),
            cleared=sum(1 for p in plan if not p.payload),
            duration_ms=round((time.monotonic() - start) * 1000, 1),
        )
        return True

    # -- tasks -----------------------------------------------------------------------

    async def _reader(self, mqtt: Session) -> None:
        async for msg in mqtt.messages():
            self.on_message(msg.topic, msg.payload, msg.retain)

    def _on_message(self, topic: str, payload: bytes, retain: bool) -> None:
        if topic == FENCE:
            if self._fence is not None and payload == self._fence[0].encode():
                self._fence[1].set()
            return
        if topic.startswith(topics.RELAYS + "/"):
            return self.fleet.on_relay(topic, payload, retain)
        try:
            parsed = topics.parse(topic)
        except proto.BadTopic as e:
            self._reject("bad_topic", topic, e, None)
            return
        if parsed.kind in ("host_desired", "network", "network_snapshot", "network_snapshot_index"):
            if self._retained is not None and retain:
                self._retained[topic] = payload
            return
        if not payload:
            return  # a cleared retained message
        if parsed.kind == "host_status":
            try:
                status = proto.decode(payload, proto.HostStatus)
            except proto.WireError as e:
                self._reject(e.code, topic, e, parsed.host)
                return
            if status.host != parsed.host:
                self._reject(
                    "host_mismatch", topic, f"payload names host {status.host!r}", parsed.host
                )
                return
            # a status is a level, not an edge: only the newest of each host is folded in
            if self._statuses.pop(status.host, None) is not None:
                self.metrics.status_coalesced.inc()
            self._statuses[status.host] = status
            self._status_event.set()
        elif parsed.kind == "host_events":
            try:
                event = proto.decode(payload, proto.Event)
            except proto.WireError as e:
                self._reject(e.code, topic, e, parsed.host)
                return
            if event.host != parsed.host:
                self._reject(
                    "host_mismatch", topic, f"payload names host {event.host!r}", parsed.host
                )
                return
            self.metrics.events.labels(event.level).inc()
            log.info(
                "host_event",
                host=parsed.host,
                name=event.event,
                level=event.level,
                detail=event.detail,
            )
        else:
            self._reject("unexpected_topic", topic, parsed.kind, parsed.host)

    def _reject(self, reason: str, topic: str, why: object, host: str | None) -> None:
        known = host if host is not None and self.known_host(host) else "-"
        self.metrics.rejected.labels(reason, known).inc()
        log.warning("message_rejected", topic=topic, reason=reason, detail=str(why)[:512])

    async def _status_folder(self) -> None:
        while True:
            await self._status_event.wait()
            self._status_event.clear()
            self.fold_statuses()

    def fold_statuses(self) -> int:
        """Fold in the newest status of each host that reported since the last round;
        returns how many."""
        pending, self._statuses = self._statuses, {}
        for status in pending.values():
            try:
                self.on_status(status)
            except StoreError as e:
                log.error("store_error", error=e.reason)
            except Exception:  # a daemon never dies of a message
                log.exception("status_handler_failed", host=status.host)
        return len(pending)

    def on_message(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Fold one incoming message in, as the reader does (never raises)."""
        try:
            self._on_message(topic, payload, retain)
        except StoreError as e:
            log.error("store_error", error=e.reason)
        except Exception:  # a daemon never dies of a message
            log.exception("message_handler_failed", topic=topic)

    def _drain(self) -> list[Publish]:
        return [self._queue.get_nowait() for _ in range(self._queue.qsize())]

    async def _publisher(self, mqtt: Session, epoch: int) -> None:
        """Publishes for ``epoch``; a new epoch is led first; a follower drops all."""
        while True:
            if not self.lease.epoch:
                epoch = 0
                self._drain()
                await asyncio.sleep(0.02)
                continue
            if self.lease.epoch != epoch:
                epoch = await self._lead(mqtt)
                continue
            try:
                async with asyncio.timeout(0.1):
                    batch = [await self._queue.get()]
            except TimeoutError:
                continue
            batch.extend(self._drain())
            through = self._seq
            if self._overflow:
                self._overflow = False
                batch = self.publication.reconcile({})
            if await self._publish_many(mqtt, coalesce(batch), epoch):
                self.lease.published = max(self.lease.published, through)
            else:  # fenced: led again (the tail, the reconciliation) if it still leads
                epoch = 0

    async def _may_publish(self, epoch: int) -> bool:
        """The fence: live at ``epoch`` (held while unconfirmed, False once deposed)."""
        while not self.lease.live():
            if self.lease.epoch != epoch:
                dropped = len(self._drain())
                log.warning("publish_fenced", epoch=epoch, dropped=dropped)
                return False
            await asyncio.sleep(0.01)
        return self.lease.epoch == epoch

    async def _publish_many(self, mqtt: Session, batch: list[Publish], epoch: int) -> bool:
        """Publish ``batch`` if live at ``epoch`` (checked per batch and per publish)."""
        if not await self._may_publish(epoch):
            return False
        # publishes start in list order (paho sends in call order); acks are awaited together
        return all(await asyncio.gather(*(self._publish(mqtt, p, epoch) for p in batch)))

    async def _publish(self, mqtt: Session, pub: Publish, epoch: int) -> bool:
        kind = topics.kind_of(pub.topic)
        if not (self.lease.epoch == epoch and self.lease.live()):
            return False  # no await between this check and the client taking the publish
        if pub.generation and pub.generation < self._sent.get(pub.topic, 0):
            return True  # a snapshot queued before a newer one went (a reconcile's)
        if pub.generation or pub.topic in self._sent:  # a clear (0): the topic starts over
            self._sent[pub.topic] = pub.generation
        await mqtt.publish(pub.topic, pub.payload, qos=1, retain=pub.retain)
        self.metrics.publishes.labels(kind).inc()
        self.metrics.publish_bytes.labels(kind).inc(len(pub.payload))
        return True

    async def _snapshotter(self) -> None:
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            now = time.monotonic()
            last, every = self._last_snapshot, self.snapshot_interval
            due = [n for n in self._dirty if now - last.get(n, 0.0) >= every]
            for net in due:
                self._dirty.discard(net)
                publishes = self.publication.snapshot(net)  # nothing if it went
                if publishes:
                    self._last_snapshot[net] = now
                else:
                    self._last_snapshot.pop(net, None)
                for pub in publishes:
                    self._queue.put_nowait(pub)
            if self._dirty:
                wait = min(every - (now - last.get(n, 0.0)) for n in self._dirty)
                await asyncio.sleep(max(wait, 0.001))
                self._dirty_event.set()


def coalesce(batch: list[Publish]) -> list[Publish]:
    """One desired document per host per batch, built now: the first lazy publish to a
    topic after its last eager one (a clearing) keeps its place, before the table
    changes of its change (:meth:`Publication.of`); the others go."""
    last_eager, out, seen = {p.topic: i for i, p in enumerate(batch) if not p.lazy}, [], set()
    for i, p in enumerate(batch):
        if p.lazy:
            if p.topic in seen or i < last_eager.get(p.topic, -1):
                continue
            seen.add(p.topic)
            try:
                p.payload  # noqa: B018 (builds it)
            except KeyError:  # the host went meanwhile; its clearing follows
                continue
        out.append(p)
    return out
