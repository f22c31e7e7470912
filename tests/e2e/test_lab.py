"""End to end, as a user meets Plexus: the real ``plexus`` CLI drives a real lab of
3 hosts (namespaces, a real Mosquitto, the controller and 3 agent processes).

The tests of the shared lab run in file order: the demo first, then what builds on it,
and ``lab down`` last."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from agents.kernel import netns
from lab import procs
from proto import names
from tests.kernel.lab import require_root
from tests.support import PLEXUS

pytestmark = pytest.mark.kernel


def plexus(*args: str, env: dict[str, str] | None = None, check: bool = True) -> Any:
    proc = subprocess.run(
        [PLEXUS, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )
    if check:
        assert proc.returncode == 0, f"plexus {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc


def plexus_json(*args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(plexus(*args, "-o", "json", env=env).stdout)


def processes(lab_dir: Path) -> dict[int, str]:
    """Every live process of the lab: each names a file of the lab's directory on its
    command line (other sessions on the machine run brokers and labs of their own)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and str(lab_dir) in cmd:
            out[int(entry.name)] = cmd
    return out


def lab_namespaces(prefix: str) -> set[str]:
    """The namespaces of a lab whose host ids start with ``prefix``: its hosts'
    (``plab-HOST``) and their compartments' (never another lab's or a runtime's)."""
    mine = (f"plab-{prefix}", names.netns_prefix(prefix)[:-1])
    return {ns for ns in netns.listnetns() if ns.startswith(mine)}


@dataclass
class Before:
    lab_dir: Path
    prefix: str
    processes: dict[int, str]

    @classmethod
    def now(cls, lab_dir: Path, prefix: str) -> Before:
        assert lab_namespaces(prefix) == set()
        return cls(lab_dir, prefix, processes(lab_dir))

    def assert_restored(self) -> None:
        assert lab_namespaces(self.prefix) == set()
        new = {p: c for p, c in processes(self.lab_dir).items() if p not in self.processes}
        assert new == {}, new


@dataclass
class LabUnderTest:
    dir: Path
    spec: dict[str, Any]
    before: Before

    @property
    def hosts(self) -> list[str]:
        return list(self.spec["hosts"])

    @property
    def env(self) -> dict[str, str]:
        return {
            "PLEXUS_LAB_DIR": str(self.dir),
            "PLEXUS_CONTROLLER": f"http://127.0.0.1:{self.spec['controller_port']}",
        }

    def run(self, *args: str, check: bool = True) -> Any:
        return plexus(*args, env=self.env, check=check)

    def json(self, *args: str) -> Any:
        return plexus_json(*args, env=self.env)

    def ping(self, host: str, compartment: str, ip: str, count: int = 1) -> bool:
        cmd = ("lab", "exec", host, compartment, "--", "ping", "-n", "-c", str(count))
        return self.run(*cmd, "-W", "1", ip, check=False).returncode == 0


def bring_up(tmp: Path, hosts: int, *extra: str) -> LabUnderTest:
    require_root()
    directory = tmp / "lab"
    prefix = f"e{os.getpid() % 100000}x{time.monotonic_ns() % 1000}h"
    before = Before.now(directory, prefix)
    spec = plexus_json(
        "lab", "up", "--hosts", str(hosts), "--dir", str(directory), "--host-prefix", prefix,
        *extra,
    )  # fmt: skip
    return LabUnderTest(directory, spec, before)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabUnderTest]:
    lab = bring_up(tmp_path_factory.mktemp("e2e"), 3)
    try:
        yield lab
    finally:
        plexus("lab", "down", "--dir", str(lab.dir), check=False)


def test_demo_prints_an_all_reachable_ping_matrix(lab: LabUnderTest) -> None:
    data = lab.json("lab", "demo")
    eps = {e["endpoint"]: e for e in data["endpoints"]}
    assert len(eps) == 6 and {e["host"] for e in eps.values()} == set(lab.hosts)
    assert data["pairs"] == 30 and data["reachable"] == 30, data["probes"]
    cross = [p for p in data["probes"] if eps[p["source"]]["host"] != eps[p["target"]]["host"]]
    assert len(cross) == 24 and all(p["rtt_ms"] > 0 for p in cross)
    # the table form: a row per compartment, no unreachable cell
    table = lab.run("lab", "demo").stdout
    assert "30/30 pairs reachable" in table and "✗" not in table


def test_lab_status_reports_every_host_online_and_in_sync(lab: LabUnderTest) -> None:
    data = lab.json("lab", "status")
    assert all(s["running"] for s in data["services"])
    assert [(h["host"], h["state"], h["in_sync"], h["compartments"]) for h in data["hosts"]] == [
        (h, "online", True, 2) for h in lab.hosts
    ]


def test_exec_runs_in_the_compartment_and_passes_the_exit_code(lab: LabUnderTest) -> None:
    h1 = lab.hosts[0]
    addrs = lab.run("lab", "exec", h1, f"{h1}-c1", "--", "ip", "-4", "-o", "addr").stdout
    ep = lab.json("endpoint", "show", f"{h1}-c1-demo")
    assert f"eth0    inet {ep['ip']}/24" in addrs
    assert (
        lab.run("lab", "exec", h1, f"{h1}-c1", "--", "sh", "-c", "exit 7", check=False).returncode
        == 7
    )
    host_links = lab.run("lab", "exec", "--host-ns", h1, "--", "ip", "-o", "link").stdout
    assert "uplink" in host_links and names.bridge("demo") in host_links
    missing = lab.run("lab", "exec", h1, "nope", "--", "true", check=False)
    assert missing.returncode == 1 and "no compartment 'nope'" in missing.stderr


def test_same_subnet_on_another_vni_is_isolated(lab: LabUnderTest) -> None:
    h1, h2, h3 = lab.hosts
    demo = {e["id"]: e for e in lab.json("endpoint", "list", "--network", "demo")}
    # red reuses demo's subnet, and even one of demo's addresses (h3-c1's) on h2
    taken = demo[f"{h3}-c1-demo"]["ip"]
    lab.run("network", "create", "red", "--subnet", "10.100.0.0/24", "--vni", "200", "--wait")
    for host, ip in ((h1, "10.100.0.200"), (h2, taken)):
        lab.run("compartment", "create", f"{host}-red", "--host", host, "--wait")
        lab.run(
            "endpoint", "create", f"{host}-red0", "--network", "red",
            "--compartment", f"{host}-red", "--ip", ip, "--wait",
        )  # fmt: skip
    red2 = lab.json("endpoint", "show", f"{h2}-red0")
    assert lab.ping(h1, f"{h1}-red", taken)  # reaches red's holder of the address ...
    with IPRoute(netns=names.netns(h1, f"{h1}-red")) as ipr:
        macs = {n.get("lladdr") for n in ipr.get_neighbours(dst=taken)}
    assert macs == {red2["mac"]}  # ... not demo's
    # nothing crosses between the two networks, on another host or on the same one
    assert not lab.ping(h1, f"{h1}-red", demo[f"{h1}-c2-demo"]["ip"])
    assert not lab.ping(h1, f"{h1}-red", demo[f"{h2}-c1-demo"]["ip"])
    assert not lab.ping(h1, f"{h1}-c1", "10.100.0.200")
    assert not lab.ping(h3, f"{h3}-c2", "10.100.0.200")
    # both keep a working gateway on the host they share (each in its own router
    # namespace: the same address twice, never in one routing table)
    assert lab.ping(h1, f"{h1}-red", "10.100.0.1")
    assert lab.ping(h1, f"{h1}-c1", "10.100.0.1")
    assert lab.ping(h2, f"{h2}-red", "10.100.0.1")


def test_deleting_an_endpoint_unplugs_it_on_every_host(lab: LabUnderTest) -> None:
    h1, h2, h3 = lab.hosts
    gone = lab.json("endpoint", "show", f"{h3}-c2-demo")
    assert lab.ping(h1, f"{h1}-c1", gone["ip"])
    deleted = lab.json("endpoint", "delete", gone["id"], "--wait")
    assert deleted["convergence"]["converged"]
    assert set(deleted["convergence"]["hosts"]) == {h1, h2, h3}
    assert not lab.ping(h1, f"{h1}-c1", gone["ip"])
    assert not lab.ping(h3, f"{h3}-c1", gone["ip"])
    with netns.iproute(f"plab-{h3}") as ipr:
        assert not ipr.link_lookup(ifname=names.veth(gone["id"]))
    with netns.iproute(names.netns(h3, f"{h3}-c2")) as ipr:
        assert [ln.get("ifname") for ln in ipr.get_links()] == ["lo"]
    for host in (h1, h2):
        with netns.iproute(f"plab-{host}") as ipr:
            (vx,) = ipr.link_lookup(ifname=names.vxlan("demo"))
            # the VXLAN's own entries (with a remote VTEP), not what the bridge learned
            remote = {
                f.get("lladdr") for f in ipr.fdb("dump") if f["ifindex"] == vx and f.get("dst")
            }
            assert remote and gone["mac"] not in remote
            assert gone["ip"] not in {n.get("dst") for n in ipr.get_neighbours(ifindex=vx)}
    # the rest of the matrix still holds
    assert lab.ping(h1, f"{h1}-c1", lab.json("endpoint", "show", f"{h3}-c1-demo")["ip"])


def test_a_second_lab_up_is_refused(lab: LabUnderTest) -> None:
    again = lab.run("lab", "up", "--host-prefix", "zz", check=False)
    assert again.returncode == 1 and "already up" in again.stderr
    clash = plexus(
        "lab", "up", "--dir", str(lab.dir.parent / "other"), "--host-prefix",
        lab.hosts[0][:-1], check=False,
    )  # fmt: skip
    assert clash.returncode == 1 and f"plab-{lab.hosts[0]}" in clash.stderr
    assert not (lab.dir.parent / "other" / "lab.json").exists()


def test_down_leaves_nothing_behind(lab: LabUnderTest) -> None:
    assert lab.run("lab", "down").returncode == 0
    lab.before.assert_restored()
    assert not lab.dir.exists()
    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname=lab.spec["bridge"])
    again = lab.run("lab", "down")
    assert "nothing to do" in again.stdout


def test_down_after_kill_9_of_every_lab_process(tmp_path: Path) -> None:
    lab = bring_up(tmp_path, 2)
    try:
        assert lab.json("lab", "demo")["reachable"] == 4 * 3
        mine = {
            p: c
            for p, c in processes(lab.dir).items()
            if p not in lab.before.processes and str(lab.dir) in c
        }
        assert len(mine) >= 4  # broker, controller, 2 agents
        for pid in mine:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(procs.alive(pid) for pid in mine):  # SIGKILL takes effect asynchronously
            assert time.monotonic() < deadline, [p for p in mine if procs.alive(p)]
            time.sleep(0.01)
        status = lab.run("lab", "status", check=False)
        assert status.returncode == 4
        again = lab.run("lab", "demo", check=False)
        assert again.returncode == 1 and "not healthy" in again.stderr
    finally:
        down = lab.run("lab", "down")
    assert "processes stopped" in down.stdout
    lab.before.assert_restored()


def test_lab_refuses_without_root(tmp_path: Path) -> None:
    """``plexus lab up`` as an unprivileged user: one clear error, nothing made. The CLI
    runs in a forked child that dropped its effective uid (an exec as another user may
    not be able to read an interpreter that lives under /root)."""
    require_root()
    from typer.testing import CliRunner

    from cli.app import app

    # the same path as root, refused before it makes anything: every module the child
    # will need is imported now (the child may not be able to read them)
    warm = CliRunner().invoke(app, ["lab", "up", "--dir", str(tmp_path / "lab"), "--hosts", "0"])
    assert warm.exit_code == 1 and "--hosts must be between" in warm.stderr, warm.stderr
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        code = 99
        try:
            os.close(read)
            os.setegid(65534)
            os.seteuid(65534)
            result = CliRunner().invoke(app, ["lab", "up", "--dir", str(tmp_path / "lab")])
            said = result.stdout + result.stderr + repr(result.exception)
            os.write(write, json.dumps([result.exit_code, said]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        report = f.read()
    _, status = os.waitpid(child, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, report
    exit_code, output = json.loads(report)
    assert exit_code == 1 and "needs root" in output, output
    assert not (tmp_path / "lab").exists()
