"""A network held on a host without an endpoint there (controller.pins): the host's
document carries it, the overlap check counts it, a host token pins only its own host,
the network's deletion drops it, and it survives a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import proto
from controller.config import ControllerSettings
from controller.daemon import build
from controller.runtime import Runtime
from controller.tokens import host_token
from tests.unit.test_policies import desired, drain, ok

Api = tuple[Runtime, httpx.AsyncClient, ControllerSettings]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Api]:
    settings = ControllerSettings(store=str(tmp_path / "s.db"), api_auth="none")
    rt, server = build(settings)
    for h in ("h1", "h2"):
        rt.controller.host_reported(proto.HostStatus(host=h, state="online", version="t"))
    transport = httpx.ASGITransport(app=server.config.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as client:
        yield rt, client, settings
    rt.controller.store.close()


async def test_a_pinned_network_is_in_the_hosts_document_without_endpoints(app: Api) -> None:
    rt, c, _ = app
    await ok(
        c.post("/v1/networks", json={"id": "web", "mode": "nat", "subnet": "10.5.0.0/24"}), 201
    )
    drain(rt)
    net = await ok(c.put("/v1/networks/web/hosts/h1"))
    assert net["pinned"] == ["h1"] and net["hosts"] == ["h1"] and net["endpoints"] == 0
    docs = desired(drain(rt))
    assert list(docs) == ["h1"]  # that host's document only, with the network in it
    assert [n.id for n in docs["h1"].networks] == ["web"] and docs["h1"].compartments == ()
    # again: nothing changes, nothing is published
    await ok(c.put("/v1/networks/web/hosts/h1"))
    assert drain(rt) == []
    # an endpoint there and the pin gone: still held (by the endpoint)
    await ok(c.post("/v1/compartments", json={"id": "c1", "host": "h1"}), 201)
    await ok(c.post("/v1/endpoints", json={"id": "e1", "network": "web", "compartment": "c1"}), 201)
    net = await ok(c.delete("/v1/networks/web/hosts/h1"))
    assert net["pinned"] == [] and net["hosts"] == ["h1"]
    await ok(c.delete("/v1/endpoints/e1"))
    assert (await ok(c.get("/v1/networks/web")))["hosts"] == []
    drain(rt)
    assert rt.controller.state.host_networks["h1"] == {}


async def test_pins_are_checked_and_a_network_deletion_drops_them(app: Api) -> None:
    rt, c, _ = app
    await ok(c.post("/v1/networks", json={"id": "a", "mode": "nat", "subnet": "10.5.0.0/24"}), 201)
    await ok(c.post("/v1/networks", json={"id": "b", "mode": "nat", "subnet": "10.5.0.0/25"}), 201)
    await ok(c.put("/v1/networks/a/hosts/h1"))
    r = await c.put("/v1/networks/b/hosts/h1")  # overlaps a, both routed on h1
    assert r.status_code == 409 and "overlap" in r.json()["reason"], r.text
    assert (await c.put("/v1/networks/b/hosts/h2")).status_code == 200  # elsewhere: fine
    assert (await c.put("/v1/networks/nope/hosts/h1")).status_code == 404
    r = await c.put("/v1/networks/a/hosts/ghost")
    assert r.status_code == 422 and "no agent has reported" in r.json()["reason"]
    drain(rt)
    await ok(c.delete("/v1/networks/a"))
    docs = desired(drain(rt))
    assert [n.id for n in docs["h1"].networks] == []  # h1 drops it
    assert rt.controller.state.host_networks["h1"] == {}


async def test_a_host_token_pins_its_own_host_only(app: Api) -> None:
    _, c, settings = app
    key = settings.token_path.read_text().strip()
    as_h1 = {"Authorization": f"Bearer {host_token(key, 'h1')}"}
    await ok(c.post("/v1/networks", json={"id": "web", "subnet": "10.5.0.0/24"}), 201)
    assert (await c.put("/v1/networks/web/hosts/h1", headers=as_h1)).status_code == 200
    r = await c.put("/v1/networks/web/hosts/h2", headers=as_h1)
    assert r.status_code == 403, r.text
    assert (await c.delete("/v1/networks/web/hosts/h1", headers=as_h1)).status_code == 200


async def test_pins_survive_a_restart(tmp_path: Path) -> None:
    settings = ControllerSettings(store=str(tmp_path / "s.db"), api_auth="none")
    rt, server = build(settings)
    rt.controller.host_reported(proto.HostStatus(host="h1", state="online", version="t"))
    transport = httpx.ASGITransport(app=server.config.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as c:
        await ok(c.post("/v1/networks", json={"id": "web", "subnet": "10.5.0.0/24"}), 201)
        await ok(c.put("/v1/networks/web/hosts/h1"))
    rt.controller.store.close()
    rt2, _ = build(settings)
    assert rt2.controller.state.networks["web"].hosts == ("h1",)
    assert [n.id for n in rt2.publication.desired("h1").networks] == ["web"]
    rt2.controller.store.close()
