"""How fast a policy's membership change reaches every host, beside an endpoint change
(a `plexus lab` of 3 hosts, root).

An overlay network with endpoints on every host and a policy selecting all of them
whose rule admits the endpoints labelled ``role=client`` (a named set on every host).
Timed, each call with ``wait`` (answered once every host holding the network applied
it, the set's elements included):

- a label change that moves an endpoint into or out of the selector's set;
- the same label change with no policy on the network (the table change alone);
- an endpoint created (its compartment made before) — the figure a membership change
  is held to.

    sudo .venv/bin/python -m benchmarks.acl_convergence [--count 50] [--quick]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from cli.client import AsyncClient

from .api import plug, post
from .common import lab_run, report, summary

NET = "aclconv"
TARGETS = {"label change → every host applied (sets)": "≈ an endpoint change"}


async def measure(spec: Any, count: int) -> dict[str, Any]:
    hosts = spec.hosts
    async with AsyncClient(spec.controller_url, timeout=60) as http:
        await post(http, "/v1/networks", {"id": NET, "subnet": "10.214.0.0/16"}, True)
        await plug(http, NET, {f"m{h}-{i}": h for h in hosts for i in range(3)})
        eps = [e["id"] for e in await http.get("/v1/endpoints", params={"network": NET})]

        async def relabel(n: int) -> list[float]:
            out = []
            for i in range(n):
                labels = {"role": "client"} if i % 2 == 0 else {}
                t = time.perf_counter()
                data = await http.request("PUT", f"/v1/endpoints/{eps[0]}/labels",
                                          body={"labels": labels}, wait=30)  # fmt: skip
                out.append((time.perf_counter() - t) * 1000)
                if not data["convergence"]["converged"]:
                    raise RuntimeError(f"label change did not converge: {data['convergence']}")
            return out

        plain = await relabel(count)
        rule = {"priority": 10, "direction": "in", "action": "allow", "protocol": "tcp",
                "local_ports": ["80"], "remote_selector": ["role=client"]}  # fmt: skip
        await post(http, "/v1/policies", {"id": "guard", "network": NET, "rules": [rule]}, True)
        with_sets = await relabel(count)
        for i in range(count):  # compartments first, untimed
            await post(http, "/v1/compartments", {"id": f"n{i}", "host": hosts[i % 3]}, True)
        creates = []
        for i in range(count):
            t = time.perf_counter()
            await post(http, "/v1/endpoints", {"network": NET, "compartment": f"n{i}"}, True)
            creates.append((time.perf_counter() - t) * 1000)
    rows = [
        {"what": "label change → every host applied (sets)", **summary(with_sets)},
        {"what": "label change, no policy (the table change alone)", **summary(plain)},
        {"what": "endpoint create → every host applied (policy in place)", **summary(creates)},
    ]
    return {"rows": rows, "hosts": len(hosts), "count": count}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.acl_convergence", description=__doc__)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="6 of each")
    args = ap.parse_args(argv)
    if args.quick:
        args.count = 6
    result = lab_run(3, "ac", lambda spec: measure(spec, args.count))
    return report("acl_convergence", result.pop("rows"), result, TARGETS)


if __name__ == "__main__":
    main()
