"""Broker relays with real Mosquittos made by the real commands (``plexus broker init``,
``add-relay``, ``init --relay-of``): a root broker with a real controller process, two
relays bridged to it, and real agent daemons (in-memory kernel) that know both relays.
What the controller publishes reaches agents on either relay, their status comes back
up (``wait=true`` converges), a host reads only its own desired document through a
relay, a relay SIGKILLed costs its agents well under 2 s, and a relay restarted holds
the retained records again."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiomqtt
import httpx
import pytest

from agents.agent import Agent
from agents.daemon import AgentDaemon
from agents.kernel.memory import MemoryKernel
from lab.records import record_pid
from proto import topics
from proto.failover import Brokers
from proto.mqtt import BrokerURL, cancel_and_wait, client, connector
from tests.support import (
    PLEXUS,
    ControllerProcess,
    crashing_agent,
    free_port,
    need,
    stop_process,
    wait_for,
    wait_port,
)

pytestmark = pytest.mark.broker

HOSTS = ("h1", "h2", "h3", "h4")


@dataclass
class Topology:
    root: Path
    ports: dict[str, int]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, broker: str, who: str | None = None) -> str:
        creds = ""
        if who is not None:
            ident = self.root / "identities" / who
            password = (ident / "password").read_text().strip()
            creds = f"{quote(who, safe='')}:{quote(password, safe='')}@"
        return f"mqtt://{creds}127.0.0.1:{self.ports[broker]}"

    def conf(self, broker: str) -> Path:
        return (self.root if broker == "root" else self.root.parent / broker) / "mosquitto.conf"

    def controller(self, workdir: Path) -> ControllerProcess:
        """A controller process on the root broker (SQLite in ``workdir``), started."""
        ctl = ControllerProcess(
            self.url("root"),
            workdir / "plexus.db",
            workdir / "controller.log",
            extra=["--broker-credentials", str(self.root / "identities" / "@controller")],
        )
        ctl.start()
        return ctl

    def start(self, broker: str) -> None:
        with open(self.logs / f"{broker}.log", "ab") as log:
            self.procs[broker] = subprocess.Popen(
                [need("mosquitto"), "-c", str(self.conf(broker))], stdout=log, stderr=log
            )
        record_pid(self.procs[broker].pid)  # for scripts/cleanup-records after a crash
        wait_port(self.ports[broker])


def plexus(*args: str) -> None:
    subprocess.run([PLEXUS, "broker", *args, "-o", "json"], check=True, capture_output=True)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    """Root broker + relays ra and rb, made by the CLI; every process stopped after."""
    ports = {b: free_port() for b in ("root", "ra", "rb")}
    root = tmp_path / "root"
    hosts = [a for h in HOSTS for a in ("--host", h)]
    plexus("init", "--dir", str(root), "--listen", f"127.0.0.1:{ports['root']}", *hosts)
    for r in ("ra", "rb"):
        plexus("add-relay", r[1:], "--dir", str(root))
        plexus(
            "init", "--dir", str(tmp_path / r), "--listen", f"127.0.0.1:{ports[r]}",
            "--relay-of", f"mqtt://127.0.0.1:{ports['root']}",
            "--relay-credentials", str(root / "identities" / f"@relay-{r[1:]}"),
            "--identities-from", str(root),
        )  # fmt: skip
    topo = Topology(root, ports, tmp_path)
    try:
        for b in ("root", "ra", "rb"):
            topo.start(b)
        yield topo
    finally:
        for p in topo.procs.values():
            stop_process(p, 5)


@contextlib.asynccontextmanager
async def connect(url: str, ident: str = "probe") -> AsyncIterator[aiomqtt.Client]:
    async with client(BrokerURL.parse(url), f"{ident}-{time.monotonic_ns()}", timeout=3) as c:
        yield c


async def readable(
    url: str, filters: list[str], until: str, within: float = 2.0
) -> dict[str, bytes] | None:
    """What a client receives on subscribing to ``filters`` and then to ``until`` (a
    retained topic it may read: the sentinel that everything before it was sent);
    None when the sentinel does not come (not retained there yet)."""
    got: dict[str, bytes] = {}
    async with connect(url) as c:
        for f in [*filters, until]:
            await c.subscribe(f, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                async for m in c.messages:
                    got[str(m.topic)] = bytes(m.payload)  # type: ignore[arg-type]
                    if str(m.topic) == until:
                        return got
    return None


def ring(topo: Topology, first: str, host: str) -> Brokers:
    """Both relays, with ``first`` the one the agent starts on (a seed that picks it)."""
    creds = topo.root / "identities" / host
    urls = [BrokerURL.parse(topo.url(r)).with_credentials(creds) for r in ("ra", "rb")]
    want = ("ra", "rb").index(first)
    seed = next(s for s in range(100) if random.Random(s).randrange(2) == want)
    return Brokers.of(((str(u), connector(u)) for u in urls), random.Random(seed))


@contextlib.asynccontextmanager
async def agents(
    topo: Topology, hosts: dict[str, str], return_interval: float = 600
) -> AsyncIterator[dict[str, AgentDaemon]]:
    daemons: dict[str, AgentDaemon] = {}
    tasks: list[asyncio.Task[None]] = []
    for i, (h, relay) in enumerate(hosts.items()):
        agent = Agent(h, MemoryKernel(), f"198.18.0.{i + 1}")
        d = AgentDaemon(agent, ring(topo, relay, h), 600, return_interval)
        daemons[h] = d
        tasks += [asyncio.create_task(d.session()), asyncio.create_task(d.reconciler())]
    try:
        yield daemons
    finally:
        for t in tasks:
            await cancel_and_wait(t)


def on(topo: Topology, d: AgentDaemon, relay: str) -> bool:
    return d._mqtt is not None and d.brokers.current.name == topo.url(relay)


async def test_agents_on_two_relays_converge_fail_over_and_a_relay_restarts_whole(
    topology: Topology, tmp_path: Path
) -> None:
    topo = topology
    ctl = topo.controller(tmp_path)
    placement = {"h1": "ra", "h2": "rb", "h3": "ra", "h4": "rb"}
    try:
        async with (
            agents(topo, placement) as daemons,
            httpx.AsyncClient(base_url=ctl.url, timeout=30) as api,
        ):
            await wait_for(
                lambda: all(on(topo, d, placement[h]) for h, d in daemons.items()),
                what="every agent on its relay",
            )

            async def known(h: str) -> bool:
                return (await api.get(f"/v1/hosts/{h}")).status_code == 200

            for h in HOSTS:  # the controller knows a host once its status came up
                await wait_for(lambda h=h: known(h), what=f"{h} known to the controller")
            body = {"id": "blue", "subnet": "10.1.0.0/24", "vni": 100}
            r = await api.post("/v1/networks", json=body)
            assert r.status_code == 201, r.text
            for i, h in enumerate(HOSTS):
                r = await api.post("/v1/compartments", json={"id": f"c{i}", "host": h})
                assert r.status_code == 201, r.text
                r = await api.post(
                    "/v1/endpoints?wait=true&timeout=10",
                    json={"id": f"e{i}", "network": "blue", "compartment": f"c{i}"},
                )
                assert r.status_code == 201 and r.json()["convergence"]["converged"], r.text
            for d in daemons.values():
                await wait_for(lambda d=d: len(d.agent.tables["blue"].records) == 4)

            # SIGKILL relay ra: its agents (h1, h3) are on rb within 2 s, and an endpoint
            # created meanwhile is applied on every host
            r = await api.post("/v1/compartments", json={"id": "c-failover", "host": "h1"})
            assert r.status_code == 201, r.text
            killed = topo.procs["ra"]
            t0 = time.monotonic()
            killed.send_signal(signal.SIGKILL)
            create = asyncio.create_task(
                api.post(
                    "/v1/endpoints?wait=true&timeout=15",
                    json={"id": "e-failover", "network": "blue", "compartment": "c-failover"},
                )
            )
            moved: dict[str, float] = {}

            def all_moved() -> bool:
                for h in ("h1", "h3"):
                    if h not in moved and on(topo, daemons[h], "rb"):
                        moved[h] = time.monotonic() - t0
                return len(moved) == 2

            await wait_for(all_moved, timeout=10, what="h1 and h3 on rb", interval=0.002)
            killed.wait()
            print(f"\nrelay SIGKILL -> agent on the other relay: {moved} s")
            assert max(moved.values()) <= 2.0, moved
            r = await create
            assert r.status_code == 201 and r.json()["convergence"]["converged"], r.text
            for d in daemons.values():
                await wait_for(
                    lambda d=d: "e-failover" in d.agent.tables["blue"].records,
                    what=f"e-failover on {d.agent.host}",
                )

            # the probes below use the controller's identity (its client id): the
            # controller goes first, so that neither takes the other's session over
            ctl.stop()
            # ra restarted (no persistence): the bridge fetches the retained records anew
            topo.start("ra")
            root_view = await readable(
                topo.url("root", "@controller"),
                [topics.network("blue") + "/#", topics.network("blue")],
                topics.host_desired("h1"),
            )
            assert root_view and topics.network_snapshot("blue", 0) in root_view

            async def relay_has_all() -> bool:
                got = await readable(
                    topo.url("ra", "h1"),
                    [topics.network("blue") + "/#", topics.network("blue")],
                    topics.host_desired("h1"),
                )
                return got == root_view

            await wait_for(relay_has_all, timeout=10, what="ra holds the root's records again")

            # the root restarted (no persistence): the agents, on the relays, see nothing;
            # the relays' bridges send their retained statuses up again on reconnecting
            stop_process(topo.procs["root"], 5)
            topo.start("root")

            async def statuses() -> bool:
                got = await readable(
                    topo.url("root", "@controller"),
                    [topics.host_status(h) for h in HOSTS[1:]],
                    topics.host_status(HOSTS[0]),
                )
                return got is not None and len(got) == len(HOSTS)

            await wait_for(statuses, timeout=15, what="every host's status on the new root")
    finally:
        ctl.stop()


async def test_agents_go_back_to_their_relay_once_it_answers_again(topology: Topology) -> None:
    """h1 and h3 start on ra (their home), h2 on rb. ra SIGKILLed: h1 and h3 move to rb
    and stay there while ra is down (probed every 0.2-0.6 s, refused); ra restarted: h1
    and h3 are back on it, h2 never moved."""
    topo = topology
    placement = {"h1": "ra", "h2": "rb", "h3": "ra"}
    async with agents(topo, placement, return_interval=0.4) as daemons:
        await wait_for(
            lambda: all(on(topo, d, placement[h]) for h, d in daemons.items()),
            what="every agent on its relay",
        )
        topo.procs["ra"].send_signal(signal.SIGKILL)
        topo.procs["ra"].wait()
        await wait_for(lambda: all(on(topo, d, "rb") for d in daemons.values()), what="all on rb")
        await asyncio.sleep(2)  # ra refuses: nobody leaves rb
        assert all(on(topo, d, "rb") for d in daemons.values())
        t0 = time.monotonic()
        topo.start("ra")
        await wait_for(
            lambda: all(on(topo, d, placement[h]) for h, d in daemons.items()),
            what="h1 and h3 back on ra",
        )
        print(f"\nrelay back -> its agents on it again: {time.monotonic() - t0:.2f} s")
        await asyncio.sleep(1)  # and there they stay (home is not left again)
        assert all(on(topo, d, placement[h]) for h, d in daemons.items())


async def test_through_a_relay_a_host_reads_only_its_own_desired_and_its_will_goes_up(
    topology: Topology,
) -> None:
    topo = topology
    async with connect(topo.url("root", "@controller")) as ctl:
        for h in ("h1", "h2"):
            t = topics.host_desired(h)
            await ctl.publish(t, t.encode(), qos=1, retain=True)
    # h1 on relay ra: h2's document is refused (by name and by wildcard); its own arrives
    got = await wait_for(
        lambda: readable(
            topo.url("ra", "h1"),
            [topics.host_desired("h2"), "plexus/v1/hosts/+/desired"],
            topics.host_desired("h1"),
        ),
        what="h1's desired document on ra",
    )
    assert got == {topics.host_desired("h1"): topics.host_desired("h1").encode()}
    # a host's Last Will (offline, retained) on a relay reaches the root
    proc = crashing_agent("h4", topo.url("rb", "h4"))
    try:
        async with connect(topo.url("root", "@controller")) as obs:
            await obs.subscribe(topics.host_status("h4"), qos=1)
            proc.kill()
            proc.wait()
            async with asyncio.timeout(10):
                async for m in obs.messages:
                    if b"offline" in bytes(m.payload):  # type: ignore[arg-type]
                        break
    finally:
        stop_process(proc, 1)


async def test_a_relay_bridges_to_a_tls_root_with_its_client_certificate(tmp_path: Path) -> None:
    """``--relay-of mqtts://…``: the bridge authenticates with the relay's certificate
    (the root's TLS listener takes the user name from it) and verifies the root's."""
    ports = {b: free_port() for b in ("root", "ra")}
    tls_port = free_port()
    root = tmp_path / "root"
    plexus(
        "init", "--dir", str(root), "--listen", f"127.0.0.1:{ports['root']}",
        "--tls-listen", f"127.0.0.1:{tls_port}", "--host", "h1",
    )  # fmt: skip
    plexus("add-relay", "a", "--dir", str(root))
    plexus(
        "init", "--dir", str(tmp_path / "ra"), "--listen", f"127.0.0.1:{ports['ra']}",
        "--relay-of", f"mqtts://127.0.0.1:{tls_port}",
        "--relay-credentials", str(root / "identities" / "@relay-a"),
        "--identities-from", str(root),
    )  # fmt: skip
    assert "bridge_certfile" in (tmp_path / "ra" / "mosquitto.conf").read_text()
    topo = Topology(root, ports, tmp_path)
    try:
        for b in ("root", "ra"):
            topo.start(b)
        async with connect(topo.url("root", "@controller")) as ctl:
            await ctl.subscribe(topics.host_status("h1"), qos=1)
            t = topics.host_desired("h1")
            await ctl.publish(t, b"over-tls", qos=1, retain=True)
            got = await wait_for(
                lambda: readable(topo.url("ra", "h1"), [], t), what="h1's document on ra"
            )
            assert got == {t: b"over-tls"}
            async with connect(topo.url("ra", "h1")) as h1:
                await h1.publish(topics.host_status("h1"), b"up-over-tls", qos=1, retain=True)
            async with asyncio.timeout(5):
                async for m in ctl.messages:
                    assert bytes(m.payload) == b"up-over-tls"  # type: ignore[arg-type]
                    break
    finally:
        for p in topo.procs.values():
            stop_process(p, 5)
