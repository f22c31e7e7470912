"""``POST /v1/batch``: many creates and deletes as one change (:mod:`controller.bulk`).
Admin only (not in :data:`.access.RULES`)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from proto import rest as schemas

from .. import bulk
from ..runtime import Runtime
from ..state import CompartmentRow, EndpointRow, NetworkRow, PolicyRow, Row, State
from . import views
from .params import Timeout, Wait, WaitFor


def add(app: FastAPI, rt: Runtime) -> None:
    tags: list[str | Enum] = ["batch"]
    ctl = rt.controller
    state = ctl.state

    @app.exception_handler(bulk.Refused)
    async def _refused(request: Request, exc: bulk.Refused) -> JSONResponse:
        items = [{"index": i, "error": e.error, "reason": e.reason} for i, e in exc.items]
        body = {"error": exc.error, "reason": exc.reason, "items": items}
        return JSONResponse(body, status_code=exc.status)

    @app.post(
        "/v1/batch",
        tags=tags,
        response_model=schemas.BatchResponse,
        responses={
            404: {"model": schemas.BatchRefused},
            409: {"model": schemas.BatchRefused},
            422: {"model": schemas.BatchRefused},
        },
    )
    async def batch(
        body: schemas.BatchRequest,
        wait: Wait = False,
        timeout: Timeout = 10.0,
        wait_for: WaitFor = None,
    ) -> dict[str, Any]:
        """Creates and deletes of networks, compartments, endpoints and policies, run in
        order (each sees what the ones before it made), committed in one transaction
        and published as one change: all or nothing. A refusal names each refused
        operation by its index in ``ops``; ``wait`` waits for all of it."""
        out = bulk.run(ctl, body.ops)
        conv = await rt.commit(out, wait, timeout, wait_for)
        results = [
            {"op": d.op, "kind": d.kind, "id": d.id, "object": _view(state, d.row)}
            for d in out.value
        ]
        return {"results": results, "convergence": conv}


def _view(state: State, row: Row | None) -> dict[str, Any] | None:
    view: dict[str, Any]
    if isinstance(row, NetworkRow):
        view = views.network(state, row)
    elif isinstance(row, CompartmentRow):
        view = views.compartment(state, row)
    elif isinstance(row, EndpointRow):
        view = views.endpoint(state, row)
    elif isinstance(row, PolicyRow):
        view = views.policy(state, row)
    else:
        return None
    view.pop("convergence", None)
    return view
