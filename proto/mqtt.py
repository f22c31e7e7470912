"""How both sides reach the broker: URL parsing, the MQTT client settings (MQTT v5,
TCP_NODELAY — Nagle plus delayed ACK cost 88 ms per QoS 1 round trip), and the seam
the controller's bus and the agent's daemon talk through.

The seam is small: a :class:`Connect` opens a :class:`Session` (publish, subscribe,
unsubscribe, the messages received). :func:`connector` is the real one (aiomqtt, a
broker's failures translated once into :class:`~proto.errors.BrokerUnavailable`);
:class:`proto.membroker.MemoryBroker` is an in-memory one, so that logic which has no
broker in it is tested without one."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import aiomqtt

from . import paho
from .codec import MAX_PAYLOAD
from .errors import BrokerUnavailable

paho.share_tables()  # see proto.paho: paho-mqtt's per-packet property tables, built once


@dataclass(frozen=True)
class BrokerURL:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    #: TLS: the CA the broker's certificate must chain to, and this client's certificate
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerURL:
        """``mqtt://[user:pass@]host[:1883]`` or ``mqtts://…[:8883]``."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r} has no host")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as e:
            raise ValueError(f"broker URL {url!r}: {e}") from None
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def with_credentials(self, directory: Path | None) -> BrokerURL:
        """Fill in the identity in ``directory`` (else a systemd credentials directory,
        :func:`systemd_credentials`)."""
        return self._with_credentials(directory or systemd_credentials())

    def _with_credentials(self, directory: Path | None) -> BrokerURL:
        """Fill in the identity ``plexus broker init`` issued (a directory holding
        ``username``, ``password`` and, for TLS, ``ca.pem``, ``cert.pem``, ``key.pem``).
        Raises ValueError naming what is missing or unreadable."""
        if directory is None:
            return self
        try:
            username = (directory / "username").read_text().strip()
            password = (directory / "password").read_text().strip()
        except OSError as e:
            raise ValueError(f"broker credentials {directory}: {e.strerror}") from None
        files = {n: directory / f"{n}.pem" for n in ("ca", "cert", "key")}
        present = {n: p for n, p in files.items() if p.exists()}
        if self.tls and ("cert" in present) != ("key" in present):
            raise ValueError(f"broker credentials {directory}: cert.pem and key.pem go together")
        return replace(
            self,
            username=username,
            password=password,
            ca=present.get("ca"),
            cert=present.get("cert"),
            key=present.get("key"),
        )

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert is not None and self.key is not None:
            ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


#: bounds of a client's receive queue: a flood is dropped (and counted), not buffered
MAX_QUEUED_MESSAGES = 10_000
MAX_QUEUED_BYTES = 32 << 20
#: aiomqtt logs a warning on each publish made while more than this many wait for their
#: acknowledgement (its default is 10). The controller publishes a batch's documents
#: together (one per host: 1,000 at once for 1,000 hosts), so the default logged a line
#: per publish of every burst.
PENDING_CALLS_WARNING = 100_000


def bounded_queue(
    on_drop: Callable[[], None],
    max_bytes: int = MAX_QUEUED_BYTES,
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """A queue class for ``aiomqtt.Client(queue_type=…)`` bounded in messages (aiomqtt's
    ``maxsize``) and in payload bytes, calling ``on_drop`` for every message refused."""

    class BoundedQueue(asyncio.Queue[aiomqtt.Message]):
        held = 0

        def put_nowait(self, item: aiomqtt.Message) -> None:
            size = len(item.payload) if isinstance(item.payload, bytes | bytearray) else 0
            if self.full() or self.held + size > max_bytes:
                on_drop()
                raise asyncio.QueueFull
            super().put_nowait(item)
            self.held += size

        def get_nowait(self) -> aiomqtt.Message:
            item = super().get_nowait()
            size = len(item.payload) if isinstance(item.payload, bytes | bytearray) else 0
            self.held -= size
            return item

    return BoundedQueue


def systemd_credentials() -> Path | None:
    """A systemd service's ``$CREDENTIALS_DIRECTORY`` when it holds a broker identity
    (``LoadCredential=username:…`` and ``password:…``): lets a unit with
    ``DynamicUser=yes`` use credentials only root may read."""
    d = os.environ.get("CREDENTIALS_DIRECTORY")
    if d and (Path(d) / "username").exists():
        return Path(d)
    return None


def client(
    url: BrokerURL,
    identifier: str,
    *,
    will: aiomqtt.Will | None = None,
    tls_context: ssl.SSLContext | None = None,
    keepalive: int = 10,
    timeout: float = 5.0,
    on_drop: Callable[[], None] | None = None,
    max_queued: int = MAX_QUEUED_MESSAGES,
) -> aiomqtt.Client:
    """An MQTT v5 client with Plexus's settings. With ``on_drop``, its receive queue is
    bounded (``max_queued`` messages, :data:`MAX_QUEUED_BYTES`) and drops are reported."""
    kwargs: dict[str, Any] = {}
    if on_drop is not None:
        kwargs["queue_type"] = bounded_queue(on_drop)
        kwargs["max_queued_incoming_messages"] = max_queued
    if url.tls:
        kwargs["tls_context"] = tls_context or url.tls_context()
    mqtt = aiomqtt.Client(
        url.host,
        url.port,
        identifier=identifier,
        username=url.username,
        password=url.password,
        protocol=aiomqtt.ProtocolVersion.V5,
        will=will,
        keepalive=keepalive,
        clean_start=True,
        max_inflight_messages=1000,
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        timeout=timeout,
        **kwargs,
    )
    mqtt.pending_calls_threshold = PENDING_CALLS_WARNING
    return mqtt


async def cancel_and_wait(task: asyncio.Task[Any], attempts: int = 100) -> None:
    """Cancel a task and wait for it to end, cancelling again if a cancellation was lost
    (seen with aiomqtt on Python 3.11, whose ``asyncio.wait_for`` can swallow one)."""
    for _ in range(attempts):
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.1)
        if done:
            if not task.cancelled():
                task.exception()  # retrieved: a failure is the task's own to log
            return
    raise TimeoutError(f"task {task.get_name()} would not stop")


# -- the seam ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """A message as a session delivers it. ``retain``: the broker's retained copy, sent
    at subscription time (not a publish that happened while subscribed)."""

    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Will:
    """Published by the broker when the session ends without a clean disconnect."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class Session(Protocol):
    """One connection to a broker. Every method raises
    :class:`~proto.errors.BrokerUnavailable` when the connection is lost."""

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None: ...

    async def subscribe(self, topic: str, *, qos: int = 1) -> None: ...

    async def unsubscribe(self, topic: str) -> None: ...

    def messages(self) -> AsyncIterator[Received]:
        """Every message received, in order, until the connection ends."""
        ...


class Connect(Protocol):
    """Opens a session (``async with connect("id") as session``); raises
    :class:`~proto.errors.BrokerUnavailable` when the broker cannot be reached."""

    def __call__(
        self,
        identifier: str,
        *,
        will: Will | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> AbstractAsyncContextManager[Session]: ...


class _AiomqttSession:
    """:class:`Session` over an aiomqtt client: aiomqtt's errors become
    :class:`BrokerUnavailable` here, and nowhere else."""

    __slots__ = ("_client",)

    def __init__(self, c: aiomqtt.Client) -> None:
        self._client = c

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as e:
            raise BrokerUnavailable(str(e)) from e

    async def subscribe(self, topic: str, *, qos: int = 1) -> None:
        try:
            await self._client.subscribe(topic, qos=qos)
        except aiomqtt.MqttError as e:
            raise BrokerUnavailable(str(e)) from e

    async def unsubscribe(self, topic: str) -> None:
        try:
            await self._client.unsubscribe(topic)
        except aiomqtt.MqttError as e:
            raise BrokerUnavailable(str(e)) from e

    async def messages(self) -> AsyncIterator[Received]:
        try:
            async for msg in self._client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes | bytearray) else b""
                yield Received(str(msg.topic), bytes(payload), bool(msg.retain))
        except aiomqtt.MqttError as e:
            raise BrokerUnavailable(str(e)) from e


def connector(url: BrokerURL, **settings: Any) -> Connect:
    """The real :class:`Connect`: sessions to the broker at ``url`` with Plexus's client
    settings (:func:`client`; ``settings`` are its keyword arguments)."""

    @asynccontextmanager
    async def connect(
        identifier: str,
        *,
        will: Will | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> AsyncIterator[Session]:
        last = aiomqtt.Will(will.topic, will.payload, will.qos, will.retain) if will else None
        try:
            async with client(url, identifier, will=last, on_drop=on_drop, **settings) as c:
                yield _AiomqttSession(c)
        except aiomqtt.MqttError as e:
            raise BrokerUnavailable(f"{url}: {e}") from e

    return connect


__all__ = [
    "MAX_PAYLOAD",
    "BrokerURL",
    "Connect",
    "Received",
    "Session",
    "Will",
    "cancel_and_wait",
    "client",
    "connector",
]
