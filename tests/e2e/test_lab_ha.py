"""End to end, the highly available lab: ``plexus lab up --controllers 3 --store
postgresql --relays 2`` (a private PostgreSQL cluster, 3 controller processes, a root
Mosquitto and 2 relays, an agent per host on the real kernel), its leader and a relay
SIGKILLed under it, then ``lab down`` leaving nothing behind: one lab, in file order.
Last, another lab whose ``lab up`` is SIGKILLed half-way, removed by ``lab down``."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from cli.client import Client
from lab.records import record
from proto import names
from tests.e2e.test_lab import Before, lab_namespaces, plexus, plexus_json, processes
from tests.kernel.lab import require_root
from tests.pg import bindir
from tests.support import PLEXUS

pytestmark = pytest.mark.kernel

HOSTS = 3


class HaLab:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.dir = base / "lab"
        self.prefix = f"ha{os.getpid() % 100000}x{time.monotonic_ns() % 1000}h"
        self.before = Before.now(self.dir, self.prefix)
        self.spec: dict[str, Any] = {}

    def up(self) -> None:
        self.spec = plexus_json(
            "lab", "up", "--hosts", str(HOSTS), "--dir", str(self.dir),
            "--host-prefix", self.prefix, "--controllers", "3", "--store", "postgresql",
            "--relays", "2",
        )  # fmt: skip

    @property
    def hosts(self) -> list[str]:
        return list(self.spec["hosts"])

    def env(self, url: str | None = None) -> dict[str, str]:
        return {"PLEXUS_LAB_DIR": str(self.dir), **({"PLEXUS_CONTROLLER": url} if url else {})}

    def json(self, *args: str, url: str | None = None) -> Any:
        return plexus_json(*args, env=self.env(url or self.live()))

    def status(self) -> dict[str, Any]:
        return json.loads(plexus("lab", "status", "-o", "json", env=self.env(), check=False).stdout)

    def service(self, name: str) -> dict[str, Any]:
        (row,) = [s for s in self.status()["services"] if s["name"] == name]
        return row

    def live(self) -> str:
        """The URL of a running controller replica."""
        services = self.status()["services"]
        return next(
            s["url"] for s in services if s["name"].startswith("controller") and s["running"]
        )

    def broker_of(self, host: str) -> str:
        """The broker URL the host's agent last connected to (its log says)."""
        found = ""
        for line in (self.dir / "logs" / f"agent-{host}.log").read_text().splitlines():
            if '"broker_connected"' in line:
                found = json.loads(line)["broker"]
        return found

    def moved_after(self, host: str, since: float) -> float | None:
        """Seconds from ``since`` (wall clock) to the agent's first connection after it."""
        for line in (self.dir / "logs" / f"agent-{host}.log").read_text().splitlines():
            if '"broker_connected"' in line:
                at = datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
                if at >= since:
                    return at - since
        return None

    def create(self, url: str, host: str, name: str) -> dict[str, Any]:
        """A compartment on ``host`` with an endpoint on demo, through ``url``."""
        self.json("compartment", "create", name, "--host", host, "--wait", url=url)
        return dict(
            self.json(
                "endpoint",
                "create",
                f"{name}-demo",
                "--network",
                "demo",
                "--compartment",
                name,
                "--wait",
                url=url,
            )
        )


def ping(ns: str, ip: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", "ping", "-n", *args, ip],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def ha() -> Iterator[HaLab]:
    require_root()
    bindir()
    # PostgreSQL runs as `postgres`: the lab directory's parents must let it through
    base = Path(tempfile.mkdtemp(prefix="plexus-labha-", dir="/tmp"))
    base.chmod(0o755)
    record("dir", str(base))
    lab = HaLab(base)
    try:
        lab.up()
        yield lab
    finally:
        plexus("lab", "down", "--dir", str(lab.dir), check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_the_demo_pings_and_status_names_a_leader(ha: HaLab) -> None:
    data = ha.json("lab", "demo")
    assert data["pairs"] == data["reachable"] == HOSTS * 2 * (HOSTS * 2 - 1), data["probes"]
    status = ha.json("status")
    assert status["store"] == "postgresql" and status["leader"] in (
        "controller",
        "controller-2",
        "controller-3",
    )
    lab = ha.status()
    leaders = [s["name"] for s in lab["services"] if s["role"].startswith("leader")]
    assert leaders == [status["leader"]]
    assert {s["name"] for s in lab["services"]} >= {"postgres", "relay-1", "relay-2"}
    assert all(s["running"] for s in lab["services"])


def test_killing_the_leader_elects_another_within_2_s(ha: HaLab) -> None:
    old = ha.json("status")["leader"]
    leader = ha.service(old)
    others = [s["url"] for s in ha.status()["services"] if s["name"].startswith("controller")
              and s["name"] != old]  # fmt: skip
    os.kill(leader["pid"], signal.SIGKILL)
    killed = time.monotonic()
    new = None
    with Client(others[0], timeout=1) as api:  # the REST API itself: a CLI run takes 0.3 s
        while time.monotonic() - killed < 10:
            new = api.get("/v1/status").get("leader")
            if new not in (None, old):
                break
            time.sleep(0.01)
    took = time.monotonic() - killed
    print(f"\nleader {old} SIGKILLed: {new} leads {took:.2f} s later")
    assert new not in (None, old) and took <= 2.0
    # an endpoint made afterwards through another replica is applied on every host
    h1, h2, h3 = ha.hosts
    made = ha.create(others[1], h3, f"{h3}-after")
    assert made["convergence"]["converged"], made
    assert set(made["convergence"]["hosts"]) == set(ha.hosts)
    for h in (h1, h2):
        assert ping(names.netns(h, f"{h}-c1"), made["ip"], "-c", "1", "-W", "2").returncode == 0


def test_killing_a_relay_moves_its_agents_and_loses_no_ping(ha: HaLab) -> None:
    h1, h2, h3 = ha.hosts
    relays = {r: ha.service(r) for r in ("relay-1", "relay-2")}
    on = {h: ha.broker_of(h) for h in ha.hosts}
    victim = max(relays, key=lambda r: sum(1 for u in on.values() if u == relays[r]["url"]))
    survivor = next(r for r in relays if r != victim)
    moved = [h for h, u in on.items() if u == relays[victim]["url"]]
    assert moved, on
    target = ha.json("endpoint", "show", f"{h2}-c1-demo")["ip"]
    pinger = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{names.netns(h1, f'{h1}-c1')}",
         "ping", "-n", "-q", "-i", "0.01", "-c", "600", "-W", "1", target],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(1)  # pings flowing before the kill
        os.kill(relays[victim]["pid"], signal.SIGKILL)
        killed = time.time()
        # the relay's absence does not stop a change from converging
        live = next(s["url"] for s in ha.status()["services"] if s["name"].startswith("controller")
                    and s["running"])  # fmt: skip
        made = ha.create(live, h3, f"{h3}-relay")
        assert made["convergence"]["converged"], made
        assert set(made["convergence"]["hosts"]) == set(ha.hosts)
        out, _ = pinger.communicate(timeout=60)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    sent, received = int(m.group(1)), int(m.group(2))
    print(f"\n{victim} SIGKILLed during pings every 10 ms: {sent} sent, {received} received")
    assert sent == 600 and received == sent, out
    for h in moved:
        assert ha.broker_of(h) == relays[survivor]["url"], (h, ha.broker_of(h))
    took = sorted(t for h in moved if (t := ha.moved_after(h, killed)) is not None)
    assert len(took) == len(moved)
    print(f"{len(moved)} agents of {victim} on {survivor} after {took[0]:.2f} to {took[-1]:.2f} s")
    assert ping(names.netns(h1, f"{h1}-c1"), made["ip"], "-c", "1", "-W", "2").returncode == 0


def test_lab_down_leaves_nothing_behind(ha: HaLab) -> None:
    bridge = ha.spec["bridge"]
    plexus("lab", "down", "--dir", str(ha.dir))
    assert not ha.dir.exists()
    assert lab_namespaces(ha.prefix) == set()
    assert processes(ha.dir) == {}
    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname=bridge)
    ha.before.assert_restored()


def test_lab_down_after_lab_up_was_killed_midway() -> None:
    """``lab up`` SIGKILLed once PostgreSQL, the relays and a controller run: ``lab
    down`` still stops them all and removes the cluster with the lab's directory."""
    require_root()
    bindir()
    base = Path(tempfile.mkdtemp(prefix="plexus-labha-", dir="/tmp"))
    base.chmod(0o755)
    record("dir", str(base))
    lab = HaLab(base)
    up = subprocess.Popen(
        [PLEXUS, "lab", "up", "--hosts", "2", "--dir", str(lab.dir), "--host-prefix",
         lab.prefix, "--controllers", "3", "--store", "postgresql", "--relays", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "controller" not in json.loads(_read(lab.dir / "lab.json") or "{}").get("pids", {}):
            assert up.poll() is None and time.monotonic() < deadline, "lab up ended early"
            time.sleep(0.05)
        up.kill()
        up.wait()
        assert any("postgres" in c for c in processes(lab.dir).values())
        plexus("lab", "down", "--dir", str(lab.dir))
        assert not lab.dir.exists() and processes(lab.dir) == {}
        lab.before.assert_restored()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        plexus("lab", "down", "--dir", str(lab.dir), check=False)
        shutil.rmtree(base, ignore_errors=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
