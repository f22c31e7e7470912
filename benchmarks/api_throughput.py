"""REST API throughput against a real controller process (uvicorn, SQLite store,
publishing to a real Mosquitto with credentials and ACLs): compartment and endpoint
creations per second without ``wait``, from concurrent clients. The hosts are known
to the controller (each reported online with its own credential) but run no agent:
this measures the controller alone.

    .venv/bin/python -m benchmarks.api_throughput [--count 2000] [--concurrency 32] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import proto
from broker import identities
from cli.client import AsyncClient
from lab.ports import free_port
from lab.procs import daemon_command, plexus_command
from proto import topics
from proto.mqtt import BrokerURL, client

from .api import healthy, online
from .common import cpu_seconds, report, rss_mib, stop_all
from .rawhttp import Connection, post_all

HOSTS = [f"s{i}" for i in range(1, 5)]
SUBNET = ipaddress.IPv4Network("10.96.0.0/12")
TARGETS = {"endpoint creates, no wait": "≥ 1,000/s"}


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.02)
    raise TimeoutError(f"{what} did not come up")


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Services(NamedTuple):
    url: str  # the controller's
    broker: BrokerURL  # without credentials
    pid: int  # the controller's
    broker_pid: int


@contextmanager
def controller_with_broker(work: Path, hosts: Sequence[str] = HOSTS) -> Iterator[Services]:
    """A secured broker (an identity per host of ``hosts``) and a controller process."""
    bport, cport = free_port(), free_port()
    bd = identities.init(work / "broker", [("127.0.0.1", bport)], hosts)
    procs: list[subprocess.Popen[bytes]] = []
    log = open(work / "processes.log", "ab")  # noqa: SIM115
    try:
        procs.append(
            subprocess.Popen(
                [*plexus_command(), "broker", "run", "--dir", str(bd.path)], stdout=log, stderr=log
            )
        )
        wait_until(lambda: listening(bport), "the broker")
        broker = BrokerURL.parse(f"mqtt://127.0.0.1:{bport}")
        procs.append(
            subprocess.Popen(
                [*daemon_command("controller"), "--broker", str(broker),
                 "--store", str(work / "plexus.db"), "--listen", f"127.0.0.1:{cport}",
                 "--broker-credentials",
                 str(bd.identity(identities.CONTROLLER)), "--log-level", "warning"],
                stdout=log, stderr=log,
            )
        )  # fmt: skip
        url = f"http://127.0.0.1:{cport}"

        wait_until(lambda: healthy(url), "the controller")
        yield Services(url, broker.with_credentials(None), procs[1].pid, procs[0].pid)
    finally:
        stop_all(procs)
        log.close()


async def report_online(broker: BrokerURL, work: Path) -> None:
    for i, h in enumerate(HOSTS):
        url = BrokerURL.parse(str(broker)).with_credentials(work / "broker" / "identities" / h)
        status = proto.HostStatus(host=h, state="online", version="bench", vtep=f"198.18.0.{i + 1}")
        async with client(url, h) as mqtt:
            await mqtt.publish(topics.host_status(h), proto.encode(status), qos=1, retain=True)


async def measure(url: str, count: int, concurrency: int) -> list[dict[str, Any]]:
    async with AsyncClient(url, timeout=60) as http:
        await online(http, set(HOSTS), 500, 0.01)
        await http.post("/v1/networks", {"id": "tp", "subnet": str(SUBNET), "vni": 77})
        enc = await Connection.open(url)
        comps = [
            enc.encode("POST", "/v1/compartments", {"id": f"k{i}", "host": HOSTS[i % len(HOSTS)]})
            for i in range(count)
        ]
        eps = [
            enc.encode("POST", "/v1/endpoints", {"network": "tp", "compartment": f"k{i}"})
            for i in range(count)
        ]
        await enc.close()
        t_comp = await post_all(url, comps, concurrency)
        t_ep = await post_all(url, eps, concurrency)
        listed = await http.get("/v1/endpoints", params={"network": "tp"})
        assert len(listed) == count, len(listed)
    return [
        {"what": "compartment creates, no wait", "value": rate(count, t_comp)},
        {"what": "endpoint creates, no wait", "value": rate(count, t_ep)},
    ]


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s ({count} in {seconds:.2f} s)"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.api_throughput", description=__doc__)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="100 of each")
    args = ap.parse_args(argv)
    if args.quick:
        args.count = 100
    with tempfile.TemporaryDirectory(prefix="plexus-bench-") as d:
        work = Path(d)
        with controller_with_broker(work) as (url, broker, pid, _):
            asyncio.run(report_online(broker, work))
            cpu0, own0, wall0 = cpu_seconds(pid), cpu_seconds(os.getpid()), time.monotonic()
            rows = asyncio.run(measure(url, args.count, args.concurrency))
            wall = time.monotonic() - wall0
            used = {
                "controller": cpu_seconds(pid) - cpu0,
                "client": cpu_seconds(os.getpid()) - own0,
            }
            for who, cpu in used.items():
                rows.append(
                    {"what": f"{who} CPU during the runs", "value": f"{cpu:.2f} s of {wall:.2f} s"}
                )
            rows.append({"what": "controller RSS after", "value": f"{rss_mib(pid)} MiB"})
    return report(
        "api_throughput",
        rows,
        {"count": args.count, "concurrency": args.concurrency},
        TARGETS,
    )


if __name__ == "__main__":
    main()
