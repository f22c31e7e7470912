"""Plexus's side of :mod:`benchmarks.versus_ovn`, in a ``plexus lab`` of 3 hosts: the
same three shapes of work as the OVN side, sample lists in ms by row key.

1. ``add``: ``POST /v1/endpoints?wait=true`` into a compartment made (and waited for)
   just before, until the answer says every host applied it (``add_server``: the
   controller's own ``elapsed_ms``).
2. ``bulk``: 200 endpoints in ONE ``POST /v1/batch?wait=true`` (``bulk_server``: its
   ``elapsed_ms``), and their deletion in one more (``bulk_delete``); ``burst``: the
   same 200 as 200 concurrent ``POST /v1/endpoints`` until ``/v1/status`` says in sync
   (:func:`benchmarks.rawhttp.burst`: a connection each, as 200 clients would make
   them; through httpx this process's own CPU was a large part of the figure).
3. ``restart_host``: an agent SIGTERMed (its host reported offline), started again,
   until its host is online and in sync (``restart_host_online``: until online, i.e.
   the process started and connected); ``restart_central``: the controller SIGTERMed
   and started again, until it answers and reports every host in sync
   (``restart_central_online``: until it answers with every host online).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cli.client import AsyncClient
from cli.errors import ApiError, CliError
from lab import core

from . import rawhttp
from .api import in_sync, offline, post
from .common import gone

NET = "vs"
SUBNET = ipaddress.IPv4Network("10.202.0.0/16")
#: the bulk API (issue 18); the benchmark says so when the controller has none
BATCH = "/v1/batch"


class BatchMissing(Exception):
    """The controller has no ``POST /v1/batch`` (it answered 404 or 405)."""

    def __init__(self, status: int) -> None:
        super().__init__(
            f"the controller answered {status} to POST {BATCH}: it has no bulk API "
            "(issue 18: merge main), or run with --no-batch to leave its rows out"
        )


def missing(e: ApiError) -> bool:
    """The controller has no such route (a refused batch's 404 names its operations)."""
    return e.status == 405 or (e.status == 404 and not e.items)


def address(i: int) -> str:
    return str(SUBNET[256 + i])


def ms(since: float) -> float:
    return (time.monotonic() - since) * 1000


def endpoint(i: int) -> dict[str, Any]:
    return {"id": f"e{i}", "network": NET, "compartment": f"c{i}", "ip": address(i)}


async def batch(http: AsyncClient, ops: list[dict[str, Any]]) -> Any:
    """One bulk call, waited for; refused or not converged: an error with the
    controller's reasons (per operation)."""
    try:
        data = await http.post(BATCH, {"ops": ops}, wait=30)
    except ApiError as e:
        if missing(e):
            raise BatchMissing(e.status) from None
        raise RuntimeError(f"POST {BATCH} refused: {e} {e.items[:5]}") from None
    if not data["convergence"]["converged"]:
        raise RuntimeError(f"POST {BATCH} did not converge: {data['convergence']}")
    if len(data["results"]) != len(ops):
        raise RuntimeError(f"POST {BATCH}: {len(ops)} ops, {len(data['results'])} results")
    return data


async def has_batch(http: AsyncClient) -> None:
    """Raises :class:`BatchMissing` unless the controller takes ``POST /v1/batch`` (an
    empty one is refused as invalid, 422: the route is there)."""
    try:
        await http.post(BATCH, {"ops": []})
    except ApiError as e:
        if missing(e):
            raise BatchMissing(e.status) from None


async def each(calls: Iterable[Any]) -> None:
    await asyncio.gather(*calls)


async def delete_endpoints(http: AsyncClient, ids: Iterable[int], hosts: set[str]) -> None:
    """Concurrent single deletes (untimed), until every one of ``hosts`` applied them."""
    await each(http.request("DELETE", f"/v1/endpoints/e{i}") for i in ids)
    await in_sync(http, hosts)


async def caught_up(http: AsyncClient, want: set[str], within: float = 120) -> float:
    """Until every one of ``want`` is online and in sync (``/v1/status`` polled every
    5 ms; a controller not answering yet is waited for); returns the seconds until
    they were first all seen online."""
    start = time.monotonic()
    online_at = None
    while time.monotonic() - start < within:
        try:
            listed = {h["id"]: h for h in (await http.get("/v1/status"))["hosts"]}
        except CliError:
            listed = {}
        up = [listed[h] for h in want if h in listed and listed[h]["state"] == "online"]
        if len(up) == len(want):
            online_at = online_at or time.monotonic() - start
            if all(h["in_sync"] for h in up):
                return online_at
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{sorted(want)} not in sync within {within} s")


@dataclass(frozen=True)
class Plan:
    """What both sides run: ``count`` single adds, ``bulk`` at once, ``runs`` of each
    bulk and restart figure, ``settle`` s between a stop and the start; ``batch``:
    Plexus's ``POST /v1/batch`` rows too."""

    count: int
    bulk: int
    runs: int
    settle: float
    batch: bool


class Plexus:
    """The three shapes of work on a lab of ``spec``, one method each (in this order,
    after :meth:`prepare`); each returns its samples (ms) by row key."""

    def __init__(
        self, spec: Any, http: AsyncClient, plan: Plan, say: Callable[[str], None]
    ) -> None:
        self.spec, self.http, self.plan, self.say = spec, http, plan, say
        self.everyone = set(spec.hosts)

    def host(self, i: int) -> str:
        return str(self.spec.hosts[i % len(self.spec.hosts)])

    async def prepare(self) -> None:
        if self.plan.batch:  # before anything else: a controller without it fails at once
            await has_batch(self.http)
        net = {"id": NET, "subnet": str(SUBNET), "vni": 4244}
        await post(self.http, "/v1/networks", net, True)

    async def one_by_one(self) -> dict[str, list[float]]:
        http, count = self.http, self.plan.count
        out: dict[str, list[float]] = defaultdict(list)
        self.say(f"Plexus 1: {count} x (compartment, then POST /v1/endpoints?wait=true)")
        for i in range(count):
            await post(http, "/v1/compartments", {"id": f"c{i}", "host": self.host(i)}, True)
            t0 = time.monotonic()
            data = await post(http, "/v1/endpoints", endpoint(i), True)
            out["add"].append(ms(t0))
            out["add_server"].append(float(data["convergence"]["elapsed_ms"]))
        await delete_endpoints(http, range(count), self.everyone)
        return dict(out)

    async def at_once(self) -> dict[str, list[float]]:
        """Ends with ``bulk`` endpoints present."""
        http, bulk, runs = self.http, self.plan.bulk, self.plan.runs
        out: dict[str, list[float]] = defaultdict(list)
        comps = ({"id": f"c{i}", "host": self.host(i)} for i in range(self.plan.count, bulk))
        await each(http.post("/v1/compartments", c) for c in comps)
        await in_sync(http, self.everyone)
        creates = [{"op": "create", "kind": "endpoint", "body": endpoint(i)} for i in range(bulk)]
        deletes = [{"op": "delete", "kind": "endpoint", "id": f"e{i}"} for i in range(bulk)]
        if self.plan.batch:
            self.say(f"Plexus 2: {runs} x ({bulk} creates in one POST {BATCH}, then deletes)")
            for _ in range(runs):
                t0 = time.monotonic()
                data = await batch(http, creates)
                out["bulk"].append(ms(t0))
                out["bulk_server"].append(float(data["convergence"]["elapsed_ms"]))
                t0 = time.monotonic()
                await batch(http, deletes)
                out["bulk_delete"].append(ms(t0))
        self.say(f"Plexus 2: {runs} x {bulk} concurrent POST /v1/endpoints → in sync")
        for r in range(runs):
            t0 = time.monotonic()
            bodies = [endpoint(i) for i in range(bulk)]
            await rawhttp.burst(self.spec.controller_url, "/v1/endpoints", bodies)
            while not (await http.get("/v1/status"))["in_sync"]:  # noqa: ASYNC110
                await asyncio.sleep(0.002)  # polling the API is the measurement
            out["burst"].append(ms(t0))
            if r < runs - 1:
                await delete_endpoints(http, range(bulk), self.everyone)
        return dict(out)

    async def restarts(self) -> dict[str, list[float]]:
        spec, http, runs = self.spec, self.http, self.plan.runs
        out: dict[str, list[float]] = defaultdict(list)
        self.say(f"Plexus 3: {runs} agent restarts, {runs} controller restarts")
        h = self.host(0)
        for _ in range(runs):
            await stop(spec, f"agent:{h}")
            await offline(http, h)  # its own last status: an old "in sync" must not count
            await asyncio.sleep(self.plan.settle)
            t0 = time.monotonic()
            core.start(spec, f"agent:{h}")
            online = await caught_up(http, {h})
            out["restart_host"].append(ms(t0))
            out["restart_host_online"].append(online * 1000)
        for _ in range(runs):
            await stop(spec, "controller")
            await asyncio.sleep(self.plan.settle)
            t0 = time.monotonic()
            core.start(spec, "controller")
            online = await caught_up(http, self.everyone)
            out["restart_central"].append(ms(t0))
            out["restart_central_online"].append(online * 1000)
        return dict(out)


async def stop(spec: Any, process: str) -> None:
    pid = spec.pids[process]
    os.kill(pid, signal.SIGTERM)
    await asyncio.to_thread(gone, pid)
