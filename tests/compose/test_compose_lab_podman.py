"""The compose lab under podman-compose, for real: ``scripts/compose-lab up --engine
podman`` from nothing (podman's own storage and configuration, the local base image
loaded, the Plexus image built, the containers' networking in a private network
namespace), the demo's ping matrix all reachable across the 3 agent containers;
``down --keep-images`` and a warm ``up``; then ``down`` leaves no container, network,
namespace, mount, process, cgroup or state directory. The root namespace's firewall and
forwarding are the same after as before. Prints the cold and warm wall times."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compose-lab"
STATE = Path("/run/plexus-compose-podman")
DATA = Path("/var/lib/plexus-compose-podman")
NETAVARK_RUN = Path("/run/containers")
#: the processes a podman lab runs beside its containers (conmon and podman's cleanups
#: name its state; netavark's DNS server does not)
TOOLS = {"conmon", "podman", "podman-compose", "netavark", "aardvark-dns"}
NETWORK_TOOLS = {"netavark", "aardvark-dns"}

pytestmark = pytest.mark.compose


def lab(*args: str, records: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLEXUS_RECORDS": str(records)}
    r = subprocess.run(
        ["bash", str(SCRIPT), *args, "--engine", "podman"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert r.returncode == 0, f"compose-lab {' '.join(args)}: exit {r.returncode}\n{r.stderr}"
    return r


def netns_name() -> str:
    return (STATE / "netns").read_text().strip()


def podman(*args: str) -> str:
    """podman in the lab's network namespace, with the lab's configuration."""
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(STATE / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(STATE / "storage.conf"),
    }
    cmd = ["nsenter", f"--net=/run/netns/{netns_name()}", "podman", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env, check=True, timeout=60
    ).stdout


def root_network() -> tuple[str, str, str]:
    """The root namespace's iptables and nftables rules (counters and iptables-save's
    dated comments left out) and its forwarding."""

    def run(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    iptables = "\n".join(
        re.sub(r"\[\d+:\d+\]", "", ln)
        for ln in run("iptables-save").splitlines()
        if not ln.startswith("#")
    )
    nft = re.sub(r"counter packets \d+ bytes \d+", "counter", run("nft", "list", "ruleset"))
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    return iptables, nft, forward


def tools(which: set[str] = TOOLS) -> dict[int, str]:
    """Running (not zombie) processes of those programs."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[0] == "Z":
            continue
        names = {Path(c.decode(errors="replace")).name for c in cmd[:2] if c}
        if names & which:
            found[int(proc.name)] = b" ".join(cmd).decode(errors="replace")[:120]
    return found


def ours() -> list[str]:
    """Processes that name the lab's state or data (conmon, podman's cleanups)."""
    return [f"{p} {c}" for p, c in tools().items() if str(STATE) in c or str(DATA) in c]


def mounts() -> list[str]:
    points = [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()]
    ours = (str(STATE), str(DATA))
    return [m for m in points if m in ours or m.startswith(tuple(f"{d}/" for d in ours))]


def netns() -> set[str]:
    return set(os.listdir("/run/netns")) if Path("/run/netns").is_dir() else set()


def check_up(out: str) -> str:
    """The lab as ``up`` left it; the name of its network namespace."""
    assert "matrix: 30/30 pairs reachable" in out, out
    rows = [ln for ln in out.splitlines() if re.match(r"h\d-c\d ", ln)]
    assert len(rows) == 6 and all("✗" not in r for r in rows), out
    name = netns_name()
    assert name.startswith("plexus-pcompose-") and name in netns()
    # /healthz answers, from the controller's own container
    health = podman(
        "exec", "plexus_controller_1", "python", "-c",
        "import httpx; print(httpx.get('http://127.0.0.1:8470/healthz').text)",
    )  # fmt: skip
    assert json.loads(health)["broker_connected"] is True
    names = set(podman("ps", "--format", "{{.Names}}").split())
    assert {"plexus_h1_1", "plexus_h2_1", "plexus_h3_1", "plexus_controller_1"} <= names
    assert "plexus_underlay" in podman("network", "ls", "--format", "{{.Name}}").split()
    # the lab's namespace holds loopback, podman's bridge and the containers' veths:
    # nothing it forwards or NATs can leave it
    links = subprocess.run(
        ["ip", "-n", name, "-o", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    found = {ln.split(":")[1].strip().split("@")[0] for ln in links.splitlines()}
    assert all(re.fullmatch(r"lo|podman\d+|veth\d+", n) for n in found), found
    return name


def test_compose_lab_podman_cold_warm_and_down_leaves_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.fail("the compose lab needs root")
    assert not STATE.exists(), "a lab is up: scripts/compose-lab down --engine podman"
    records = Path(os.environ.get("PLEXUS_RECORDS") or tmp_path / "records")
    lab("down", records=records)  # kept images of an earlier run would make the cold run warm
    network_before, netns_before = root_network(), netns()
    dns_before = set(tools(NETWORK_TOOLS))  # another podman's, should one run
    had_netavark_run = NETAVARK_RUN.exists()

    started = time.monotonic()
    out = lab("up", records=records).stdout
    cold = time.monotonic() - started
    first = check_up(out)
    assert root_network() == network_before, "the root namespace's firewall or forwarding changed"
    # recorded for scripts/cleanup-records: the namespace, the state, the cgroup parent
    made = records.read_text().splitlines()
    assert f"netns {first}" in made
    assert {f"dir {STATE}", f"dir {DATA}", "cgroup /plexus-compose-podman"} <= set(made)
    lab("down", "--keep-images", records=records)
    assert not STATE.exists() and DATA.is_dir() and first not in netns()
    assert not (DATA / "networks" / "plexus_underlay.json").exists()  # images alone kept

    started = time.monotonic()
    out = lab("up", records=records).stdout
    warm = time.monotonic() - started
    second = check_up(out)
    assert lab("demo", records=records).stdout.count("✓") == 30  # again, on the lab that is up
    lab("down", records=records)

    # nothing left: processes, namespaces, mounts, state, netavark's run dir, cgroups
    deadline = time.monotonic() + 10  # conmon's last children go as they are reaped
    while (ours() or set(tools(NETWORK_TOOLS)) - dns_before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ours() == [], ours()
    assert set(tools(NETWORK_TOOLS)) - dns_before == set(), tools(NETWORK_TOOLS)
    assert not {first, second} & netns()
    assert not {n for n in netns() - netns_before if n.startswith(("netns-", "plexus-pcompose-"))}
    assert mounts() == [] and not STATE.exists() and not DATA.exists()
    assert NETAVARK_RUN.exists() == had_netavark_run
    assert not list(Path("/sys/fs/cgroup").glob("*/plexus-compose-podman"))
    assert not list((ROOT / "deploy" / "ca-certificates").glob("*.crt"))
    assert root_network() == network_before, "the root namespace's firewall or forwarding changed"
    with capsys.disabled():
        print(f"\ncompose lab (podman-compose): cold up {cold:.1f} s, warm up {warm:.1f} s")
