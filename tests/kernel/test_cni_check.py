"""CHECK's reading of a namespace on the real kernel (pyroute2, after ``setns``): a
namespace made as a runtime would, an interface as the agent would leave it, then each
thing CHECK looks at broken by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kernel.lab import require_root

pytestmark = pytest.mark.kernel

VIEW = {
    "interface": "eth0",
    "mac": "02:00:0a:09:00:05",
    "ip": "10.9.0.5",
    "prefixlen": 24,
    "gateway": "10.9.0.1",
    "default_route": True,
}
PROBE = """
import json, sys
from cni.check import enter, inspect
from cni.errors import CniError
try:
    enter(sys.argv[1])
    inspect(json.loads(sys.argv[2]), "eth0")
except CniError as e:
    print(json.dumps(e.to_json("1.1.0")))
"""


@pytest.fixture
def ns() -> Iterator[str]:
    require_root()
    name = f"pxcni-check-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            "link add eth0 type veth peer name peer0",
            "link set peer0 up",
            f"link set eth0 address {VIEW['mac']}",
            "addr add 10.9.0.5/24 dev eth0",
            "link set eth0 up",
            "route add default via 10.9.0.1",
        ):
            subprocess.run(["ip", "-n", name, *cmd.split()], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def probe(ns: str, view: dict[str, Any] = VIEW) -> dict[str, Any] | None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE, f"/run/netns/{ns}", json.dumps(view)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip() else None


def test_check_reads_the_interface_and_says_what_is_wrong(ns: str) -> None:
    assert probe(ns) is None
    doc = probe(ns, {**VIEW, "mac": "02:00:00:00:00:01"})
    assert doc is not None and doc["code"] == 110 and "MAC" in doc["msg"]
    subprocess.run(["ip", "-n", ns, "route", "del", "default"], check=True)
    doc = probe(ns)
    assert doc is not None and "no default route via 10.9.0.1" in doc["msg"]
    assert probe(ns, {**VIEW, "default_route": False}) is None
    subprocess.run(["ip", "-n", ns, "addr", "del", "10.9.0.5/24", "dev", "eth0"], check=True)
    doc = probe(ns, {**VIEW, "default_route": False})
    assert doc is not None and "lacks its address 10.9.0.5/24" in doc["msg"]
    subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "down"], check=True)
    doc = probe(ns, {**VIEW, "default_route": False})
    assert doc is not None and "eth0 is down" in doc["msg"]
    subprocess.run(["ip", "-n", ns, "link", "del", "eth0"], check=True)
    doc = probe(ns)
    assert doc is not None and doc["msg"] == "no interface eth0 in the namespace"


def test_check_of_a_namespace_gone_is_code_3() -> None:
    require_root()
    doc = probe("pxcni-never-made")
    assert doc is not None and doc["code"] == 3
