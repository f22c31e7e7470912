"""Relays and each host's broker in ``/v1/status`` and ``plexus status``, with real
processes: a root Mosquitto and two relays made by the real commands, a real controller
process on the root, real agent daemons (in-memory kernel) that know both relays. A
relay's state is its bridge's own notification (``plexus/relays/NAME``); a host's
broker is what its agent's status names."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from proto import topics
from tests.integration import test_relays as relays
from tests.support import PLEXUS, ControllerProcess, free_port, stop_process, wait_for

pytestmark = pytest.mark.broker

#: the root broker and relays ra, rb, made by the CLI (tests/integration/test_relays.py)
topology = relays.topology


def relay(st: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((r for r in st["relays"] if r["name"] == name), None)


def broker(st: dict[str, Any], host: str) -> str | None:
    return next((h["broker"] for h in st["hosts"] if h["id"] == host), None)


async def plexus_status(controller: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``plexus status`` (a terminal 200 columns wide: every column shown)."""
    env = {"COLUMNS": "200", "PATH": str(Path(PLEXUS).parent)}
    cmd = [PLEXUS, "--controller", controller, "status", *args]
    return await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, env=env)


async def showing(
    api: httpx.AsyncClient,
    topo: relays.Topology,
    states: dict[str, str],
    brokers: dict[str, str],
    controller: str = "",
) -> dict[str, Any] | None:
    """``/v1/status`` (of ``controller``, else of ``api``'s) when it shows each relay of
    ``states`` in its state and each host of ``brokers`` on that relay; else None."""
    r = await api.get(f"{controller}/v1/status")
    assert r.status_code == 200, r.text
    st: dict[str, Any] = r.json()
    ok = all((r := relay(st, n)) is not None and r["state"] == s for n, s in states.items())
    ok = ok and all(broker(st, h) == topo.url(b) for h, b in brokers.items())
    return st if ok else None


async def test_relays_and_each_hosts_broker_in_status_through_a_kill_and_a_restart(
    topology: relays.Topology, tmp_path: Path
) -> None:
    topo = topology
    ctl = topo.controller(tmp_path)
    placement = {"h1": "ra", "h2": "rb"}
    try:
        async with (
            relays.agents(topo, placement),
            httpx.AsyncClient(base_url=ctl.url, timeout=30) as api,
        ):

            async def shows(states: dict[str, str], brokers: dict[str, str]) -> Any:
                return await showing(api, topo, states, brokers)

            # both relays up, each host on the relay it started on
            st = await wait_for(
                lambda: shows({"a": "connected", "b": "connected"}, placement),
                what="relays connected, hosts on their relays",
            )
            assert [r["name"] for r in st["relays"]] == ["a", "b"]
            up_since = relay(st, "a")["since"]  # type: ignore[index]
            h1 = (await api.get("/v1/hosts/h1")).json()
            assert h1["broker"] == topo.url("ra") and "@" not in h1["broker"]

            # what plexus status prints: a hosts table with the broker, a relays table
            cli = await plexus_status(ctl.url)
            print(f"\n{cli.stdout}")
            assert cli.returncode == 0, cli.stdout + cli.stderr
            assert "BROKER" in cli.stdout and topo.url("ra") in cli.stdout
            assert "relays" in cli.stdout and "connected" in cli.stdout
            js = await plexus_status(ctl.url, "-o", "json")
            assert json.loads(js.stdout)["relays"] == st["relays"]

            # relay ra SIGKILLed: the root publishes its bridge's Last Will ("0"), and
            # h1 moves to rb and says so
            t0 = time.monotonic()
            topo.procs["ra"].send_signal(signal.SIGKILL)
            topo.procs["ra"].wait()
            st = await wait_for(
                lambda: shows({"a": "disconnected", "b": "connected"}, {}),
                timeout=5,
                what="relay a disconnected in /v1/status",
            )
            down = time.monotonic() - t0
            assert relay(st, "a")["since"] >= up_since  # type: ignore[index]
            await wait_for(
                lambda: shows({}, {"h1": "rb", "h2": "rb"}),
                timeout=10,
                what="h1's broker is rb in /v1/status",
            )
            moved = time.monotonic() - t0
            print(
                f"relay SIGKILL -> disconnected in /v1/status {down:.3f} s, h1 on rb {moved:.3f} s"
            )

            # restarted: connected again (its bridge publishes "1", retained, on the root)
            topo.start("ra")
            st = await wait_for(
                lambda: shows({"a": "connected", "b": "connected"}, {}),
                timeout=10,
                what="relay a connected again",
            )
            assert relay(st, "a")["since"] > up_since  # type: ignore[index]

            # stopped cleanly (SIGTERM): disconnected too
            stop_process(topo.procs["ra"], 5)
            await wait_for(
                lambda: shows({"a": "disconnected"}, {}),
                timeout=5,
                what="relay a disconnected after a clean stop",
            )
    finally:
        ctl.stop()


async def test_every_replica_follows_relays_and_hosts_brokers(
    topology: relays.Topology, tmp_path: Path, pg_url: str
) -> None:
    """Two controllers on one PostgreSQL store, each with its own broker identity: the
    follower shows the relays and the hosts' brokers as the leader does."""
    topo = topology
    relays.plexus("add-controller", "c2", "--dir", str(topo.root))  # reloads the root
    token = ["--api-token-file", str(tmp_path / "api-token")]
    procs = [
        ControllerProcess(
            topo.url("root"),
            pg_url,
            tmp_path / f"{name}.log",
            extra=[*token, "--broker-credentials", str(topo.root / "identities" / ident)],
            env={"PLEXUS_REPLICA": name},
        )
        for name, ident in (("c1", "@controller"), ("c2", "@controller-c2"))
    ]
    try:
        for p in procs:
            p.start()
        auth = {"Authorization": f"Bearer {(tmp_path / 'api-token').read_text().strip()}"}
        async with (
            relays.agents(topo, {"h1": "ra"}),
            httpx.AsyncClient(timeout=30, headers=auth) as api,
        ):
            up = {"a": "connected", "b": "connected"}
            for p in procs:
                await wait_for(
                    lambda p=p: showing(api, topo, up, {"h1": "ra"}, p.url),
                    what=f"{p.url}: relays connected, h1 on ra",
                )
            topo.procs["ra"].send_signal(signal.SIGKILL)
            topo.procs["ra"].wait()
            for p in procs:
                st = await wait_for(
                    lambda p=p: showing(api, topo, {"a": "disconnected"}, {"h1": "rb"}, p.url),
                    timeout=10,
                    what=f"{p.url}: relay a disconnected, h1 on rb",
                )
            assert st["store"] == "postgresql" and st["replica"] == "c2"  # the last asked
    finally:
        for p in procs:
            p.stop()


async def test_on_the_root_a_relay_writes_only_its_own_state_and_controllers_only_read(
    tmp_path: Path,
) -> None:
    """The root's ACL, with the real Mosquitto: relay a sets and clears its own state;
    what it writes on b's is dropped, and so is what a controller writes there."""
    port = free_port()
    root = tmp_path / "root"
    relays.plexus("init", "--dir", str(root), "--listen", f"127.0.0.1:{port}")
    for r in ("a", "b"):
        relays.plexus("add-relay", r, "--dir", str(root))
    topo = relays.Topology(root, {"root": port}, tmp_path)
    try:
        topo.start("root")
        async with relays.connect(topo.url("root", "@relay-a"), "@relay-a") as a:
            await a.publish(topics.relay_state("a"), b"1", qos=1, retain=True)
            await a.publish(topics.relay_state("b"), b"1", qos=1, retain=True)
        # a retained record the controller reads after the relays' states: all sent
        until = topics.host_desired("h0")
        async with relays.connect(topo.url("root", "@controller"), "@controller") as c:
            await c.publish(topics.relay_state("b"), b"0", qos=1, retain=True)
            await c.publish(until, b"sentinel", qos=1, retain=True)

        async def held() -> dict[str, bytes] | None:
            got = await relays.readable(topo.url("root", "@controller"), [topics.ALL_RELAYS], until)
            return None if got is None else {t: p for t, p in got.items() if t != until}

        assert await held() == {topics.relay_state("a"): b"1"}
        async with relays.connect(topo.url("root", "@relay-a"), "@relay-a") as a:
            await a.publish(topics.relay_state("a"), b"", qos=1, retain=True)
        assert await held() == {}
    finally:
        for p in topo.procs.values():
            stop_process(p, 5)
