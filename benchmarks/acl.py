"""ACL policies on the real kernel (root): how long one host takes to compile and
program 1,000 rules for 200 local endpoints, and what a membership change costs.

Runs in a network namespace of its own (made and removed here): only Plexus's
nftables table is programmed (the endpoints' bridge and addresses are map keys; the
rules need no links). Two shapes of the same 1,000 rules:

- shared: one policy of 1,000 rules (half in, half out; port ranges, 10 label
  selectors, prefixes) selecting all 200 endpoints: one chain per tier, shared;
- per endpoint: 200 policies of 5 rules, each selecting one endpoint by id.

For each: compile (desired state → rules and elements), the table's atomic replace
(``nft -j -f``), reading it back (equal to the desired), and in place: one endpoint's
label change (set elements) and one new selected endpoint (a map element).

    sudo .venv/bin/python -m benchmarks.acl [--endpoints 200] [--rules 1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import proto
from proto.policy import Policy

from .common import report

TARGETS = {"shared: compile + replace (cold)": "≤ 1,000 ms"}


def endpoints(n: int, relabel: int | None = None) -> tuple[proto.Compartment, ...]:
    out = []
    for i in range(n):
        labels = (f"app=a{i % 10}", f"role=r{i % 4}")
        if i == relabel:
            labels = ("app=a1", "role=moved")
        ep = proto.LocalEndpoint(id=f"e{i}", network="n", index=0,
                                 mac=f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
                                 ip=f"10.60.{i >> 8}.{(i & 255) + 2}", prefixlen=16,
                                 labels=labels)  # fmt: skip
        out.append(proto.Compartment(id=f"c{i}", endpoints=(ep,)))
    return tuple(out)


def rule(i: int) -> dict[str, Any]:
    r: dict[str, Any] = {"priority": i, "direction": "in" if i % 2 else "out",
                         "action": ("allow", "block", "pass")[i % 3]}  # fmt: skip
    if i % 5:
        r["protocol"] = "tcp" if i % 2 else "udp"
        r["local_ports"] = (str(1000 + i), f"{2000 + i}-{2010 + i}")
    if i % 3 == 0:
        r["remote_selector"] = (f"app=a{i % 10}",)
    elif i % 3 == 1:
        r["remote_addresses"] = (f"172.{16 + i % 16}.{i % 256}.0/24",)
    return r


def shapes(n: int, rules: int) -> dict[str, tuple[Policy, ...]]:
    shared = (Policy(id="big", network="n", rules=tuple(rule(i) for i in range(rules))),)
    per = rules // n
    each = tuple(
        Policy(
            id=f"p{e}",
            network="n",
            endpoints=(f"e{e}",),
            rules=tuple(rule(e * per + i) for i in range(per)),
        )
        for e in range(n)
    )
    return {"shared": shared, "per endpoint": each}


def doc(comps: tuple[proto.Compartment, ...], pols: tuple[Policy, ...]) -> proto.HostDesired:
    net = proto.NetworkSpec(id="n", mode="nat", subnet="10.60.0.0/16", gateway="10.60.0.1")
    return proto.HostDesired(host="b", generation=1, networks=(net,), compartments=comps,
                             policies=pols)  # fmt: skip


async def inside(n: int, rules: int) -> list[dict[str, Any]]:
    from agents.desired import desired_state
    from agents.kernel import nft

    rows = []
    for shape, pols in shapes(n, rules).items():
        t0 = time.perf_counter()
        st = desired_state("b", doc(endpoints(n), pols), {}, None)
        t1 = time.perf_counter()
        assert st.rules is not None
        await nft.replace(st.rules, "", st.elements)
        t2 = time.perf_counter()
        back, _, elements = await nft.read()
        t3 = time.perf_counter()
        assert back == st.rules and elements == st.elements, "read back differs"
        # one endpoint's labels change: set elements only
        moved = desired_state("b", doc(endpoints(n, relabel=0), pols), {}, None)
        assert moved.rules == st.rules
        changes = [(k, v - st.elements[k], st.elements[k] - v) for k, v in moved.elements.items()
                   if v != st.elements[k]]  # fmt: skip
        t4 = time.perf_counter()
        await nft.update(changes)
        t5 = time.perf_counter()
        # one more endpoint the policies select: a map element
        more = desired_state("b", doc(endpoints(n + 1, relabel=0), pols), {}, None)
        adds = [(k, v - moved.elements[k], moved.elements[k] - v)
                for k, v in more.elements.items() if v != moved.elements.get(k)]  # fmt: skip
        t6 = time.perf_counter()
        if more.rules == moved.rules:
            await nft.update(adds)
            how = "elements"
        else:
            await nft.replace(more.rules or frozenset(), "", more.elements)
            how = "table replaced"
        t7 = time.perf_counter()
        ms = lambda a, b: round((b - a) * 1000, 1)  # noqa: E731
        rows += [
            {"what": f"{shape}: compile + replace (cold)", "value": f"{ms(t0, t2)} ms"},
            {"what": f"{shape}:   compile", "value": f"{ms(t0, t1)} ms"},
            {
                "what": f"{shape}:   nft replace ({len(st.rules)} rules)",
                "value": f"{ms(t1, t2)} ms",
            },
            {"what": f"{shape}:   read back", "value": f"{ms(t2, t3)} ms"},
            {
                "what": f"{shape}: a label change in place ({len(changes)} sets)",
                "value": f"{ms(t4, t5)} ms (+ compile {ms(t3, t4)} ms)",
            },
            {
                "what": f"{shape}: a new selected endpoint ({how})",
                "value": f"{ms(t6, t7)} ms (+ compile {ms(t5, t6)} ms)",
            },
        ]
    await nft.delete()
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.acl", description=__doc__)
    ap.add_argument("--endpoints", type=int, default=200)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="20 endpoints, 100 rules")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.endpoints, args.rules = 20, 100
    if args.inside:
        print(json.dumps(asyncio.run(inside(args.endpoints, args.rules))))
        return {}
    if os.geteuid() != 0:
        sys.exit("this benchmark programs nftables in a namespace of its own: run it as root")
    from agents.kernel import netns
    from lab.records import record

    ns = f"pxbench-acl-{os.getpid()}"
    record("netns", ns)
    netns.create(ns)
    try:
        cmd = ["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-m", "benchmarks.acl"]
        cmd += ["--inside", "--endpoints", str(args.endpoints), "--rules", str(args.rules)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            sys.exit(run.stderr[-3000:])
        rows = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        netns.remove(ns)
    return report("acl", rows, {"endpoints": args.endpoints, "rules": args.rules}, TARGETS)


if __name__ == "__main__":
    main()
