"""``plexus controller``: the REST API and the bus in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import structlog
import uvicorn

from proto import logs
from proto.mqtt import cancel_and_wait, connector
from proto.signals import on_signals

from .api import create_app
from .config import ControllerSettings
from .leader import Leadership, Lease, Sole, notified
from .metrics import Metrics
from .runtime import Runtime
from .service import Controller
from .store import Store, open_store

log = structlog.get_logger("plexus.controller")


def api_token(path: Path) -> str:
    """The REST API's admin token: read from ``path``, or made there at first start
    (mode 0600 from its first byte). Made whatever ``api_auth`` says: it is also the key
    that signs the host tokens (:mod:`controller.tokens`). Raises ValueError when the
    file cannot serve."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    except OSError as e:
        raise ValueError(f"cannot read the API token file {path}: {e.strerror}") from None
    if token:
        if path.stat().st_mode & 0o077:
            raise ValueError(f"the API token file {path} is readable by others: chmod 600 it")
        return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.info("api_token_created", file=str(path))
    return token


class Server(uvicorn.Server):
    """uvicorn's server, its stop signals handled in this process only
    (:mod:`proto.signals`), not re-raised after the graceful stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is threading.main_thread():
            on_signals(lambda signum: self.handle_exit(signum, None))
        yield


def lease_of(store: Store, replica: str, retention: float = 300.0, ttl: float = 1.2) -> Leadership:
    """A PostgreSQL store's lease (several replicas; held ``ttl`` seconds from each
    renewal, renewed every quarter of it, published under until a third of it is left;
    its leader trims the change log to ``retention`` seconds), or the sole controller's."""
    url, defaults = getattr(store, "url", None), getattr(store, "defaults", None)
    if url is None or defaults is None:
        return Sole(replica)
    return Lease(
        url, defaults, replica, ttl=ttl, renew=ttl / 4, margin=ttl / 3, retention=retention
    )


def build(settings: ControllerSettings) -> tuple[Runtime, uvicorn.Server]:
    store = open_store(settings.store, sync=settings.store_sync)
    broker = settings.broker_url()
    rt = Runtime(
        Controller(store),
        # an acknowledgement may wait behind the statuses of every host (N = 1,000: the
        # 5 s default ran out under load and the session was rebuilt, a full reconcile);
        # a broker that is gone is found by the keepalive, not by this
        connector(broker, timeout=30.0),
        Metrics(),
        snapshot_interval=settings.snapshot_interval,
        broker=str(broker),
        lease=lease_of(
            store, settings.replica_name, settings.change_log_retention, settings.lease_ttl
        ),
    )
    app = create_app(rt, api_token(settings.token_path), token_required=settings.token_required)
    config = uvicorn.Config(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    return rt, Server(config)


async def serve(settings: ControllerSettings) -> None:
    rt, server = build(settings)
    state = rt.controller.state
    log.info(
        "controller_starting",
        listen=settings.listen,
        api_token=str(settings.token_path),
        token_required=settings.token_required,
        broker=settings.broker,
        store=settings.store_name,
        hosts=len(state.hosts),
        networks=len(state.networks),
        endpoints=len(state.endpoints),
        replica=rt.lease.replica,
    )
    lease = rt.lease
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(rt.bus.run(), name="controller-bus")]
            if isinstance(lease, Lease):  # several replicas: lead or follow
                tasks.append(tg.create_task(lease.run(), name="controller-lease"))
                from .pgstore import CHANNEL

                listen = functools.partial(notified, lease.url, lease.defaults, CHANNEL)
                tasks.append(tg.create_task(rt.follow(listen), name="controller-follow"))
            await server.serve()
            for task in tasks:
                await cancel_and_wait(task)
            if isinstance(lease, Lease):
                await lease.resign()
    finally:
        rt.controller.store.close()
        log.info("controller_stopped")


def run(settings: ControllerSettings) -> None:
    logs.configure(settings.log_level, settings.log_format)
    try:
        api_token(settings.token_path)
    except (ValueError, OSError) as e:
        log.error("api_token_unusable", error=str(e))
        raise SystemExit(2) from None
    asyncio.run(serve(settings))
