"""Restart without loss, in a ``plexus lab`` of 2 hosts (root): a ping every 10 ms
from a compartment on one host to one on the other while, in turn, the agent of the
first host is SIGKILLed and started again, the controller is restarted and the broker
is restarted. For each: packets lost, and the time from the kill until a new endpoint
(created with ``wait=true``, retried while the API or the broker is away) is applied
on every host again.

Then the broker is stopped for ``--outage`` seconds and a compartment and an endpoint
are created meanwhile (accepted by the API at once): packets lost, and the time from
the broker accepting TCP connections again until the controller reports every host
in sync — how long the fleet's reconnect backoff makes a returning broker wait.

    sudo .venv/bin/python -m benchmarks.restart [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import time
from typing import Any

from cli.client import AsyncClient
from cli.errors import ApiError, CliError
from lab import core
from proto import names

from .api import in_sync, plug
from .common import gone, lab_run, report

NET = "rs"
#: by the end of each row's ``what``
TARGETS = {"packets lost": "0", "broker back → all hosts converged": "≤ 1,000 ms"}


async def ping_during(netns: str, ip: str, seconds: float) -> tuple[int, int]:
    """(sent, received) of a ping every 10 ms for ``seconds``."""
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/run/netns/{netns}", "ping", "-n", "-q", "-i", "0.01",
        "-w", str(round(seconds)), ip,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    m = re.search(rb"(\d+) packets transmitted, (\d+) received", out)
    if m is None:
        raise RuntimeError(f"ping printed no summary: {out!r} {err!r}")
    return int(m[1]), int(m[2])


def applied(created: dict[str, Any], hosts: set[str]) -> bool:
    """Applied by every one of ``hosts`` (a wait counts only online hosts: a host whose
    agent is down must not pass for one that applied)."""
    conv = created["convergence"]
    return bool(conv["converged"]) and hosts <= set(conv["hosts"]) and not conv["offline"]


async def converge_again(
    http: AsyncClient, hosts: set[str], host: str, n: int, start: float
) -> float:
    """Seconds from ``start`` until a new compartment on ``host`` and its endpoint are
    applied by every one of ``hosts``."""
    comp = f"r{n}"
    while True:
        try:
            try:
                created = await http.post("/v1/compartments", {"id": comp, "host": host}, wait=5)
                if not applied(created, {host}):
                    await in_sync(http, {host})  # made while its host was away
            except ApiError as e:
                if e.status != 409:  # made by an earlier try: go on to the endpoint
                    raise
            created = await http.post(
                "/v1/endpoints", {"network": NET, "compartment": comp}, wait=5
            )
            if not applied(created, hosts):  # made while a host was away
                await in_sync(http, hosts)
            return time.monotonic() - start
        except CliError:
            pass  # the controller is away, or not ready to take it yet
        await asyncio.sleep(0.05)


async def measure(spec: Any, settle: float, outage: float) -> list[dict[str, Any]]:
    h1, h2 = spec.hosts[:2]
    rows: list[dict[str, Any]] = []
    async with AsyncClient(spec.controller_url, timeout=30) as http:
        await http.post("/v1/networks", {"id": NET, "subnet": "10.210.0.0/24", "vni": 4321})
        ips = await plug(http, NET, {"a": h1, "b": h2})
        src = names.netns(h1, "a")
        sent, got = await ping_during(src, ips["b"], 1)
        assert got == sent, f"no clean baseline: {got}/{sent}"

        for n, (what, process, hard) in enumerate(
            [
                (f"agent of {h1} SIGKILLed, started again", f"agent:{h1}", True),
                ("controller restarted", "controller", False),
                ("broker restarted", "broker", False),
            ]
        ):
            pinging = asyncio.create_task(ping_during(src, ips["b"], settle))
            await asyncio.sleep(0.5)
            start = time.monotonic()
            pid = spec.pids[process]
            os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
            await asyncio.to_thread(gone, pid)
            core.start(spec, process)
            took = await converge_again(http, {h1, h2}, h1, n, start)
            sent, got = await pinging
            rows.append({"what": f"{what}: packets lost", "value": f"{sent - got} of {sent}"})
            rows.append(
                {"what": f"{what}: kill → new endpoint applied", "value": f"{took * 1000:.0f} ms"}
            )
        rows += await broker_outage(spec, http, src, ips["b"], outage)
    return rows  # fmt: skip


def accepting(port: int, within: float = 30.0) -> float:
    """``time.monotonic()`` when 127.0.0.1:``port`` first accepts a TCP connection
    (tried every 2 ms)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return time.monotonic()
        time.sleep(0.002)
    raise TimeoutError(f"nothing accepts connections on port {port} after {within} s")


async def broker_outage(
    spec: Any, http: AsyncClient, src: str, ip: str, outage: float
) -> list[dict[str, Any]]:
    """Stop the broker for ``outage`` s, make a change meanwhile, start it again: packets
    lost, and broker accepting connections → every host in sync."""
    h1 = spec.hosts[0]
    pinging = asyncio.create_task(ping_during(src, ip, outage + 4))
    await asyncio.sleep(0.5)
    pid = spec.pids["broker"]
    os.kill(pid, signal.SIGTERM)
    await asyncio.to_thread(gone, pid)
    stopped = time.monotonic()
    for path, body in (
        ("/v1/compartments", {"id": "outage", "host": h1}),
        ("/v1/endpoints", {"network": NET, "compartment": "outage"}),
    ):
        await http.post(path, body)  # accepted while the broker is away (else ApiError)
    await asyncio.sleep(max(0.0, outage - (time.monotonic() - stopped)))
    core.start(spec, "broker")
    back = await asyncio.to_thread(accepting, spec.broker_port)
    await in_sync(http, set(spec.hosts[:2]), within=60)
    took = time.monotonic() - back
    sent, got = await pinging
    what = f"broker stopped {outage:g} s, a change made meanwhile"
    return [
        {"what": f"{what}: packets lost", "value": f"{sent - got} of {sent}"},
        {"what": f"{what}: broker back → all hosts converged", "value": f"{took * 1000:.0f} ms"},
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.restart", description=__doc__)
    ap.add_argument("--settle", type=float, default=8.0, help="seconds of ping per restart")
    ap.add_argument("--outage", type=float, help="seconds the broker is away (10; quick: 3)")
    ap.add_argument("--quick", action="store_true", help="4 s of ping per restart, 3 s outage")
    args = ap.parse_args(argv)
    if args.quick:
        args.settle = 4.0
    if args.outage is None:
        args.outage = 3.0 if args.quick else 10.0
    rows = lab_run(2, "rb", lambda spec: measure(spec, args.settle, args.outage))
    targets = {r["what"]: t for r in rows for end, t in TARGETS.items() if r["what"].endswith(end)}
    extra = {"settle_s": args.settle, "outage_s": args.outage}
    return report("restart", rows, extra, targets)


if __name__ == "__main__":
    main()
