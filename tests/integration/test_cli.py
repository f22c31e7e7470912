"""The ``plexus`` command run as a process against a controller on a real socket."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from tests.support import PLEXUS, ControllerProcess, Mosquitto, SimAgent

pytestmark = pytest.mark.broker


async def plexus(
    ctl: ControllerProcess | str, *args: str, columns: int = 200
) -> tuple[int, str, str]:
    url = ctl if isinstance(ctl, str) else ctl.url
    env = {**os.environ, "PLEXUS_CONTROLLER": url, "COLUMNS": str(columns)}
    proc = await asyncio.create_subprocess_exec(
        PLEXUS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_drives_the_api(mosquitto: Mosquitto, controller_proc: ControllerProcess) -> None:
    agent = SimAgent("h1", mosquitto.url, "198.18.0.1")
    await agent.start()
    try:
        rc, out, err = await plexus(
            controller_proc, "network", "create", "blue", "--subnet", "10.1.0.0/24", "--vni", "100"
        )
        assert rc == 0, err
        assert "blue" in out and "10.1.0.0/24" in out
        rc, out, _ = await plexus(controller_proc, "host", "list", "-o", "json")
        assert rc == 0 and json.loads(out)[0]["vtep"] == "198.18.0.1"
        rc, out, err = await plexus(
            controller_proc, "compartment", "create", "web", "--host", "h1", "--wait"
        )
        assert rc == 0, err
        assert "applied by 1 host(s)" in out
        rc, out, err = await plexus(
            controller_proc,
            "endpoint",
            "create",
            "web0",
            "--network",
            "blue",
            "--compartment",
            "web",
            "--ip",
            "10.1.0.10",
            "--wait",
            "-o",
            "json",
        )
        assert rc == 0, err
        data = json.loads(out)
        assert data["ip"] == "10.1.0.10" and data["convergence"]["converged"]
        rc, out, _ = await plexus(controller_proc, "endpoint", "list", "--network", "blue")
        assert rc == 0 and "web0" in out and "eth0" in out
        rc, out, _ = await plexus(controller_proc, "status")
        assert rc == 0 and "in sync" in out

        # errors: non-zero exit and a one-line reason
        rc, out, err = await plexus(
            controller_proc, "network", "create", "blue", "--subnet", "10.2.0.0/24"
        )
        assert rc == 1 and "409" in err and "already exists" in err
        assert len(err.strip().splitlines()) == 1
        rc, _, err = await plexus(controller_proc, "network", "delete", "blue")
        assert rc == 1 and "force" in err
        rc, _, err = await plexus(controller_proc, "endpoint", "show", "nope")
        assert rc == 1 and "not found" in err
        rc, _, err = await plexus(
            controller_proc, "network", "create", "x", "--subnet", "10.0.0.0/99"
        )
        assert rc == 1 and "422" in err and "subnet" in err
        rc, out, err = await plexus(
            controller_proc, "network", "delete", "blue", "--force", "--wait"
        )
        assert rc == 0, err
    finally:
        await agent.stop()


async def test_cli_reports_a_host_that_did_not_apply(
    mosquitto: Mosquitto, controller_proc: ControllerProcess
) -> None:
    agent = SimAgent("slow", mosquitto.url, "198.18.0.2", frozen=True)
    await agent.start()
    try:
        rc, out, err = await plexus(
            controller_proc,
            "compartment",
            "create",
            "c1",
            "--host",
            "slow",
            "--wait",
            "--timeout",
            "0.3",
        )
        assert rc == 3
        assert "not applied in time by 1 host(s): slow: desired@" in err
        rc, out, _ = await plexus(controller_proc, "status")
        assert rc == 4 and "not in sync" in out
    finally:
        await agent.stop()


async def test_cli_without_a_controller() -> None:
    rc, _, err = await plexus("http://127.0.0.1:9", "network", "list")
    assert rc == 1 and "cannot reach the controller" in err


async def test_cli_prints_server_and_user_text_as_text(controller_proc: ControllerProcess) -> None:
    """Square brackets in a server's reason or in the user's own words are printed as they
    are, not parsed as rich markup (which ate them, or crashed on ``[/tcp|udp]``)."""
    rc, _, err = await plexus(
        controller_proc, "network", "create", "BadName!", "--subnet", "10.203.0.0/24"
    )
    assert rc == 1 and "422" in err and "'^[a-z0-9][a-z0-9._-]{0,62}$'" in err, err
    assert len(err.strip().splitlines()) == 1
    rc, _, err = await plexus(controller_proc, "endpoint", "publish", "wep", "--publish", "bogus")
    assert rc == 1 and "Traceback" not in err
    assert err.strip() == (
        "error: --publish 'bogus': expected [HOST_IP:]HOST_PORT:PORT[/tcp|udp]"
    ), err
    rc, _, err = await plexus(controller_proc, "endpoint", "publish", "wep", "-p", "[/x]:1:2")
    assert rc == 1 and "[/x]" in err and "Traceback" not in err, err


async def test_cli_tables_keep_ids_and_addresses_whole_at_80_columns(
    mosquitto: Mosquitto, controller_proc: ControllerProcess
) -> None:
    """At 80 columns every list table shows ids, addresses and MACs in full (they were cut
    to ``10.50.0…`` and ``ep-51…``); less important columns give way, and say so."""
    host, net, comp, ep = (
        "host-with-a-rather-long-name-01",
        "tenant-frontend-prod-01",
        "compartment-for-the-web-frontend",
        "endpoint-of-the-web-frontend-01",
    )
    agent = SimAgent(host, mosquitto.url, "198.18.100.200")
    await agent.start()
    try:
        for args in (
            ("network", "create", net, "--subnet", "10.250.128.0/24", "--vni", "4242"),
            ("compartment", "create", comp, "--host", host),
            ("compartment", "create", "web-2", "--host", host),
            ("endpoint", "create", ep, "--network", net, "--compartment", comp),
            ("endpoint", "create", "--network", net, "--compartment", "web-2"),
        ):
            rc, _, err = await plexus(controller_proc, *args)
            assert rc == 0, err
        rc, out, _ = await plexus(controller_proc, "endpoint", "list", "-o", "json")
        eps = json.loads(out)
        expect = {
            ("network", "list"): [net, "10.250.128.0/24", "10.250.128.1", "overlay", "4242"],
            ("compartment", "list"): [comp, host],
            ("host", "list"): [host, "198.18.100.200"],
            ("endpoint", "list"): [v for e in eps for v in (e["id"], e["ip"], e["mac"])]
            + [net, comp, host],
            ("endpoint", "show", ep): [ep, net, comp, host, eps[0]["ip"], eps[0]["mac"]],
        }
        for args, whole in expect.items():
            rc, out, err = await plexus(controller_proc, *args, columns=80)
            assert rc == 0, err
            assert "…" not in out, out
            for value in whole:
                assert value in out, f"{' '.join(args)}: {value} not whole in\n{out}"
        rc, out, _ = await plexus(controller_proc, "network", "list", columns=80)
        assert max(len(line.rstrip()) for line in out.splitlines()) <= 80, out
        assert "not shown at this width" in out and "TABLE GENERATION" in out
        rc, out, _ = await plexus(controller_proc, "network", "list", "-o", "wide", columns=80)
        assert "TABLE GENERATION" in out.splitlines()[0] and "not shown" not in out
    finally:
        await agent.stop()


async def test_cli_common_options_go_before_or_after_the_command(
    controller_proc: ControllerProcess,
) -> None:
    """``-o`` and ``--controller`` are taken on the root (``plexus -o json status``) as
    well as on the command; given on the command they win, and either wins over
    PLEXUS_CONTROLLER."""
    nowhere = "http://127.0.0.1:9"
    url = controller_proc.url
    for env, args in (
        (url, ("-o", "json", "status")),
        (url, ("status", "-o", "json")),
        (url, ("-o", "table", "status", "-o", "json")),
        (nowhere, ("--controller", url, "status", "-o", "json")),
        (nowhere, ("status", "--controller", url, "-o", "json")),
        (nowhere, ("--controller", nowhere, "-o", "json", "status", "--controller", url)),
    ):
        rc, out, err = await plexus(env, *args)
        assert rc == 0, (args, err)
        assert json.loads(out)["in_sync"] is True
    rc, _, err = await plexus(nowhere, "--controller", url, "status", "--controller", nowhere)
    assert rc == 1 and "cannot reach the controller at http://127.0.0.1:9" in err


async def test_cli_bad_arguments_give_one_line_errors(
    mosquitto: Mosquitto, controller_proc: ControllerProcess, tmp_path: Path
) -> None:
    """A bad argument of any kind ends in one line on stderr and a non-zero exit, whether
    the CLI or the controller refuses it, never in a traceback."""
    agent = SimAgent("h1", mosquitto.url, "198.18.0.1")
    await agent.start()
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[[network]\n")
    try:
        for args in (
            ("network", "create", "n1", "--subnet", "10.9.0.0/24", "--mode", "nat"),
            ("compartment", "create", "c1", "--host", "h1"),
            ("endpoint", "create", "e1", "--network", "n1", "--compartment", "c1"),
        ):
            rc, _, err = await plexus(controller_proc, *args)
            assert rc == 0, err
        cases: list[tuple[tuple[str, ...], int, str]] = [
            (("endpoint", "publish", "e1", "-p", "bogus"), 1, "expected [HOST_IP:]HOST_PORT"),
            (("endpoint", "publish", "e1", "-p", "70000:80"), 1, "422"),
            (("endpoint", "publish", "e1", "-p", "8080:80/sctp"), 1, "422"),
            (("endpoint", "publish", "e1", "-p", "999.1.1.1:80:80"), 1, "422"),
            (("endpoint", "publish", "nope", "-p", "80:80"), 1, "404"),
            (("network", "create", "n2", "--subnet", "10.0.0.0/99"), 1, "422"),
            (("network", "create", "n2", "--subnet", "banana"), 1, "422"),
            (("network", "create", "n2", "--subnet", "10.8.0.0/24", "--mode", "x"), 1, "422"),
            (("network", "create", "n2", "--subnet", "10.8.0.0/24", "--vni", "0"), 1, "422"),
            (("network", "create", "n2", "--subnet", "10.8.0.0/24", "--vni", "x"), 2, "--vni"),
            (
                ("network", "create", "n2", "--subnet", "10.8.0.0/24", "--uplink-for", "x"),
                1,
                "HOST",
            ),
            (("network", "create", "Bad Name", "--subnet", "10.8.0.0/24"), 1, "422"),
            (("network", "show", "?"), 1, "is not an id"),
            (("network", "delete", "../n1"), 1, "is not an id"),
            (("compartment", "show", "a/b"), 1, "is not an id"),
            (("host", "decommission", "H1"), 1, "is not an id"),
            (("endpoint", "show", "nope"), 1, "404"),
            (("endpoint", "create", "--network", "n1"), 1, "--compartment are required"),
            (
                ("endpoint", "create", "--network", "n1", "--compartment", "c1", "--ip", "x"),
                1,
                "422",
            ),
            (
                ("endpoint", "create", "--network", "n1", "--compartment", "c1", "--mac", "x"),
                1,
                "422",
            ),
            (("compartment", "create", "c2", "--host", "nohost"), 1, "not known"),
            (("compartment", "create", "c2"), 1, "--host is required"),
            (("network", "list", "--controller", "http://[::1"), 1, "is not a URL"),
            (("network", "list", "--controller", "localhost:8470"), 1, "expected http://"),
            (("network", "list", "--controller", "http://127.0.0.1:9"), 1, "cannot reach"),
            (("network", "list", "--controller", mosquitto.url.replace("mqtt", "http")), 1, ""),
            (("status", "--controller", f"{controller_proc.url}/healthz"), 1, "404"),
            (("network", "list", "-o", "yaml"), 2, "yaml"),
            (("apply", str(tmp_path / "none.toml")), 1, "cannot read"),
            (("apply", str(bad_toml)), 1, "cannot read"),
            (("--token-file", str(tmp_path / "none"), "network", "list"), 2, "token file"),
        ]
        for args, code, words in cases:
            rc, _, err = await plexus(controller_proc, *args)
            assert rc == code, (args, err)
            assert "Traceback" not in err and words in err, (args, err)
            if code == 1:  # ours; a usage error (2) is click's box, also without a traceback
                assert len(err.strip().splitlines()) == 1, (args, err)
    finally:
        await agent.stop()
