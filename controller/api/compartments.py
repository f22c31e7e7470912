"""``/v1/compartments``: one network namespace each, on one host."""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI

from proto import rest as schemas

from ..runtime import Runtime
from . import views
from .access import HostFilter
from .params import Force, Timeout, Wait, WaitFor


def add(app: FastAPI, rt: Runtime) -> None:
    """Its routes, on the app itself (a route of an included router costs a second
    matching pass per request)."""
    path = "/v1/compartments"
    tags: list[str | Enum] = ["compartments"]
    ctl = rt.controller
    state = ctl.state

    @app.post(path, tags=tags, status_code=201, response_model=schemas.Compartment)
    async def create_compartment(
        body: schemas.CompartmentCreate,
        wait: Wait = False,
        timeout: Timeout = 10.0,
        wait_for: WaitFor = None,
    ) -> dict[str, Any]:
        out = ctl.create_compartment(body)
        conv = await rt.commit(out, wait, timeout, wait_for)
        return views.compartment(state, out.value, conv)

    @app.get(path, tags=tags, response_model=list[schemas.Compartment])
    async def list_compartments(host: HostFilter) -> list[dict[str, Any]]:
        rows = sorted(state.compartments.values(), key=lambda c: c.id)
        return [views.compartment(state, c) for c in rows if host is None or c.host == host]

    @app.get(path + "/{comp_id}", tags=tags, response_model=schemas.Compartment)
    async def show_compartment(comp_id: str) -> dict[str, Any]:
        return views.compartment(state, ctl.compartment(comp_id))

    @app.delete(path + "/{comp_id}", tags=tags, response_model=schemas.Deleted)
    async def delete_compartment(
        comp_id: str,
        force: Force = False,
        wait: Wait = False,
        timeout: Timeout = 10.0,
        wait_for: WaitFor = None,
    ) -> dict[str, Any]:
        conv = await rt.commit(
            ctl.delete_compartment(comp_id, force=force), wait, timeout, wait_for
        )
        return {"id": comp_id, "deleted": True, "convergence": conv}
