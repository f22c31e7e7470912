"""``/v1/networks``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from proto import rest as schemas

from ..runtime import Runtime
from . import views
from .params import Force, Timeout, Wait


def router(rt: Runtime) -> APIRouter:
    r = APIRouter(prefix="/v1/networks", tags=["networks"])
    ctl = rt.controller
    state = ctl.state

    @r.post("", status_code=201, response_model=schemas.Network)
    async def create_network(
        body: schemas.NetworkCreate, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        out = ctl.create_network(body)
        conv = await rt.commit(out, wait, timeout)
        return views.network(state, out.value, conv)

    @r.get("", response_model=list[schemas.Network])
    async def list_networks() -> list[dict[str, Any]]:
        return [views.network(state, n) for _, n in sorted(state.networks.items())]

    @r.get("/{net_id}", response_model=schemas.Network)
    async def show_network(net_id: str) -> dict[str, Any]:
        return views.network(state, ctl.network(net_id))

    @r.delete("/{net_id}", response_model=schemas.Deleted)
    async def delete_network(
        net_id: str, force: Force = False, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        conv = await rt.commit(ctl.delete_network(net_id, force=force), wait, timeout)
        return {"id": net_id, "deleted": True, "convergence": conv}

    return r
