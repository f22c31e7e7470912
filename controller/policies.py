"""Commands on ACL policies and on the endpoint labels they select by (README,
"Policies"), beside :class:`~controller.service.Controller`'s: the same shape (check
against the state, build one :class:`~controller.state.Delta`, commit, return an
:class:`~controller.service.Outcome`), kept apart so that each module stays one seam.

A policy lives in its network; every host that holds the network (has an endpoint in
it) carries the network's policies in its desired document, so a policy write bumps
each such host's document once, in the same commit, and nothing else. A label change
is an endpoint change: a new record generation in the network's table and the owning
host's document.
"""

from __future__ import annotations

import dataclasses

from proto.policy import Policy, PolicyFields, selects

from . import replica
from .errors import Conflict, Invalid, NotFound
from .service import Controller, Outcome
from .state import Applied, Delta, EndpointRow, HostRow, PolicyRow, State


def policy(ctl: Controller, ident: str) -> PolicyRow:
    row = ctl.state.policies.get(ident)
    if row is None:
        raise NotFound("policy", ident)
    return row


@replica.command
def create_policy(ctl: Controller, req: PolicyFields) -> Outcome[PolicyRow]:
    """A new policy: 409 for an id in use, 422 for a network that does not exist."""
    if req.id in ctl.state.policies:
        raise Conflict(f"policy {req.id!r} already exists")
    ctl.network(req.network, ref=True)
    return _write(ctl, req, None)


@replica.command
def replace_policy(ctl: Controller, ident: str, req: PolicyFields) -> Outcome[PolicyRow]:
    """Replace a policy whole, at its next generation (it may move to another network)."""
    old = policy(ctl, ident)
    if req.id != ident:
        raise Invalid(f"the body's id {req.id!r} is not the policy's, {ident!r}")
    ctl.network(req.network, ref=True)
    return _write(ctl, req, old)


@replica.command
def delete_policy(ctl: Controller, ident: str) -> Outcome[str]:
    old = policy(ctl, ident)
    delta = Delta()
    delta.delete("policies", ident)
    delta.floors[f"policy:{ident}"] = old.spec.generation
    _bump_holders(ctl, delta, {old.network})
    return Outcome(ident, ctl._commit(delta))


def _write(ctl: Controller, req: PolicyFields, old: PolicyRow | None) -> Outcome[PolicyRow]:
    base = old.spec.generation if old is not None else ctl.state.floor(f"policy:{req.id}")
    spec = Policy.model_validate({**req.model_dump(), "generation": base + 1}, strict=False)
    row = PolicyRow(spec, created=old.created if old is not None else ctl.clock())
    delta = Delta(puts=[row])
    _bump_holders(ctl, delta, {req.network} | ({old.network} if old is not None else set()))
    return Outcome(row, ctl._commit(delta))


def _bump_holders(ctl: Controller, delta: Delta, networks: set[str]) -> None:
    """One new desired generation for each host that holds one of ``networks``."""
    bumped: dict[str, HostRow] = {}
    for host in sorted(set().union(*(ctl.state.participants(n) for n in networks))):
        ctl._bump_host(delta, host, bumped)


@replica.command
def set_labels(ctl: Controller, ident: str, labels: tuple[str, ...]) -> Outcome[EndpointRow]:
    """Replace an endpoint's labels (sorted ``key=value``): a new record generation in
    its network's table and its host's document; nothing when they are the same."""
    ep = ctl.endpoint(ident)
    labels = tuple(sorted(labels))
    if labels == ep.labels:
        return Outcome(ep, Applied())
    net = ctl.state.networks[ep.network]
    net = dataclasses.replace(net, table_gen=net.table_gen + 1)
    row = dataclasses.replace(ep, labels=labels, gen=net.table_gen)
    delta = Delta(puts=[net, row])
    ctl._bump_host(delta, ep.host, {})
    return Outcome(row, ctl._commit(delta))


def warnings(state: State, spec: PolicyFields) -> list[str]:
    """What in ``spec`` selects nothing now: not errors (endpoints come and go), but
    worth a word: a selector no endpoint of its network matches, an endpoint id that
    does not exist or is in another network, a rule's remote selector that matches no
    endpoint."""
    members = state.by_network.get(spec.network, {})
    out = []

    def matches_none(selector: tuple[str, ...]) -> bool:
        return not any(selects(selector, ep.labels) for ep in members.values())

    if spec.selector is not None and matches_none(spec.selector):
        out.append(
            f"selector {','.join(spec.selector) or '(empty)'} matches no endpoint of "
            f"network {spec.network}"
        )
    for ident in spec.endpoints:
        ep = state.endpoints.get(ident)
        if ep is None:
            out.append(f"endpoint {ident} does not exist")
        elif ep.network != spec.network:
            out.append(f"endpoint {ident} is in network {ep.network}, not {spec.network}")
    for rule in spec.rules:
        if rule.remote_selector is not None and matches_none(rule.remote_selector):
            out.append(
                f"rule {rule.name}: remote_selector {','.join(rule.remote_selector)} "
                f"matches no endpoint of network {spec.network}"
            )
    return out
