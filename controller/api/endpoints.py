"""``/v1/endpoints``: a container's vNIC in a network, and its published ports."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from proto import rest as schemas

from ..runtime import Runtime
from . import views
from .params import Timeout, Wait


def router(rt: Runtime) -> APIRouter:
    r = APIRouter(prefix="/v1/endpoints", tags=["endpoints"])
    ctl = rt.controller
    state = ctl.state

    @r.post("", status_code=201, response_model=schemas.Endpoint)
    async def create_endpoint(
        body: schemas.EndpointCreate, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        out = ctl.create_endpoint(body)
        conv = await rt.commit(out, wait, timeout)
        return views.endpoint(state, out.value, conv)

    @r.get("", response_model=list[schemas.Endpoint])
    async def list_endpoints(
        network: str | None = None, host: str | None = None, compartment: str | None = None
    ) -> list[dict[str, Any]]:
        rows = state.by_network.get(network, {}).values() if network else state.endpoints.values()
        return [
            views.endpoint(state, e)
            for e in sorted(rows, key=lambda e: e.id)
            if (host is None or e.host == host)
            and (compartment is None or e.compartment == compartment)
        ]

    @r.get("/{ep_id}", response_model=schemas.Endpoint)
    async def show_endpoint(ep_id: str) -> dict[str, Any]:
        return views.endpoint(state, ctl.endpoint(ep_id))

    @r.put("/{ep_id}/ports", response_model=schemas.Endpoint)
    async def set_endpoint_ports(
        ep_id: str, body: schemas.PortsUpdate, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        """Replace the endpoint's published ports (an empty list closes them all)."""
        out = ctl.set_ports(ep_id, body.ports)
        conv = await rt.commit(out, wait, timeout)
        return views.endpoint(state, out.value, conv)

    @r.delete("/{ep_id}", response_model=schemas.Deleted)
    async def delete_endpoint(
        ep_id: str, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        conv = await rt.commit(ctl.delete_endpoint(ep_id), wait, timeout)
        return {"id": ep_id, "deleted": True, "convergence": conv}

    return r
