"""``plexus controller``: the REST API and the bus in one event loop."""

from __future__ import annotations

import asyncio

import structlog
import uvicorn

from proto import logs
from proto.broker import BrokerURL, cancel_and_wait

from .api import Runtime, create_app
from .bus import Bus
from .config import ControllerSettings
from .convergence import Tracker
from .metrics import Metrics
from .service import Controller
from .store import SqliteStore

log = structlog.get_logger("plexus.controller")


def build(settings: ControllerSettings) -> tuple[Runtime, uvicorn.Server]:
    store = SqliteStore(settings.store, sync=settings.store_sync)
    controller = Controller(store)
    metrics = Metrics()
    tracker = Tracker(controller.state)
    bus = Bus(
        controller,
        BrokerURL.parse(settings.broker),
        tracker,
        metrics,
        snapshot_interval=settings.snapshot_interval,
    )
    rt = Runtime(controller, bus, tracker, metrics)
    config = uvicorn.Config(
        create_app(rt),
        host=settings.listen_host,
        port=settings.listen_port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    return rt, uvicorn.Server(config)


async def serve(settings: ControllerSettings) -> None:
    rt, server = build(settings)
    state = rt.controller.state
    log.info(
        "controller_starting",
        listen=settings.listen,
        broker=settings.broker,
        store=settings.store,
        hosts=len(state.hosts),
        networks=len(state.networks),
        endpoints=len(state.endpoints),
    )
    try:
        async with asyncio.TaskGroup() as tg:
            bus = tg.create_task(rt.bus.run(), name="controller-bus")
            await server.serve()
            await cancel_and_wait(bus)
    finally:
        rt.controller.store.close()
        log.info("controller_stopped")


def run(settings: ControllerSettings) -> None:
    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
