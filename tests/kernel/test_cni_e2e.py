"""``plexus-cni`` end to end on the real kernel: a 2-host lab (agent processes), a
controller process on a real socket, and namespaces made as a runtime makes them: a
named one (``/run/netns/NAME``) on h1, one held by a sleeping process
(``/proc/PID/ns/net``) on h2. ADD plumbs both into an overlay network and they ping
each other; CHECK passes, then names what a hand removed; DEL removes the endpoint; and
killing the process makes the controller collect its endpoint."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.kernel import netns
from tests.integration.test_cni_plugin import cni
from tests.kernel.lab import Lab
from tests.runtimes.common import wait_until
from tests.support import ControllerProcess

pytestmark = pytest.mark.kernel


@pytest.fixture
def controller(lab: Lab, tmp_path: Path) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(lab.broker.url, tmp_path / "cni.db", tmp_path / "controller.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[bytes]]:
    """A process in a namespace of its own, as a runtime's container (``unshare -n``)."""
    proc = subprocess.Popen(["unshare", "-n", "sleep", "600"])
    try:
        mine = os.stat("/proc/self/ns/net").st_ino
        wait_until(lambda: os.stat(f"/proc/{proc.pid}/ns/net").st_ino != mine, "unshare -n", 10)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def ping(ns_path: str, ip: str) -> bool:
    r = subprocess.run(
        ["nsenter", f"--net={ns_path}", "ping", "-c", "1", "-W", "1", "-q", ip],
        capture_output=True,
    )
    return r.returncode == 0


def test_cni_add_check_del_and_collection(
    lab: Lab, controller: ControllerProcess, holder: subprocess.Popen[bytes]
) -> None:
    h1, h2 = lab.hosts
    api = httpx.Client(base_url=controller.url, timeout=30)
    for h in (h1, h2):
        wait_until(
            lambda h=h: api.get(f"/v1/hosts/{h}").json().get("state") == "online", f"{h} online", 20
        )
    r = api.post("/v1/networks", json={"id": "cnie2e", "subnet": "10.77.0.0/24", "vni": 177})
    assert r.status_code == 201, r.text
    named = f"pxcni-{lab.tag}"
    netns.create(named)
    lab.extra_ns.append(named)
    a_ns, b_ns = f"/run/netns/{named}", f"/proc/{holder.pid}/ns/net"

    def conf(host: str, **extra: Any) -> dict[str, Any]:
        return {
            "cniVersion": "1.1.0",
            "name": "cnie2e",
            "type": "plexus",
            "network": "cnie2e",
            "controller": controller.url,
            "host": host,
            "timeout": 20,
            **extra,
        }

    rc, a, err = cni("ADD", conf(h1), container="ctr-a", netns=a_ns)
    assert rc == 0 and a is not None, (a, err)
    rc, b, err = cni("ADD", conf(h2), container="ctr-b", netns=b_ns)
    assert rc == 0 and b is not None, (b, err)
    ip_a, ip_b = (r["ips"][0]["address"].split("/")[0] for r in (a, b))
    assert a["interfaces"][1] == {
        "name": "eth0",
        "mac": a["interfaces"][1]["mac"],
        "sandbox": a_ns,
        "mtu": a["interfaces"][1]["mtu"],
    }
    assert wait_until(lambda: ping(a_ns, ip_b) and ping(b_ns, ip_a), "ping both ways", 15)

    # CHECK passes; with the agent stopped (no repair), a hand removes the address
    rc, doc, err = cni("CHECK", conf(h1, prevResult=a), container="ctr-a", netns=a_ns)
    assert (rc, doc) == (0, None), (doc, err)
    lab.stop_agent(h1)
    address = a["ips"][0]["address"]
    subprocess.run(["ip", "-n", named, "addr", "del", address, "dev", "eth0"], check=True)
    rc, doc, _ = cni("CHECK", conf(h1, prevResult=a), container="ctr-a", netns=a_ns)
    assert rc == 1 and doc is not None and doc["code"] == 110
    assert f"lacks its address {address}" in doc["msg"]
    lab.start_agent(h1)  # it repairs the drift: CHECK passes again
    wait_until(
        lambda: cni("CHECK", conf(h1, prevResult=a), container="ctr-a", netns=a_ns)[0] == 0,
        "the address repaired",
        20,
    )

    # DEL removes the endpoint and the compartment (idempotently)
    for _ in range(2):
        rc, doc, err = cni("DEL", conf(h1, prevResult=a), container="ctr-a", netns=a_ns)
        assert (rc, doc) == (0, None), (doc, err)
    eps = api.get("/v1/endpoints", params={"network": "cnie2e"}).json()
    assert [e["host"] for e in eps] == [h2]
    assert wait_until(
        lambda: (
            "eth0"
            not in subprocess.run(
                ["ip", "-n", named, "-j", "link"], capture_output=True, text=True
            ).stdout
        ),
        "eth0 gone from the named namespace",
        15,
    )

    # the holder dies without a DEL: the controller collects its endpoint
    holder.kill()
    holder.wait()
    ep_b = eps[0]["id"]
    wait_until(
        lambda: api.get(f"/v1/endpoints/{ep_b}").status_code == 404,
        "the dead container's endpoint collected",
        15,
    )
    assert api.get("/v1/compartments", params={"host": h2}).json() == []
