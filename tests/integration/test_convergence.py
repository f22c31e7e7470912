"""wait=true against simulated agents through a real Mosquitto."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support import Mosquitto, SimAgent, crashing_agent, in_process_controller

pytestmark = pytest.mark.broker


async def test_wait_returns_when_every_affected_host_applied(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Each host's own desired generation and every peer's table generation count."""
    async with in_process_controller(mosquitto.url, tmp_path / "s.db") as ctl:
        agents = [SimAgent(f"h{i}", mosquitto.url, f"198.18.0.{i + 1}") for i in range(3)]
        for a in agents:
            await a.start()
        try:
            r = await ctl.http.post(
                "/v1/networks?wait=true", json={"id": "blue", "subnet": "10.1.0.0/24", "vni": 100}
            )
            assert r.status_code == 201, r.text
            for i, a in enumerate(agents):
                r = await ctl.http.post(
                    "/v1/compartments?wait=true&timeout=5", json={"id": f"c{i}", "host": a.host}
                )
                assert r.status_code == 201, r.text
                assert r.json()["convergence"]["converged"], r.json()
                r = await ctl.http.post(
                    "/v1/endpoints?wait=true&timeout=5",
                    json={"id": f"e{i}", "network": "blue", "compartment": f"c{i}"},
                )
                assert r.status_code == 201, r.text
                conv = r.json()["convergence"]
                assert conv["converged"], conv
                assert conv["hosts"] == sorted(a.host for a in agents[: i + 1])
            # every agent's table holds all three endpoints with their VTEPs
            for a in agents:
                table = a.tables["blue"]
                assert sorted(table) == ["e0", "e1", "e2"]
                assert table["e2"].vtep == "198.18.0.3"
            r = await ctl.http.get("/v1/status")
            assert r.json()["in_sync"] is True
            r = await ctl.http.delete("/v1/endpoints/e1?wait=true&timeout=5")
            assert r.json()["convergence"]["converged"]
            assert sorted(agents[0].tables["blue"]) == ["e0", "e2"]
        finally:
            for a in agents:
                await a.stop()


async def test_wait_times_out_naming_the_host_that_did_not_apply(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with in_process_controller(mosquitto.url, tmp_path / "s.db") as ctl:
        good = SimAgent("good", mosquitto.url, "198.18.0.1")
        stuck = SimAgent("stuck", mosquitto.url, "198.18.0.2", frozen=True)
        await good.start()
        await stuck.start()
        try:
            await ctl.http.post("/v1/networks", json={"id": "n", "subnet": "10.2.0.0/24"})
            for h in ("good", "stuck"):
                r = await ctl.http.post("/v1/compartments", json={"id": f"c-{h}", "host": h})
                assert r.status_code == 201, r.text
            r = await ctl.http.post(
                "/v1/endpoints?wait=true&timeout=5", json={"network": "n", "compartment": "c-good"}
            )
            assert r.json()["convergence"]["converged"], r.json()
            r = await ctl.http.post(
                "/v1/endpoints?wait=true&timeout=0.5",
                json={"network": "n", "compartment": "c-stuck"},
            )
            assert r.status_code == 201
            conv = r.json()["convergence"]
            assert conv["converged"] is False
            assert [p["host"] for p in conv["pending"]] == ["stuck"]
            assert any(w.startswith("desired@") for w in conv["pending"][0]["waiting_for"])
            assert conv["elapsed_ms"] >= 500
            status = (await ctl.http.get("/v1/status")).json()
            assert status["in_sync"] is False
            assert {h["id"]: h["in_sync"] for h in status["hosts"]} == {
                "good": True,
                "stuck": False,
            }
        finally:
            await good.stop()
            await stuck.stop()


async def test_offline_host_is_reported_not_waited_for(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The agent's Last Will marks it offline; wait=true then returns at once."""
    async with in_process_controller(mosquitto.url, tmp_path / "s.db") as ctl:
        proc = crashing_agent("gone", mosquitto.url)
        try:
            for _ in range(100):
                if (await ctl.http.get("/v1/hosts/gone")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            await ctl.http.post("/v1/compartments", json={"id": "c1", "host": "gone"})
        finally:
            proc.kill()  # no DISCONNECT: the broker publishes the Last Will
            proc.wait()
        for _ in range(100):
            if (await ctl.http.get("/v1/hosts/gone")).json()["state"] == "offline":
                break
            await asyncio.sleep(0.05)
        r = await ctl.http.post(
            "/v1/compartments?wait=true&timeout=5", json={"id": "c2", "host": "gone"}
        )
        conv = r.json()["convergence"]
        assert conv["converged"] is True
        assert conv["offline"] == ["gone"]
        assert conv["elapsed_ms"] < 1000
