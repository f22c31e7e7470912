"""The REST API fuzzed from its own OpenAPI schema (schemathesis): every operation,
with generated valid and invalid parameters and bodies, against the real app and a
real SQLite store. No answer is a 5xx; every 4xx carries a reason."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

import proto
from controller.api import create_app
from controller.config import ControllerSettings
from controller.daemon import build
from controller.runtime import Runtime
from proto.rest import CompartmentCreate, EndpointCreate, NetworkCreate

pytestmark = pytest.mark.fuzz


def _runtime(directory: Path) -> Runtime:
    rt, _ = build(ControllerSettings(store=str(directory / "plexus.db")))
    ctl = rt.controller
    for i in (1, 2):  # hosts known but offline: a wait=true never blocks on them
        ctl.host_reported(
            proto.HostStatus(host=f"h{i}", state="offline", version="t", vtep=f"198.18.0.{i}")
        )
    ctl.create_network(NetworkCreate(id="blue", subnet="10.1.0.0/24", vni=100))
    ctl.create_network(NetworkCreate(id="web", mode="nat", subnet="10.5.0.0/24"))
    ctl.create_compartment(CompartmentCreate(id="c1", host="h1"))
    ctl.create_endpoint(EndpointCreate(network="blue", compartment="c1"))
    return rt


_DIR = tempfile.TemporaryDirectory(prefix="plexus-api-fuzz-")
RUNTIME = _runtime(Path(_DIR.name))
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(RUNTIME, "fuzz-key"))


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    RUNTIME.controller.store.close()
    _DIR.cleanup()


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_5xx_and_every_4xx_has_a_reason(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert body["error"] and body["reason"], (case.method, case.formatted_path, body)
