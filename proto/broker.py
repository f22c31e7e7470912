"""How both sides reach the broker: URL parsing and the MQTT client settings
(MQTT v5, TCP_NODELAY — Nagle plus delayed ACK cost 88 ms per QoS 1 round trip)."""

from __future__ import annotations

import asyncio
import socket
import ssl
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


__all__ = ["MAX_PAYLOAD", "BrokerURL", "cancel_and_wait", "client"]
