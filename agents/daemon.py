"""``plexus agent``: the MQTT session and the reconcile loop of one host.

Two named tasks: ``agent-mqtt`` (connect, subscribe to the host's desired document and
to the tables of the networks it names, fold messages in, publish status; reconnect
with :class:`proto.backoff.Backoff`) and ``agent-reconciler`` (a pass whenever something
arrived, every ``resync_interval`` to repair drift, and with backoff after errors).
With the broker gone the dataplane stays as it is (fail static).

The daemon talks to the broker through the seam of :mod:`proto.mqtt` (a
:class:`~proto.mqtt.Connect`): :func:`serve` passes the real one, tests an in-memory
broker's (:class:`proto.membroker.MemoryBroker`). It tells the agent what happened to
the session (:meth:`Agent.on_session`, :meth:`Agent.on_dropped`,
:meth:`Agent.on_live`) and never touches the tables itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Literal

import structlog

import proto
from proto import logs, topics
from proto.backoff import Backoff
from proto.errors import BrokerUnavailable
from proto.failover import Broker, Brokers
from proto.mqtt import BrokerURL, Connect, Session, Will, cancel_and_wait, connector
from proto.signals import on_signals

from .acllog import AclLog
from .agent import Agent
from .config import AgentSettings
from .kernel import Kernel

log = structlog.get_logger("plexus.agent")


class AgentDaemon:
    def __init__(
        self,
        agent: Agent,
        connect: Connect | Brokers,
        resync_interval: float = 30.0,
        return_interval: float = 30.0,
    ) -> None:
        self.agent = agent
        #: one broker, or several (a root and its relays) to fail over between
        self.brokers = connect if isinstance(connect, Brokers) else Brokers([Broker("", connect)])
        self.resync_interval = resync_interval
        #: away from its home broker, how often to probe it (0: never go back)
        self.return_interval = return_interval
        self.wake = asyncio.Event()
        self._report = asyncio.Event()  # a pass ended: its status is to be published
        self._mqtt: Session | None = None
        self._following: set[str] = set()
        #: networks whose snapshot topic is subscribed: only while a table is behind
        self._snapshots: set[str] = set()
        self._last_status: bytes | None = None

    # -- reconcile loop ----------------------------------------------------------------

    async def reconciler(self) -> None:
        """Passes woken by a message diff against the driver's view of the kernel; the
        first pass, periodic ones and any after a failure read the kernel in full.
        Each pass's status is published by a reporter beside it (:meth:`_reporter`): the
        next pass does not wait for the broker to acknowledge the last status."""
        reporter = asyncio.create_task(self._reporter(), name="agent-reporter")
        try:
            await self._passes()
        finally:
            await cancel_and_wait(reporter)

    async def _passes(self) -> None:
        backoff = 0.0
        full = True
        while True:
            # jittered: agents started together (a fleet, a simulation) do not all make
            # their full passes at the same moment
            timeout = backoff or self.resync_interval * random.uniform(0.8, 1.2)
            # wait_for, not asyncio.timeout: on 3.11 the latter can swallow a cancellation
            # that arrives as it expires, and a TaskGroup could then never finish
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                full = True
            self.wake.clear()
            try:
                result = await self.agent.reconcile(full)
                failed = bool(result.errors)
                self._report.set()
                if failed:
                    await self.publish_event("reconcile_errors", "; ".join(result.errors[:3]))
            except Exception:  # the loop must outlive any one pass
                log.exception("reconcile_pass_failed", host=self.agent.host)
                failed = True
            full = failed
            backoff = min(max(backoff * 2, 0.5), 30.0) if failed else 0.0

    async def _reporter(self) -> None:
        """Publish the host's status after each pass, one at a time: the newest when the
        last one was acknowledged (a status is a level: those of the passes in between
        are superseded, as the controller folds in only the newest anyway)."""
        while True:
            await self._report.wait()
            self._report.clear()
            try:
                await self.publish_status()
            except Exception:  # the reporter must outlive any one status
                log.exception("status_publish_failed", host=self.agent.host)

    async def publish_status(self, force: bool = False) -> None:
        mqtt = self._mqtt
        if mqtt is None:
            return
        st = self.agent.status()
        key = proto.encode(st.model_copy(update={"time": 0.0}))
        if not force and key == self._last_status:
            return
        try:
            await mqtt.publish(
                topics.host_status(self.agent.host), proto.encode(st), qos=1, retain=True
            )
            self._last_status = key
        except BrokerUnavailable as e:
            log.warning("status_publish_failed", error=e.reason)

    async def publish_event(
        self,
        event: str,
        detail: str,
        level: Literal["debug", "info", "warning", "error"] = "error",
    ) -> None:
        mqtt = self._mqtt
        if mqtt is None:
            return
        msg = proto.Event(
            host=self.agent.host,
            level=level,
            event=event,
            detail=detail[:1024],
            time=time.time(),
        )
        with contextlib.suppress(BrokerUnavailable):
            await mqtt.publish(topics.host_events(self.agent.host), proto.encode(msg), qos=0)

    async def publish_info(self, event: str, detail: str) -> None:
        await self.publish_event(event, detail, "info")

    # -- MQTT session ------------------------------------------------------------------

    async def session(self) -> None:
        backoff = Backoff()
        host = self.agent.host
        while True:
            broker = self.brokers.current
            # the status names the broker the session is on: a failover reports the new
            # one; the Last Will (offline) the one the host was on when it was lost
            self.agent.broker = broker.url
            will = Will(topics.host_status(host), proto.encode(self.agent.status("offline")))
            try:
                async with broker.connect(
                    f"plexus-agent-{host}", will=will, on_drop=self.agent.on_dropped
                ) as mqtt:
                    backoff.reset()
                    log.info("broker_connected", host=host, broker=broker.name)
                    self._following = set()
                    self._snapshots = set()
                    self.agent.on_session()
                    await mqtt.subscribe(topics.host_desired(host), qos=1)
                    self._mqtt = mqtt
                    await self.publish_status(force=True)
                    if await self._read_until_home(mqtt):
                        log.info("broker_returning", host=host, broker=self.brokers.home.name)
            except BrokerUnavailable as e:
                log.warning("broker_disconnected", host=host, broker=broker.name, error=e.reason)
            except Exception:
                log.exception("session_failed", host=host, broker=broker.name)
            finally:
                self._mqtt = None
            if self.brokers.current is not broker:  # left for home (a clean disconnect)
                continue
            # a failed connect or a dropped session: the next broker (the same one when
            # there is only one), after a jittered delay that a session which came up reset
            self.brokers.advance()
            await asyncio.sleep(backoff.next())

    async def _read_until_home(self, mqtt: Session) -> bool:
        """Fold messages in until the session ends (False, or its error raised) or, away
        from home, home answers a TCP connect (True: home is current; the caller
        disconnects cleanly, so no Last Will, and connects there)."""

        async def read() -> None:
            async for msg in mqtt.messages():
                self.agent.on_message(msg.topic, msg.payload)
                if not msg.retain:
                    self.agent.on_live(msg.topic)
                await self._follow(mqtt)
                if self.agent.dirty:
                    self.wake.set()

        tasks = [asyncio.create_task(read(), name="agent-read")]
        if self.brokers.away and self.return_interval > 0:
            tasks.append(asyncio.create_task(self._home_answers(), name="agent-homeward"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                await cancel_and_wait(t)
        if tasks[0] in done:
            tasks[0].result()  # the session dropped: its error
            return False
        self.brokers.go_home()
        return True

    async def _home_answers(self) -> None:
        """Returns once the home broker accepts a TCP connection (probed every
        ``return_interval`` seconds, jittered, so that a fleet does not move in step)."""
        home = BrokerURL.parse(self.brokers.home.name)
        while True:
            await asyncio.sleep(self.return_interval * random.uniform(0.5, 1.5))
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(2):
                    _, writer = await asyncio.open_connection(home.host, home.port)
                writer.close()
                return

    async def _follow(self, mqtt: Session) -> None:
        """Changes of every network followed; its snapshot only while its table is
        behind or unchecked (after a (re)connect or a drop): the retained snapshot comes
        with the subscription, and its refreshes after each change then go to the
        agents that need them, not to all N of them."""
        want = self.agent.followed()
        for net in sorted(want - self._following):
            await mqtt.subscribe(topics.network_changes(net), qos=1)
        for net in sorted(self._following - want):
            await mqtt.unsubscribe(topics.network_changes(net))
        self._following = want
        for net in sorted(want | self._snapshots):
            table = self.agent.tables.get(net)
            need = net in want and (table is None or not table.synced)
            if need and net not in self._snapshots:
                if table is not None:
                    table.mark_unverified()
                await mqtt.subscribe(topics.network_snapshots(net), qos=1)
                self._snapshots.add(net)
            elif not need and net in self._snapshots:
                await mqtt.unsubscribe(topics.network_snapshots(net))
                self._snapshots.discard(net)
                if table is not None:
                    table.release()

    async def shutdown(self) -> None:
        """Clean stop: report offline ourselves (the Last Will is for crashes)."""
        mqtt = self._mqtt
        if mqtt is not None:
            with contextlib.suppress(BrokerUnavailable, TimeoutError):
                async with asyncio.timeout(2):
                    await mqtt.publish(
                        topics.host_status(self.agent.host),
                        proto.encode(self.agent.status("offline")),
                        qos=1,
                        retain=True,
                    )


def install_stop_handlers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set ``stop``, in this process only (:mod:`proto.signals`).

    Not ``loop.add_signal_handler``: it routes signals through a wakeup fd that forked
    children inherit, and a forked child stopped with SIGTERM then reads as our own.
    """

    def set_stop(signum: int) -> None:
        loop.call_soon_threadsafe(stop.set)

    on_signals(set_stop)


async def resolve_vtep(settings: AgentSettings) -> str | None:
    """The VTEP address: as configured, or read from the VTEP interface (raises
    :class:`~agents.errors.VtepUnresolved`)."""
    if settings.vtep_address:
        return settings.vtep_address
    if settings.vtep_interface:
        from .kernel.read import ipv4_address

        return await ipv4_address(settings.vtep_interface)
    return None


async def serve(settings: AgentSettings, kernel: Kernel | None = None) -> None:
    linux = kernel is None
    if kernel is None:
        from .kernel.linux import LinuxKernel

        kernel = LinuxKernel(settings.host_id)
    vtep = await resolve_vtep(settings)
    agent = Agent(settings.host_id, kernel, vtep, frozenset(settings.allowed_uplinks))
    agent.verify_view = settings.verify_view
    urls = settings.broker_urls()
    brokers = Brokers.of((str(u), connector(u)) for u in urls)
    daemon = AgentDaemon(agent, brokers, settings.resync_interval, settings.broker_return_interval)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, registry=agent.metrics.registry)
    log.info("agent_starting", host=settings.host_id, brokers=[str(u) for u in urls], vtep=vtep)
    stop = asyncio.Event()
    install_stop_handlers(asyncio.get_running_loop(), stop)
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(daemon.session(), name="agent-mqtt"),
                tg.create_task(daemon.reconciler(), name="agent-reconciler"),
            ]
            if linux:  # the kernel's nflog group: what ACL rules with `log` matched
                acl_log = AclLog(agent.host, agent.metrics.registry, daemon.publish_info)
                tasks.append(tg.create_task(acl_log.run(), name="agent-acl-log"))
            await stop.wait()
            await daemon.shutdown()
            for t in tasks:
                await cancel_and_wait(t)
    finally:
        await kernel.close()
        log.info("agent_stopped", host=settings.host_id)


def run(settings: AgentSettings) -> None:
    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
