"""A minimal HTTP/1.1 keep-alive client for load generation: requests are encoded
once, responses parsed only as far as status and Content-Length. On a 2-core machine,
httpx spent a whole core to drive ~300 requests/s, so it measured itself, not the
server; this client costs a fraction of that."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self.reader = reader
        self.writer = writer
        self.host = host

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer, f"{parts.hostname}:{parts.port}")

    def encode(self, method: str, path: str, body: Any = None) -> bytes:
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        return head.encode() + data

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@asynccontextmanager
async def connections(url: str, n: int) -> AsyncIterator[list[Connection]]:
    """``n`` keep-alive connections to ``url``, opened together, closed on exit."""
    conns = await asyncio.gather(*(Connection.open(url) for _ in range(n)))
    try:
        yield conns
    finally:
        for c in conns:
            await c.close()


def created(status: int, body: bytes) -> None:
    if status != 201:
        raise RuntimeError(f"{status} {body[:300]!r}")


async def post_all(url: str, requests: list[bytes], concurrency: int = 16) -> float:
    """Send encoded ``requests`` over ``concurrency`` keep-alive connections (opened
    before the timed span); each must answer 201. Returns the wall time in seconds."""
    queue = list(reversed(requests))

    async def worker(conn: Connection) -> None:
        while queue:
            created(*await conn.request(queue.pop()))

    async with connections(url, concurrency) as conns:
        start = time.monotonic()
        await asyncio.gather(*(worker(c) for c in conns))
        return time.monotonic() - start


async def burst(url: str, path: str, bodies: list[Any]) -> float:
    """``len(bodies)`` concurrent ``POST path`` calls, as many clients would make them:
    each over a connection of its own, opened inside the timed span; each must answer
    201. Returns the wall time in seconds."""
    start = time.monotonic()
    async with connections(url, len(bodies)) as conns:
        answers = await asyncio.gather(
            *(c.request(c.encode("POST", path, b)) for c, b in zip(conns, bodies, strict=True))
        )
    for answer in answers:
        created(*answer)
    return time.monotonic() - start
