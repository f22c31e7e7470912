"""What the ACL rules with ``log`` matched, from the kernel's nflog group into the
agent's log (event ``acl_logged``), its metrics (``plexus_agent_acl_logged_total``)
and the host's event topic (at most :data:`EVENTS_PER_SECOND` a second; the rest are
counted, not sent)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as MetricCounter

from .acl import LOG_GROUP
from .kernel import nflog

log = structlog.get_logger("plexus.agent")
EVENTS_PER_SECOND = 20

Publish = Callable[[str, str], Awaitable[None]]


class AclLog:
    def __init__(self, host: str, registry: CollectorRegistry, publish: Publish) -> None:
        self.host = host
        self.publish = publish
        self.logged = MetricCounter(
            "plexus_agent_acl_logged_total",
            "packets an ACL rule with log matched",
            ["policy", "rule"],
            registry=registry,
        )
        self._window = 0.0
        self._sent = 0

    async def run(self) -> None:
        """Read the group until cancelled; without it (another listener holds it, or
        the kernel has no nflog) say so once and return."""
        try:
            sock = nflog.open_group(LOG_GROUP)
        except OSError as e:
            log.warning("acl_log_unavailable", host=self.host, group=LOG_GROUP, error=str(e))
            return
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(sock.fileno(), ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                for pkt in nflog.drain(sock):
                    await self.seen(pkt)
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()

    async def seen(self, pkt: nflog.Logged) -> None:
        policy, rule = pkt.rule
        self.logged.labels(policy, rule).inc()
        src = f"{pkt.src}:{pkt.sport}" if pkt.sport is not None else pkt.src
        dst = f"{pkt.dst}:{pkt.dport}" if pkt.dport is not None else pkt.dst
        log.info("acl_logged", host=self.host, policy=policy, rule=rule, src=src, dst=dst,
                 protocol=pkt.protocol)  # fmt: skip
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._window, self._sent = now, 0
        if self._sent < EVENTS_PER_SECOND:
            self._sent += 1
            await self.publish("acl_logged", f"{policy}:{rule} {pkt.protocol} {src} -> {dst}")
