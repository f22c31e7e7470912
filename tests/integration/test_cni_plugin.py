"""``plexus-cni`` run as a runtime runs it (a process, the environment, stdin) against a
controller process on a real socket; and installed by ``plexus cni install``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import PLEXUS, ControllerProcess, Mosquitto, SimAgent, free_port

pytestmark = pytest.mark.broker

PLUGIN = str(Path(sys.executable).parent / "plexus-cni")
FORBIDDEN = ("pydantic", "fastapi", "typer", "httpx", "pyroute2", "starlette", "rich")


def cni(
    command: str,
    conf: dict[str, Any],
    exe: str | list[str] = PLUGIN,
    container: str = "c0ffee",
    ifname: str = "eth0",
    netns: str = "/proc/self/ns/net",
    **env: str,
) -> tuple[int, dict[str, Any] | None, str]:
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": "/opt/cni/bin",
        **env,
    }
    proc = subprocess.run(
        [exe] if isinstance(exe, str) else exe,
        input=json.dumps(conf).encode(),
        env=environ,
        capture_output=True,
        timeout=60,
    )
    out = proc.stdout.decode()
    return proc.returncode, json.loads(out) if out.strip() else None, proc.stderr.decode()


def conf(url: str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "name": "blue",
        "type": "plexus",
        "network": "blue",
        "host": "h1",
        "controller": url,
        **extra,
    }


def test_version() -> None:
    rc, doc, err = cni("VERSION", {"cniVersion": "1.0.0"})
    assert rc == 0, err
    assert doc == {"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]}


def test_an_unreachable_controller_is_try_again_later_and_status_50() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    rc, doc, _ = cni("ADD", conf(url))
    assert rc == 1 and doc is not None and doc["code"] == 11 and "unreachable" in doc["msg"]
    rc, doc, _ = cni("STATUS", conf(url, "1.1.0"))
    assert rc == 1 and doc is not None and doc["code"] == 50


def test_errors_against_a_controller(controller_proc: ControllerProcess) -> None:
    url = controller_proc.url
    bad = {k: v for k, v in conf(url).items() if k != "network"}
    rc, doc, err = cni("ADD", bad)
    assert rc == 1 and doc is not None and doc["code"] == 7, (doc, err)
    rc, doc, _ = cni("ADD", conf(url, network="nowhere"))
    assert rc == 1 and doc is not None and doc["code"] == 7 and "nowhere" in doc["msg"]
    rc, doc, _ = cni("ADD", conf(url, "0.4.0"))
    assert rc == 1 and doc is not None and doc["code"] == 1
    rc, doc, _ = cni("STATUS", conf(url, "1.1.0"))  # no agent ever reported as h1
    assert rc == 1 and doc is not None and doc["code"] == 50 and "h1" in doc["msg"]


async def test_del_of_nothing_gc_and_status(
    mosquitto: Mosquitto, controller_proc: ControllerProcess
) -> None:
    url = controller_proc.url
    rc, doc, err = cni("DEL", conf(url), netns="")
    assert (rc, doc) == (0, None), err
    gc = conf(
        url, "1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "x", "ifname": "eth0"}]}
    )
    rc, doc, err = cni("GC", gc)
    assert (rc, doc) == (0, None), err
    agent = SimAgent("h1", mosquitto.url, "198.18.0.1")
    await agent.start()
    try:
        rc, doc, err = cni("STATUS", conf(url, "1.1.0"))
        assert (rc, doc) == (0, None), (doc, err)
    finally:
        await agent.stop()


def test_add_and_del_load_no_heavy_package(
    controller_proc: ControllerProcess, tmp_path: Path
) -> None:
    """The ADD and DEL paths (request, answer, error) on the standard library alone."""
    dump = tmp_path / "modules.json"
    probe = (
        "import json, sys\nfrom cni.main import main\nrc = main()\n"
        f"json.dump(sorted(sys.modules), open({str(dump)!r}, 'w'))\nsys.exit(rc)\n"
    )
    for command, c in (
        ("ADD", conf(controller_proc.url, network="nowhere")),
        ("DEL", conf(controller_proc.url)),
    ):
        rc, doc, err = cni(command, c, exe=[sys.executable, "-c", probe])
        assert (rc, doc) == (0, None) or (rc == 1 and doc is not None and doc["code"] == 7), err
        loaded = json.loads(dump.read_text())
        assert "cni.commands" in loaded and "cni.wire" in loaded and "http.client" not in loaded
        assert [m for m in loaded if m.split(".")[0] in FORBIDDEN] == []


def test_install_then_run_the_launcher(controller_proc: ControllerProcess, tmp_path: Path) -> None:
    net_d, bin_d = tmp_path / "net.d", tmp_path / "bin"
    args = ["cni", "install", "--network", "blue", "--dir", str(net_d), "--bin-dir", str(bin_d)]
    args += ["--controller", controller_proc.url, "--host", "h1", "--name", "plexus-blue"]
    subprocess.run([PLEXUS, *args], check=True, capture_output=True, timeout=60)
    listing = json.loads((net_d / "plexus-blue.conflist").read_text())
    assert listing["cniVersion"] == "1.0.0" and listing["name"] == "plexus-blue"
    plugin = listing["plugins"][0]
    assert plugin["type"] == "plexus" and plugin["network"] == "blue"
    exe = bin_d / plugin["type"]
    assert os.access(exe, os.X_OK) and exe.read_text().startswith(f"#!{sys.executable} -IS\n")
    rc, doc, err = cni("VERSION", {"cniVersion": "1.0.0"}, exe=str(exe))
    assert rc == 0 and doc is not None and doc["supportedVersions"] == ["1.0.0", "1.1.0"], err
    # the plugin's configuration as a runtime hands it over: the list's entry + name/version
    entry = {"cniVersion": listing["cniVersion"], "name": listing["name"], **plugin}
    rc, doc, err = cni("DEL", entry, exe=str(exe), netns="")
    assert (rc, doc) == (0, None), err
    rc, doc, _ = cni("ADD", {**entry, "network": "nowhere"}, exe=str(exe))
    assert rc == 1 and doc is not None and doc["code"] == 7
    subprocess.run(
        [
            PLEXUS,
            "cni",
            "uninstall",
            "--name",
            "plexus-blue",
            "--dir",
            str(net_d),
            "--bin-dir",
            str(bin_d),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert list(net_d.iterdir()) == [] and not exe.exists()


async def test_add_two_interfaces_then_gc_and_del(
    mosquitto: Mosquitto, controller_proc: ControllerProcess
) -> None:
    """Against the controller with a simulated agent h1: two interfaces of one container
    (in two networks) share its compartment; GC deletes the one the runtime no longer
    lists, in its own network only; DEL the rest, and the compartment with it."""
    import asyncio

    import httpx

    async def run(*args: Any, **kwargs: Any) -> tuple[int, dict[str, Any] | None, str]:
        return await asyncio.to_thread(cni, *args, **kwargs)  # the agent runs meanwhile

    url = controller_proc.url
    agent = SimAgent("h1", mosquitto.url, "198.18.0.1")
    await agent.start()
    http = httpx.AsyncClient(base_url=url)
    try:
        for net, subnet, vni in (("blue", "10.1.0.0/24", 100), ("red", "10.2.0.0/24", 200)):
            body = {"id": net, "subnet": subnet, "vni": vni}
            assert (await http.post("/v1/networks", json=body)).status_code == 201
        red = conf(url, network="red", name="red")
        rc, eth0, err = await run("ADD", conf(url), ifname="eth0")
        assert rc == 0 and eth0 is not None, (eth0, err)
        # one endpoint per network in a compartment: the controller's refusal, its reason
        rc, doc, _ = await run("ADD", conf(url), ifname="eth9")
        assert rc == 1 and doc is not None and doc["code"] == 100
        assert "already has an endpoint in network 'blue'" in doc["msg"]
        rc, eth1, err = await run("ADD", red, ifname="eth1")
        assert rc == 0 and eth1 is not None, (eth1, err)
        assert eth1["ips"][0]["address"].startswith("10.2.0.")
        comps = (await http.get("/v1/compartments", params={"host": "h1"})).json()
        assert len(comps) == 1 and len(comps[0]["endpoints"]) == 2
        assert comps[0]["netns"]["container"] == "c0ffee"
        valid = [{"containerID": "c0ffee", "ifname": "eth1"}]
        for c in (conf(url, "1.1.0"), {**red, "cniVersion": "1.1.0"}):
            rc, doc, err = await run("GC", {**c, "cni.dev/valid-attachments": valid})
            assert (rc, doc) == (0, None), (doc, err)
        eps = (await http.get("/v1/endpoints")).json()
        assert [(e["network"], e["interface"]) for e in eps] == [("red", "eth1")]
        rc, doc, err = await run("DEL", red, ifname="eth1", netns="")
        assert (rc, doc) == (0, None), (doc, err)
        assert (await http.get("/v1/compartments")).json() == []
    finally:
        await http.aclose()
        await agent.stop()
