"""The controller's REST API as the benchmarks use it (httpx)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx


async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any], wait: bool) -> Any:
    """Create; with ``wait``, it must also have converged. Raises with the reason."""
    params = {"wait": "true", "timeout": "30"} if wait else {}
    r = await http.post(path, json=body, params=params)
    if r.status_code != 201:
        raise RuntimeError(f"POST {path} {body}: {r.status_code} {r.text}")
    data = r.json()
    if wait and not data["convergence"]["converged"]:
        raise RuntimeError(f"POST {path} {body} did not converge: {data['convergence']}")
    return data


async def plug(http: httpx.AsyncClient, network: str, placement: dict[str, str]) -> dict[str, str]:
    """A compartment on each host of ``placement`` (compartment → host) with an endpoint
    in ``network``, each waited for; returns compartment → endpoint address."""
    ips = {}
    for comp, host in placement.items():
        await post(http, "/v1/compartments", {"id": comp, "host": host}, True)
        ep = await post(http, "/v1/endpoints", {"network": network, "compartment": comp}, True)
        ips[comp] = ep["ip"]
    return ips


async def in_sync(http: httpx.AsyncClient, hosts: set[str], within: float = 120) -> float:
    """Seconds until every one of ``hosts`` is online and has applied everything
    (``/v1/status`` polled every 10 ms)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        status = {h["id"]: h for h in (await http.get("/v1/status")).json()["hosts"]}
        if all(
            h in status and status[h]["state"] == "online" and status[h]["in_sync"] for h in hosts
        ):
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{sorted(hosts)} not in sync within {within} s")


async def offline(http: httpx.AsyncClient, host: str, within: float = 30) -> None:
    """Until the controller reports ``host`` offline (its agent's Last Will)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        hosts = {h["id"]: h for h in (await http.get("/v1/hosts")).json()}
        if hosts[host]["state"] == "offline":
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{host} still online {within} s after its agent was killed")
