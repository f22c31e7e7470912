"""The controller's REST API as the benchmarks use it: ``cli.client.AsyncClient``, the
one client every ``plexus`` command uses (a refusal raises its ``ApiError``). The bulk
creates of the throughput figures go through :mod:`benchmarks.rawhttp` instead, a
deliberate raw-socket load generator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cli.client import AsyncClient


async def post(http: AsyncClient, path: str, body: dict[str, Any], wait: bool) -> Any:
    """Create; with ``wait``, it must also have converged. Raises with the reason."""
    data = await http.post(path, body, wait=30 if wait else None)
    if wait and not data["convergence"]["converged"]:
        raise RuntimeError(f"POST {path} {body} did not converge: {data['convergence']}")
    return data


async def plug(http: AsyncClient, network: str, placement: dict[str, str]) -> dict[str, str]:
    """A compartment on each host of ``placement`` (compartment → host) with an endpoint
    in ``network``, each waited for; returns compartment → endpoint address."""
    ips = {}
    for comp, host in placement.items():
        await post(http, "/v1/compartments", {"id": comp, "host": host}, True)
        ep = await post(http, "/v1/endpoints", {"network": network, "compartment": comp}, True)
        ips[comp] = ep["ip"]
    return ips


async def in_sync(http: AsyncClient, hosts: set[str], within: float = 120) -> float:
    """Seconds until every one of ``hosts`` is online and has applied everything
    (``/v1/status`` polled every 10 ms)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        status = {h["id"]: h for h in (await http.get("/v1/status"))["hosts"]}
        if all(
            h in status and status[h]["state"] == "online" and status[h]["in_sync"] for h in hosts
        ):
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{sorted(hosts)} not in sync within {within} s")


async def online(http: AsyncClient, hosts: set[str], tries: int, pause: float) -> None:
    """Until the controller lists every one of ``hosts`` online (at most ``tries``
    polls of ``/v1/hosts``, ``pause`` s apart)."""
    for _ in range(tries):
        listed = await http.get("/v1/hosts")
        if {h["id"] for h in listed if h["state"] == "online"} >= hosts:
            return
        await asyncio.sleep(pause)


async def offline(http: AsyncClient, host: str, within: float = 30) -> None:
    """Until the controller reports ``host`` offline (its agent's Last Will)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        hosts = {h["id"]: h for h in await http.get("/v1/hosts")}
        if hosts[host]["state"] == "offline":
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{host} still online {within} s after its agent was killed")


def healthy(url: str) -> bool:
    """Whether the controller at ``url`` answers and is connected to its broker."""
    from cli.client import Client
    from cli.errors import CliError

    try:
        with Client(url, timeout=1) as api:
            return bool(api.get("/healthz").get("broker_connected"))
    except CliError:
        return False
