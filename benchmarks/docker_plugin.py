"""The Docker plugin as dockerd drives it, in a ``plexus lab`` of 2 hosts (root).

``plexus docker-plugin`` runs for the lab's first host, with that host's host-scoped
token, on a socket of its own (not in ``/run/docker/plugins``: no dockerd sees it). The
benchmark sends the calls libnetwork sends, in its order, over that socket (HTTP on a
Unix socket, JSON): a network once (``RequestPool``, the gateway's ``RequestAddress``,
``CreateNetwork``); then for each of N containers what ``docker run`` waits on
(``RequestAddress`` → ``CreateEndpoint`` → ``Join`` → ``ProgramExternalConnectivity``,
the agent's plumbing included: the address call waits for the host); then for each what
``docker rm`` waits on (``RevokeExternalConnectivity`` → ``Leave`` → ``DeleteEndpoint``
→ ``ReleaseAddress``). The pair's inner end stays in the host's namespace (no container
takes it), which ``DeleteEndpoint`` finds as after a real ``Leave``.

    sudo .venv/bin/python -m benchmarks.docker_plugin [--count 50] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.records import record_pid

from .common import lab_run, report, summary

SUBNET = "10.211.0.0/16"
TARGETS = {"docker run: RequestAddress … ProgramExternalConnectivity": "p50 ≤ 100 ms"}
RUN = ("RequestAddress", "CreateEndpoint", "Join", "ProgramExternalConnectivity")
RM = ("RevokeExternalConnectivity", "Leave", "DeleteEndpoint", "ReleaseAddress")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.path))


class Dockerd:
    """What dockerd sends: one POST per call, one kept connection."""

    def __init__(self, sock: Path) -> None:
        self.conn = UnixConnection(sock)
        self.ms: dict[str, list[float]] = {}

    def call(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        t = time.perf_counter()
        self.conn.request("POST", f"/{name}", json.dumps(body).encode())
        answer: dict[str, Any] = json.loads(self.conn.getresponse().read() or b"{}")
        self.ms.setdefault(name.split(".")[-1], []).append((time.perf_counter() - t) * 1000)
        if answer.get("Err"):
            raise RuntimeError(f"{name}: {answer['Err']}")
        return answer


def measure_calls(sock: Path, count: int, churn: bool) -> dict[str, Any]:
    d = Dockerd(sock)
    net_id = "b" * 64
    pool = d.call("IpamDriver.RequestPool", {"AddressSpace": "plexus", "Pool": SUBNET})["PoolID"]
    gw = d.call(
        "IpamDriver.RequestAddress",
        {"PoolID": pool, "Options": {"RequestAddressType": "com.docker.network.gateway"}},
    )["Address"]
    options = {"com.docker.network.generic": {"mode": "nat"}}
    ipv4 = [{"AddressSpace": "plexus", "Pool": SUBNET, "Gateway": gw}]
    d.call("NetworkDriver.CreateNetwork", {"NetworkID": net_id, "Options": options,
                                           "IPv4Data": ipv4})  # fmt: skip
    portmap = {"com.docker.network.portmap": []}

    def remove(ep_id: str, addr: str) -> float:
        t = time.perf_counter()
        ids = {"NetworkID": net_id, "EndpointID": ep_id}
        d.call("NetworkDriver.RevokeExternalConnectivity", ids)
        d.call("NetworkDriver.Leave", ids)
        d.call("NetworkDriver.DeleteEndpoint", ids)
        d.call("IpamDriver.ReleaseAddress", {"PoolID": pool, "Address": addr.split("/")[0]})
        return (time.perf_counter() - t) * 1000

    runs, rms, made = [], [], []
    for i in range(count):
        if churn and made:  # the previous container removed right before this one starts
            rms.append(remove(*made.pop()))
        ep_id = f"{i:064x}"
        t = time.perf_counter()
        addr = d.call("IpamDriver.RequestAddress", {"PoolID": pool, "Options": {}})["Address"]
        d.call("NetworkDriver.CreateEndpoint", {"NetworkID": net_id, "EndpointID": ep_id,
                                                "Interface": {"Address": addr}})  # fmt: skip
        d.call("NetworkDriver.Join", {"NetworkID": net_id, "EndpointID": ep_id,
                                      "SandboxKey": "/var/run/docker/netns/x"})  # fmt: skip
        d.call("NetworkDriver.ProgramExternalConnectivity",
               {"NetworkID": net_id, "EndpointID": ep_id, "Options": portmap})  # fmt: skip
        runs.append((time.perf_counter() - t) * 1000)
        made.append((ep_id, addr))
    for ep_id, addr in made:
        rms.append(remove(ep_id, addr))
    d.call("NetworkDriver.DeleteNetwork", {"NetworkID": net_id})
    d.call("IpamDriver.ReleasePool", {"PoolID": pool})
    rows = [{"what": "docker run: RequestAddress … ProgramExternalConnectivity", **summary(runs)}]
    rows += [{"what": f"  {c}", **summary(d.ms[c])} for c in RUN]
    rows.append({"what": "docker rm: RevokeExternalConnectivity … ReleaseAddress", **summary(rms)})
    rows += [{"what": f"  {c}", **summary(d.ms[c])} for c in RM]
    return {"rows": rows}


def run(spec: Any, count: int, churn: bool, workdir: Path) -> dict[str, Any]:
    """The plugin for the lab's first host (no token: the admin's loopback access, as
    a network's maker needs), then the calls."""
    argv = [str(Path(sys.executable).parent / "plexus"), "docker-plugin", "--name", "bench"]
    argv += ["--network-host", spec.hosts[0], "--controller", spec.controller_url]
    argv += ["--socket-dir", str(workdir), "--state-dir", str(workdir / "state")]
    with open(workdir / "plugin.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
    record_pid(proc.pid)
    sock = workdir / "bench.sock"
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "plugin.log").read_text()[-2000:])
            time.sleep(0.05)
        result = measure_calls(sock, count, churn)
    finally:
        proc.terminate()
        proc.wait(10)
    return {**result, "count": count, "churn": churn}


async def measure(spec: Any, count: int, churn: bool, workdir: Path) -> dict[str, Any]:
    return await asyncio.to_thread(run, spec, count, churn, workdir)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.docker_plugin", description=__doc__)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument(
        "--churn",
        action="store_true",
        help="remove each container right before the next starts (as a test loop does)",
    )
    ap.add_argument("--quick", action="store_true", help="10 containers")
    args = ap.parse_args(argv)
    if args.quick:
        args.count = 10
    with tempfile.TemporaryDirectory(prefix="plexus-docker-bench-") as tmp:
        result = lab_run(2, "dk", lambda spec: measure(spec, args.count, args.churn, Path(tmp)))
    return report("docker_plugin", result.pop("rows"), result, TARGETS)


if __name__ == "__main__":
    main()
