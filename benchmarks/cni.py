"""The CNI plugin as a runtime runs it, in a ``plexus lab`` of 2 hosts (root).

For N containers (namespaces made as podman makes them: bound at ``/run/netns/NAME``),
each on the next host in turn: the installed plugin's launcher is executed with
``CNI_COMMAND=ADD`` (process start → result on stdout, the agent's plumbing included:
the plugin waits for its host to apply), then, once all are attached, with ``DEL``.
Also the plugin's own start (``VERSION``: no network). The plugin authenticates with
each host's host-scoped token, as on a real host.

    sudo .venv/bin/python -m benchmarks.cni [--count 100] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agents.kernel import netns
from cli.client import AsyncClient
from lab.records import record

from .api import post
from .common import lab_run, report, summary

NET = "cnibench"
TARGETS = {
    "plugin start (VERSION: process start → exit)": "≤ 50 ms",
    "ADD → result (agent plumbing included)": "p50 ≤ 100 ms",
}


async def run_plugin(
    launcher: Path, command: str, conf: dict[str, Any], container: str, ns: str
) -> tuple[float, dict[str, Any] | None]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": ns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(launcher.parent),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    t = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        str(launcher), env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate(json.dumps(conf).encode())
    elapsed = (time.perf_counter() - t) * 1000
    result = json.loads(out) if out.strip() else None
    if proc.returncode != 0:
        raise RuntimeError(f"plexus-cni {command} for {container} failed: {result}")
    return elapsed, result


async def measure(spec: Any, count: int, workdir: Path) -> dict[str, Any]:
    hosts = spec.hosts
    bin_dir, conf_dir = workdir / "bin", workdir / "net.d"
    launcher = bin_dir / "plexus"
    tokens: dict[str, Path] = {}
    async with AsyncClient(spec.controller_url, timeout=60) as http:
        await post(http, "/v1/networks", {"id": NET, "subnet": "10.210.0.0/16"}, True)
        for h in hosts:
            token = (await http.get(f"/v1/hosts/{h}/token"))["token"]
            tokens[h] = workdir / f"{h}.token"
            tokens[h].write_text(token + "\n")
            tokens[h].chmod(0o600)
    proc = await asyncio.create_subprocess_exec(
        *(str(Path(sys.executable).parent / "plexus"), "cni", "install"),
        *("--network", NET, "--host", hosts[0]),
        *("--controller", spec.controller_url, "--token-file", str(tokens[hosts[0]])),
        *("--dir", str(conf_dir), "--bin-dir", str(bin_dir)),
    )
    if await proc.wait() != 0:
        raise RuntimeError("plexus cni install failed")
    (conflist,) = conf_dir.glob("*.conflist")
    plugin = json.loads(conflist.read_text())["plugins"][0]

    def conf(host: str) -> dict[str, Any]:
        return {
            **plugin,
            "cniVersion": "1.0.0",
            "name": NET,
            "host": host,
            "tokenFile": str(tokens[host]),
        }

    start = []
    for _ in range(max(count, 20)):
        ms, _ = await run_plugin(launcher, "VERSION", {"cniVersion": "1.0.0"}, "v", "")
        start.append(ms)

    made: list[str] = []
    add, delete = [], []
    try:
        for i in range(count):
            name = f"pxcnib-{os.getpid()}-{i}"
            record("netns", name)
            await asyncio.to_thread(netns.create, name)
            made.append(name)
        for i, name in enumerate(made):
            host = hosts[i % len(hosts)]
            ms, result = await run_plugin(
                launcher, "ADD", conf(host), f"bench{i}", f"/run/netns/{name}"
            )
            assert result is not None and result["ips"], result
            add.append(ms)
        for i, name in enumerate(made):
            host = hosts[i % len(hosts)]
            ms, _ = await run_plugin(launcher, "DEL", conf(host), f"bench{i}", f"/run/netns/{name}")
            delete.append(ms)
    finally:
        for name in made:
            await asyncio.to_thread(netns.remove, name)
    rows = [
        {"what": "plugin start (VERSION: process start → exit)", **summary(start)},
        {"what": "ADD → result (agent plumbing included)", **summary(add)},
        {"what": "DEL → done", **summary(delete)},
    ]
    return {"rows": rows, "hosts": len(hosts), "count": count}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cni", description=__doc__)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="10 containers")
    args = ap.parse_args(argv)
    if args.quick:
        args.count = 10
    with tempfile.TemporaryDirectory(prefix="plexus-cni-bench-") as tmp:
        result = lab_run(2, "cn", lambda spec: measure(spec, args.count, Path(tmp)))
    return report("cni", result.pop("rows"), {**result}, TARGETS)


if __name__ == "__main__":
    main()
