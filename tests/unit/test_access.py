"""Host tokens (:mod:`controller.tokens`) as plain values, and the API's access table
(:mod:`controller.api.access`) against the app's real routes, in-process."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import httpx
from fastapi.routing import APIRoute

import proto
from controller.api.access import RULES
from controller.config import ControllerSettings
from controller.daemon import build
from controller.tokens import host_token, token_host

KEY = "k" * 43


def test_a_host_token_is_the_hmac_of_its_host_under_the_admin_token() -> None:
    mac = hmac.new(KEY.encode(), b"plexus-host-token:h1", hashlib.sha256).hexdigest()
    assert host_token(KEY, "h1") == f"host.h1.{mac}"
    assert token_host(KEY, host_token(KEY, "h1")) == "h1"
    assert token_host(KEY, host_token(KEY, "rack-1.h1")) == "rack-1.h1"  # ids may hold dots


def test_a_forged_or_foreign_token_names_no_host() -> None:
    mac = host_token(KEY, "h1").rpartition(".")[2]
    for token in (
        f"host.h2.{mac}",  # another host's name on h1's MAC
        host_token("another key", "h1"),  # signed with another key (a rotated admin token)
        host_token(KEY, "h1").upper(),
        host_token(KEY, "h1") + "0",
        f"host.h1.{mac[:-1]}",
        "host.h1.",
        "host..",
        "host.",
        f"h1.{mac}",
        KEY,
        "",
    ):
        assert token_host(KEY, token) is None, token


def test_every_rule_is_a_route_of_the_api(tmp_path: Path) -> None:
    """A route renamed without its rule would silently become admin-only."""
    rt, server = build(ControllerSettings(store=str(tmp_path / "s.db")))
    routes = {
        (method, r.path)
        for r in server.config.app.routes
        if isinstance(r, APIRoute)
        for method in r.methods
    }
    assert set(RULES) <= routes, set(RULES) - routes
    rt.controller.store.close()


async def test_api_auth_none_still_checks_a_token_sent(tmp_path: Path) -> None:
    """``api_auth = "none"``: no token is the admin, but the key file exists, a host token
    is scoped and a wrong one is refused."""
    settings = ControllerSettings(store=str(tmp_path / "s.db"), api_auth="none")
    rt, server = build(settings)
    rt.controller.host_reported(proto.HostStatus(host="h1", state="online", version="t"))
    token = host_token(settings.token_path.read_text().strip(), "h1")
    transport = httpx.ASGITransport(app=server.config.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as c:
        net = {"id": "blue", "subnet": "10.1.0.0/24"}
        r = await c.post("/v1/networks", json=net, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
        assert r.json() == {
            "error": "forbidden",
            "reason": "a host token of h1 may not POST /v1/networks: admin only",
        }
        r = await c.post("/v1/networks", json=net, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        assert (await c.post("/v1/networks", json=net)).status_code == 201
        # a body the route refuses is refused for a host token too (422, not let through)
        bad = {"host": "h1", "unknown": 1}
        r = await c.post("/v1/compartments", json=bad, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 422, r.text
        spec = (await c.get("/openapi.json")).json()
        assert "403" in spec["paths"]["/v1/networks"]["post"]["responses"]
    rt.controller.store.close()
