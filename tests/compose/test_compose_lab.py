"""The compose lab run for real: ``scripts/compose-lab up`` from nothing (a private
dockerd, the local base image, the Plexus image built), the controller healthy, the
demo's ping matrix all reachable across the 3 agent containers; ``down --keep-images``
and a warm ``up``; then ``down`` leaves no container, daemon, bridge, namespace, mount,
process or state directory. Prints the cold and warm wall times."""

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
STATE = Path("/run/plexus-compose")
DATA = Path("/var/lib/plexus-compose")
DOCKER_HOST = f"unix://{STATE}/docker.sock"

pytestmark = pytest.mark.compose


def lab(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    r = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert r.returncode == 0, f"compose-lab {' '.join(args)}: exit {r.returncode}\n{r.stderr}"
    return r


def docker(*args: str) -> str:
    env = {**os.environ, "DOCKER_HOST": DOCKER_HOST}
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, env=env, check=True, timeout=60
    ).stdout


def daemon_pid() -> int | None:
    try:
        pid = int((STATE / "docker.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def ours() -> list[str]:
    """Processes of the lab's daemon: dockerd, its containerd, shims (by their paths)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(STATE) in cmd or str(DATA) in cmd:
                found.append(f"{proc.name} {cmd[:100]}")
    return found


def mounts() -> list[str]:
    points = [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [m for m in points if m.startswith((str(STATE), str(DATA)))]


def links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def netns() -> set[str]:
    return set(os.listdir("/run/netns")) if Path("/run/netns").is_dir() else set()


def check_up(out: str) -> set[str]:
    """The lab as ``up`` left it; the names of its bridges."""
    assert "matrix: 30/30 pairs reachable" in out, out
    rows = [ln for ln in out.splitlines() if re.match(r"h\d-c\d ", ln)]
    assert len(rows) == 6 and all("✗" not in r for r in rows), out
    # /healthz answers, from the controller's own container (nothing is published)
    cid = docker(
        "ps", "-q", "--filter", "label=com.docker.compose.project=plexus",
        "--filter", "label=com.docker.compose.service=controller",
    ).split()[0]  # fmt: skip
    health = docker(
        "exec", cid, "python", "-c",
        "import httpx; print(httpx.get('http://127.0.0.1:8470/healthz').text)",
    )  # fmt: skip
    assert json.loads(health)["broker_connected"] is True
    names = docker("ps", "--format", "{{.Names}}").split()
    assert {"plexus_h1_1", "plexus_h2_1", "plexus_h3_1", "plexus_controller_1"} <= set(names)
    nets = docker("network", "ls", "-q", "--filter", "label=com.docker.compose.project=plexus")
    bridges = {f"br-{n[:12]}" for n in nets.split()}
    assert bridges and bridges <= links()
    # the containers' way out goes nowhere: the bridge has no address on the machine
    for br in bridges:
        addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", br], text=True,
                               capture_output=True, check=True).stdout  # fmt: skip
        assert addrs.strip() == "", addrs
    return bridges


def test_compose_lab_cold_warm_and_down_leaves_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() != 0:
        pytest.fail("the compose lab needs root")
    assert daemon_pid() is None, "a compose lab is up on this machine: scripts/compose-lab down"
    lab("down")  # kept images of an earlier run would make the cold run warm
    links_before, netns_before = links(), netns()

    started = time.monotonic()
    out = lab("up").stdout
    cold = time.monotonic() - started
    bridges = check_up(out)
    lab("down", "--keep-images")
    assert daemon_pid() is None and DATA.is_dir() and not STATE.exists()
    assert not bridges & links()

    started = time.monotonic()
    out = lab("up").stdout
    warm = time.monotonic() - started
    bridges |= check_up(out)
    assert lab("demo").stdout.count("✓") == 30  # the matrix again, on the lab that is up
    lab("down")

    # nothing left: daemon, processes, mounts, state, bridges, veths, namespaces, cgroups
    assert daemon_pid() is None and ours() == [], ours()
    assert mounts() == [] and not STATE.exists() and not DATA.exists()
    assert not bridges & links()
    assert not {n for n in links() - links_before if n.startswith(("br-", "veth", "docker"))}
    assert not {n for n in netns() - netns_before if n.startswith("plexus:")}
    assert not list(Path("/sys/fs/cgroup").glob("*/plexus-compose"))
    assert not list((ROOT / "deploy" / "ca-certificates").glob("*.crt"))
    with capsys.disabled():
        print(f"\ncompose lab: cold up {cold:.1f} s, warm up {warm:.1f} s")
