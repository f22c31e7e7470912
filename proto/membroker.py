"""An MQTT broker in memory, behind the same seam as the real one (:mod:`proto.mqtt`).

It keeps what Plexus relies on from a broker, and nothing more: topic filters with
``+`` and ``#``; retained messages (an empty retained payload clears one) sent at
subscription time with ``retain`` set; live messages delivered in publish order to
every matching session (the publisher's too, as MQTT does); one session per client
identifier (a second takes over); a Will published when a session ends other than
cleanly; a receive queue bounded in messages (``on_drop`` counts what it refuses).
Tests drive failures with :meth:`MemoryBroker.drop` and :attr:`MemoryBroker.up`.

Used by unit tests of the controller's bus and the agent's daemon; the broker-backed
tests (Mosquitto) stay, for what only a real broker shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from .errors import BrokerUnavailable
from .mqtt import Received, Session, Will

MAX_QUEUED = 10_000


def matches(pattern: str, topic: str) -> bool:
    """Whether the topic filter ``pattern`` matches ``topic`` (MQTT 3.1.1 §4.7)."""
    want, have = pattern.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)


_END = Received("", b"")  # queued to end a session's message stream


class MemorySession:
    """One client's session (see :class:`proto.mqtt.Session`)."""

    def __init__(
        self,
        broker: MemoryBroker,
        identifier: str,
        will: Will | None,
        on_drop: Callable[[], None] | None,
        max_queued: int,
    ) -> None:
        self.broker = broker
        self.identifier = identifier
        self.will = will
        self.on_drop = on_drop
        self.filters: set[str] = set()
        self.closed: str | None = None  # why, once the session ended
        self._queue: asyncio.Queue[Received] = asyncio.Queue()
        self._max = max_queued

    def _check(self) -> None:
        if self.closed is not None:
            raise BrokerUnavailable(f"session {self.identifier}: {self.closed}")

    def deliver(self, msg: Received) -> None:
        if self.closed is not None:
            return
        if self._queue.qsize() >= self._max:
            if self.on_drop is not None:
                self.on_drop()
            return
        self._queue.put_nowait(msg)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        self._check()
        await asyncio.sleep(0)  # a publish is a round trip: let others run
        self._check()
        self.broker.route(topic, payload, retain)

    async def subscribe(self, topic: str, *, qos: int = 1) -> None:
        self._check()
        self.filters.add(topic)
        for t, payload in sorted(self.broker.retained.items()):
            if matches(topic, t):
                self.deliver(Received(t, payload, True))
        await asyncio.sleep(0)

    async def unsubscribe(self, topic: str) -> None:
        self._check()
        self.filters.discard(topic)
        await asyncio.sleep(0)

    async def messages(self) -> AsyncIterator[Received]:
        while True:
            self._check()
            msg = await self._queue.get()
            if msg is _END:
                self._check()
                return
            yield msg

    def end(self, why: str) -> None:
        if self.closed is None:
            self.closed = why
            self._queue.put_nowait(_END)


class MemoryBroker:
    """Sessions by client identifier, retained messages by topic, and a log of every
    publish (``published``: topic, payload, retain) for tests to look at."""

    def __init__(self) -> None:
        self.retained: dict[str, bytes] = {}
        self.sessions: dict[str, MemorySession] = {}
        self.published: list[Received] = []
        #: False: new connections are refused (a broker that is down)
        self.up = True

    def route(self, topic: str, payload: bytes, retain: bool) -> None:
        self.published.append(Received(topic, payload, retain))
        if retain:
            if payload:
                self.retained[topic] = payload
            else:
                self.retained.pop(topic, None)
        msg = Received(topic, payload, False)
        for s in list(self.sessions.values()):
            if any(matches(f, topic) for f in s.filters):
                s.deliver(msg)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish as a third party would (a test's own client)."""
        self.route(topic, payload, retain)
        await asyncio.sleep(0)

    def drop(self, identifier: str, why: str = "connection lost") -> None:
        """End a session abnormally: its Will is published, its calls then raise."""
        s = self.sessions.pop(identifier, None)
        if s is not None:
            s.end(why)
            if s.will is not None:
                self.route(s.will.topic, s.will.payload, s.will.retain)

    @asynccontextmanager
    async def connect(
        self,
        identifier: str,
        *,
        will: Will | None = None,
        on_drop: Callable[[], None] | None = None,
        max_queued: int = MAX_QUEUED,
    ) -> AsyncIterator[Session]:
        """A session (see :class:`proto.mqtt.Connect`)."""
        if not self.up:
            raise BrokerUnavailable(f"memory broker refused {identifier}: it is down")
        self.drop(identifier, "taken over by a new session of the same client")
        session = MemorySession(self, identifier, will, on_drop, max_queued)
        self.sessions[identifier] = session
        try:
            yield session
        except BaseException:
            if self.sessions.get(identifier) is session:
                self.drop(identifier)  # not a clean disconnect: the Will goes
            raise
        else:
            if self.sessions.get(identifier) is session:
                del self.sessions[identifier]
                session.end("disconnected")
