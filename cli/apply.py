"""``plexus apply``: a topology file (networks, compartments, endpoints, policies) made real
through the REST API (:mod:`cli.client`), idempotently. A refusal of the controller
ends the run with its :class:`~cli.errors.ApiError`; a file that is wrong, or a world
that differs from it, with a :class:`~cli.errors.TopologyError`.

What exists already and matches the file is left as it is; what exists and differs is
a conflict (nothing is changed behind the user's back); what is missing is created.
The file is TOML (or JSON) with ``[[networks]]``, ``[[compartments]]``,
``[[endpoints]]`` and ``[[policies]]`` tables whose fields are those of the create
calls (policies last: their selectors then match the file's endpoints)::

    [[networks]]
    id = "demo"
    subnet = "10.100.0.0/24"

    [[compartments]]
    id = "h1-c1"
    host = "h1"

    [[endpoints]]
    id = "h1-c1-demo"
    network = "demo"
    compartment = "h1-c1"
    labels = { app = "web" }

    [[policies]]
    id = "web-in"
    network = "demo"
    selector = ["app=web"]
    rules = [{ priority = 10, direction = "in", action = "allow", protocol = "tcp",
               local_ports = ["80"] }]
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from proto.rest import Topology

from .client import Client
from .errors import ApiError, TopologyError

__all__ = ["Step", "TopologyError", "apply", "load", "wait_hosts"]


def load(path: Path) -> Topology:
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as e:
        raise TopologyError(f"cannot read {path}: {e}") from None
    try:
        return Topology.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise TopologyError(f"{path}: {loc}: {first['msg']}") from None


@dataclass(frozen=True)
class Step:
    kind: str
    id: str
    result: str  # "created" or "exists"
    elapsed_ms: float


def wait_hosts(api: Client, hosts: list[str], timeout: float) -> None:
    """Until every host in ``hosts`` is online (a host exists once its agent reported)."""
    deadline = time.monotonic() + timeout
    while True:
        online = {h["id"] for h in api.get("/v1/hosts") if h["state"] == "online"}
        missing = [h for h in hosts if h not in online]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TopologyError(f"hosts not online after {timeout:g} s: {', '.join(missing)}", 3)
        time.sleep(0.1)


def apply(
    api: Client,
    topo: Topology,
    *,
    wait: bool = True,
    timeout: float = 10.0,
    on_step: Callable[[Step], None] | None = None,
) -> list[Step]:
    """What the file has and the controller lacks, created in one ``POST /v1/batch``
    (one transaction: all of it or, refused, nothing); what both have, compared."""
    groups: list[tuple[str, str, tuple[BaseModel, ...], tuple[str, ...]]] = [
        ("network", "/v1/networks", topo.networks, ("mode", "subnet", "gateway", "vni", "mtu")),
        ("compartment", "/v1/compartments", topo.compartments, ("host",)),
        (
            "endpoint",
            "/v1/endpoints",
            topo.endpoints,
            ("network", "compartment", "ip", "mac", "labels"),
        ),
        (
            "policy",
            "/v1/policies",
            topo.policies,
            ("network", "tier", "selector", "endpoints", "rules"),
        ),
    ]
    steps: list[Step] = []
    ops: list[dict[str, Any]] = []
    missing: list[tuple[str, str]] = []
    for kind, path, items, fields in groups:
        if not items:
            continue
        start = time.perf_counter()
        have = {o["id"]: o for o in api.get(path)}
        for item in items:
            ident = str(getattr(item, "id"))  # noqa: B009 (every item here has an id)
            if ident not in have:
                ops.append(
                    {"op": "create", "kind": kind, "body": item.model_dump(exclude_none=True)}
                )
                missing.append((kind, ident))
                continue
            dumped = item.model_dump(mode="json")
            for f in fields:
                want = dumped[f]
                if want is not None and have[ident].get(f) != want:
                    raise TopologyError(
                        f"{kind} {ident} exists with {f}={have[ident].get(f)!r}, "
                        f"the file says {want!r}"
                    )
            elapsed = round((time.perf_counter() - start) * 1000, 1)
            steps.append(Step(kind, ident, "exists", elapsed))
    if ops:
        start = time.perf_counter()
        try:
            done = api.post("/v1/batch", {"ops": ops}, wait=timeout if wait else None)
        except ApiError as e:
            if not e.items:
                raise
            why = "; ".join(
                f"{missing[i['index']][0]} {missing[i['index']][1]}: {i['reason']}" for i in e.items
            )
            raise TopologyError(f"nothing was created: {why}") from None
        conv = done.get("convergence")
        if conv and not conv["converged"]:
            late = ", ".join(p["host"] for p in conv["pending"])
            raise TopologyError(f"created, but not applied in time by: {late}", 3)
        elapsed = round((time.perf_counter() - start) * 1000, 1)
        steps.extend(Step(kind, ident, "created", elapsed) for kind, ident in missing)
    order = {(k, str(getattr(i, "id"))): n for n, (k, _, its, _) in enumerate(groups) for i in its}  # noqa: B009
    steps.sort(key=lambda s: order[(s.kind, s.id)])
    if on_step is not None:
        for step in steps:
            on_step(step)
    return steps
