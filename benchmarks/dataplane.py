"""Dataplane, in a ``plexus lab`` of 2 hosts (root): iperf3 TCP throughput between
compartments on the two hosts over the overlay (VXLAN) and between the two hosts over
the underlay, in the same run; and don't-fragment pings at the overlay's MTU (must
pass) and one byte over it (must fail at the sender, not vanish: no MTU black hole).

    sudo .venv/bin/python -m benchmarks.dataplane [--seconds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from cli.client import AsyncClient
from proto import names

from .api import plug
from .common import lab_run, report

NET = "dp"
MTU = 1450
TARGETS = {"overlay / underlay": "≥ 0.8", "don't-fragment ping at the overlay MTU": "passes"}


async def run_in(netns: str, *cmd: str, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/run/netns/{netns}", *cmd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def iperf(server_ns: str, client_ns: str, ip: str, seconds: int) -> float:
    """TCP throughput from ``client_ns`` to ``ip`` in ``server_ns``, in Gbit/s."""
    server = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/run/netns/{server_ns}", "iperf3", "-s", "-1", "-B", ip,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):  # until it listens (a refused connection does not count)
            code, out = await run_in(server_ns, "ss", "-Htln", f"src {ip}:5201")
            if code == 0 and out.strip():
                break
            await asyncio.sleep(0.05)
        code, out = await run_in(
            client_ns, "iperf3", "-c", ip, "-t", str(seconds), "-J", timeout=seconds + 30
        )
        if code != 0:
            raise RuntimeError(f"iperf3 to {ip} failed: {out[-500:]}")
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


async def measure(spec: Any, seconds: int) -> list[dict[str, Any]]:
    h1, h2 = spec.hosts[:2]
    async with AsyncClient(spec.controller_url, timeout=30) as http:
        body = {"id": NET, "subnet": "10.220.0.0/24", "vni": 4400, "mtu": MTU}
        await http.post("/v1/networks", body)
        ips = await plug(http, NET, {"a": h1, "b": h2})
    a, b = names.netns(h1, "a"), names.netns(h2, "b")
    overlay = await iperf(b, a, ips["b"], seconds)
    underlay = await iperf(spec.host_ns(h2), spec.host_ns(h1), spec.vtep(h2), seconds)
    fits, _ = await run_in(
        a, "ping", "-n", "-c", "3", "-W", "1", "-M", "do", "-s", str(MTU - 28), ips["b"]
    )
    code, over = await run_in(
        a, "ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", str(MTU - 27), ips["b"]
    )
    refused = code != 0 and ("message too long" in over.lower() or "mtu" in over.lower())
    return [
        {"what": "overlay TCP, compartment ↔ compartment across hosts", "value": gbps(overlay)},
        {"what": "underlay TCP, host ↔ host", "value": gbps(underlay)},
        {"what": "overlay / underlay", "value": f"{overlay / underlay:.2f}"},
        {
            "what": "don't-fragment ping at the overlay MTU",
            "value": "passes" if not fits else "FAILS",
        },
        {
            "what": "one byte over: refused at the sender",
            "value": "yes" if refused else over[-120:],
        },
    ]


def gbps(value: float) -> str:
    return f"{value:.2f} Gbit/s"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dataplane", description=__doc__)
    ap.add_argument("--seconds", type=int, default=5, help="of each iperf3 run")
    ap.add_argument("--quick", action="store_true", help="1 s iperf3 runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = 1
    rows = lab_run(2, "db", lambda spec: measure(spec, args.seconds))
    extra = {"seconds": args.seconds, "mtu": MTU}
    return report("dataplane", rows, {**extra}, TARGETS)


if __name__ == "__main__":
    main()
