"""Docker on Plexus: a private dockerd in each of 2 lab hosts' namespaces, each with its
own ``plexus docker-plugin``; a network made through h1's Docker and bound through
h2's; a container on each; they ping each other; ``docker rm -f`` leaves nothing;
``docker network rm`` unbinds on h2 and deletes on h1."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator

import pytest

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

    # how long `docker run` waits on the plugin (a handful of runs on h1)
    waits, runs = [], []
    for i in range(5):
        before = len(docker.plugins[h1].calls())
        started = time.monotonic()
        cid = d1.run(f"m{i}", docker.image, "dnet")
        runs.append((time.monotonic() - started) * 1000)
        calls = docker.plugins[h1].calls()[before:]
        waits.append(sum(float(str(c["ms"])) for c in calls))
        join = [float(str(c["ms"])) for c in calls if c["call"] == "NetworkDriver.Join"]
        assert join, calls
        d1.docker("rm", "-f", cid)
    print(
        f"\ndocker run: plugin time p50 {statistics.median(waits):.1f} ms "
        f"(max {max(waits):.1f}); whole docker run -d p50 {statistics.median(runs):.0f} ms"
    )
    wait_until(lambda: world.endpoints(plexus_net) == [], "the measured endpoints gone", 15)

    # docker network rm: h2 only unbinds, h1 deletes what it made
    d2.docker("network", "rm", "dnet")
    assert world.api.get(f"/v1/networks/{plexus_net}").status_code == 200
    d1.docker("network", "rm", "dnet")
    assert world.api.get(f"/v1/networks/{plexus_net}").status_code == 404
