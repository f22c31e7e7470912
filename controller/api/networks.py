"""``/v1/networks``."""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI

from proto import rest as schemas

from .. import pins
from ..runtime import Runtime
from . import views
from .params import Force, Timeout, Wait, WaitFor


def add(app: FastAPI, rt: Runtime) -> None:
    """Its routes, on the app itself (a route of an included router costs a second
    matching pass per request)."""
    path = "/v1/networks"
    tags: list[str | Enum] = ["networks"]
    ctl = rt.controller
    state = ctl.state

    @app.post(path, tags=tags, status_code=201, response_model=schemas.Network)
    async def create_network(
        body: schemas.NetworkCreate, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        out = ctl.create_network(body)
        conv = await rt.commit(out, wait, timeout)
        return views.network(state, out.value, conv)

    @app.get(path, tags=tags, response_model=list[schemas.Network])
    async def list_networks() -> list[dict[str, Any]]:
        return [views.network(state, n) for _, n in sorted(state.networks.items())]

    @app.get(path + "/{net_id}", tags=tags, response_model=schemas.Network)
    async def show_network(net_id: str) -> dict[str, Any]:
        return views.network(state, ctl.network(net_id))

    @app.delete(path + "/{net_id}", tags=tags, response_model=schemas.Deleted)
    async def delete_network(
        net_id: str, force: Force = False, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        conv = await rt.commit(ctl.delete_network(net_id, force=force), wait, timeout)
        return {"id": net_id, "deleted": True, "convergence": conv}

    @app.put(path + "/{net_id}/hosts/{host_id}", tags=tags, response_model=schemas.Network)
    async def pin_network(
        net_id: str,
        host_id: str,
        wait: Wait = False,
        timeout: Timeout = 10.0,
        wait_for: WaitFor = None,
    ) -> dict[str, Any]:
        """Hold the network on the host, endpoints or not (README, "Networks held on a
        host"): its bridge stays between one container and the next."""
        out = pins.pin(ctl, net_id, host_id)
        conv = await rt.commit(out, wait, timeout, wait_for)
        return views.network(state, out.value, conv)

    @app.delete(path + "/{net_id}/hosts/{host_id}", tags=tags, response_model=schemas.Network)
    async def unpin_network(
        net_id: str,
        host_id: str,
        wait: Wait = False,
        timeout: Timeout = 10.0,
        wait_for: WaitFor = None,
    ) -> dict[str, Any]:
        """Stop holding it there for its own sake (its endpoints there still do)."""
        out = pins.unpin(ctl, net_id, host_id)
        conv = await rt.commit(out, wait, timeout, wait_for)
        return views.network(state, out.value, conv)
