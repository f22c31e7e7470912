"""The one REST client (``cli.client``): every failure leaves as one ``cli.errors``
error with a one-line reason, through httpx's transport seam (no controller needed)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from cli import client
from cli.errors import ApiError, BadController, CliError, Unreachable, exit_code
from proto.errors import PlexusError


def _client(handler: object) -> client.Client:
    return client.Client("http://ctl:8470", token="s3cret", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_a_request_carries_the_token_and_the_wait_budget() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "n1"})

    with _client(handler) as api:
        assert api.post("/v1/networks", {"id": "n1"}, wait=2.5) == {"id": "n1"}
        assert api.get("/v1/hosts", params={"host": None, "force": False, "x": "y"}) == {"id": "n1"}
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    assert dict(seen[0].url.params) == {"wait": "true", "timeout": "2.5"}
    assert dict(seen[1].url.params) == {"x": "y"}  # unset parameters are not sent


def test_a_refusal_is_an_api_error_with_the_controllers_reason() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/gone":
            return httpx.Response(404, json={"error": "not_found", "reason": "no such"})
        if request.url.path == "/v1/text":
            return httpx.Response(500, text="boom\n")
        return httpx.Response(200, text="<html>")

    with _client(handler) as api:
        with pytest.raises(ApiError) as refused:
            api.get("/v1/gone")
        assert refused.value.reason == "404 no such" and refused.value.status == 404
        assert (refused.value.method, refused.value.path) == ("GET", "/v1/gone")
        assert api.get("/v1/gone", missing_ok=True) is None
        with pytest.raises(ApiError, match=r"^500 boom$"):
            api.get("/v1/text")
        with pytest.raises(ApiError, match="something other than Plexus JSON"):
            api.get("/")


def test_no_answer_is_unreachable_and_a_bad_address_is_refused_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with _client(handler) as api, pytest.raises(Unreachable) as e:
        api.get("/v1/hosts")
    assert (
        e.value.reason
        == "cannot reach the controller at http://ctl:8470: [Errno 111] Connection refused"
    )
    with pytest.raises(BadController, match="expected http://"):
        client.Client("localhost:8470")
    with pytest.raises(BadController, match="is not a URL"):
        client.Client("http://[::1")


async def test_the_async_client_follows_the_same_rules() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": "conflict", "reason": "exists"})

    api = client.AsyncClient("http://ctl:8470", transport=httpx.MockTransport(handler))
    async with api:
        with pytest.raises(ApiError, match=r"^409 exists$"):
            await api.post("/v1/networks", {})


def test_every_error_is_a_plexus_error_with_its_exit_status() -> None:
    from broker.errors import IdentityError
    from lab.spec import LabError

    for error, code in (
        (CliError("x", 3), 3),
        (Unreachable("http://a", "down"), 1),
        (IdentityError("bad"), 2),
        (LabError("no lab"), 1),
    ):
        assert isinstance(error, PlexusError)
        assert exit_code(error) == code


def test_a_resource_command_does_not_load_the_daemons() -> None:
    """``plexus network list`` imports neither FastAPI nor pyroute2 (nor the controller
    or the agents): the daemons are imported by their own commands only."""
    code = (
        "import sys\n"
        "import cli.app\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'uvicorn', 'pyroute2', 'controller', 'agents', 'cryptography')]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
