"""The northbound REST API (FastAPI; OpenAPI at ``/openapi.json``, docs at ``/docs``).

One module of routes per resource (:mod:`.hosts`, :mod:`.networks`, :mod:`.compartments`,
:mod:`.endpoints`, :mod:`.policies`, :mod:`.ops`; :mod:`.batch` for many at once), each
made for a :class:`~controller.runtime.Runtime`; the views of rows are in :mod:`.views`;
who may call which is decided in :mod:`.access`.
Errors are answered here, once: a :class:`~controller.errors.ControllerError` by its
status, a request body that does not validate by 422, both as
``{"error": …, "reason": …}``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proto import __version__
from proto import rest as schemas

from ..errors import ControllerError
from ..metrics import Metrics
from ..runtime import Runtime
from . import access, batch, compartments, endpoints, hosts, networks, ops, policies

__all__ = ["Runtime", "create_app"]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.ErrorBody},
    403: {"model": schemas.ErrorBody},
    404: {"model": schemas.ErrorBody},
    409: {"model": schemas.ErrorBody},
    422: {"model": schemas.ErrorBody},
    503: {"model": schemas.ErrorBody},  # the store could not write (StoreError)
}


class LatencyMiddleware:
    """Request latency by method, route and status, as plain ASGI (starlette's
    ``BaseHTTPMiddleware`` costs a task and a stream per request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.api_latency.labels(scope["method"], path, str(status)).observe(
                time.perf_counter() - start
            )


def create_app(rt: Runtime, key: str, *, token_required: bool = False) -> FastAPI:
    """The REST API. ``key`` is the admin token, which also signs the host tokens;
    with ``token_required``, a request without a token is refused (see :mod:`.access`)."""
    app = FastAPI(
        title="Plexus controller",
        version=__version__,
        description="Desired network state of every host: networks, compartments, endpoints, "
        "policies.",
        responses=ERRORS,
        dependencies=[
            Depends(access.guard(key, rt.controller.state, token_required=token_required))
        ],
    )

    @app.exception_handler(ControllerError)
    async def _domain_error(request: Request, exc: ControllerError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "reason": exc.reason}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{loc}: {str(err.get('msg', '')).removeprefix('Value error, ')}")
        return JSONResponse({"error": "invalid", "reason": "; ".join(parts)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
        }.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": error, "reason": str(exc.detail)},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    app.add_middleware(LatencyMiddleware, metrics=rt.metrics)
    for module in (ops, hosts, networks, compartments, endpoints, policies, batch):
        module.add(app, rt)
    hosts.add_token(app, key)
    return app
