"""One agent's reconcile passes, without MQTT or a kernel (the in-memory driver): the
CPU a host pays for a large overlay table. An overlay network of E remote endpoints
(default 20,000, on 999 other hosts) arrives as a sharded snapshot; then:

- cold: fold the snapshot in and the first pass (every FDB and neighbour entry new);
- change: one endpoint upserted by a change, then a pass on the driver's view (the
  common case: only the touched entries are diffed);
- full: a periodic pass, which reads the whole state and diffs everything;
- RSS growth of the process per agent, with A agents (default 10) holding the table.

The garbage collector runs as in the agent's daemon (:data:`proto.settings.GC_THRESHOLDS`);
``--gc-default`` keeps Python's default thresholds instead.

    .venv/bin/python -m benchmarks.agent_pass [--endpoints 20000] [--agents 10] [--gc-default]
        [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import time
from typing import Any

import structlog

import proto
from agents.agent import Agent
from agents.kernel.memory import MemoryKernel
from proto import topics

from .common import collect_as_daemons, gc_flag, report, rss_mib, summary
from .fanout import shared_decoder

NET = proto.NetworkSpec(id="n", mode="overlay", subnet="10.0.0.0/8", gateway="10.0.0.1", vni=5)


def record(i: int, gen: int, mac_byte: int = 0) -> proto.EndpointRecord:
    h = 1 + i % 999
    return proto.EndpointRecord(
        id=f"e{i}",
        host=f"h{h}",
        mac=f"02:{mac_byte:02x}:{i >> 16:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}:01",
        ip=f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}",
        vtep=f"192.168.{h >> 8}.{h & 255}",
        gen=gen,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.agent_pass", description=__doc__)
    ap.add_argument("--endpoints", type=int, default=20_000)
    ap.add_argument("--agents", type=int, default=10)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="2,000 endpoints, 2 agents")
    gc_flag(ap)
    args = ap.parse_args(argv)
    collector = collect_as_daemons(args)
    if args.quick:
        args.endpoints, args.agents, args.changes = 2000, 2, 20
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    recs = [record(i, 1) for i in range(args.endpoints)]
    shards = -(-len(recs) // 2000)
    frames = [
        proto.encode(
            proto.NetworkSnapshot(
                network="n", generation=1, shard=k, shards=shards, records=tuple(recs[k::shards])
            )
        )
        for k in range(shards)
    ]
    del recs
    loop = asyncio.new_event_loop()
    decoder = shared_decoder()  # as the fan-out simulators: decoded once, shared
    gc.collect()
    base = rss_mib(os.getpid())
    cold, change, full = [], [], []
    agents = []
    for j in range(args.agents):
        agent = Agent(f"h{1000 + j}", MemoryKernel(keep=0), f"192.169.0.{j}", **decoder)
        doc = proto.HostDesired(host=agent.host, generation=1, networks=(NET,))
        agent.on_message(topics.host_desired(agent.host), proto.encode(doc))
        t = time.perf_counter()
        for k, frame in enumerate(frames):
            agent.on_message(topics.network_snapshot("n", k), frame)
        result = loop.run_until_complete(agent.reconcile(True))
        cold.append((time.perf_counter() - t) * 1000)
        assert not result.errors and result.actions > 2 * args.endpoints, result
        agents.append(agent)
    gc.collect()
    per_agent = (rss_mib(os.getpid()) - base) / args.agents
    agent = agents[0]
    for g in range(2, args.changes + 2):
        ch = proto.NetworkChange(
            network="n", generation=g, upserts=(record(g % args.endpoints, g, g % 250 + 1),)
        )
        t = time.perf_counter()
        agent.on_message(topics.network_changes("n"), proto.encode(ch))
        result = loop.run_until_complete(agent.reconcile(False))
        change.append((time.perf_counter() - t) * 1000)
        # del+add FDB and neighbour, and the endpoint's new MAC announced
        assert result.actions == 5 and not result.errors, result
    for _ in range(5):
        t = time.perf_counter()
        loop.run_until_complete(agent.reconcile(True))
        full.append((time.perf_counter() - t) * 1000)
    rows = [
        {"what": "cold: snapshot folded in + first pass", **summary(cold)},
        {"what": "one change: folded in + pass on the view", **summary(change)},
        {"what": "periodic full pass (nothing to do)", **summary(full)},
        {"what": "RSS per agent holding the table", "value": f"{per_agent:.1f} MiB"},
    ]
    extra = {"endpoints": args.endpoints, "agents": args.agents, **collector}
    return report("agent_pass", rows, extra)


if __name__ == "__main__":
    main()
