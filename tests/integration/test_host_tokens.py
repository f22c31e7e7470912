"""Host-scoped API tokens on a real controller process over real HTTP: a host token of
h1 acts on h1's compartments and endpoints and nothing else (403 with a reason), a
forged one is 401, the admin token and (on loopback, ``api_auth = "auto"``) no token
at all still do everything; ``plexus host token`` prints the token."""

from __future__ import annotations

import contextlib
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.tokens import host_token
from tests.integration.test_cli import plexus
from tests.support import ControllerProcess, Mosquitto, SimAgent

pytestmark = pytest.mark.broker


@contextlib.asynccontextmanager
async def fleet(mosquitto: Mosquitto) -> AsyncIterator[None]:
    """Hosts h1 and h2, known to the running controller."""
    agents = [SimAgent(h, mosquitto.url, f"198.18.0.{i}") for i, h in enumerate(("h1", "h2"), 1)]
    for agent in agents:
        await agent.start()
    try:
        yield
    finally:
        for agent in agents:
            await agent.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def forbidden(r: httpx.Response, fragment: str) -> None:
    assert r.status_code == 403, (r.request.method, r.request.url.path, r.text)
    body = r.json()
    assert body["error"] == "forbidden" and body["reason"].startswith("a host token of h1 may not")
    assert fragment in body["reason"], body


async def test_a_host_token_acts_on_its_own_host_only(
    mosquitto: Mosquitto, controller_proc: ControllerProcess, tmp_path: Path
) -> None:
    async with fleet(mosquitto):
        await _scoped(controller_proc, tmp_path)


async def _scoped(controller_proc: ControllerProcess, tmp_path: Path) -> None:
    # auth "auto" on loopback wants no token, but the admin token (the key) exists anyway
    key_file = tmp_path / "api-token"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()

    async with httpx.AsyncClient(base_url=controller_proc.url) as admin:  # no token: admin
        ok = [
            await admin.post("/v1/networks", json={"id": "blue", "subnet": "10.1.0.0/24"}),
            await admin.post("/v1/compartments", json={"id": "c2", "host": "h2"}),
            await admin.post(
                "/v1/endpoints", json={"id": "e2", "network": "blue", "compartment": "c2"}
            ),
        ]
        assert [r.status_code for r in ok] == [201, 201, 201], [r.text for r in ok]
        r = await admin.get("/v1/hosts/h1/token")
        assert r.status_code == 200
        assert r.json() == {"host": "h1", "token": host_token(key, "h1")}
    token = host_token(key, "h1")

    async with httpx.AsyncClient(base_url=controller_proc.url, headers=bearer(token)) as h1:

        async def call(method: str, path: str, body: Any = None) -> httpx.Response:
            return await h1.request(method, path, json=body)

        # its own: create, read, publish, delete
        r = await call("POST", "/v1/compartments", {"id": "c1", "host": "h1"})
        assert r.status_code == 201, r.text
        r = await call(
            "POST", "/v1/endpoints", {"id": "e1", "network": "blue", "compartment": "c1"}
        )
        assert r.status_code == 201 and r.json()["host"] == "h1", r.text
        assert (await call("GET", "/v1/compartments/c1")).status_code == 200
        assert (await call("GET", "/v1/endpoints/e1")).status_code == 200
        assert (await call("PUT", "/v1/endpoints/e1/ports", {"ports": []})).status_code == 200
        # reads: networks, its host, the fleet's status; lists narrowed to its host
        assert [n["id"] for n in (await call("GET", "/v1/networks")).json()] == ["blue"]
        assert (await call("GET", "/v1/networks/blue")).status_code == 200
        assert (await call("GET", "/v1/hosts/h1")).json()["id"] == "h1"
        assert (await call("GET", "/v1/status")).status_code == 200
        assert (await call("GET", "/healthz")).status_code == 200
        assert [c["id"] for c in (await call("GET", "/v1/compartments")).json()] == ["c1"]
        assert [e["id"] for e in (await call("GET", "/v1/endpoints")).json()] == ["e1"]
        r = await call("GET", "/v1/endpoints?network=blue&host=h1")
        assert [e["id"] for e in r.json()] == ["e1"]

        # another host's objects: 403 (not 404: see controller.api.access)
        forbidden(await call("POST", "/v1/compartments", {"id": "x", "host": "h2"}), "host h2's")
        forbidden(
            await call("POST", "/v1/endpoints", {"network": "blue", "compartment": "c2"}),
            "POST /v1/endpoints: that is host h2's",
        )
        forbidden(await call("DELETE", "/v1/compartments/c2?force=true"), "host h2's")
        forbidden(await call("DELETE", "/v1/endpoints/e2"), "host h2's")
        forbidden(await call("PUT", "/v1/endpoints/e2/ports", {"ports": []}), "host h2's")
        forbidden(await call("GET", "/v1/compartments/c2"), "host h2's")
        forbidden(await call("GET", "/v1/endpoints/e2"), "host h2's")
        forbidden(await call("GET", "/v1/compartments?host=h2"), "host h2's")
        forbidden(await call("GET", "/v1/hosts/h2"), "host h2's")
        # admin-only routes
        for method, path, body in (
            ("POST", "/v1/networks", {"id": "red", "subnet": "10.2.0.0/24"}),
            ("DELETE", "/v1/networks/blue", None),
            ("GET", "/v1/hosts", None),
            ("GET", "/v1/hosts/h1/token", None),
            ("DELETE", "/v1/hosts/h1", None),
            ("GET", "/metrics", None),
            ("POST", "/v1/batch", {"ops": [{"op": "delete", "kind": "endpoint", "id": "e1"}]}),
        ):
            forbidden(await call(method, path, body), f"{method} {path}: admin only")
        # what does not exist is answered by the route, as for the admin
        assert (await call("DELETE", "/v1/compartments/nope")).status_code == 404
        r = await call("POST", "/v1/endpoints", {"network": "blue", "compartment": "nope"})
        assert r.status_code == 422, r.text

        assert (await call("DELETE", "/v1/endpoints/e1")).status_code == 200
        assert (await call("DELETE", "/v1/compartments/c1")).status_code == 200

    async with httpx.AsyncClient(base_url=controller_proc.url) as http:
        # forged: h2's name on h1's MAC, or signed with another key; 401 also where no
        # token is required (a forged host token never passes for the admin)
        mac = token.rpartition(".")[2]
        for forged in (f"host.h2.{mac}", host_token("another key", "h1"), "host.h1.", "wrong"):
            r = await http.get("/v1/networks", headers=bearer(forged))
            assert r.status_code == 401, (forged, r.text)
            assert r.json() == {"error": "unauthorized", "reason": "the bearer token is wrong"}
        # h2's state is untouched, and the admin token does everything
        assert (await http.get("/v1/compartments/c2")).json()["endpoints"] == ["e2"]
        as_admin = bearer(key)
        assert (await http.get("/metrics", headers=as_admin)).status_code == 200
        r = await http.get("/v1/hosts/h2/token", headers=as_admin)
        assert r.json()["token"] == host_token(key, "h2")
        r = await http.delete("/v1/compartments/c2?force=true", headers=as_admin)
        assert r.status_code == 200, r.text
        r = await http.delete("/v1/networks/blue", headers=as_admin)
        assert r.status_code == 200, r.text

    # the CLI prints the bare token (or its JSON), for $(plexus host token h1)
    rc, out, err = await plexus(controller_proc, "host", "token", "h1", columns=40)
    assert rc == 0 and out == token + "\n", err
    rc, out, err = await plexus(controller_proc, "host", "token", "h1", "-o", "json")
    assert rc == 0 and json.loads(out) == {"host": "h1", "token": token}, err
    rc, _, err = await plexus(controller_proc, "--token", token, "host", "token", "h1")
    assert rc == 1 and "403 a host token of h1 may not GET /v1/hosts/h1/token" in err


async def test_a_host_token_is_scoped_whatever_api_auth_says(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """With ``api_auth = "token"`` no token is 401 and a host token is scoped the same."""
    ctl = ControllerProcess(
        mosquitto.url,
        tmp_path / "plexus.db",
        tmp_path / "controller.log",
        env={"PLEXUS_API_AUTH": "token"},
    )
    ctl.start()
    try:
        token = host_token((tmp_path / "api-token").read_text().strip(), "h1")
        async with fleet(mosquitto), httpx.AsyncClient(base_url=ctl.url) as http:
            r = await http.get("/v1/networks")
            assert r.status_code == 401 and r.json()["reason"] == "a bearer token is required"
            assert (await http.get("/v1/networks", headers=bearer(token))).json() == []
            for host, status in (("h1", 201), ("h2", 403)):
                r = await http.post(
                    "/v1/compartments", json={"id": host, "host": host}, headers=bearer(token)
                )
                assert r.status_code == status, r.text
    finally:
        ctl.stop()
