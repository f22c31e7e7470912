"""The controller's side of one large ``POST /v1/batch``, in process (no broker, no
agents): a real SQLite store, H hosts, one overlay; E compartments and E endpoints in
one batch — the request parsed, the batch staged, renumbered and committed in one
transaction (:mod:`controller.bulk`), and everything the broker must get built
(:meth:`Publication.of`: a desired document per host, the table changes). CPU seconds of
each step (the process's own; on a busy machine the wall clock is not the controller's).
The garbage collector runs as in the controller's daemon
(:data:`proto.settings.GC_THRESHOLDS`); ``--gc-default`` keeps Python's default.

    .venv/bin/python -m benchmarks.bulk [--hosts 1000] [--endpoints 20000] [--gc-default]
        [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import proto
from controller import bulk
from controller.publication import Publication
from controller.service import Controller
from controller.store import SqliteStore
from proto.rest import BatchRequest, NetworkCreate

from .common import collect_as_daemons, gc_flag, report

TARGETS = {"total": "≤ 5 s for 20,000 endpoints"}


def measure(hosts: int, endpoints: int, directory: Path) -> list[dict[str, Any]]:
    ctl = Controller(SqliteStore(directory / "plexus.db"))
    for i in range(hosts):
        vtep = f"198.18.{i // 250}.{i % 250 + 1}"
        ctl.host_reported(proto.HostStatus(host=f"h{i}", state="online", version="b", vtep=vtep))
    ctl.create_network(NetworkCreate(id="bulk", subnet="10.64.0.0/14", vni=5000))
    ops: list[dict[str, Any]] = []
    for i in range(endpoints):
        comp = {"id": f"c{i}", "host": f"h{i % hosts}"}
        ops.append({"op": "create", "kind": "compartment", "body": comp})
        ep = {"network": "bulk", "compartment": f"c{i}"}
        ops.append({"op": "create", "kind": "endpoint", "body": ep})
    raw = json.dumps({"ops": ops})
    pub = Publication(ctl.state)
    pub.desired("h0")  # the documents as a running controller holds them: built before
    cpu = time.process_time()
    req = BatchRequest.model_validate_json(raw)
    parsed = time.process_time()
    out = bulk.run(ctl, req.ops)
    staged = time.process_time()
    batch = pub.of(out.change)
    size = sum(len(p.payload) for p in batch.publish)  # lazy documents built here
    built = time.process_time()
    kinds = sorted({proto.topics.parse(p.topic).kind for p in batch.publish})
    return [
        {
            "what": f"request parsed ({len(raw) / 1e6:.1f} MB of JSON)",
            "value": f"{parsed - cpu:.2f} s",
        },
        {
            "what": "batch staged, renumbered, committed (one transaction)",
            "value": f"{staged - parsed:.2f} s",
        },
        {
            "what": f"{len(batch.publish)} publishes built ({', '.join(kinds)}; {size >> 20} MiB)",
            "value": f"{built - staged:.2f} s",
        },
        {"what": "total", "value": f"{built - cpu:.2f} s"},
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bulk", description=__doc__)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=20_000)
    ap.add_argument("--quick", action="store_true", help="20 hosts, 500 endpoints")
    gc_flag(ap)
    args = ap.parse_args(argv)
    collector = collect_as_daemons(args)
    if args.quick:
        args.hosts, args.endpoints = 20, 500
    with tempfile.TemporaryDirectory(prefix="plexus-bulk-") as d:
        rows = measure(args.hosts, args.endpoints, Path(d))
    extra = {"hosts": args.hosts, "endpoints": args.endpoints, **collector}
    return report("bulk", rows, extra, TARGETS)


if __name__ == "__main__":
    main()
