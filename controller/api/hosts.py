"""``/v1/hosts``: hosts appear when their agent reports; they can be decommissioned."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import FastAPI, Path

from proto import rest as schemas
from proto.types import ID_PATTERN

from ..runtime import Runtime
from ..tokens import host_token
from . import views
from .params import Force


def add(app: FastAPI, rt: Runtime) -> None:
    """Its routes, on the app itself (a route of an included router costs a second
    matching pass per request)."""
    path = "/v1/hosts"
    tags: list[str | Enum] = ["hosts"]
    ctl = rt.controller
    state = ctl.state

    @app.get(path, tags=tags, response_model=list[schemas.Host])
    async def list_hosts() -> list[dict[str, Any]]:
        brokers = rt.fleet.brokers
        return [views.host(state, h, brokers.get(h.id, "")) for _, h in sorted(state.hosts.items())]

    @app.get(path + "/{host_id}", tags=tags, response_model=schemas.Host)
    async def show_host(host_id: str) -> dict[str, Any]:
        return views.host(state, ctl.host(host_id), rt.fleet.brokers.get(host_id, ""))

    @app.delete(path + "/{host_id}", tags=tags, response_model=schemas.Deleted)
    async def decommission_host(host_id: str, force: Force = False) -> dict[str, Any]:
        await rt.commit(ctl.decommission_host(host_id, force=force), False, 0)
        rt.tracker.notify(host_id)  # waits for it end: it is no longer awaited
        return {"id": host_id, "deleted": True}


def add_token(app: FastAPI, key: str) -> None:
    """``GET /v1/hosts/{host_id}/token``, signed with ``key`` (the admin token): made
    again on every call, kept nowhere; any host id, reported or not yet (a host's CNI
    configuration may be written before its agent first starts)."""

    @app.get("/v1/hosts/{host_id}/token", tags=["hosts"], response_model=schemas.HostToken)
    async def host_api_token(
        host_id: Annotated[str, Path(pattern=ID_PATTERN)],
    ) -> dict[str, Any]:
        return {"host": host_id, "token": host_token(key, host_id)}
