"""The runtime harnesses themselves, with Debian's reference CNI plugins (bridge and
host-local on a bridge of the test's own): a podman and a ctr container on one bridge
reach each other; removing them leaves nothing; what each runtime passes to a plugin."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.records import record
from lab.spec import free_subnet, machine_lock
from lab.underlay import addresses_in_use
from tests.runtimes.cni import Cni
from tests.runtimes.common import Image, remove_link, sh, tag
from tests.runtimes.harness import Containerd, Podman

pytestmark = pytest.mark.runtimes

DNS = {"nameservers": ["192.0.2.53"], "search": ["plexus.test"]}


@dataclass
class Bridge:
    network: str
    name: str
    subnet: str
    gateway: str

    def ports(self) -> list[str]:
        return sorted(os.listdir(f"/sys/class/net/{self.name}/brif"))


@pytest.fixture
def bridge(cni: Cni) -> Iterator[Bridge]:
    """A network of the reference bridge plugin, through a spy, on a bridge made here
    with a free /24 of the labs' range as its gateway address (no masquerading)."""
    name = f"plxt{tag()}"[:15]
    record("link", name)
    try:
        with machine_lock():  # the /24 is taken once the bridge has its address
            subnet = free_subnet(addresses_in_use())
            gateway = subnet.replace(".0/24", ".1")
            sh(["ip", "link", "add", name, "type", "bridge"])
            sh(["ip", "addr", "add", f"{gateway}/24", "dev", name])
            sh(["ip", "link", "set", name, "up"])
        spy = cni.spy("bridge")
        caps = {"portMappings": True, "ips": True, "mac": True}
        cni.bridge_network(name, name, subnet, plugin=spy, dns=DNS, capabilities=caps)
        yield Bridge(name, name, subnet, gateway)
    finally:
        remove_link(name)


def machine_net() -> tuple[str, str]:
    """The machine's own forwarding switch and nftables ruleset (the root namespace's:
    the runtimes here run there)."""
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    return forwarding, ruleset


def address(ip_output: str) -> str:
    """The IPv4 address of ``ip -4 -o addr show eth0``."""
    return ip_output.split()[3].split("/")[0]


def ping(exec_: Callable[..., str], name: str, ip: str) -> bool:
    with contextlib.suppress(Exception):
        exec_(name, "ping", "-c", "1", "-W", "2", ip)
        return True
    return False


def test_podman_and_ctr_containers_share_a_bridge_and_leave_nothing(
    podman: Podman, containerd: Containerd, cni: Cni, bridge: Bridge, image: Image
) -> None:
    """Each gets an address by CNI ADD; they ping each other and talk HTTP; ``podman rm
    -f`` and the end of ``ctr run --rm --cni`` call DEL (with the ADD's result) and
    leave no namespace, no bridge port, no container; the machine's forwarding and
    firewall are as they were."""
    before = machine_net()
    t0 = time.monotonic()
    web = podman.run(
        "web",
        image.name,
        network=bridge.network,
        ports=("127.0.0.1::80",),
        command=("busybox", "httpd", "-f", "-p", "80", "-h", "/etc"),
    )
    t1 = time.monotonic()
    client = containerd.run("client", image.name, network=bridge.network, detach=False)
    t2 = time.monotonic()
    print(f"podman run: {t1 - t0:.2f} s, ctr run --cni: {t2 - t1:.2f} s")
    assert web.netns.startswith("/run/netns/netns-")
    assert client.netns == f"/proc/{client.pid}/ns/net"

    web_ip = address(podman.exec("web", "ip", "-4", "-o", "addr", "show", "eth0"))
    client_ip = address(containerd.exec("client", "ip", "-4", "-o", "addr", "show", "eth0"))
    assert len(bridge.ports()) == 2
    assert ping(podman.exec, "web", client_ip)
    assert ping(containerd.exec, "client", web_ip)
    hostname = containerd.exec("client", "wget", "-q", "-O", "-", f"http://{web_ip}/hostname")
    assert hostname.strip() == podman.inspect("web")["Config"]["Hostname"]
    # podman writes the result's DNS into the container's resolv.conf; ctr writes none
    resolv = podman.exec("web", "cat", "/etc/resolv.conf")
    assert "nameserver 192.0.2.53" in resolv and "search plexus.test" in resolv

    adds = cni.calls("ADD")
    assert [c["env"]["CNI_NETNS"] for c in adds] == [web.netns, client.netns]
    assert adds[0]["env"]["CNI_CONTAINERID"] == web.id
    assert adds[1]["env"]["CNI_CONTAINERID"] == f"{Containerd.NAMESPACE}-{client.name}"
    # podman calls the plugin in our mount namespace; ctr in its private one, where the
    # test's plugin directory is /opt/cni/bin
    ours = os.readlink("/proc/self/ns/mnt")
    assert adds[0]["mntns"] == ours != adds[1]["mntns"]
    assert adds[1]["env"]["CNI_PATH"].split(":")[0] == "/opt/cni/bin"

    podman.rm("web")
    assert not Path(web.netns).exists()
    assert containerd.stop("client") != 0  # its task was killed: ctr reports 137
    assert bridge.ports() == []
    assert containerd.ctr("containers", "ls", "-q").split() == []
    assert podman.podman("ps", "-aq").split() == []
    dels = cni.calls("DEL")
    assert [c["env"]["CNI_NETNS"] for c in dels] == [web.netns, ""]
    for add, del_ in zip(adds, dels, strict=True):
        assert del_["config"]["prevResult"] == json.loads(add["stdout"])
    assert {c["env"]["CNI_COMMAND"] for c in cni.calls()} <= {"VERSION", "ADD", "DEL"}
    for call in cni.calls():
        print(json.dumps({k: call[k] for k in ("env", "config")}, sort_keys=True))
    assert machine_net() == before


def test_a_killed_ctr_container_gets_no_del_and_its_namespace_dies(
    containerd: Containerd, cni: Cni, bridge: Bridge, image: Image
) -> None:
    """A detached ``ctr run --cni`` whose task is SIGKILLed: no CNI DEL is ever called;
    its namespace and the bridge port go with the process; delete removes the rest."""
    c = containerd.run("victim", image.name, network=bridge.network)
    inode = os.stat(c.netns).st_ino
    assert inode > 0 and bridge.ports() != []
    containerd.kill("victim")
    assert not Path(f"/proc/{c.pid}").exists()
    assert bridge.ports() == []
    containerd.delete("victim")
    assert containerd.ctr("containers", "ls", "-q").split() == []
    assert [
        c["env"]["CNI_COMMAND"] for c in cni.calls() if c["env"]["CNI_COMMAND"] != "VERSION"
    ] == ["ADD"]
