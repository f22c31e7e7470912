"""Real containers on Plexus networks: podman (CNI backend) and containerd (``ctr run
--cni``) call ``plexus-cni`` as ``plexus cni install`` set it up, in a lab of 2 hosts
whose agents are real processes, with each host's host-scoped token. Containers on two
hosts ping each other over an overlay, see the Plexus MAC/IP and the network's DNS; a
published port of a nat network answers another host; removing a container leaves
nothing of it; a container killed without DEL is collected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_cni_plugin import cni
from tests.kernel.lab import Lab
from tests.runtimes.cni import Cni
from tests.runtimes.common import Image, wait_until
from tests.runtimes.harness import Containerd, Podman
from tests.support import PLEXUS, ControllerProcess

pytestmark = pytest.mark.runtimes

STATIC_MAC = "02:00:00:00:88:77"
DNS = {"nameservers": ["10.88.0.53"], "search": ["pod.example"], "options": ["ndots:2"]}


class World:
    """The lab, its controller process, and ``plexus cni install`` per host and network
    into the runtimes' CNI directories."""

    def __init__(self, lab: Lab, ctl: ControllerProcess, cni: Cni, workdir: Path) -> None:
        self.lab, self.cni, self.workdir = lab, cni, workdir
        self.api = httpx.Client(base_url=ctl.url, timeout=30)
        self.url = ctl.url
        self.h1, self.h2 = lab.hosts
        for h in lab.hosts:
            wait_until(lambda h=h: self.host(h).get("state") == "online", f"{h} online", 60)
        self.tokens: dict[str, Path] = {}
        for h in lab.hosts:
            r = self.api.get(f"/v1/hosts/{h}/token")
            assert r.status_code == 200, r.text
            self.tokens[h] = workdir / f"{h}.token"
            self.tokens[h].write_text(r.json()["token"])
            self.tokens[h].chmod(0o600)

    def host(self, h: str) -> dict[str, Any]:
        data: dict[str, Any] = self.api.get(f"/v1/hosts/{h}").json()
        return data

    def network(self, body: dict[str, Any]) -> None:
        r = self.api.post("/v1/networks", json=body)
        assert r.status_code == 201, r.text

    def install(self, network: str, host: str) -> str:
        """The CNI network (a conflist) attaching ``host``'s containers to ``network``."""
        name = f"{network}-{host}"
        argv = [
            PLEXUS, "cni", "install", "--network", network, "--name", name, "--host", host,
            "--controller", self.url, "--token-file", str(self.tokens[host]),
            "--dir", str(self.cni.conf_dir), "--bin-dir", str(self.cni.bin_dir),
        ]  # fmt: skip
        r = subprocess.run(argv, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        self.cni.networks.append(name)
        return name

    def endpoints(self, network: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.api.get(
            "/v1/endpoints", params={"network": network}
        ).json()
        return data

    def endpoint_in(self, netns: str, network: str) -> dict[str, Any]:
        comps = {c["id"]: c for c in self.api.get("/v1/compartments").json()}
        (ep,) = [
            e
            for e in self.endpoints(network)
            if (comps[e["compartment"]].get("netns") or {}).get("path") == netns
        ]
        return ep

    def fdb_dsts(self, host: str) -> str:
        ns = self.lab.hostns[host]
        out = subprocess.run(
            ["nsenter", f"--net=/run/netns/{ns}", "bridge", "fdb", "show"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return "\n".join(ln for ln in out.splitlines() if " dst " in ln)

    def host_links(self, host: str) -> str:
        ns = self.lab.hostns[host]
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{ns}", "ip", "-o", "link"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def fetch(self, host: str, url: str) -> str:
        """An HTTP GET from ``host``'s own namespace (another lab machine)."""
        code = f"import urllib.request as u;print(u.urlopen({url!r}, timeout=3).read().decode())"
        r = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.lab.hostns[host]}", sys.executable, "-c", code],
            capture_output=True,
            text=True,
        )
        return r.stdout if r.returncode == 0 else ""

    def in_sync(self, host: str) -> bool:
        return bool(self.host(host)["in_sync"])


@pytest.fixture
def world(cni: Cni, tmp_path: Path) -> Iterator[World]:
    (tmp_path / "lab-dir").mkdir()
    lab = Lab(tmp_path / "lab-dir")
    lab.up()
    ctl = ControllerProcess(lab.broker.url, tmp_path / "plexus.db", tmp_path / "controller.log")
    try:
        ctl.start()
        yield World(lab, ctl, cni, tmp_path)
        assert lab.diverged() == []
    finally:
        ctl.stop()
        lab.close()


def inet(ip_output: str) -> tuple[str, str]:
    """(address/prefix, MAC) of ``ip -o addr`` / ``ip -o link`` lines of eth0."""
    addr = next(w for ln in ip_output.splitlines() if " inet " in ln for w in [ln.split()[3]])
    mac = next(
        ln.split("link/ether ")[1].split()[0] for ln in ip_output.splitlines() if "link/ether" in ln
    )
    return addr, mac


def test_podman_containers_on_a_plexus_overlay_and_a_published_port(
    world: World, podman: Podman, image: Image
) -> None:
    h1, h2 = world.h1, world.h2
    world.network({"id": "pod", "subnet": "10.88.0.0/24", "dns": DNS})
    world.network({"id": "web", "mode": "nat", "subnet": "10.89.0.0/24"})
    on1, on2 = world.install("pod", h1), world.install("pod", h2)
    web1 = world.install("web", h1)

    a = podman.run("a", image.name, network=on1)
    # a static address and MAC (podman hands them over as CNI_ARGS IP= and MAC=)
    b = podman.run(
        "b", image.name, network=on2, args=("--ip", "10.88.0.77", "--mac-address", STATIC_MAC)
    )
    ep_a, ep_b = world.endpoint_in(a.netns, "pod"), world.endpoint_in(b.netns, "pod")
    assert (ep_a["host"], ep_b["host"]) == (h1, h2)
    assert (ep_b["ip"], ep_b["mac"]) == ("10.88.0.77", STATIC_MAC)

    # the container sees the Plexus address and MAC, and the network's DNS
    shown = podman.exec("a", "ip", "-o", "addr", "show", "eth0") + podman.exec(
        "a", "ip", "-o", "link", "show", "eth0"
    )
    assert inet(shown) == (f"{ep_a['ip']}/24", ep_a["mac"])
    resolv = podman.exec("a", "cat", "/etc/resolv.conf")
    assert "nameserver 10.88.0.53" in resolv and "pod.example" in resolv, resolv
    # across hosts, over the overlay
    assert ", 3 received," in podman.exec(
        "a", "ping", "-c", "3", "-i", "0.2", "-W", "2", ep_b["ip"]
    )

    # CHECK (which no runtime here calls by itself) on b: the container as Plexus says;
    # then, with h2's agent stopped so that nothing repairs it, its address removed
    conflist = json.loads((world.cni.conf_dir / f"{on2}.conflist").read_text())
    conf = {**conflist["plugins"][0], "cniVersion": "1.0.0", "name": on2}
    launcher = str(world.cni.bin_dir / "plexus")
    rc, out, err = cni("CHECK", conf, launcher, container=b.id, netns=b.netns)
    assert (rc, out) == (0, None), (out, err)
    world.lab.stop_agent(h2)
    try:
        gone = ["nsenter", f"--net={b.netns}", "ip", "addr", "del", "10.88.0.77/24", "dev", "eth0"]
        subprocess.run(gone, check=True)
        rc, out, _ = cni("CHECK", conf, launcher, container=b.id, netns=b.netns)
        assert rc == 1 and out is not None and "lacks its address 10.88.0.77/24" in out["msg"]
    finally:
        world.lab.start_agent(h2)
    wait_until(
        lambda: cni("CHECK", conf, launcher, container=b.id, netns=b.netns)[0] == 0, "repair", 30
    )

    # a published port on a nat network answers from another lab host
    podman.run(
        "w",
        image.name,
        network=web1,
        ports=("8080:80",),
        command=("busybox", "httpd", "-f", "-p", "80", "-h", "/etc"),
    )
    hostname = podman.inspect("w")["Config"]["Hostname"]
    vtep1 = world.lab.vtep[h1]
    assert wait_until(
        lambda: world.fetch(h2, f"http://{vtep1}:8080/hostname").strip() == hostname,
        "the published port from h2",
        15,
    )

    # podman rm -f: the endpoint leaves the controller, h1, and h2's overlay
    assert ep_a["mac"] in world.fdb_dsts(h2) and ep_a["host_interface"] in world.host_links(h1)
    podman.rm("a")
    wait_until(
        lambda: ep_a["id"] not in {e["id"] for e in world.endpoints("pod")}, "a's endpoint gone", 15
    )
    wait_until(lambda: ep_a["mac"] not in world.fdb_dsts(h2), "a's FDB entry gone from h2", 15)
    wait_until(lambda: ep_a["host_interface"] not in world.host_links(h1), "a's veth gone", 15)
    comps = [c for c in world.api.get("/v1/compartments").json() if c["host"] == h1]
    assert all((c.get("netns") or {}).get("path") != a.netns for c in comps)


def test_ctr_containers_on_a_plexus_overlay_and_a_killed_one_collected(
    world: World, containerd: Containerd, image: Image
) -> None:
    h1, h2 = world.h1, world.h2
    world.network({"id": "pod", "subnet": "10.88.0.0/24"})
    on1, on2 = world.install("pod", h1), world.install("pod", h2)

    x = containerd.run("x", image.name, network=on1, detach=False)  # ctr run --rm --cni
    y = containerd.run("y", image.name, network=on2)  # ctr run -d --cni
    ep_x, ep_y = world.endpoint_in(x.netns, "pod"), world.endpoint_in(y.netns, "pod")
    shown = containerd.exec("x", "ip", "-o", "addr", "show", "eth0") + containerd.exec(
        "x", "ip", "-o", "link", "show", "eth0"
    )
    assert inet(shown) == (f"{ep_x['ip']}/24", ep_x["mac"])
    assert ", 3 received," in containerd.exec(
        "x", "ping", "-c", "3", "-i", "0.2", "-W", "2", ep_y["ip"]
    )

    # the end of `ctr run --rm` calls DEL (its namespace already gone): nothing left
    assert ep_x["mac"] in world.fdb_dsts(h2) and ep_y["mac"] in world.fdb_dsts(h1)
    containerd.stop("x")
    wait_until(lambda: ep_x["id"] not in {e["id"] for e in world.endpoints("pod")}, "x gone", 15)
    wait_until(lambda: ep_x["mac"] not in world.fdb_dsts(h2), "x's FDB entry gone from h2", 15)

    # a detached container killed: no DEL ever comes; its host reports the namespace
    # gone and the controller collects the endpoint; the host is in sync again
    containerd.kill("y")
    wait_until(
        lambda: ep_y["id"] not in {e["id"] for e in world.endpoints("pod")}, "y collected", 30
    )
    wait_until(lambda: world.in_sync(h2), "h2 in sync again", 30)
    wait_until(lambda: ep_y["mac"] not in world.fdb_dsts(h1), "y's FDB entry gone from h1", 15)
    containerd.delete("y")
    assert os.path.exists(f"/run/netns/{world.lab.hostns[h1]}")
    assert json.dumps(world.host(h1)["errors"]) == "[]"
