"""The REST API in-process (ASGI): status codes, reasons, views, OpenAPI.

The bus is built but not connected: committed changes queue for publication."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import proto
from controller.config import ControllerSettings
from controller.daemon import build
from controller.runtime import Runtime


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    rt, server = build(ControllerSettings(store=str(tmp_path / "s.db")))
    for i in (1, 2):
        rt.controller.host_reported(
            proto.HostStatus(host=f"h{i}", state="online", version="t", vtep=f"198.18.0.{i}")
        )
    transport = httpx.ASGITransport(app=server.config.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as client:
        yield rt, client
    rt.controller.store.close()


async def test_crud_round_trip(app: tuple[Runtime, httpx.AsyncClient]) -> None:
    _, c = app
    r = await c.post("/v1/networks", json={"id": "blue", "subnet": "10.1.0.0/24"})
    assert r.status_code == 201
    assert r.json() | {"convergence": None} == {
        "id": "blue",
        "mode": "overlay",
        "subnet": "10.1.0.0/24",
        "gateway": "10.1.0.1",
        "vni": 4096,
        "mtu": 1450,
        "uplink": None,
        "uplinks": {},
        "ip_range": None,
        "outbound_nat": False,
        "nat_exceptions": [],
        "generation": 1,
        "table_generation": 1,
        "endpoints": 0,
        "hosts": [],
        "pinned": [],
        "convergence": None,
    }
    assert (await c.post("/v1/compartments", json={"id": "c1", "host": "h1"})).status_code == 201
    r = await c.post(
        "/v1/endpoints", json={"id": "e1", "network": "blue", "compartment": "c1", "ip": "10.1.0.9"}
    )
    assert r.status_code == 201
    body = r.json()
    assert (body["ip"], body["prefixlen"], body["interface"], body["host"]) == (
        "10.1.0.9",
        24,
        "eth0",
        "h1",
    )
    assert [e["id"] for e in (await c.get("/v1/endpoints?network=blue")).json()] == ["e1"]
    assert (await c.get("/v1/endpoints?host=h2")).json() == []
    assert (await c.get("/v1/compartments/c1")).json()["endpoints"] == ["e1"]
    assert (await c.get("/v1/networks/blue")).json()["hosts"] == ["h1"]
    assert (await c.get("/v1/hosts/h1")).json()["compartments"] == 1
    assert (await c.delete("/v1/endpoints/e1")).json() == {
        "id": "e1",
        "deleted": True,
        "convergence": None,
    }
    assert (await c.get("/v1/endpoints/e1")).status_code == 404
    assert (await c.delete("/v1/compartments/c1")).status_code == 200
    assert (await c.delete("/v1/networks/blue")).status_code == 200
    assert (await c.get("/v1/networks")).json() == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/v1/networks", {"id": "n", "subnet": "10.0.0.0/33"}, 422, "subnet"),
        ("POST", "/v1/networks", {"id": "n", "subnet": "10.0.0.1/24"}, 422, "host bits"),
        ("POST", "/v1/networks", {"id": "n", "subnet": "10.0.0.0/24", "vni": 0}, 422, "vni"),
        ("POST", "/v1/networks", {"id": "n", "subnet": "10.0.0.0/24", "vni": 2**24}, 422, "vni"),
        ("POST", "/v1/networks", {"id": "N!", "subnet": "10.0.0.0/24"}, 422, "id"),
        ("POST", "/v1/networks", {"id": "n", "subnet": "10.0.0.0/24", "bogus": 1}, 422, "bogus"),
        ("POST", "/v1/networks", {"id": "n", "subnet": "10.0.0.0/24", "mode": "x"}, 422, "mode"),
        (
            "POST",
            "/v1/networks",
            {"id": "n", "subnet": "10.0.0.0/24", "gateway": "10.0.0.0"},
            422,
            "network or broadcast",
        ),
        (
            "POST",
            "/v1/networks",
            {"id": "n", "subnet": "10.0.0.0/24", "mode": "nat", "vni": 7},
            422,
            "no VNI",
        ),
        ("POST", "/v1/compartments", {"host": "nope"}, 422, "not known"),
        ("GET", "/v1/networks/nope", None, 404, "network 'nope' not found"),
        ("GET", "/v1/hosts/nope", None, 404, "host 'nope' not found"),
        ("DELETE", "/v1/compartments/nope", None, 404, "not found"),
        ("GET", "/v1/nothing", None, 404, "Not Found"),
        ("POST", "/v1/endpoints?wait=maybe", {"network": "a", "compartment": "b"}, 422, "wait"),
        ("POST", "/v1/endpoints?timeout=0", {"network": "a", "compartment": "b"}, 422, "timeout"),
    ],
)
async def test_errors_carry_a_reason(
    app: tuple[Runtime, httpx.AsyncClient],
    method: str,
    path: str,
    body: object,
    status: int,
    needle: str,
) -> None:
    _, c = app
    r = await c.request(method, path, json=body)
    assert r.status_code == status, r.text
    data = r.json()
    assert set(data) == {"error", "reason"}
    assert needle in data["reason"]


async def test_conflicts_are_409(app: tuple[Runtime, httpx.AsyncClient]) -> None:
    _, c = app
    await c.post("/v1/networks", json={"id": "a", "subnet": "10.0.0.0/30", "vni": 5})
    r = await c.post("/v1/networks", json={"id": "a", "subnet": "10.0.0.0/24"})
    assert (r.status_code, r.json()["error"]) == (409, "conflict")
    r = await c.post("/v1/networks", json={"id": "b", "subnet": "10.0.0.0/24", "vni": 5})
    assert r.status_code == 409 and "VNI 5" in r.json()["reason"]
    await c.post("/v1/compartments", json={"id": "c1", "host": "h1"})
    await c.post("/v1/compartments", json={"id": "c2", "host": "h1"})
    assert (
        await c.post("/v1/endpoints", json={"network": "a", "compartment": "c1"})
    ).status_code == 201
    r = await c.post("/v1/endpoints", json={"network": "a", "compartment": "c2"})
    assert r.status_code == 409 and "exhausted" in r.json()["reason"]
    r = await c.delete("/v1/networks/a")
    assert r.status_code == 409 and "force" in r.json()["reason"]
    assert (await c.delete("/v1/hosts/h1")).status_code == 409
    assert (await c.delete("/v1/hosts/h1?force=true")).status_code == 200
    assert (await c.get("/v1/compartments")).json() == []


async def test_changes_are_queued_for_publication(
    app: tuple[Runtime, httpx.AsyncClient],
) -> None:
    rt, c = app
    await c.post("/v1/networks", json={"id": "a", "subnet": "10.0.0.0/24"})
    queued = []
    while not rt.bus._queue.empty():
        queued.append(rt.bus._queue.get_nowait().topic)
    assert queued == [
        "plexus/v1/networks/a",
        "plexus/v1/networks/a/snapshot/0",
        "plexus/v1/networks/a/snapshot/index",
    ]


async def test_health_metrics_status_and_openapi(
    app: tuple[Runtime, httpx.AsyncClient],
) -> None:
    _, c = app
    assert (await c.get("/healthz")).json()["status"] == "ok"
    await c.get("/v1/networks")
    metrics = (await c.get("/metrics")).text
    assert (
        'plexus_api_request_seconds_count{method="GET",route="/v1/networks",status="200"}'
        in metrics
    )
    assert "plexus_hosts_online 2.0" in metrics
    status = (await c.get("/v1/status")).json()
    assert [h["id"] for h in status["hosts"]] == ["h1", "h2"]
    spec = (await c.get("/openapi.json")).json()
    assert {"/v1/networks", "/v1/endpoints/{ep_id}", "/v1/status"} <= set(spec["paths"])


async def test_published_ports_are_checked_per_host(app: tuple[Runtime, httpx.AsyncClient]) -> None:
    """Ports on nat networks only; a host port is one endpoint's on one host (any
    address clashes with a specific one); PUT replaces the list; [] closes them."""
    rt, c = app
    for net in ({"id": "n", "mode": "nat", "subnet": "10.5.0.0/24"},
                {"id": "o", "subnet": "10.6.0.0/24"}):  # fmt: skip
        assert (await c.post("/v1/networks", json=net)).status_code == 201
    for comp, host in (("a", "h1"), ("b", "h1"), ("x", "h2")):
        await c.post("/v1/compartments", json={"id": comp, "host": host})

    async def ep(ident: str, comp: str, net: str, ports: list[dict[str, object]]) -> httpx.Response:
        body = {"id": ident, "network": net, "compartment": comp, "ports": ports}
        return await c.post("/v1/endpoints", json=body)

    web = {"host_port": 8080, "port": 80}
    r = await ep("ea", "a", "n", [web, {"protocol": "udp", "host_port": 8080, "port": 53}])
    assert r.status_code == 201 and r.json()["ports"] == ["8080:80/tcp", "8080:53/udp"]
    doc = rt.publication.desired("h1")
    (local,) = doc.compartments[0].endpoints
    assert [str(p) for p in local.ports] == ["8080:80/tcp", "8080:53/udp"]

    r = await ep("eb", "b", "n", [{"host_port": 8080, "port": 81, "host_ip": "198.18.0.1"}])
    assert r.status_code == 409 and "already published by endpoint 'ea'" in r.json()["reason"]
    assert (await ep("ex", "x", "n", [web])).status_code == 201  # another host: free
    r = await ep("eo", "b", "o", [web])
    assert r.status_code == 422 and "nat networks" in r.json()["reason"]
    twice = {"host_port": 9999, "port": 1}
    r = await ep("eb", "b", "n", [twice, twice])
    assert r.status_code == 409 and "twice" in r.json()["reason"]
    r = await c.post("/v1/endpoints", json={"network": "n", "compartment": "b",
                                            "ports": [{"host_port": 0, "port": 80}]})  # fmt: skip
    assert r.status_code == 422

    gen = rt.controller.state.hosts["h1"].desired_gen
    r = await c.put("/v1/endpoints/ea/ports", json={"ports": [{"host_port": 9090, "port": 80}]})
    assert r.status_code == 200 and r.json()["ports"] == ["9090:80/tcp"]
    assert rt.controller.state.hosts["h1"].desired_gen == gen + 1
    assert (await ep("eb", "b", "n", [web])).status_code == 201  # 8080 is free again
    r = await c.put("/v1/endpoints/ea/ports", json={"ports": []})
    assert r.json()["ports"] == []
    assert (await c.put("/v1/endpoints/nope/ports", json={"ports": []})).status_code == 404


async def test_mode_options_are_validated(app: tuple[Runtime, httpx.AsyncClient]) -> None:
    _, c = app
    cases = [
        ({"id": "t", "mode": "transparent", "subnet": "10.7.0.0/24"}, "needs an uplink"),
        ({"id": "t", "mode": "nat", "subnet": "10.7.0.0/24", "uplink": "eth0"}, "no uplink"),
        ({"id": "t", "mode": "nat", "subnet": "10.7.0.0/24", "outbound_nat": True}, "overlay"),
        ({"id": "t", "subnet": "10.7.0.0/24", "ip_range": "10.8.0.0/25"}, "outside subnet"),
        ({"id": "t", "subnet": "10.7.0.0/24", "nat_exceptions": ["10.9.0.0/16"]}, "outbound_nat"),
        ({"id": "t", "mode": "transparent", "subnet": "10.7.0.0/24", "uplink": "a" * 16}, "uplink"),
    ]
    for body, needle in cases:
        r = await c.post("/v1/networks", json=body)
        assert r.status_code == 422 and needle in r.json()["reason"], (body, r.json())
    r = await c.post("/v1/networks", json={"id": "i", "mode": "internal", "subnet": "10.7.0.0/24"})
    assert r.status_code == 201 and r.json()["gateway"] is None  # host-only: no gateway
    body = {"id": "t", "mode": "transparent", "subnet": "198.18.9.0/24", "uplink": "uplink",
            "uplinks": {"h2": "eth1"}, "ip_range": "198.18.9.128/26"}  # fmt: skip
    r = await c.post("/v1/networks", json=body)
    assert r.status_code == 201 and r.json()["uplinks"] == {"h2": "eth1"}
    await c.post("/v1/compartments", json={"id": "c", "host": "h1"})
    r = await c.post("/v1/endpoints", json={"network": "t", "compartment": "c"})
    assert r.json()["ip"] == "198.18.9.128" and r.json()["default_route"] is False
