"""What one commit costs the controller, by store: N endpoint creations in process (no
broker, no API), one commit each, on SQLite, on PostgreSQL, and on PostgreSQL with two
controllers taking turns (each write then finds the other's commit first: a conflict,
a catch-up and the command run again). Wall time and the process's CPU time per commit.

PostgreSQL: ``--postgres URL``, or a private cluster made for the run (``tests/pg.py``:
``initdb`` in ``/tmp/plexus-pg-*``, unix socket only, fsync off; removed at the end).

    .venv/bin/python -m benchmarks.store_writes [--count 2000] [--postgres URL] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import proto
from controller.pgstore import PostgresStore
from controller.service import Controller
from controller.store import SqliteStore, Store
from proto.rest import CompartmentCreate, EndpointCreate, NetworkCreate

from .common import report


def measure(what: str, stores: list[Callable[[], Store]], count: int) -> dict[str, Any]:
    ctls = [Controller(make()) for make in stores]
    first = ctls[0]
    first.host_reported(proto.HostStatus(host="h1", state="online", version="b", vtep="10.0.0.1"))
    first.create_network(NetworkCreate(id="n", subnet="10.64.0.0/16", vni=5000))
    for i in range(count):
        first.create_compartment(CompartmentCreate(id=f"c{i}", host="h1"))
    for ctl in ctls[1:]:
        ctl.host_reported(proto.HostStatus(host="h1", state="online", version="b", vtep="10.0.0.1"))
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        ctl = ctls[i % len(ctls)]
        ctl.create_endpoint(EndpointCreate(network="n", compartment=f"c{i}"))  # type: ignore[call-arg]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ips = set()
    for ctl in ctls:
        ips |= {e.ip for e in ctl.state.endpoints.values()}
    assert len(ips) >= count, "an address was given twice"
    for ctl in ctls:
        ctl.store.close()
    return {
        "what": what,
        "n": count,
        "value": f"{wall / count * 1e6:.0f} µs wall, {cpu / count * 1e6:.0f} µs CPU per commit",
    }


@contextmanager
def postgres(url: str | None) -> Iterator[Callable[[], str]]:
    """A function that makes a new database: of ``url``'s server, or of a private one."""
    if url is not None:
        yield lambda: url
        return
    from tests.pg import Cluster  # the tests' private cluster

    cluster = Cluster()
    try:
        cluster.start()
        yield cluster.database
    finally:
        cluster.remove()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.store_writes", description=__doc__)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--postgres", help="a database URL (default: a private cluster)")
    ap.add_argument("--quick", action="store_true", help="200 commits")
    args = ap.parse_args(argv)
    if args.quick:
        args.count = 200
    rows = []
    with tempfile.TemporaryDirectory(prefix="plexus-store-") as d:
        path = Path(d) / "plexus.db"
        rows.append(
            measure("SQLite (WAL, synchronous=normal)", [lambda: SqliteStore(path)], args.count)
        )
    with postgres(args.postgres) as database:
        url = database()
        rows.append(measure("PostgreSQL, one controller", [lambda: PostgresStore(url)], args.count))
        url2 = database()
        two = [lambda: PostgresStore(url2), lambda: PostgresStore(url2)]
        rows.append(measure("PostgreSQL, two controllers taking turns", two, args.count))
    return report("store_writes", rows, {"count": args.count, "postgres": bool(args.postgres)})


if __name__ == "__main__":
    main()
