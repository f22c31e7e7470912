"""``/v1/policies``: ACL policies (README, "Policies"), and ``/v1/policies/trace``, which
rule decides a flow. Admin only (none of these is in :data:`.access.RULES`)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query

from proto import rest as schemas

from .. import policies, policytrace
from ..errors import Invalid
from ..runtime import Runtime
from . import views
from .params import Timeout, Wait, WaitFor

Port = Annotated[int | None, Query(ge=1, le=65535)]


def add(app: FastAPI, rt: Runtime) -> None:
    """Its routes, on the app itself (a route of an included router costs a second
    matching pass per request)."""
    path = "/v1/policies"
    tags: list[str | Enum] = ["policies"]
    ctl = rt.controller
    state = ctl.state

    @app.post(path, tags=tags, status_code=201, response_model=schemas.PolicyView)
    async def create_policy(
        body: schemas.PolicyCreate,
        wait: Wait = False,
        timeout: Timeout = 10.0,
        wait_for: WaitFor = None,
    ) -> dict[str, Any]:
        """Create a policy; the hosts that hold its network get it in their desired
        document. ``warnings`` names selectors that match nothing and unknown endpoints."""
        out = policies.create_policy(ctl, body)
        conv = await rt.commit(out, wait, timeout, wait_for)
        return views.policy(state, out.value, conv)

    @app.get(path, tags=tags, response_model=list[schemas.PolicyView])
    async def list_policies(network: str | None = None) -> list[dict[str, Any]]:
        rows = state.policies_by_network.get(network, {}) if network else state.policies
        return [views.policy(state, p) for _, p in sorted(rows.items())]

    # before /{pol_id}, which would take "trace" for an id
    @app.get(path + "/trace", tags=tags, response_model=schemas.Trace)
    async def trace_policy(
        src: Annotated[str, Query(description="the source endpoint")],
        dst: Annotated[str, Query(description="the destination endpoint")],
        protocol: Literal["tcp", "udp", "icmp"],
        port: Annotated[Port, Query(description="destination port (tcp, udp)")] = None,
        src_port: Annotated[Port, Query(description="source port (tcp, udp)")] = None,
    ) -> dict[str, Any]:
        """Which rule decides the flow, at its source (``out``) and at its destination
        (``in``), from the desired state."""
        s, d = ctl.endpoint(src), ctl.endpoint(dst)
        if protocol == "icmp" and (port is not None or src_port is not None):
            raise Invalid("icmp has no ports")
        if protocol != "icmp" and port is None:
            raise Invalid(f"a {protocol} flow needs its destination port")

        def members(net: str) -> list[Any]:
            return [rt.publication.record(e) for e in state.by_network.get(net, {}).values()]

        flow = policytrace.Flow(protocol, port, src_port)
        rows = [
            p.spec
            for net in {s.network, d.network}
            for p in state.policies_by_network.get(net, {}).values()
        ]
        out, into = policytrace.trace(
            rows,
            (s.network, rt.publication.record(s)),
            members(s.network),
            (d.network, rt.publication.record(d)),
            members(d.network),
            flow,
        )
        sides = [
            {
                "endpoint": ep,
                "direction": direction,
                "admitted": dec.admitted,
                **{k: getattr(dec, k) for k in ("verdict", "policy", "rule", "tier", "reason")},
                "steps": list(dec.steps),
            }
            for ep, direction, dec in ((src, "out", out), (dst, "in", into))
        ]
        return {
            "src": src,
            "dst": dst,
            "protocol": protocol,
            "port": port,
            "src_port": src_port,
            "verdict": "allow" if out.admitted and into.admitted else "deny",
            "source": sides[0],
            "destination": sides[1],
        }

    @app.get(path + "/{pol_id}", tags=tags, response_model=schemas.PolicyView)
    async def show_policy(pol_id: str) -> dict[str, Any]:
        return views.policy(state, policies.policy(ctl, pol_id))

    @app.put(path + "/{pol_id}", tags=tags, response_model=schemas.PolicyView)
    async def replace_policy(
        pol_id: str,
        body: schemas.PolicyCreate,
        wait: Wait = False,
        timeout: Timeout = 10.0,
        wait_for: WaitFor = None,
    ) -> dict[str, Any]:
        """Replace a policy whole (its generation + 1)."""
        out = policies.replace_policy(ctl, pol_id, body)
        conv = await rt.commit(out, wait, timeout, wait_for)
        return views.policy(state, out.value, conv)

    @app.delete(path + "/{pol_id}", tags=tags, response_model=schemas.Deleted)
    async def delete_policy(
        pol_id: str, wait: Wait = False, timeout: Timeout = 10.0, wait_for: WaitFor = None
    ) -> dict[str, Any]:
        out = policies.delete_policy(ctl, pol_id)
        conv = await rt.commit(out, wait, timeout, wait_for)
        return {"id": pol_id, "deleted": True, "convergence": conv}
