"""ACL policies in a lab of 3 hosts, end to end: real probes (TCP connect, UDP echo,
ICMP) between endpoints of 2 overlays and a nat network, checked against an evaluator
written here from the semantics (README, "Policies"), not from the agent's code; then
labels changing, the agent restarting under traffic, the table flushed, counters, the
deny log and ``/v1/policies/trace``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kernel.lab import Lab
from tests.kernel.test_overlay import hosts_online, post
from tests.support import InProcessController, in_process_controller, wait_for

pytestmark = pytest.mark.kernel
PROBE = str(Path(__file__).with_name("probe.py"))
TCP_PORTS, UDP_PORTS = (80, 5432, 9005), (53,)
#: what every ordered pair of a network is probed with
FLOWS = [("tcp", 80), ("tcp", 5432), ("tcp", 9005), ("udp", 53), ("icmp", 0)]

NETWORKS = [
    {"id": "ova", "subnet": "10.61.0.0/24", "vni": 6101},
    {"id": "ovb", "subnet": "10.62.0.0/24", "vni": 6102},
    {"id": "natc", "mode": "nat", "subnet": "10.63.0.0/24"},
]
#: endpoint → (network, host index, labels)
ENDPOINTS: dict[str, tuple[str, int, dict[str, str]]] = {
    "a1": ("ova", 0, {"app": "web"}),
    "a2": ("ova", 1, {"app": "db"}),
    "a3": ("ova", 2, {"app": "client"}),
    "a4": ("ova", 0, {"app": "client"}),
    "b1": ("ovb", 0, {"app": "api"}),
    "b2": ("ovb", 1, {"app": "client"}),
    "b3": ("ovb", 2, {}),
    "c1": ("natc", 0, {"app": "web"}),
    "c2": ("natc", 0, {"app": "client"}),
    "c3": ("natc", 0, {}),
}


def r(priority: int, direction: str, action: str, **kw: Any) -> dict[str, Any]:
    return {"priority": priority, "direction": direction, "action": action, **kw}


POLICIES = [
    # tier 10, every ova endpoint: clients never reach 5432; the rest passes to tier 20
    {"id": "ova-base", "network": "ova", "tier": 10, "rules": [
        r(100, "in", "block", protocol="tcp", local_ports=["5432"],
          remote_selector=["app=client"]),
        r(50, "in", "pass"),
        r(10, "out", "allow"),
    ]},
    {"id": "ova-web", "network": "ova", "tier": 20, "selector": ["app=web"], "rules": [
        r(10, "in", "allow", protocol="tcp", local_ports=["80"], remote_selector=["app=client"]),
        r(5, "in", "allow", protocol="icmp", remote_addresses=["10.61.0.0/24"]),
    ]},
    {"id": "ova-db", "network": "ova", "tier": 20, "selector": ["app=db"], "rules": [
        r(10, "in", "allow", protocol="tcp", local_ports=["5432", "9000-9010"],
          remote_selector=["app=web"]),
        r(10, "out", "block", protocol="udp", remote_ports=["53"]),
    ]},
    # ovb: the api takes tcp 80 from anyone and starts nothing but DNS... which it blocks
    {"id": "ovb-api", "network": "ovb", "selector": ["app=api"], "rules": [
        r(10, "in", "allow", protocol="tcp", local_ports=["80"]),
        r(20, "out", "block", protocol="udp", remote_ports=["53"]),
        r(10, "out", "allow", protocol="udp"),
    ]},
    # natc: stateful: a client may connect out, nothing may connect to it (logged)
    {"id": "nat-web", "network": "natc", "selector": ["app=web"], "rules": [
        r(10, "in", "allow", protocol="tcp", local_ports=["80"], remote_selector=["app=client"]),
    ]},
    {"id": "nat-client", "network": "natc", "selector": ["app=client"], "rules": [
        r(10, "out", "allow", protocol="tcp"),
        r(1, "in", "block", log=True),
    ]},
]  # fmt: skip


# -- the evaluator: the semantics, written from the README, not from agents/ ------------


@dataclass
class Ep:
    id: str
    network: str
    host: str
    ip: str
    labels: dict[str, str]


def _labels(items: list[str] | None) -> dict[str, str] | None:
    return None if items is None else dict(i.split("=", 1) for i in items)


def _selects(pol: dict[str, Any], ep: Ep) -> bool:
    sel, ids = _labels(pol.get("selector")), pol.get("endpoints") or []
    if sel is None and not ids:
        return True
    return ep.id in ids or (sel is not None and all(ep.labels.get(k) == v for k, v in sel.items()))


def _in_ports(port: int | None, ranges: list[str]) -> bool:
    if port is None:
        return False
    for rng in ranges:
        lo, _, hi = rng.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def _matches(rule: dict[str, Any], proto: str, remote: str, local_port: int | None,
             remote_port: int | None, peers: list[Ep]) -> bool:  # fmt: skip
    if rule.get("protocol", "any") not in ("any", proto):
        return False
    if rule.get("local_ports") and not _in_ports(local_port, rule["local_ports"]):
        return False
    if rule.get("remote_ports") and not _in_ports(remote_port, rule["remote_ports"]):
        return False
    sel, prefixes = _labels(rule.get("remote_selector")), rule.get("remote_addresses") or []
    if sel is None and not prefixes:
        return True
    if sel is not None and any(
        p.ip == remote and all(p.labels.get(k) == v for k, v in sel.items()) for p in peers
    ):
        return True
    addr = ipaddress.IPv4Address(remote)
    return any(addr in ipaddress.IPv4Network(c) for c in prefixes)


ORDER = {"block": 0, "allow": 1, "pass": 2}


def decide(
    ep: Ep,
    direction: str,
    proto: str,
    remote: str,
    local_port: int | None,
    remote_port: int | None,
    policies: list[dict[str, Any]],
    eps: list[Ep],
) -> str:
    """allow, drop, or open (no policy selects ``ep`` in ``direction``)."""
    mine = [p for p in policies if p["network"] == ep.network and _selects(p, ep)]
    tiers = sorted({p.get("tier", 100) for p in mine
                    if any(x["direction"] == direction for x in p["rules"])})  # fmt: skip
    if not tiers:
        return "open"
    peers = [e for e in eps if e.network == ep.network]
    for tier in tiers:
        hits = [x for p in mine if p.get("tier", 100) == tier for x in p["rules"]
                if x["direction"] == direction
                and _matches(x, proto, remote, local_port, remote_port, peers)]  # fmt: skip
        if not hits:
            return "drop"  # the tier selected it and nothing matched
        best = min(hits, key=lambda x: (-x["priority"], ORDER[x["action"]]))
        if best["action"] != "pass":
            return "allow" if best["action"] == "allow" else "drop"
    return "allow"  # every tier passed it


def expected(src: Ep, dst: Ep, proto: str, port: int, policies: list[dict[str, Any]],
             eps: list[Ep]) -> bool:  # fmt: skip
    dport = port if proto != "icmp" else None
    out = decide(src, "out", proto, dst.ip, None, dport, policies, eps)
    inn = decide(dst, "in", proto, src.ip, dport, None, policies, eps)
    return out != "drop" and inn != "drop"


# -- the lab -----------------------------------------------------------------------------


@pytest.fixture
def lab3(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path, hosts=3)
    lab.up()
    try:
        yield lab
        assert lab.diverged() == []
    finally:
        lab.close()


@pytest.fixture
async def ctl3(lab3: Lab, tmp_path: Path) -> AsyncIterator[InProcessController]:
    async with in_process_controller(lab3.broker.url, tmp_path / "plexus.db") as c:
        yield c


async def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, list(cmd), capture_output=True, text=True)


class World:
    def __init__(self, lab: Lab, ctl: InProcessController) -> None:
        self.lab, self.ctl = lab, ctl
        self.eps: dict[str, Ep] = {}

    def ns(self, ep: str) -> str:
        return self.lab.compartment_ns(self.eps[ep].host, ep)

    async def endpoint(self, name: str, network: str, host: str, labels: dict[str, str]) -> Ep:
        await post(self.ctl, "/v1/compartments", {"id": name, "host": host})
        view = await post(self.ctl, "/v1/endpoints",
                          {"id": name, "network": network, "compartment": name,
                           "labels": labels})  # fmt: skip
        self.eps[name] = Ep(name, network, host, view["ip"], labels)
        await asyncio.to_thread(self.serve, name)
        return self.eps[name]

    def serve(self, name: str) -> None:
        proc = subprocess.Popen(
            [*self.lab.nsenter(self.ns(name)), sys.executable, PROBE, "serve",
             ",".join(map(str, TCP_PORTS)), ",".join(map(str, UDP_PORTS))],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lab.servers.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    async def probe(self, ns: str, probes: list[tuple[str, str, int]]) -> list[bool]:
        done = await run(*self.lab.nsenter(ns), sys.executable, PROBE, "ask",
                         json.dumps(probes))  # fmt: skip
        assert done.returncode == 0, done.stderr
        result: list[bool] = json.loads(done.stdout)
        return result

    def matrix(self) -> list[tuple[str, str, str, int]]:
        return [
            (s, d, proto, port)
            for s, src in self.eps.items()
            for d, dst in self.eps.items()
            if s != d and src.network == dst.network
            for proto, port in FLOWS
        ]

    async def observe(self) -> dict[tuple[str, str, str, int], bool]:
        """Every flow of the matrix probed for real, all sources at once."""
        flows = self.matrix()
        by_src: dict[str, list[tuple[str, str, str, int]]] = {}
        for f in flows:
            by_src.setdefault(f[0], []).append(f)
        answers = await asyncio.gather(*(
            self.probe(self.ns(s), [(p, self.eps[d].ip, port) for _, d, p, port in fs])
            for s, fs in by_src.items()
        ))  # fmt: skip
        return {f: ok for fs, oks in zip(by_src.values(), answers, strict=True)
                for f, ok in zip(fs, oks, strict=True)}  # fmt: skip

    def expect(self, policies: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], bool]:
        eps = list(self.eps.values())
        return {
            (s, d, p, port): expected(self.eps[s], self.eps[d], p, port, policies, eps)
            for s, d, p, port in self.matrix()
        }


def differences(seen: dict[Any, bool], want: dict[Any, bool]) -> list[str]:
    return [f"{k}: probe {seen[k]}, policies say {want[k]}" for k in want if seen[k] != want[k]]


async def test_policies_decide_every_flow_of_the_matrix(ctl3: InProcessController,
                                                        lab3: Lab) -> None:  # fmt: skip
    lab, ctl = lab3, ctl3
    await hosts_online(ctl, lab)
    w = World(lab, ctl)
    for net in NETWORKS:
        await post(ctl, "/v1/networks", net)
    for name, (net, host, labels) in ENDPOINTS.items():
        await w.endpoint(name, net, lab.hosts[host], labels)
    before = await w.observe()
    assert all(before.values()), [k for k, ok in before.items() if not ok]  # all open
    for pol in POLICIES:
        await post(ctl, "/v1/policies", pol)
    want = w.expect(POLICIES)
    assert 0 < sum(want.values()) < len(want)  # the matrix has both kinds
    seen = await w.observe()
    assert differences(seen, want) == []

    # the controller's trace agrees with the probes on the whole matrix
    for (s, d, proto, port), ok in seen.items():
        q = {"src": s, "dst": d, "protocol": proto}
        if proto != "icmp":
            q["port"] = str(port)
        t = (await ctl.http.get("/v1/policies/trace", params=q)).json()
        assert (t["verdict"] == "allow") == ok, (s, d, proto, port, t)

    # stateful: c2 connects out to c1:80 (allowed both ways), c1 may not connect to c2
    assert seen[("c2", "c1", "tcp", 80)] and not seen[("c1", "c2", "tcp", 80)]

    # a new endpoint with a matching label is covered on every host at once; without the
    # label it is not
    a5 = await w.endpoint("a5", "ova", lab.hosts[2], {"app": "client"})
    assert await w.probe(w.ns("a5"), [("tcp", w.eps["a1"].ip, 80),
                                      ("tcp", w.eps["a2"].ip, 5432)]) == [True, False]  # fmt: skip
    r = await ctl.http.put("/v1/endpoints/a5/labels?wait=true&timeout=10", json={"labels": {}})
    assert r.status_code == 200, r.text
    a5.labels = {}
    assert await w.probe(w.ns("a5"), [("tcp", w.eps["a1"].ip, 80)]) == [False]
    assert differences(await w.observe(), w.expect(POLICIES)) == []

    # counters and the deny log: c1 → c2 was blocked by nat-client's logged rule
    h1 = lab.hosts[0]
    table = await run(*lab.nsenter(lab.hostns[h1]), "nft", "-j", "list", "table", "inet",
                      "plexus")  # fmt: skip
    counted = {
        item["rule"]["comment"].split(" ")[1]: e["counter"]["packets"]
        for item in json.loads(table.stdout)["nftables"]
        if "rule" in item
        for e in item["rule"]["expr"]
        if isinstance(e, dict) and isinstance(e.get("counter"), dict)
    }
    assert counted.get("acl:ova-web:in-10", 0) > 0 and counted.get("acl:nat-client:in-1", 0) > 0
    log = lab.agent_log(h1).read_text()
    assert '"acl_logged"' in log and '"policy": "nat-client"' in log, log[-2000:]

    # the agent restarted under traffic: no allowed packet lost, no blocked one let in
    allowed = await asyncio.to_thread(
        subprocess.Popen,
        [*lab.nsenter(w.ns("a4")), "ping", "-q", "-c", "400", "-i", "0.01", "-W", "1",
         w.eps["a1"].ip], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lab.servers.append(allowed)
    leaked: list[bool] = []

    async def blocked_probes() -> None:
        end = time.monotonic() + 4
        while time.monotonic() < end:
            leaked.extend(await w.probe(w.ns("a4"), [("tcp", w.eps["a2"].ip, 5432)]))

    probing = asyncio.create_task(blocked_probes())
    await asyncio.sleep(0.5)
    await asyncio.to_thread(lab.stop_agent, h1)
    await asyncio.to_thread(lab.start_agent, h1)
    await probing
    out, _ = await asyncio.to_thread(allowed.communicate, timeout=60)
    assert "400 packets transmitted, 400 received" in out, out
    assert leaked and not any(leaked)

    # the whole ruleset flushed: the table is back within a pass, a foreign one kept
    await run(*lab.nsenter(lab.hostns[h1]), "nft", "flush", "ruleset")
    await run(*lab.nsenter(lab.hostns[h1]), "nft", "add", "table", "inet", "foreign")

    async def restored() -> bool:
        got = await w.probe(w.ns("c1"), [("tcp", w.eps["c2"].ip, 80)])
        return got == [False]

    await wait_for(restored, timeout=30, what="the ACL restored on h1")
    tables = await run(*lab.nsenter(lab.hostns[h1]), "nft", "list", "tables")
    assert "inet foreign" in tables.stdout and "inet plexus" in tables.stdout
    assert differences(await w.observe(), w.expect(POLICIES)) == []
