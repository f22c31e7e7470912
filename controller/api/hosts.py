"""``/v1/hosts``: hosts appear when their agent reports; they can be decommissioned."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from proto import rest as schemas

from ..runtime import Runtime
from . import views
from .params import Force


def router(rt: Runtime) -> APIRouter:
    r = APIRouter(prefix="/v1/hosts", tags=["hosts"])
    ctl = rt.controller
    state = ctl.state

    @r.get("", response_model=list[schemas.Host])
    async def list_hosts() -> list[dict[str, Any]]:
        return [views.host(state, h) for _, h in sorted(state.hosts.items())]

    @r.get("/{host_id}", response_model=schemas.Host)
    async def show_host(host_id: str) -> dict[str, Any]:
        return views.host(state, ctl.host(host_id))

    @r.delete("/{host_id}", response_model=schemas.Deleted)
    async def decommission_host(host_id: str, force: Force = False) -> dict[str, Any]:
        await rt.commit(ctl.decommission_host(host_id, force=force), False, 0)
        rt.tracker.notify(host_id)  # waits for it end: it is no longer awaited
        return {"id": host_id, "deleted": True}

    return r
