"""Policies and endpoint labels on the controller (README, "Policies"): the REST API
in-process (status codes, reasons, warnings, host tokens), the store across a restart,
and what each write publishes (which hosts' documents change, and what they carry)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import proto
from controller.config import ControllerSettings
from controller.daemon import build
from controller.runtime import Runtime
from controller.tokens import host_token

Api = tuple[Runtime, httpx.AsyncClient]

WEB_IN = {
    "id": "web-in",
    "network": "blue",
    "selector": ["app=web"],
    "rules": [
        {"priority": 10, "direction": "in", "action": "allow", "protocol": "tcp",
         "local_ports": ["80", "8000-8080"], "remote_selector": ["app=cli"]},
        {"priority": 5, "direction": "in", "action": "block", "remote_addresses": ["10.9.0.0/16"]},
    ],
}  # fmt: skip


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Api]:
    rt, server = build(ControllerSettings(store=str(tmp_path / "s.db"), api_auth="none"))
    for i in (1, 2, 3):
        rt.controller.host_reported(
            proto.HostStatus(host=f"h{i}", state="online", version="t", vtep=f"198.18.0.{i}")
        )
    transport = httpx.ASGITransport(app=server.config.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as client:
        yield rt, client
    rt.controller.store.close()


async def ok(resp: Any, status: int = 200) -> dict[str, Any]:
    r = await resp
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def topology(c: httpx.AsyncClient) -> None:
    """blue on h1 (web, with labels) and h2 (cli); red on h3 (x)."""
    await ok(c.post("/v1/networks", json={"id": "blue", "subnet": "10.1.0.0/24"}), 201)
    await ok(c.post("/v1/networks", json={"id": "red", "subnet": "10.2.0.0/24"}), 201)
    for comp, host in (("c1", "h1"), ("c2", "h2"), ("c3", "h3")):
        await ok(c.post("/v1/compartments", json={"id": comp, "host": host}), 201)
    for ep, net, comp, labels in (
        ("web", "blue", "c1", {"app": "web", "tier": "front"}),
        ("cli", "blue", "c2", {"app": "cli"}),
        ("x", "red", "c3", {}),
    ):
        body = {"id": ep, "network": net, "compartment": comp, "labels": labels}
        await ok(c.post("/v1/endpoints", json=body), 201)


def drain(rt: Runtime) -> list[proto.Wire | None]:
    """What the bus has queued since the last drain, decoded (lazy ones built now)."""
    out = []
    while not rt.bus._queue.empty():
        pub = rt.bus._queue.get_nowait()
        out.append(proto.decode(pub.payload) if pub.payload else None)
    return out


def desired(msgs: list[proto.Wire | None]) -> dict[str, proto.HostDesired]:
    return {m.host: m for m in msgs if isinstance(m, proto.HostDesired)}


async def test_labels_are_taken_shown_replaced_and_published(app: Api) -> None:
    rt, c = app
    await topology(c)
    web = await ok(c.get("/v1/endpoints/web"))
    assert web["labels"] == {"app": "web", "tier": "front"}
    assert rt.controller.state.endpoints["web"].labels == ("app=web", "tier=front")
    drain(rt)
    gen = (await ok(c.get("/v1/networks/blue")))["table_generation"] + 1
    r = await ok(c.put("/v1/endpoints/web/labels", json={"labels": {"app": "api"}}))
    assert r["labels"] == {"app": "api"} and r["generation"] == gen > web["generation"]
    msgs = drain(rt)
    change = next(m for m in msgs if isinstance(m, proto.NetworkChange))
    assert [(u.id, u.labels, u.gen) for u in change.upserts] == [("web", ("app=api",), gen)]
    docs = desired(msgs)
    assert list(docs) == ["h1"]  # the owning host's document, no other
    (local,) = docs["h1"].compartments[0].endpoints
    assert local.labels == ("app=api",)
    # the same labels again: nothing changes, nothing is published
    await ok(c.put("/v1/endpoints/web/labels", json={"labels": {"app": "api"}}))
    assert drain(rt) == []
    assert (await ok(c.put("/v1/endpoints/web/labels", json={"labels": {}})))["labels"] == {}


@pytest.mark.parametrize(
    ("labels", "needle"),
    [
        ({"bad key": "x"}, "label bad key='x'"),
        ({"app": "has space"}, "label app='has space'"),
        ({"-app": "x"}, "starting with a letter or digit"),
        ({"a" * 64: "x"}, "1-63"),
    ],
)
async def test_bad_labels_are_422_with_the_reason(
    app: Api, labels: dict[str, str], needle: str
) -> None:
    _, c = app
    await topology(c)
    for resp in (
        c.put("/v1/endpoints/web/labels", json={"labels": labels}),
        c.post("/v1/endpoints", json={"network": "blue", "compartment": "c3", "labels": labels}),
    ):
        r = await resp
        assert r.status_code == 422 and needle in r.json()["reason"], r.text
    assert (await c.put("/v1/endpoints/nope/labels", json={"labels": {}})).status_code == 404


async def test_a_host_token_labels_its_own_hosts_endpoints_only(tmp_path: Path) -> None:
    settings = ControllerSettings(store=str(tmp_path / "s.db"), api_auth="none")
    rt, server = build(settings)
    for h in ("h1", "h2"):
        rt.controller.host_reported(proto.HostStatus(host=h, state="online", version="t"))
    key = settings.token_path.read_text().strip()
    as_h1 = {"Authorization": f"Bearer {host_token(key, 'h1')}"}
    transport = httpx.ASGITransport(app=server.config.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as c:
        await ok(c.post("/v1/networks", json={"id": "blue", "subnet": "10.1.0.0/24"}), 201)
        for comp, host in (("c1", "h1"), ("c2", "h2")):
            await ok(c.post("/v1/compartments", json={"id": comp, "host": host}), 201)
            body = {"id": f"e-{comp}", "network": "blue", "compartment": comp}
            await ok(c.post("/v1/endpoints", json=body), 201)
        body = {"labels": {"app": "web"}}
        r = await c.put("/v1/endpoints/e-c1/labels", json=body, headers=as_h1)
        assert r.status_code == 200 and r.json()["labels"] == {"app": "web"}
        r = await c.put("/v1/endpoints/e-c2/labels", json=body, headers=as_h1)
        assert r.status_code == 403 and "host h2's" in r.json()["reason"]
        for method, path in (("POST", "/v1/policies"), ("GET", "/v1/policies")):
            r = await c.request(method, path, json=WEB_IN, headers=as_h1)
            assert r.status_code == 403 and "admin only" in r.json()["reason"]
    rt.controller.store.close()


async def test_policy_crud_generations_and_warnings(app: Api) -> None:
    _, c = app
    await topology(c)
    p = await ok(c.post("/v1/policies", json=WEB_IN), 201)
    assert (p["generation"], p["hosts"], p["warnings"], p["tier"]) == (1, ["h1", "h2"], [], 100)
    assert p["rules"][0]["local_ports"] == ["80", "8000-8080"]
    assert [x["id"] for x in await ok(c.get("/v1/policies"))] == ["web-in"]
    assert await ok(c.get("/v1/policies?network=red")) == []
    assert (await ok(c.get("/v1/policies/web-in")))["rules"] == p["rules"]
    # nothing selected, an unknown endpoint, one of another network, a remote selector
    # that matches nobody: warnings, not errors
    lonely = {
        "id": "lonely",
        "network": "blue",
        "selector": ["app=nothing"],
        "endpoints": ["ghost", "x"],
        "rules": [
            {"priority": 1, "direction": "out", "action": "allow", "remote_selector": ["a=b"]}
        ],
    }
    w = (await ok(c.post("/v1/policies", json=lonely), 201))["warnings"]
    assert w == [
        "selector app=nothing matches no endpoint of network blue",
        "endpoint ghost does not exist",
        "endpoint x is in network red, not blue",
        "rule out-1: remote_selector a=b matches no endpoint of network blue",
    ]
    # replace: generation + 1; the id is the path's
    changed = {**WEB_IN, "tier": 5}
    r = await ok(c.put("/v1/policies/web-in", json=changed))
    assert (r["generation"], r["tier"]) == (2, 5)
    r2 = await c.put("/v1/policies/web-in", json={**changed, "id": "other"})
    assert r2.status_code == 422 and "not the policy's" in r2.json()["reason"]
    assert (await c.put("/v1/policies/nope", json={**changed, "id": "nope"})).status_code == 404
    assert (await ok(c.delete("/v1/policies/web-in")))["deleted"] is True
    assert (await c.get("/v1/policies/web-in")).status_code == 404
    assert (await c.delete("/v1/policies/web-in")).status_code == 404
    # made again: its generation goes on from where it was, never back
    assert (await ok(c.post("/v1/policies", json=WEB_IN), 201))["generation"] == 3


def _rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"id": "p", "network": "blue", "rules": list(rules)}


R = {"priority": 1, "direction": "in", "action": "allow"}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({**WEB_IN, "network": "nope"}, 422, "network 'nope' does not exist"),
        (_rules(R, {**R, "action": "block"}), 422, "share priority 1 in direction in"),
        (_rules({**R, "remote_addresses": ["10.0.0.1/24"]}), 422, "host bits"),
        (_rules({**R, "remote_addresses": ["nonsense"]}), 422, "remote_addresses"),
        (_rules({**R, "protocol": "tcp", "local_ports": ["90-80"]}), 422, "port range '90-80'"),
        (_rules({**R, "protocol": "tcp", "local_ports": ["70000"]}), 422, "port range"),
        (_rules({**R, "local_ports": ["80"]}), 422, "ports need protocol tcp or udp"),
        (_rules({**R, "priority": 40000}), 422, "priority"),
        (_rules({**R, "direction": "both"}), 422, "direction"),
        (_rules({**R, "action": "deny"}), 422, "action"),
        ({**_rules(R), "selector": ["no equals"]}, 422, "selector"),
        ({**_rules(R), "colour": "red"}, 422, "colour"),
    ],
)
async def test_bad_policies_are_refused_with_the_reason(
    app: Api, body: dict[str, Any], status: int, needle: str
) -> None:
    _, c = app
    await topology(c)
    r = await c.post("/v1/policies", json=body)
    assert r.status_code == status and needle in r.json()["reason"], r.text


async def test_a_duplicate_policy_is_409(app: Api) -> None:
    _, c = app
    await topology(c)
    await ok(c.post("/v1/policies", json=WEB_IN), 201)
    r = await c.post("/v1/policies", json=WEB_IN)
    assert r.status_code == 409 and r.json()["reason"] == "policy 'web-in' already exists"


async def test_policy_writes_bump_exactly_the_hosts_that_hold_the_network(app: Api) -> None:
    rt, c = app
    await topology(c)
    hosts = rt.controller.state.hosts
    before = {h: hosts[h].desired_gen for h in hosts}
    drain(rt)
    await ok(c.post("/v1/policies", json=WEB_IN), 201)
    msgs = drain(rt)
    docs = desired(msgs)
    assert sorted(docs) == ["h1", "h2"]  # blue's hosts; h3 (red only) untouched
    assert all(not isinstance(m, proto.NetworkChange | proto.NetworkSpec) for m in msgs)
    for h in ("h1", "h2"):
        assert docs[h].generation == hosts[h].desired_gen == before[h] + 1
        (pol,) = docs[h].policies
        assert (pol.id, pol.generation, pol.selector) == ("web-in", 1, ("app=web",))
    assert hosts["h3"].desired_gen == before["h3"]
    # a red policy reaches h3 only; h3's document carries red's, not blue's
    red = {"id": "red-out", "network": "red", "rules": [{**R, "direction": "out"}]}
    await ok(c.post("/v1/policies", json=red), 201)
    docs = desired(drain(rt))
    assert list(docs) == ["h3"] and [p.id for p in docs["h3"].policies] == ["red-out"]
    # replace and delete: the same hosts again, once each
    await ok(c.put("/v1/policies/web-in", json={**WEB_IN, "tier": 7}))
    docs = desired(drain(rt))
    assert sorted(docs) == ["h1", "h2"] and docs["h1"].policies[0].generation == 2
    await ok(c.delete("/v1/policies/web-in"))
    docs = desired(drain(rt))
    assert sorted(docs) == ["h1", "h2"] and docs["h1"].policies == ()
    # a host that joins blue later gets blue's policies with its document
    await ok(c.post("/v1/policies", json=WEB_IN), 201)
    drain(rt)
    body = {"id": "x2", "network": "blue", "compartment": "c3"}
    await ok(c.post("/v1/endpoints", json=body), 201)
    docs = desired(drain(rt))
    assert list(docs) == ["h3"]
    assert sorted(p.id for p in docs["h3"].policies) == ["red-out", "web-in"]
    # the frame built from cached parts decodes to the document built from the state
    frame = proto.decode(rt.publication.desired_publish("h3").payload, proto.HostDesired)
    assert frame == proto.HostDesired.model_validate(rt.publication.desired("h3").model_dump())


async def test_deleting_a_network_deletes_its_policies_in_the_same_delta(app: Api) -> None:
    rt, c = app
    await topology(c)
    await ok(c.post("/v1/policies", json=WEB_IN), 201)
    out = rt.controller.delete_network("blue", force=True)
    assert set(out.change.policies) == {"web-in"} and out.change.policies["web-in"][1] is None
    assert "web-in" not in rt.controller.state.policies
    assert rt.controller.state.policies_by_network.get("blue") is None


async def test_policies_and_labels_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    rt, server = build(ControllerSettings(store=path, api_auth="none"))
    for h in ("h1", "h2", "h3"):
        rt.controller.host_reported(proto.HostStatus(host=h, state="online", version="t"))
    transport = httpx.ASGITransport(app=server.config.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as c:
        await topology(c)
        await ok(c.post("/v1/policies", json=WEB_IN), 201)
        await ok(c.put("/v1/policies/web-in", json={**WEB_IN, "tier": 3}))
        before_pol = await ok(c.get("/v1/policies/web-in"))
        before_ep = await ok(c.get("/v1/endpoints/web"))
        before_doc = rt.publication.desired("h1")
    rt.controller.store.close()
    rt2, server2 = build(ControllerSettings(store=path, api_auth="none"))
    transport = httpx.ASGITransport(app=server2.config.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as c:
        assert await ok(c.get("/v1/policies/web-in")) == before_pol
        assert (await ok(c.get("/v1/endpoints/web")))["labels"] == before_ep["labels"]
        assert rt2.publication.desired("h1") == before_doc
        assert rt2.controller.state.policies == rt.controller.state.policies
    rt2.controller.store.close()


async def test_trace_answers_per_side_and_overall(app: Api) -> None:
    _, c = app
    await topology(c)
    await ok(c.post("/v1/policies", json=WEB_IN), 201)
    t = await ok(c.get("/v1/policies/trace?src=cli&dst=web&protocol=tcp&port=8080"))
    assert t["verdict"] == "allow"
    assert t["source"] | {"steps": []} == {
        "endpoint": "cli",
        "direction": "out",
        "verdict": "default-allow",
        "admitted": True,
        "policy": None,
        "rule": None,
        "tier": None,
        "reason": "no policy selects cli in direction out",
        "steps": [],
    }
    dst = t["destination"]
    assert (dst["verdict"], dst["policy"], dst["rule"], dst["tier"]) == (
        "allow",
        "web-in",
        "in-10",
        100,
    )
    t = await ok(c.get("/v1/policies/trace?src=cli&dst=web&protocol=udp&port=53"))
    assert t["verdict"] == "deny"
    assert t["destination"]["verdict"] == "default-deny-of-tier"
    t = await ok(c.get("/v1/policies/trace?src=web&dst=cli&protocol=icmp"))
    assert t["verdict"] == "allow"  # web's out and cli's in: no policy selects them
    for query, status, needle in (
        ("src=nope&dst=web&protocol=tcp&port=1", 404, "endpoint 'nope' not found"),
        ("src=cli&dst=web&protocol=tcp", 422, "needs its destination port"),
        ("src=cli&dst=web&protocol=icmp&port=3", 422, "icmp has no ports"),
        ("src=cli&dst=web&protocol=sctp&port=3", 422, "protocol"),
        ("src=cli&dst=web&protocol=tcp&port=0", 422, "port"),
    ):
        r = await c.get(f"/v1/policies/trace?{query}")
        assert r.status_code == status and needle in r.json()["reason"], (query, r.text)
