"""Run inside a fresh network namespace (``nsenter --net``) as ``acl_check.py HOST``:
the Linux driver programs a nat network with 3 compartments and an ACL policy (the
web endpoint admits TCP port 80 from the endpoints labelled ``role=client`` only);
real probes (TCP connect, ping) check what passes; a label change is checked to cost
set elements only. Prints the findings as one JSON line; leaves nothing behind (the
caller records the compartments' namespaces, :data:`COMPARTMENTS`, before)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import proto
from agents import plan as p
from agents.acl import LOG_GROUP
from agents.desired import desired_state
from agents.kernel import nflog
from agents.kernel.linux import LinuxKernel
from proto import names
from proto.policy import Policy

H = sys.argv[1] if __name__ == "__main__" else ""
ECHO = str(Path(__file__).with_name("echo.py"))
COMPARTMENTS = ("web", "client", "other")


def doc(policies: list[Policy], labels: dict[str, tuple[str, ...]]) -> proto.HostDesired:
    net = proto.NetworkSpec(id="n", mode="nat", subnet="10.44.0.0/24", gateway="10.44.0.1")
    comps = []
    for i, name in enumerate(["web", "client", "other"]):
        ep = proto.LocalEndpoint(
            id=name,
            network="n",
            index=0,
            mac=f"02:00:00:00:44:0{i + 1}",
            ip=f"10.44.0.{i + 10}",
            prefixlen=24,
            default_route=True,
            labels=labels.get(name, ()),
        )
        comps.append(proto.Compartment(id=name, endpoints=(ep,)))
    return proto.HostDesired(
        host=H, generation=1, networks=(net,), compartments=tuple(comps), policies=tuple(policies)
    )


POL = Policy(
    id="web-in",
    network="n",
    selector=("app=web",),
    rules=(
        {
            "priority": 100,
            "direction": "in",
            "action": "allow",
            "protocol": "tcp",
            "local_ports": ("80",),
            "remote_selector": ("role=client",),
        },
        # logged: the nflog group gets what this drops
        {
            "priority": 50,
            "direction": "in",
            "action": "block",
            "protocol": "tcp",
            "local_ports": ("81",),
            "log": True,
        },
    ),
)


async def converge(k: LinuxKernel, d: proto.HostDesired) -> int:
    """Plan and apply until nothing is left to do; the actions of the last pass."""
    want = desired_state(H, d, {}, None)
    for _ in range(3):
        have = await k.read(True)
        acts = p.plan(want, have, complete=True)
        if not acts:
            return 0
        out = await k.apply_many(acts)
        errs = [str(e) for e in out if e]
        if errs:
            raise SystemExit(f"errors: {errs}")
    return len(acts)


def ns(c: str) -> str:
    return names.netns(H, c)


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True)


def ask(src: str, ip: str, port: int) -> str | None:
    r = run("ip", "netns", "exec", ns(src), sys.executable, ECHO, "ask", ip, str(port))
    return r.stdout.strip() if r.returncode == 0 else None


def ping(src: str, ip: str) -> bool:
    return run("ip", "netns", "exec", ns(src), "ping", "-c1", "-W1", ip).returncode == 0


async def main() -> None:
    k = LinuxKernel(H)
    res: dict[str, Any] = {}
    servers: list[subprocess.Popen[str]] = []
    try:
        labels = {"web": ("app=web",), "client": ("role=client",)}
        d = doc([POL], labels)
        t = time.perf_counter()
        await converge(k, d)
        res["apply_ms"] = round((time.perf_counter() - t) * 1000, 1)
        for c in ("web", "client", "other"):
            s = subprocess.Popen(  # noqa: ASYNC220 (a server that outlives the call)
                ["ip", "netns", "exec", ns(c), sys.executable, ECHO, "serve", "80", c],
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(s)
            assert s.stdout is not None
            s.stdout.readline()
        group = nflog.open_group(LOG_GROUP)
        res["client->web:81 (logged)"] = ask("client", "10.44.0.10", 81)
        await asyncio.sleep(0.2)
        res["logged"] = sorted(
            {(g.prefix, g.src, g.dst, g.protocol, g.dport) for g in nflog.drain(group)}
        )
        group.close()
        res["client->web:80"] = ask("client", "10.44.0.10", 80)
        res["other->web:80"] = ask("other", "10.44.0.10", 80)
        res["client ping web"] = ping("client", "10.44.0.10")
        res["web->other:80 (out open)"] = ask("web", "10.44.0.12", 80)
        res["second pass actions"] = await converge(k, d)
        # membership: other gets role=client -> set element only
        d2 = doc([POL], {**labels, "other": ("role=client",)})
        want = desired_state(H, d2, {}, None)
        acts = p.plan(want, await k.read(True), complete=True)
        res["membership actions"] = [type(a).__name__ for a in acts]
        await k.apply_many(acts)
        res["other->web:80 after label"] = ask("other", "10.44.0.10", 80)
        res["other ping web after label"] = ping("other", "10.44.0.10")
    finally:
        for s in servers:
            s.kill()
            s.wait()
        await converge(k, proto.HostDesired(host=H, generation=2))
        await k.close()
    print(json.dumps(res))


if __name__ == "__main__":  # imported by the test for COMPARTMENTS: nothing runs then
    asyncio.run(main())
