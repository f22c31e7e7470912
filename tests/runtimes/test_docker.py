"""Docker on Plexus: a private dockerd in each of 2 lab hosts' namespaces, each with its
own ``plexus docker-plugin``; a network made through h1's Docker and bound through
h2's; a container on each; they ping each other; ``docker rm -f`` leaves nothing;
``docker network rm`` unbinds on h2 and deletes on h1."""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import time
from collections.abc import Iterator

import pytest

from lab.records import record_pid
from tests.runtimes.common import CommandFailed, Image, wait_until
from tests.runtimes.docker import Dockerd, Plugin
from tests.runtimes.test_plexus import World, inet
from tests.runtimes.test_plexus import world as world  # the fixture

pytestmark = pytest.mark.runtimes

SUBNET = "10.77.0.0/24"
STATIC_IP, STATIC_MAC = "10.77.0.77", "02:00:00:00:77:77"


class Docker:
    def __init__(self, world: World, image: Image) -> None:
        self.world = world
        self.daemons: dict[str, Dockerd] = {}
        self.plugins: dict[str, Plugin] = {}
        self.image = image.name
        self.world = world
        self.source = image

    def start(self) -> None:
        world, image = self.world, self.source
        for h in world.lab.hosts:
            # h1's plugin makes networks: the admin's credential (none on loopback);
            # h2's binds and attaches with its host token only
            token = None if h == world.h1 else world.tokens[h]
            self.plugins[h] = Plugin(f"plexus-{h}", h, world.url, token)
            self.plugins[h].start()
            self.daemons[h] = Dockerd(world.lab.hostns[h])
            self.daemons[h].start()
            self.daemons[h].load(image)

    def close(self) -> None:
        with contextlib.ExitStack() as stack:  # each closed, whatever another raised
            for p in self.plugins.values():
                stack.callback(p.close)
            for d in self.daemons.values():
                stack.callback(d.close)


@pytest.fixture
def docker(world: World, image: Image) -> Iterator[Docker]:
    d = Docker(world, image)
    try:
        d.start()
        yield d
    finally:
        d.close()


def links(world: World, host: str) -> list[str]:
    return [
        ln.split(": ")[1].split("@")[0]
        for ln in world.host_links(host).splitlines()
        if ": px" in ln and (": pxe" in ln or ": pxi" in ln)
    ]


def test_docker_containers_on_a_plexus_overlay(world: World, docker: Docker) -> None:
    h1, h2 = world.h1, world.h2
    d1, d2 = docker.daemons[h1], docker.daemons[h2]
    p1, p2 = f"plexus-{h1}", f"plexus-{h2}"
    drivers = ("-d", p1, "--ipam-driver", p1, "--subnet", SUBNET)
    net_id = d1.docker("network", "create", *drivers, "-o", "mode=overlay", "dnet").strip()
    plexus_net = f"docker-{net_id[:12]}"
    assert world.api.get(f"/v1/networks/{plexus_net}").json()["subnet"] == SUBNET

    # h2's host token may not make a network: Docker's error carries Plexus's reason
    drivers2 = ("-d", p2, "--ipam-driver", p2, "--subnet", SUBNET)
    with pytest.raises(CommandFailed) as refused:
        d2.docker("network", "create", *drivers2, "-o", "mode=overlay", "bad")
    assert "admin only" in refused.value.stderr, refused.value.stderr
    with pytest.raises(CommandFailed) as unknown:
        d2.docker("network", "create", *drivers2, "-o", "colour=blue", "bad2")
    assert "unknown option(s) colour" in unknown.value.stderr, unknown.value.stderr
    d2.docker("network", "create", *drivers2, "-o", f"network={plexus_net}", "dnet")

    c1 = d1.run("c1", docker.image, "dnet")
    c2 = d2.run("c2", docker.image, "dnet", "--ip", STATIC_IP, "--mac-address", STATIC_MAC)
    eps = {e["host"]: e for e in world.endpoints(plexus_net)}
    assert set(eps) == {h1, h2}
    assert (eps[h2]["ip"], eps[h2]["mac"]) == (STATIC_IP, STATIC_MAC)
    shown1 = d1.docker("exec", c1, "ip", "-o", "addr", "show", "eth0")
    shown1 += d1.docker("exec", c1, "ip", "-o", "link", "show", "eth0")
    assert inet(shown1) == (f"{eps[h1]['ip']}/24", eps[h1]["mac"])
    shown2 = d2.docker("exec", c2, "ip", "-o", "addr", "show", "eth0")
    shown2 += d2.docker("exec", c2, "ip", "-o", "link", "show", "eth0")
    assert inet(shown2) == (f"{STATIC_IP}/24", STATIC_MAC)
    route = d1.docker("exec", c1, "ip", "route", "show", "default")
    assert f"via {eps[h1]['gateway']}" in route, route
    # across hosts, over the overlay, both ways
    assert ", 3 received," in d1.docker("exec", c1, "ping", "-c", "3", "-i", "0.2", "-W", "2",
                                        STATIC_IP)  # fmt: skip
    assert ", 3 received," in d2.docker("exec", c2, "ping", "-c", "3", "-i", "0.2", "-W", "2",
                                        eps[h1]["ip"])  # fmt: skip
    # nothing left in the host namespaces but the two pairs' host ends
    assert links(world, h1) == [eps[h1]["host_interface"]]
    assert links(world, h2) == [eps[h2]["host_interface"]]

    # docker rm -f: the endpoints, compartments and pairs go
    d1.docker("rm", "-f", c1)
    d2.docker("rm", "-f", c2)
    wait_until(lambda: world.endpoints(plexus_net) == [], "the endpoints gone", 15)
    comps = world.api.get("/v1/compartments").json()
    assert [c for c in comps if c["id"].startswith("dk-")] == []
    for h in (h1, h2):
        wait_until(lambda h=h: links(world, h) == [], f"no pxe/pxi link left on {h}", 15)

    # how long `docker run` waits on the plugin (a handful of runs on h1, beside a
    # container that keeps the network in use there: benchmarks.docker_plugin --churn
    # measures the run right after the host's last one left)
    resident = d1.run("resident", docker.image, "dnet")
    waits, runs = [], []
    per_call: dict[str, list[float]] = {}
    for i in range(5):
        before = len(docker.plugins[h1].calls())
        started = time.monotonic()
        cid = d1.run(f"m{i}", docker.image, "dnet")
        runs.append((time.monotonic() - started) * 1000)
        calls = docker.plugins[h1].calls()[before:]
        waits.append(sum(float(str(c["ms"])) for c in calls))
        for c in calls:
            per_call.setdefault(str(c["call"]).split(".")[-1], []).append(float(str(c["ms"])))
        join = [float(str(c["ms"])) for c in calls if c["call"] == "NetworkDriver.Join"]
        assert join, calls
        d1.docker("rm", "-f", cid)
    print(
        f"\ndocker run: plugin time p50 {statistics.median(waits):.1f} ms "
        f"(max {max(waits):.1f}); whole docker run -d p50 {statistics.median(runs):.0f} ms"
        + "".join(f"\n  {k}: p50 {statistics.median(v):.1f} ms" for k, v in per_call.items())
    )
    d1.docker("rm", "-f", resident)
    wait_until(lambda: world.endpoints(plexus_net) == [], "the measured endpoints gone", 15)

    # docker network rm: h2 only unbinds, h1 deletes what it made
    d2.docker("network", "rm", "dnet")
    assert world.api.get(f"/v1/networks/{plexus_net}").status_code == 200
    d1.docker("network", "rm", "dnet")
    assert world.api.get(f"/v1/networks/{plexus_net}").status_code == 404


NAT_SUBNET = "10.78.0.0/24"
HTTPD = ("busybox", "httpd", "-f", "-p", "80", "-h", "/etc")


def test_docker_published_port_and_a_plugin_crash(world: World, docker: Docker) -> None:
    """``docker run -p`` on a nat network answers another lab host; the plugin killed and
    started again while containers talk: not one ping of a 10 ms stream is lost, and
    Docker's later calls (``Leave``, ``RevokeExternalConnectivity``, ``DeleteEndpoint``)
    are answered by the new run from its state file."""
    h1, h2 = world.h1, world.h2
    d1, plugin = docker.daemons[h1], docker.plugins[h1]
    p1 = f"plexus-{h1}"
    drivers = ("-d", p1, "--ipam-driver", p1)
    net_id = d1.docker("network", "create", *drivers, "--subnet", NAT_SUBNET, "-o", "mode=nat",
                       "web").strip()  # fmt: skip
    d1.docker("network", "create", *drivers, "--subnet", SUBNET, "-o", "mode=overlay", "ov")
    web = f"docker-{net_id[:12]}"

    # -p without a host port, and -p on an overlay: Docker's error carries Plexus's reason
    with pytest.raises(CommandFailed) as no_port:
        d1.run("bad1", docker.image, "web", "-p", "80")
    assert "give -p HOST_PORT:80/tcp" in no_port.value.stderr, no_port.value.stderr
    with pytest.raises(CommandFailed) as not_nat:
        d1.run("bad2", docker.image, "ov", "-p", "8081:80")
    assert "ports are published on nat networks" in not_nat.value.stderr, not_nat.value.stderr
    d1.docker("rm", "-f", "bad1", "bad2")
    wait_until(lambda: world.endpoints(web) == [], "the refused runs' endpoints gone", 15)

    w = d1.run("httpd", docker.image, "web", "-p", "8080:80", "-p", "8053:53/udp", command=HTTPD)
    (ep,) = world.endpoints(web)
    assert sorted(ep["ports"]) == ["8053:53/udp", "8080:80/tcp"], ep
    hostname = d1.docker("exec", w, "cat", "/etc/hostname").strip()
    url = f"http://{world.lab.vtep[h1]}:8080/hostname"
    # answered when docker run returned: the plugin waited for h1's agent
    assert world.fetch(h2, url).strip() == hostname

    # a 10 ms ping stream between two containers while the plugin is killed and restarted
    c = d1.run("pinger", docker.image, "web")
    count = 400
    stream = subprocess.Popen(
        [d1.client, "-H", f"unix://{d1.socket}", "exec", c, "ping", "-q", "-c", str(count),
         "-i", "0.01", "-W", "1", ep["ip"]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    record_pid(stream.pid)
    time.sleep(1.0)
    plugin.kill()
    time.sleep(0.5)
    plugin.start()
    out, _ = stream.communicate(timeout=60)
    assert f"{count} packets transmitted, {count} received" in out, out

    # Docker's later calls reach the new run: the port closes, everything goes
    d1.docker("rm", "-f", w, c)
    wait_until(lambda: world.endpoints(web) == [], "the endpoints gone", 15)
    assert world.fetch(h2, url) == ""
    wait_until(lambda: links(world, h1) == [], "no pxe/pxi link left on h1", 15)
    after = {str(x["call"]) for x in plugin.calls()[-6:]}
    assert {"NetworkDriver.Leave", "NetworkDriver.DeleteEndpoint"} <= after, after
    d1.docker("network", "rm", "web", "ov")
    assert world.api.get(f"/v1/networks/{web}").status_code == 404
