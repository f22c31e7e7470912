"""``POST /v1/batch`` through a real Mosquitto to simulated agents: one wait over the
whole batch, the hosts' tables exactly the store's (also when the batch's table change
is split in several), and a refusal that names each operation and commits nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller import publication
from tests.support import Mosquitto, SimAgent, in_process_controller

pytestmark = pytest.mark.broker


def ep(ident: str, comp: str, **kw: Any) -> dict[str, Any]:
    body = {"id": ident, "network": "blue", "compartment": comp, **kw}
    return {"op": "create", "kind": "endpoint", "body": body}


def comp(ident: str, host: str) -> dict[str, Any]:
    return {"op": "create", "kind": "compartment", "body": {"id": ident, "host": host}}


async def test_a_batch_is_one_change_waited_for_on_every_host(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publication, "CHANGE_RECORDS", 7)  # the second batch: 5 changes
    async with in_process_controller(mosquitto.url, tmp_path / "s.db") as ctl:
        agents = [SimAgent(f"h{i}", mosquitto.url, f"198.18.0.{i + 1}") for i in range(3)]
        for a in agents:
            await a.start()
        try:
            ops: list[dict[str, Any]] = [
                {"op": "create", "kind": "network", "body": {"id": "blue", "subnet": "10.1.0.0/22"}}
            ]
            for i in range(30):
                ops += [comp(f"c{i}", f"h{i % 3}"), ep(f"e{i}", f"c{i}")]
            r = await ctl.http.post("/v1/batch?wait=true&timeout=10", json={"ops": ops})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["convergence"]["converged"], body["convergence"]
            assert body["convergence"]["hosts"] == ["h0", "h1", "h2"]
            made = [x for x in body["results"] if x["kind"] == "endpoint"]
            assert [x["object"]["ip"] for x in made[:2]] == ["10.1.0.2", "10.1.0.3"]
            for a in agents:
                assert sorted(a.tables["blue"]) == sorted(f"e{i}" for i in range(30))
                assert a.desired is not None and len(a.desired.compartments) == 10

            # 10 deletes and 24 creates in a network that exists: its table change goes
            # in 5 parts (7 records each), each applied in turn by every host
            gen = ctl.rt.controller.state.networks["blue"].table_gen
            ops = [{"op": "delete", "kind": "endpoint", "id": f"e{i}"} for i in range(10)]
            for i in range(24):
                ops += [comp(f"n{i}", f"h{i % 3}"), ep(f"n{i}-ep", f"n{i}")]
            r = await ctl.http.post("/v1/batch?wait=true&timeout=10", json={"ops": ops})
            assert r.status_code == 200 and r.json()["convergence"]["converged"], r.text
            assert ctl.rt.controller.state.networks["blue"].table_gen == gen + 5
            want = {f"e{i}" for i in range(10, 30)} | {f"n{i}-ep" for i in range(24)}
            for a in agents:
                assert set(a.tables["blue"]) == want and a.gens["blue"] == gen + 5

            # refused: nothing committed, each refused operation named
            before = dict(ctl.rt.controller.state.endpoints)
            ops = [
                comp("r1", "h1"),
                ep("r1-ep", "r1", ip="10.1.0.2"),  # free again: e0 was deleted
                ep("r2-ep", "r1"),  # r1 already has an endpoint in blue
                ep("r3-ep", "ghost"),
                {"op": "delete", "kind": "network", "id": "blue"},  # still has endpoints
                {"op": "create", "kind": "endpoint", "id": "x"},  # no body
            ]
            r = await ctl.http.post("/v1/batch", json={"ops": ops})
            assert r.status_code == 422, r.text
            assert "ops.5" in r.json()["reason"]  # a malformed request: nothing run
            r = await ctl.http.post("/v1/batch", json={"ops": ops[:5]})
            assert r.status_code == 409, r.text
            body = r.json()
            assert body["error"] == "conflict" and body["reason"].startswith("ops[2]: ")
            assert [(i["index"], i["error"]) for i in body["items"]] == [
                (2, "conflict"),
                (3, "invalid"),
                (4, "conflict"),
            ]
            assert "nothing was committed" in body["reason"]
            assert ctl.rt.controller.state.endpoints == before
            assert "r1" not in ctl.rt.controller.state.compartments
        finally:
            for a in agents:
                await a.stop()
