"""What the controller leaves at the broker, as a plain MQTT subscriber sees it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

import proto
from tests.support import ControllerProcess, Mosquitto, SimAgent, mqtt_client, retained

pytestmark = pytest.mark.broker


def api(ctl: ControllerProcess) -> httpx.AsyncClient:
    """An async client: the simulated agents share the test's event loop."""
    return httpx.AsyncClient(base_url=ctl.url, timeout=10)


async def settle(url: str, filt: str, check: object, timeout: float = 5.0) -> dict[str, bytes]:
    """Poll the retained state until ``check(state)`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = await retained(url, filt)
        if check(state):  # type: ignore[operator]
            return state
        if asyncio.get_running_loop().time() > deadline:
            return state
        await asyncio.sleep(0.05)


async def build_blue(mosquitto: Mosquitto, c: httpx.AsyncClient) -> SimAgent:
    """Host h1 online, overlay ``blue`` with endpoints e0..e2 in compartments c1..c3."""
    agent = SimAgent("h1", mosquitto.url, "198.18.0.1")
    await agent.start()
    r = await c.post("/v1/networks", json={"id": "blue", "subnet": "10.1.0.0/24", "vni": 100})
    assert r.status_code == 201, r.text
    for i in range(3):
        r = await c.post("/v1/compartments", json={"id": f"c{i + 1}", "host": "h1"})
        assert r.status_code == 201, r.text
        r = await c.post(
            "/v1/endpoints?wait=true&timeout=5",
            json={"id": f"e{i}", "network": "blue", "compartment": f"c{i + 1}"},
        )
        assert r.status_code == 201, r.text
    return agent


async def test_create_publishes_retained_records_and_delete_clears_them(
    mosquitto: Mosquitto, controller_proc: ControllerProcess
) -> None:
    async with api(controller_proc) as c:
        agent = await build_blue(mosquitto, c)
        try:
            gen = (await c.get("/v1/networks/blue")).json()["table_generation"]

            def complete(s: dict[str, bytes]) -> bool:
                snap = s.get("plexus/v1/networks/blue/snapshot/0")
                if snap is None:
                    return False
                return proto.decode(snap, proto.NetworkSnapshot).generation == gen

            state = await settle(mosquitto.url, "plexus/v1/#", complete)
            spec = proto.decode(state["plexus/v1/networks/blue"], proto.NetworkSpec)
            assert (spec.vni, spec.subnet, spec.gateway) == (100, "10.1.0.0/24", "10.1.0.1")
            snap = proto.decode(state["plexus/v1/networks/blue/snapshot/0"], proto.NetworkSnapshot)
            assert snap.generation == gen
            assert sorted(r.id for r in snap.records) == ["e0", "e1", "e2"]
            assert {r.vtep for r in snap.records} == {"198.18.0.1"}
            desired = proto.decode(state["plexus/v1/hosts/h1/desired"], proto.HostDesired)
            assert sorted(ep.id for comp in desired.compartments for ep in comp.endpoints) == [
                "e0",
                "e1",
                "e2",
            ]
            assert "plexus/v1/networks/blue/changes" not in state  # changes are not retained

            # deleting the network (forced) clears its retained topics
            assert (await c.delete("/v1/networks/blue")).status_code == 409
            assert (await c.delete("/v1/networks/blue?force=true")).status_code == 200
            state = await settle(
                mosquitto.url, "plexus/v1/#", lambda s: "plexus/v1/networks/blue" not in s
            )
            assert not [t for t in state if t.startswith("plexus/v1/networks/")]
            desired = proto.decode(state["plexus/v1/hosts/h1/desired"], proto.HostDesired)
            assert desired.networks == () and all(not cp.endpoints for cp in desired.compartments)
        finally:
            await agent.stop()


async def test_changes_are_published_once_per_change(
    mosquitto: Mosquitto, controller_proc: ControllerProcess
) -> None:
    """A subscriber to the changes topic sees contiguous generations, one per change."""
    async with api(controller_proc) as c:
        agent = SimAgent("h1", mosquitto.url, "198.18.0.1")
        await agent.start()
        try:
            (await c.post("/v1/networks", json={"id": "red", "subnet": "10.3.0.0/24"}))
            got: list[proto.NetworkChange] = []
            async with mqtt_client(mosquitto.url) as sub:
                await sub.subscribe("plexus/v1/networks/red/changes", qos=1)
                for i in range(5):
                    (await c.post("/v1/compartments", json={"id": f"k{i}", "host": "h1"}))
                    r = await c.post(
                        "/v1/endpoints", json={"network": "red", "compartment": f"k{i}"}
                    )
                    assert r.status_code == 201
                (await c.delete(f"/v1/endpoints/{r.json()['id']}"))
                async with asyncio.timeout(5):
                    async for msg in sub.messages:
                        got.append(proto.decode(bytes(msg.payload), proto.NetworkChange))  # type: ignore[arg-type]
                        if len(got) == 6:
                            break
            gens = [ch.generation for ch in got]
            assert gens == list(range(gens[0], gens[0] + 6))
            assert [len(ch.upserts) for ch in got] == [1, 1, 1, 1, 1, 0]
            assert got[-1].deletes == (r.json()["id"],)
        finally:
            await agent.stop()


async def test_killed_controller_loses_nothing_and_restores_the_broker(
    mosquitto: Mosquitto, controller_proc: ControllerProcess, tmp_path: Path
) -> None:
    """SIGKILL after acknowledged calls: the restarted controller has every object,
    republishes what the broker lost and clears what the store no longer has."""
    async with api(controller_proc) as c:
        agent = await build_blue(mosquitto, c)
        try:
            before = {
                p: (await c.get(p)).json()
                for p in ("/v1/networks", "/v1/compartments", "/v1/endpoints")
            }
            controller_proc.kill()
            async with mqtt_client(mosquitto.url) as m:
                # the broker loses a record, and keeps one the store never had
                await m.publish("plexus/v1/networks/blue", b"", qos=1, retain=True)
                await m.publish(
                    "plexus/v1/networks/ghost",
                    proto.encode(
                        proto.NetworkSpec(id="ghost", mode="internal", subnet="10.7.0.0/24")
                    ),
                    qos=1,
                    retain=True,
                )
                await m.publish("plexus/v1/hosts/zz/desired", b"\x00garbage", qos=1, retain=True)
            controller_proc.start()
            after = {p: (await c.get(p)).json() for p in before}
            assert after == before
            state = await settle(
                mosquitto.url,
                "plexus/v1/#",
                lambda s: "plexus/v1/networks/blue" in s and "plexus/v1/networks/ghost" not in s,
            )
            assert "plexus/v1/networks/blue" in state
            assert "plexus/v1/networks/ghost" not in state
            assert "plexus/v1/hosts/zz/desired" not in state
            # the agent stayed connected: the controller learns its state again
            host = (await c.get("/v1/hosts/h1")).json()
            assert host["state"] == "online" and host["vtep"] == "198.18.0.1"
            r = await c.post(
                "/v1/endpoints?wait=true&timeout=5",
                json={"network": "blue", "compartment": "c1", "id": "after"},
            )
            assert r.status_code == 409  # c1 already in blue: the store remembered
            (await c.post("/v1/compartments", json={"id": "c9", "host": "h1"}))
            r = await c.post(
                "/v1/endpoints?wait=true&timeout=5", json={"network": "blue", "compartment": "c9"}
            )
            assert r.json()["convergence"]["converged"], r.json()["convergence"]
        finally:
            await agent.stop()


async def test_broker_restart_without_persistence_gets_everything_republished(
    mosquitto: Mosquitto, controller_proc: ControllerProcess
) -> None:
    async with api(controller_proc) as c:
        agent = await build_blue(mosquitto, c)
        await agent.stop()
        gen = (await c.get("/v1/networks/blue")).json()["table_generation"]

        def current(s: dict[str, bytes]) -> bool:
            snap = s.get("plexus/v1/networks/blue/snapshot/0")
            return snap is not None and proto.decode(snap, proto.NetworkSnapshot).generation == gen

        wanted = await settle(mosquitto.url, "plexus/v1/#", current)
        assert current(wanted)
        mosquitto.restart()
        state = await settle(
            mosquitto.url,
            "plexus/v1/#",
            lambda s: set(wanted) - {"plexus/v1/hosts/h1/status"} <= set(s),
            timeout=15,
        )
        metrics = (await c.get("/metrics")).text
        assert "plexus_broker_reconciles_total 2.0" in metrics
        for topic, payload in wanted.items():
            if topic.endswith("/status"):
                continue  # the agent's own record, not the controller's to republish
            # a snapshot laid out afresh (nothing retained to go on from) has a new name
            leave = {"layout"} if "/snapshot/" in topic else set()
            now, then = proto.decode(state[topic]), proto.decode(payload)
            assert now.model_dump(exclude=leave) == then.model_dump(exclude=leave), topic
        assert (await c.get("/healthz")).json()["broker_connected"] is True
