"""``/v1/endpoints``: a container's vNIC in a network, and its published ports."""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI

from proto import rest as schemas

from ..policies import set_labels
from ..runtime import Runtime
from . import views
from .access import HostFilter
from .params import Timeout, Wait, WaitFor


def add(app: FastAPI, rt: Runtime) -> None:
    """Its routes, on the app itself (a route of an included router costs a second
    matching pass per request)."""
    path = "/v1/endpoints"
    tags: list[str | Enum] = ["endpoints"]
    ctl = rt.controller
    state = ctl.state

    @app.post(path, tags=tags, status_code=201, response_model=schemas.Endpoint)
    async def create_endpoint(
        body: schemas.EndpointCreate,
        wait: Wait = False,
        timeout: Timeout = 10.0,
        wait_for: WaitFor = None,
    ) -> dict[str, Any]:
        out = ctl.create_endpoint(body)
        conv = await rt.commit(out, wait, timeout, wait_for)
        return views.endpoint(state, out.value, conv)

    @app.get(path, tags=tags, response_model=list[schemas.Endpoint])
    async def list_endpoints(
        host: HostFilter, network: str | None = None, compartment: str | None = None
    ) -> list[dict[str, Any]]:
        rows = state.by_network.get(network, {}).values() if network else state.endpoints.values()
        return [
            views.endpoint(state, e)
            for e in sorted(rows, key=lambda e: e.id)
            if (host is None or e.host == host)
            and (compartment is None or e.compartment == compartment)
        ]

    @app.get(path + "/{ep_id}", tags=tags, response_model=schemas.Endpoint)
    async def show_endpoint(ep_id: str) -> dict[str, Any]:
        return views.endpoint(state, ctl.endpoint(ep_id))

    @app.put(path + "/{ep_id}/ports", tags=tags, response_model=schemas.Endpoint)
    async def set_endpoint_ports(
        ep_id: str,
        body: schemas.PortsUpdate,
        wait: Wait = False,
        timeout: Timeout = 10.0,
        wait_for: WaitFor = None,
    ) -> dict[str, Any]:
        """Replace the endpoint's published ports (an empty list closes them all)."""
        out = ctl.set_ports(ep_id, body.ports)
        conv = await rt.commit(out, wait, timeout, wait_for)
        return views.endpoint(state, out.value, conv)

    @app.put(path + "/{ep_id}/labels", tags=tags, response_model=schemas.Endpoint)
    async def set_endpoint_labels(
        ep_id: str,
        body: schemas.LabelsUpdate,
        wait: Wait = False,
        timeout: Timeout = 10.0,
        wait_for: WaitFor = None,
    ) -> dict[str, Any]:
        """Replace the endpoint's labels (an empty map removes them all): policies'
        selectors follow (README, "Policies")."""
        out = set_labels(ctl, ep_id, schemas.label_tuple(body.labels))
        conv = await rt.commit(out, wait, timeout, wait_for)
        return views.endpoint(state, out.value, conv)

    @app.delete(path + "/{ep_id}", tags=tags, response_model=schemas.Deleted)
    async def delete_endpoint(
        ep_id: str, wait: Wait = False, timeout: Timeout = 10.0, wait_for: WaitFor = None
    ) -> dict[str, Any]:
        conv = await rt.commit(ctl.delete_endpoint(ep_id), wait, timeout, wait_for)
        return {"id": ep_id, "deleted": True, "convergence": conv}
