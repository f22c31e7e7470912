"""Broker relays for a benchmark: ``k`` Mosquitto relays of a running root broker, made
as an operator makes them (``plexus broker add-relay`` on the root, ``plexus broker
init --relay-of`` and ``broker run`` for each; here through the same functions), each
on a free loopback port, stopped at the end."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from broker import identities, relays
from lab.ports import free_port
from lab.procs import plexus_command
from proto.mqtt import BrokerURL

from .api_throughput import listening, wait_until
from .common import stop_all


class Relay(NamedTuple):
    url: BrokerURL  # without credentials
    pid: int


@contextmanager
def running(work: Path, root_dir: Path, root: BrokerURL, k: int) -> Iterator[list[Relay]]:
    """``k`` relays of the root broker at ``root`` (its directory ``root_dir``), their
    logs appended to ``work/processes.log``; none when ``k`` is 0."""
    procs: list[subprocess.Popen[bytes]] = []
    out: list[Relay] = []
    log = open(work / "processes.log", "ab")  # noqa: SIM115
    try:
        creds = [relays.add_relay(root_dir, f"r{i}") for i in range(k)]
        if k:
            identities.reload(root_dir)  # the root reads the relays' users and ACL
            time.sleep(0.2)
        for i, cred in enumerate(creds):
            port = free_port()
            d = work / f"relay{i}"
            relays.init_relay(d, str(root), cred, root_dir, [("127.0.0.1", port)])
            proc = subprocess.Popen(
                [*plexus_command(), "broker", "run", "--dir", str(d)], stdout=log, stderr=log
            )
            procs.append(proc)
            wait_until(lambda p=port: listening(p), f"relay {i}")  # type: ignore[misc]
            out.append(Relay(BrokerURL.parse(f"mqtt://127.0.0.1:{port}"), proc.pid))
        yield out
    finally:
        stop_all(procs)
        log.close()
