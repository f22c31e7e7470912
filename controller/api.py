"""The northbound REST API (FastAPI; OpenAPI at ``/openapi.json``, docs at ``/docs``)."""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proto import __version__
from proto import rest as schemas

from .bus import Bus
from .convergence import Tracker, in_sync
from .errors import ControllerError
from .metrics import Metrics
from .service import Controller, Outcome
from .state import CompartmentRow, EndpointRow, HostRow, NetworkRow
from .store import StoreError

Wait = Annotated[bool, Query(description="return once every affected online host applied it")]
Timeout = Annotated[float, Query(gt=0, le=300, description="seconds to wait with wait=true")]
Force = Annotated[bool, Query(description="also delete what still depends on it")]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.ErrorBody},
    404: {"model": schemas.ErrorBody},
    409: {"model": schemas.ErrorBody},
    422: {"model": schemas.ErrorBody},
}


class Runtime:
    """What the API needs: the domain service, the bus and the convergence tracker."""

    def __init__(self, controller: Controller, bus: Bus, tracker: Tracker, metrics: Metrics):
        self.controller = controller
        self.bus = bus
        self.tracker = tracker
        self.metrics = metrics

    async def commit(
        self, outcome: Outcome[Any], wait: bool, timeout: float
    ) -> schemas.Convergence | None:
        self.bus.submit(outcome)
        if not wait:
            return None
        result = await self.tracker.wait(outcome.target, timeout)
        self.metrics.waits.labels("converged" if result.converged else "timeout").inc()
        return result


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


def bearer(token: str | None) -> Callable[..., Awaitable[None]]:
    """The dependency every route has: with a ``token``, a request must carry it as
    ``Authorization: Bearer …`` (compared in constant time); ``/healthz`` is open."""
    scheme = HTTPBearer(auto_error=False, description="the token in the controller's token file")

    # Depends in the default, not in Annotated: string annotations (PEP 563) cannot see
    # the closure's ``scheme``
    async def check(
        request: Request, creds: HTTPAuthorizationCredentials | None = Depends(scheme)
    ) -> None:
        if token is None or request.url.path == "/healthz":
            return
        if creds is None:
            raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "the bearer token is wrong", {"WWW-Authenticate": "Bearer"})

    return check


def create_app(rt: Runtime, token: str | None = None) -> FastAPI:
    """The REST API; with ``token``, every route but ``/healthz`` requires it."""
    app = FastAPI(
        title="Plexus controller",
        version=__version__,
        description="Desired network state of every host: networks, compartments, endpoints.",
        responses=ERRORS,
        dependencies=[Depends(bearer(token))] if token else [],
    )
    ctl = rt.controller
    state = ctl.state

    @app.exception_handler(ControllerError)
    async def _domain_error(request: Request, exc: ControllerError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "reason": exc.reason}, status_code=exc.status)

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"error": "unavailable", "reason": str(exc)}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{loc}: {str(err.get('msg', '')).removeprefix('Value error, ')}")
        return JSONResponse({"error": "invalid", "reason": "; ".join(parts)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            {"error": error, "reason": str(exc.detail)},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    app.add_middleware(LatencyMiddleware, metrics=rt.metrics)

    # -- views ---------------------------------------------------------------------

    def network_view(n: NetworkRow, conv: schemas.Convergence | None = None) -> dict[str, Any]:
        return dict(
            id=n.id,
            mode=n.mode,
            subnet=n.subnet,
            gateway=n.gateway,
            vni=n.vni,
            mtu=n.mtu,
            uplink=n.uplink,
            uplinks=n.uplinks,
            ip_range=n.ip_range,
            outbound_nat=n.outbound_nat,
            nat_exceptions=list(n.nat_exceptions),
            generation=n.generation,
            table_generation=n.table_gen,
            endpoints=len(state.by_network.get(n.id, {})),
            hosts=sorted(state.participants(n.id)),
            convergence=conv,
        )

    def compartment_view(
        c: CompartmentRow, conv: schemas.Convergence | None = None
    ) -> dict[str, Any]:
        eps = sorted(state.by_compartment.get(c.id, {}).values(), key=lambda e: e.index)
        return dict(id=c.id, host=c.host, endpoints=[e.id for e in eps], convergence=conv)

    def endpoint_view(e: EndpointRow, conv: schemas.Convergence | None = None) -> dict[str, Any]:
        net = state.networks[e.network]
        return dict(
            id=e.id,
            network=e.network,
            compartment=e.compartment,
            host=e.host,
            ip=e.ip,
            prefixlen=ipaddress.IPv4Network(net.subnet).prefixlen,
            mac=e.mac,
            interface=f"eth{e.index}",
            default_route=e.default_route,
            ports=[str(p) for p in e.port_mappings()],
            generation=e.gen,
            convergence=conv,
        )

    def host_view(h: HostRow) -> dict[str, Any]:
        ok, _ = in_sync(state, h)
        return dict(
            id=h.id,
            state=h.state,
            version=h.version,
            vtep=h.vtep,
            desired_generation=h.desired_gen,
            applied_generation=h.applied_desired,
            applied_networks=h.applied_networks,
            in_sync=ok and h.state == "online",
            errors=list(h.errors),
            last_seen=h.last_seen,
            compartments=len(state.comps_by_host.get(h.id, {})),
        )

    # -- health and metrics ----------------------------------------------------------

    @app.get("/healthz", tags=["ops"], openapi_extra={"security": []})
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "broker_connected": rt.bus.connected.is_set(),
            "version": __version__,
        }

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        hosts = list(state.hosts.values())
        online = [h for h in hosts if h.state == "online"]
        rt.metrics.hosts_online.set(len(online))
        rt.metrics.hosts_in_sync.set(sum(1 for h in online if in_sync(state, h)[0]))
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- hosts -----------------------------------------------------------------------

    @app.get("/v1/hosts", tags=["hosts"], response_model=list[schemas.Host])
    async def list_hosts() -> list[dict[str, Any]]:
        return [host_view(h) for _, h in sorted(state.hosts.items())]

    @app.get("/v1/hosts/{host_id}", tags=["hosts"], response_model=schemas.Host)
    async def show_host(host_id: str) -> dict[str, Any]:
        return host_view(ctl._host(host_id))

    @app.delete("/v1/hosts/{host_id}", tags=["hosts"], response_model=schemas.Deleted)
    async def decommission_host(host_id: str, force: Force = False) -> dict[str, Any]:
        out = ctl.decommission_host(host_id, force=force)
        await rt.commit(out, False, 0)
        rt.tracker.notify(host_id)  # waits for it end: it is no longer awaited
        return {"id": host_id, "deleted": True}

    # -- networks --------------------------------------------------------------------

    @app.post("/v1/networks", tags=["networks"], status_code=201, response_model=schemas.Network)
    async def create_network(
        body: schemas.NetworkCreate, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        out = ctl.create_network(body)
        conv = await rt.commit(out, wait, timeout)
        return network_view(out.value, conv)

    @app.get("/v1/networks", tags=["networks"], response_model=list[schemas.Network])
    async def list_networks() -> list[dict[str, Any]]:
        return [network_view(n) for _, n in sorted(state.networks.items())]

    @app.get("/v1/networks/{net_id}", tags=["networks"], response_model=schemas.Network)
    async def show_network(net_id: str) -> dict[str, Any]:
        return network_view(ctl._network(net_id))

    @app.delete("/v1/networks/{net_id}", tags=["networks"], response_model=schemas.Deleted)
    async def delete_network(
        net_id: str, force: Force = False, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        out = ctl.delete_network(net_id, force=force)
        conv = await rt.commit(out, wait, timeout)
        return {"id": net_id, "deleted": True, "convergence": conv}

    # -- compartments ----------------------------------------------------------------

    @app.post(
        "/v1/compartments",
        tags=["compartments"],
        status_code=201,
        response_model=schemas.Compartment,
    )
    async def create_compartment(
        body: schemas.CompartmentCreate, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        out = ctl.create_compartment(body)
        conv = await rt.commit(out, wait, timeout)
        return compartment_view(out.value, conv)

    @app.get("/v1/compartments", tags=["compartments"], response_model=list[schemas.Compartment])
    async def list_compartments(host: str | None = None) -> list[dict[str, Any]]:
        rows = sorted(state.compartments.values(), key=lambda c: c.id)
        return [compartment_view(c) for c in rows if host is None or c.host == host]

    @app.get(
        "/v1/compartments/{comp_id}", tags=["compartments"], response_model=schemas.Compartment
    )
    async def show_compartment(comp_id: str) -> dict[str, Any]:
        return compartment_view(ctl._compartment(comp_id))

    @app.delete("/v1/compartments/{comp_id}", tags=["compartments"], response_model=schemas.Deleted)
    async def delete_compartment(
        comp_id: str, force: Force = False, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        out = ctl.delete_compartment(comp_id, force=force)
        conv = await rt.commit(out, wait, timeout)
        return {"id": comp_id, "deleted": True, "convergence": conv}

    # -- endpoints -------------------------------------------------------------------

    @app.post("/v1/endpoints", tags=["endpoints"], status_code=201, response_model=schemas.Endpoint)
    async def create_endpoint(
        body: schemas.EndpointCreate, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        out = ctl.create_endpoint(body)
        conv = await rt.commit(out, wait, timeout)
        return endpoint_view(out.value, conv)

    @app.get("/v1/endpoints", tags=["endpoints"], response_model=list[schemas.Endpoint])
    async def list_endpoints(
        network: str | None = None, host: str | None = None, compartment: str | None = None
    ) -> list[dict[str, Any]]:
        rows = state.by_network.get(network, {}).values() if network else state.endpoints.values()
        return [
            endpoint_view(e)
            for e in sorted(rows, key=lambda e: e.id)
            if (host is None or e.host == host)
            and (compartment is None or e.compartment == compartment)
        ]

    @app.get("/v1/endpoints/{ep_id}", tags=["endpoints"], response_model=schemas.Endpoint)
    async def show_endpoint(ep_id: str) -> dict[str, Any]:
        return endpoint_view(ctl.endpoint(ep_id))

    @app.put("/v1/endpoints/{ep_id}/ports", tags=["endpoints"], response_model=schemas.Endpoint)
    async def set_endpoint_ports(
        ep_id: str, body: schemas.PortsUpdate, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        """Replace the endpoint's published ports (an empty list closes them all)."""
        out = ctl.set_ports(ep_id, body.ports)
        conv = await rt.commit(out, wait, timeout)
        return endpoint_view(out.value, conv)

    @app.delete("/v1/endpoints/{ep_id}", tags=["endpoints"], response_model=schemas.Deleted)
    async def delete_endpoint(
        ep_id: str, wait: Wait = False, timeout: Timeout = 10.0
    ) -> dict[str, Any]:
        out = ctl.delete_endpoint(ep_id)
        conv = await rt.commit(out, wait, timeout)
        return {"id": ep_id, "deleted": True, "convergence": conv}

    # -- status ----------------------------------------------------------------------

    @app.get("/v1/status", tags=["status"], response_model=schemas.Status)
    async def status() -> dict[str, Any]:
        hosts = []
        for _, h in sorted(state.hosts.items()):
            ok, behind = in_sync(state, h)
            hosts.append(
                dict(id=h.id, state=h.state, in_sync=ok and h.state == "online", behind=behind)
            )
        nets = []
        for _, n in sorted(state.networks.items()):
            parts = sorted(state.participants(n.id))
            synced = sum(
                1
                for p in parts
                if state.hosts.get(p) is not None
                and state.hosts[p].state == "online"
                and (not n.has_table or state.hosts[p].applied_networks.get(n.id, 0) >= n.table_gen)
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
        )

    return app
