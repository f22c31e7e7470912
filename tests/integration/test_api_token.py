"""The REST API's bearer token on a real controller process: made at first start with
mode 0600, required for reads and writes (401 with a reason without it), /healthz
open for probes; the CLI passes it from --token, PLEXUS_TOKEN or --token-file."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from controller.config import ControllerSettings
from tests.integration.test_cli import plexus
from tests.support import PLEXUS, ControllerProcess, Mosquitto

pytestmark = pytest.mark.broker


def test_a_token_is_required_beyond_loopback_unless_turned_off() -> None:
    assert not ControllerSettings(listen="127.0.0.1:8470").token_required
    assert not ControllerSettings(listen="[::1]:8470").token_required
    assert ControllerSettings(listen="0.0.0.0:8470").token_required
    assert ControllerSettings(listen="198.18.0.254:8470").token_required
    assert ControllerSettings(listen="ctl.example:8470").token_required
    assert ControllerSettings(listen="127.0.0.1:8470", api_auth="token").token_required
    assert not ControllerSettings(listen="0.0.0.0:8470", api_auth="none").token_required


async def test_the_api_wants_its_token_and_the_cli_brings_it(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    token_file = tmp_path / "secret" / "api-token"

    def controller(log: str) -> ControllerProcess:
        return ControllerProcess(
            mosquitto.url,
            tmp_path / "plexus.db",
            tmp_path / log,
            extra=["--api-token-file", str(token_file)],
            env={"PLEXUS_API_AUTH": "token"},
        )

    ctl = controller("controller.log")
    ctl.start()  # /healthz answers without a token
    try:
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 40
        async with httpx.AsyncClient(base_url=ctl.url) as http:
            for method, path in (
                ("GET", "/v1/networks"),
                ("POST", "/v1/networks"),
                ("GET", "/v1/status"),
                ("GET", "/metrics"),
                ("DELETE", "/v1/hosts/h1"),
            ):
                r = await http.request(method, path, json={"id": "x", "subnet": "10.9.0.0/24"})
                assert r.status_code == 401, (method, path, r.text)
                assert r.json() == {"error": "unauthorized", "reason": "a bearer token is required"}
                assert r.headers["www-authenticate"] == "Bearer"
            r = await http.get("/v1/networks", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401 and r.json()["reason"] == "the bearer token is wrong"
            ok = {"Authorization": f"Bearer {token}"}
            assert (await http.get("/v1/networks", headers=ok)).json() == []
            assert (await http.get("/metrics", headers=ok)).status_code == 200
            spec = (await http.get("/openapi.json", headers=ok)).json()
            assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"

        rc, _, err = await plexus(ctl, "network", "list")
        assert rc == 1 and "401 a bearer token is required" in err
        rc, _, err = await plexus(
            ctl, "--token-file", str(token_file), "network", "create", "blue",
            "--subnet", "10.1.0.0/24",
        )  # fmt: skip
        assert rc == 0, err
        env = {**os.environ, "PLEXUS_CONTROLLER": ctl.url, "PLEXUS_TOKEN": token}
        listed = await asyncio.to_thread(
            subprocess.run,
            [PLEXUS, "network", "list", "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert listed.returncode == 0 and '"blue"' in listed.stdout, listed.stderr
        # the token options go before the command or after it, as -o and --controller do
        for args in (
            ("network", "list", "--token-file", str(token_file)),
            ("network", "list", "--token", token),
            ("--token", token, "network", "list"),
            ("--token", "wrong", "network", "list", "--token", token),
        ):
            rc, out, err = await plexus(ctl, *args)
            assert rc == 0 and "blue" in out, (args, err)
        rc, _, err = await plexus(ctl, "network", "list", "--token-file", str(tmp_path / "none"))
        assert rc == 2 and err.startswith("error: cannot read the token file"), err
    finally:
        ctl.stop()

    # a token file others can read is refused
    token_file.chmod(0o644)
    again = controller("controller2.log")
    with pytest.raises(RuntimeError, match="readable by others"):
        again.start()
