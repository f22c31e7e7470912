"""A network held on a host without an endpoint there: ``PUT|DELETE
/v1/networks/ID/hosts/HOST`` (README, "Networks held on a host").

A host takes part in a network while it has an endpoint in it, so the network's
bridge (and an overlay's VXLAN device and router) is torn down with the host's last
endpoint and made again with the next. A runtime that owns a network on a host (a
Docker network, made by ``docker network create``; a CNI configuration) pins it there
instead: the host holds it, endpoints or not, and a container's start does not wait
for the network's plumbing. A pin counts as an endpoint everywhere a host's networks
matter: its desired document, the overlap check, waiting.
"""

from __future__ import annotations

import dataclasses

from . import checks, replica
from .service import Controller, Outcome
from .state import Applied, Delta, NetworkRow


@replica.command
def pin(ctl: Controller, network: str, host: str) -> Outcome[NetworkRow]:
    """Hold ``network`` on ``host`` (idempotent: pinned already, nothing changes)."""
    net = ctl.network(network)
    ctl.host(host, ref=True)
    if host in net.hosts:
        return Outcome(net, Applied())
    checks.no_overlap(ctl.state, net, host)
    return _write(ctl, dataclasses.replace(net, hosts=tuple(sorted({*net.hosts, host}))), host)


@replica.command
def unpin(ctl: Controller, network: str, host: str) -> Outcome[NetworkRow]:
    """Stop holding ``network`` on ``host`` for its own sake (its endpoints still hold
    it there; not pinned: nothing changes)."""
    net = ctl.network(network)
    if host not in net.hosts:
        return Outcome(net, Applied())
    rest = tuple(h for h in net.hosts if h != host)
    return _write(ctl, dataclasses.replace(net, hosts=rest), host)


def _write(ctl: Controller, row: NetworkRow, host: str) -> Outcome[NetworkRow]:
    delta = Delta()
    delta.put(row)
    if host in ctl.state.hosts:
        ctl._bump_host(delta, host, {})
    return Outcome(row, ctl._commit(delta))
