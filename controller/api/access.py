"""Who calls the REST API, and what they may do: the API's one authorization check.

A request's caller is resolved once, by the dependency every route has (:func:`guard`):

- **the admin**: the admin token (the controller's token file); or no token at all where
  none is required (``api_auth = "none"``, or ``"auto"`` on loopback);
- **a host**: a host token (:mod:`controller.tokens`) valid under the admin token,
  scoped to its host whatever ``api_auth`` says;
- **401** otherwise: no token where one is required, or a token that is neither (also
  where none is required: a forged host token must never pass for the admin).

The admin may do everything. A host may use only the routes of :data:`RULES`; any other
(network writes, host tokens, decommissioning, ``/metrics``, and every route added
later until it is listed here) answers 403. Each rule names the host a request acts on,
and a host caller may act only on its own. Lists of compartments and endpoints are
narrowed to the caller's host by :data:`HostFilter`, their ``host`` parameter.

Another host's object is refused with 403, not hidden behind a 404: ids are no secret
(a CNI plugin derives its ids from the host and the container), and a CNI DEL takes a
404 for "already gone", so a plugin holding the wrong host's token would believe it
deleted what it did not; a 403 says what is wrong. ``/healthz`` is open to anyone.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from proto.rest import CompartmentCreate, EndpointCreate

from ..errors import Forbidden
from ..state import State
from ..tokens import token_host

#: routes anyone may call, with any token or none (probes)
OPEN = frozenset({"/healthz"})


@dataclass(frozen=True, slots=True)
class Caller:
    """The admin (``host`` None) or one host, as :func:`guard` resolved it; on
    ``request.state.caller`` for the routes."""

    host: str | None = None


ADMIN = Caller()

#: the host a request acts on, or None for none in particular (a read of networks) and
#: for an object that does not exist (the route itself answers 404 or 422)
Rule = Callable[[Request, State], Awaitable[str | None]]


async def _anyone(request: Request, state: State) -> str | None:
    return None


async def _listing(request: Request, state: State) -> str | None:
    return request.query_params.get("host")  # none asked: HostFilter narrows to its own


async def _host(request: Request, state: State) -> str | None:
    return str(request.path_params["host_id"])


async def _compartment(request: Request, state: State) -> str | None:
    comp = state.compartments.get(request.path_params["comp_id"])
    return comp.host if comp is not None else None


async def _endpoint(request: Request, state: State) -> str | None:
    ep = state.endpoints.get(request.path_params["ep_id"])
    return ep.host if ep is not None else None


M = TypeVar("M", bound=BaseModel)


def _body(model: type[M], host_of: Callable[[M, State], str | None]) -> Rule:
    """The host named by a request body, read with the route's own model. FastAPI has
    read the JSON before any dependency runs (a body that is not JSON never gets here);
    a body the model refuses is let through, for the route refuses it too (422)."""

    async def rule(request: Request, state: State) -> str | None:
        try:
            body = model.model_validate(await request.json())
        except ValueError:  # pydantic's ValidationError is one
            return None
        return host_of(body, state)

    return rule


def _in_compartment(body: EndpointCreate, state: State) -> str | None:
    comp = state.compartments.get(body.compartment)
    return comp.host if comp is not None else None


#: every route a host token may use, by method and path, and the host it acts on
RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/v1/status"): _anyone,
    ("GET", "/v1/networks"): _anyone,
    ("GET", "/v1/networks/{net_id}"): _anyone,
    ("PUT", "/v1/networks/{net_id}/hosts/{host_id}"): _host,
    ("DELETE", "/v1/networks/{net_id}/hosts/{host_id}"): _host,
    ("GET", "/v1/hosts/{host_id}"): _host,
    ("GET", "/v1/compartments"): _listing,
    ("POST", "/v1/compartments"): _body(CompartmentCreate, lambda body, _: body.host),
    ("GET", "/v1/compartments/{comp_id}"): _compartment,
    ("DELETE", "/v1/compartments/{comp_id}"): _compartment,
    ("GET", "/v1/endpoints"): _listing,
    ("POST", "/v1/endpoints"): _body(EndpointCreate, _in_compartment),
    ("GET", "/v1/endpoints/{ep_id}"): _endpoint,
    ("PUT", "/v1/endpoints/{ep_id}/ports"): _endpoint,
    ("PUT", "/v1/endpoints/{ep_id}/labels"): _endpoint,
    ("DELETE", "/v1/endpoints/{ep_id}"): _endpoint,
}


def identify(key: str, presented: str | None, *, token_required: bool) -> Caller:
    """The caller a bearer token (or its absence) stands for; 401 when none."""
    if presented is None:
        if token_required:
            raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        return ADMIN
    if secrets.compare_digest(presented.encode(), key.encode()):
        return ADMIN
    host = token_host(key, presented)
    if host is None:
        raise HTTPException(401, "the bearer token is wrong", {"WWW-Authenticate": "Bearer"})
    return Caller(host)


async def authorize(caller: Caller, request: Request, state: State) -> None:
    """Raise :class:`~controller.errors.Forbidden` unless ``caller`` may make ``request``."""
    if caller.host is None:
        return
    path = getattr(request.scope.get("route"), "path", request.url.path)
    what = f"{request.method} {request.url.path}"
    rule = RULES.get((request.method, path))
    if rule is None:
        raise Forbidden(f"a host token of {caller.host} may not {what}: admin only")
    target = await rule(request, state)
    if target is not None and target != caller.host:
        raise Forbidden(f"a host token of {caller.host} may not {what}: that is host {target}'s")


def guard(key: str, state: State, *, token_required: bool) -> Callable[..., Awaitable[None]]:
    """The dependency every route has: resolves the caller (:func:`identify`), puts it
    on ``request.state.caller`` and :func:`authorize`\\ s the request."""
    scheme = HTTPBearer(
        auto_error=False, description="the controller's admin token, or a host token"
    )

    # Depends in the default, not in Annotated: string annotations (PEP 563) cannot see
    # the closure's ``scheme``
    async def check(
        request: Request, creds: HTTPAuthorizationCredentials | None = Depends(scheme)
    ) -> None:
        if request.url.path in OPEN:
            return
        caller = identify(key, creds.credentials if creds else None, token_required=token_required)
        request.state.caller = caller
        await authorize(caller, request, state)

    return check


def _host_filter(
    request: Request,
    host: Annotated[str | None, Query(description="only this host's")] = None,
) -> str | None:
    caller: Caller = request.state.caller
    return caller.host or host  # another host's was refused by its rule, _listing


#: the ``host`` filter of a list: a host caller's own, whatever it asked
HostFilter = Annotated[str | None, Depends(_host_filter)]
