"""ADD, DEL, STATUS and GC: a container's attachment as Plexus objects, through the
controller (:mod:`.api`).

A container is a compartment (id from host and container id) whose ``netns`` is the
runtime's namespace; each of its interfaces is an endpoint (id from host, container id
and interface name), so DEL and GC find them again from what the runtime hands over.
"""

from __future__ import annotations

import os

from . import result
from .api import ApiError, Controller
from .api import path as p
from .config import Config, Env, compartment_id, endpoint_id
from .errors import (
    INVALID_CONFIG,
    LIMITED_CONNECTIVITY,
    NOT_AVAILABLE,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CniError,
)

# typing is for the type checker only: importing it costs a start a few ms
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _netns(path: str) -> dict[str, Any]:
    try:
        inode = os.stat(path).st_ino
    except OSError as e:
        raise CniError(UNKNOWN_CONTAINER, f"CNI_NETNS {path}: {e.strerror or e}") from None
    return {"path": path, "inode": inode}


def _refused(answer: dict[str, Any], what: str) -> CniError:
    """A 404 or 422 answer as the configuration error it is (code 7)."""
    return CniError(INVALID_CONFIG, f"{what}: {answer['reason']}")


def _compartment(api: Controller, conf: Config, env: Env) -> bool:
    """Ensure the container's compartment names this namespace; True if made now. One
    that names another inode is a dead container's (the id is the same after a runtime
    restart reused it): it goes, with its endpoints."""
    cid = compartment_id(conf.host, env.container_id)
    netns = {**_netns(env.netns), "container": env.container_id}
    body = {"id": cid, "host": conf.host, "netns": netns}
    for attempt in (0, 1):
        try:
            status, answer = api.request("POST", p("v1", "compartments"), body)
        except ApiError as e:
            if e.status != 409 or attempt:
                raise
            status, have = api.get(p("v1", "compartments", cid))
            if status == 404:
                raise  # the inode is another compartment's: the controller said which
            if (have.get("netns") or {}).get("inode") == netns["inode"]:
                return False  # another interface of the same container made it
            _delete(api, conf, ("v1", "compartments", cid), force=True)
            continue
        if status >= 400:
            raise _refused(answer, f"compartment {cid} on host {conf.host}")
        return True
    raise AssertionError("unreachable")


def _delete(
    api: Controller, conf: Config, parts: tuple[str, ...], force: bool = False, wait: bool = True
) -> bool:
    """DELETE, waiting for this host (with ``wait``); False if it was not there."""
    target = p(*parts, wait=wait, wait_for=conf.host, timeout=conf.timeout, force=force)
    status, _ = api.request("DELETE", target, timeout=conf.timeout)
    return status != 404


def _pending(conv: dict[str, Any] | None, host: str) -> str | None:
    """Why this host has not applied a change (None if it did)."""
    if not conv:
        return None
    if host in conv.get("offline", []):
        return f"host {host} is offline: is its plexus agent running?"
    pending = conv.get("pending", [])
    if pending or not conv.get("converged", True):
        return "pending: " + ", ".join(
            f"{x.get('host')} ({x.get('state')}, waiting for {x.get('waiting_for')})"
            for x in pending
        )
    return None


def add(api: Controller, conf: Config, env: Env) -> dict[str, Any]:
    # an unknown network is a configuration error, found before anything is made
    status, answer = api.get(p("v1", "networks", conf.network))
    if status >= 400:
        raise _refused(answer, f"network {conf.network!r}")
    made = _compartment(api, conf, env)
    eid = endpoint_id(conf.host, env.container_id, env.ifname)
    body: dict[str, Any] = {
        "id": eid,
        "network": conf.network,
        "compartment": compartment_id(conf.host, env.container_id),
        "ifname": env.ifname,
    }
    if conf.default_route is not None:
        body["default_route"] = conf.default_route
    body |= {k: v for k, v in (("ip", conf.ip), ("mac", conf.mac)) if v}
    if conf.ports:
        body["ports"] = conf.ports
    target = p("v1", "endpoints", wait=True, wait_for=conf.host, timeout=conf.timeout)
    try:
        try:
            status, view = api.request("POST", target, body, timeout=conf.timeout)
        except ApiError as e:
            # a leftover of an ADD that failed half-way (its DEL never came): replace it
            if e.status != 409 or not _delete(api, conf, ("v1", "endpoints", eid)):
                raise
            status, view = api.request("POST", target, body, timeout=conf.timeout)
        if status >= 400:
            raise _refused(view, f"endpoint in network {conf.network!r}")
        why = _pending(view.get("convergence"), conf.host)
        if why is not None:
            raise CniError(
                TRY_AGAIN_LATER,
                f"host {conf.host} did not plumb endpoint {eid} within {conf.timeout:g} s",
                why,
            )
        # the host applied a document: one without the endpoint, if it found the
        # namespace gone meanwhile and the controller collected it
        if api.get(p("v1", "endpoints", eid))[0] == 404:
            raise CniError(
                UNKNOWN_CONTAINER,
                f"host {conf.host} found namespace {env.netns} gone: endpoint {eid} collected",
            )
    except CniError:
        _undo(api, conf, env, eid, made)
        raise
    return result.build(view, conf.cni_version, env.netns, view.get("default_route", True))


def _undo(api: Controller, conf: Config, env: Env, eid: str, compartment: bool) -> None:
    """What a failed ADD made goes (best effort: the error that made it fail is the one
    the runtime hears of)."""
    try:
        _delete(api, conf, ("v1", "endpoints", eid))
        if compartment:
            _delete_compartment(api, conf, compartment_id(conf.host, env.container_id))
    except CniError:
        pass


def _delete_compartment(api: Controller, conf: Config, cid: str) -> None:
    """Delete the compartment unless an endpoint remains (another interface's). Not
    waited for: once its endpoints are gone, nothing of a runtime's compartment is left
    on the host to remove (the namespace is the runtime's)."""
    try:
        _delete(api, conf, ("v1", "compartments", cid), wait=False)
    except ApiError as e:
        if e.status != 409:
            raise


def delete(api: Controller, conf: Config, env: Env) -> None:
    """Idempotent: what is already gone is success; the namespace is not needed."""
    _delete(api, conf, ("v1", "endpoints", endpoint_id(conf.host, env.container_id, env.ifname)))
    _delete_compartment(api, conf, compartment_id(conf.host, env.container_id))


def status(api: Controller, conf: Config) -> None:
    try:
        _, health = api.get("/healthz")
    except CniError as e:
        raise CniError(NOT_AVAILABLE, e.msg, e.details) from None
    if isinstance(health, dict) and health.get("broker_connected") is False:
        raise CniError(NOT_AVAILABLE, "the controller is not connected to its broker")
    code, host = api.get(p("v1", "hosts", conf.host))
    if code == 404:
        raise CniError(
            NOT_AVAILABLE, f"host {conf.host} is unknown to the controller: no agent reported"
        )
    if host.get("state") != "online":
        raise CniError(
            LIMITED_CONNECTIVITY,
            f"host {conf.host} is {host.get('state')}: its plexus agent does not answer",
        )


def gc(api: Controller, conf: Config) -> list[str]:
    """Delete this network's endpoints of runtime-made compartments on this host that the
    runtime no longer lists, then those compartments once empty; returns what went."""
    valid_eps = {endpoint_id(conf.host, c, i) for c, i in conf.valid_attachments}
    valid_comps = {compartment_id(conf.host, c) for c, _ in conf.valid_attachments}
    comps = _listed(api, p("v1", "compartments", host=conf.host))
    eps = _listed(api, p("v1", "endpoints", network=conf.network, host=conf.host))
    ours = {c["id"]: c for c in comps if (c.get("netns") or {}).get("container")}
    gone = []
    emptied = set()
    for ep in eps:
        if ep["compartment"] in ours and ep["id"] not in valid_eps:
            _delete(api, conf, ("v1", "endpoints", ep["id"]))
            gone.append(ep["id"])
            emptied.add(ep["compartment"])
    # only the compartments this GC emptied: an empty one may be another network's ADD
    # under way (its compartment made, its endpoint not yet)
    for cid in sorted(emptied - valid_comps):
        left = [e for e in ours[cid].get("endpoints", []) if e not in gone]
        if not left:
            _delete_compartment(api, conf, cid)
            gone.append(cid)
    return gone


def _listed(api: Controller, target: str) -> list[dict[str, Any]]:
    status, answer = api.get(target)
    if status >= 400 or not isinstance(answer, list):
        raise CniError(TRY_AGAIN_LATER, f"GET {target}: {status} {str(answer)[:200]}")
    return answer
