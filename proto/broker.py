"""How both sides reach the broker: URL parsing and the MQTT client settings
(MQTT v5, TCP_NODELAY — Nagle plus delayed ACK cost 88 ms per QoS 1 round trip)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from .codec import MAX_PAYLOAD


@dataclass(frozen=True)
class BrokerURL:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

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


def client(
    url: BrokerURL,
    identifier: str,
    *,
    will: aiomqtt.Will | None = None,
    tls_context: ssl.SSLContext | None = None,
    keepalive: int = 10,
    timeout: float = 5.0,
) -> aiomqtt.Client:
    kwargs: dict[str, Any] = {}
    if url.tls:
        kwargs["tls_context"] = tls_context or ssl.create_default_context()
    return aiomqtt.Client(
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


async def messages(mqtt: aiomqtt.Client) -> AsyncIterator[aiomqtt.Message]:
    """``mqtt.messages``, except that a lost connection is always an ``MqttError``.

    aiomqtt's iterator calls ``exception()`` on the client's "disconnected" future; when
    that future was cancelled (seen when the broker restarts) this raises a
    ``CancelledError`` that nobody asked for, which would end the caller's task silently.
    """
    it = mqtt.messages
    while True:
        try:
            msg = await it.__anext__()
        except StopAsyncIteration:
            return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # a real cancellation of our task
            raise aiomqtt.MqttError("connection lost") from None
        yield msg


__all__ = ["MAX_PAYLOAD", "BrokerURL", "client", "messages"]
