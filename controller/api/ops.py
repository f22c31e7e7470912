"""Health, metrics and the fleet's sync status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proto import __version__
from proto import rest as schemas

from ..convergence import HostTarget, behind
from ..leader import Sole
from ..runtime import Runtime


def add(app: FastAPI, rt: Runtime) -> None:
    """Its routes, on the app itself (a route of an included router costs a second
    matching pass per request)."""
    state = rt.controller.state

    @app.get("/healthz", tags=["ops"], openapi_extra={"security": []})
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "broker_connected": rt.bus.connected.is_set(),
            "version": __version__,
        }

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        online = [h for h in state.hosts.values() if h.state == "online"]
        rt.metrics.hosts_online.set(len(online))
        rt.metrics.hosts_in_sync.set(sum(1 for h in online if not behind(state, h)))
        rt.metrics.leader_epoch.set(rt.lease.epoch if rt.lease.live() else 0)
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/status", tags=["status"], response_model=schemas.Status)
    async def status() -> dict[str, Any]:
        hosts: list[dict[str, Any]] = []
        for _, row in sorted(state.hosts.items()):
            late = behind(state, row)
            in_sync = not late and row.state == "online"
            broker = rt.fleet.brokers.get(row.id, "")
            hosts.append(
                dict(id=row.id, state=row.state, in_sync=in_sync, behind=late, broker=broker)
            )
        nets = []
        for _, n in sorted(state.networks.items()):
            parts = sorted(state.participants(n.id))
            table = HostTarget(networks={n.id: n.table_gen} if n.has_table else {})
            synced = sum(
                1
                for p in parts
                if (h := state.hosts.get(p)) is not None
                and h.state == "online"
                and not behind(state, h, table)
            )
            nets.append(
                dict(
                    id=n.id,
                    generation=n.table_gen,
                    hosts=len(parts),
                    hosts_in_sync=synced,
                    in_sync=synced == len(parts),
                )
            )
        return dict(
            in_sync=all(h["in_sync"] for h in hosts if h["state"] == "online")
            and all(n["in_sync"] for n in nets),
            hosts=hosts,
            networks=nets,
            store="sqlite" if isinstance(rt.lease, Sole) else "postgresql",
            replica=rt.lease.replica,
            leader=rt.lease.leader[0],
            epoch=rt.lease.leader[1],
            relays=rt.fleet.view(),
        )
