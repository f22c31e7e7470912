"""``plexus apply`` and ``plexus broker run`` as processes against real components."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from lab import demo
from proto import topics
from proto.mqtt import BrokerURL, client
from tests.integration.test_cli import plexus
from tests.support import (
    PLEXUS,
    ControllerProcess,
    LogWatch,
    Mosquitto,
    SimAgent,
    free_port,
    wait_port,
)

pytestmark = pytest.mark.broker

TOPOLOGY = """
[[networks]]
id = "blue"
subnet = "10.1.0.0/24"
vni = 100

[[compartments]]
id = "web"
host = "h1"

[[compartments]]
id = "db"
host = "h2"

[[endpoints]]
id = "web0"
network = "blue"
compartment = "web"
ip = "10.1.0.10"

[[endpoints]]
id = "db0"
network = "blue"
compartment = "db"
"""


async def test_apply_creates_what_is_missing_and_only_that(
    mosquitto: Mosquitto, controller_proc: ControllerProcess, tmp_path: Path
) -> None:
    agents = [SimAgent(h, mosquitto.url, f"198.18.0.{i}") for i, h in enumerate(("h1", "h2"), 1)]
    for a in agents:
        await a.start()
    try:
        f = tmp_path / "topo.toml"
        f.write_text(TOPOLOGY)
        rc, out, err = await plexus(controller_proc, "apply", str(f), "-o", "json")
        assert rc == 0, err
        steps = json.loads(out)
        assert [(s["kind"], s["id"], s["result"]) for s in steps] == [
            ("network", "blue", "created"),
            ("compartment", "web", "created"),
            ("compartment", "db", "created"),
            ("endpoint", "web0", "created"),
            ("endpoint", "db0", "created"),
        ]
        # each create waited until applied: the agents hold both endpoints already
        assert set(agents[0].tables["blue"]) == {"web0", "db0"}
        rc, out, _ = await plexus(controller_proc, "apply", str(f), "-o", "json")
        assert rc == 0 and {s["result"] for s in json.loads(out)} == {"exists"}

        # a file that contradicts what exists changes nothing and says why
        f.write_text(TOPOLOGY.replace('ip = "10.1.0.10"', 'ip = "10.1.0.11"'))
        rc, _, err = await plexus(controller_proc, "apply", str(f))
        assert rc == 1 and "endpoint web0 exists with ip='10.1.0.10'" in err
        rc, out, _ = await plexus(controller_proc, "endpoint", "show", "web0", "-o", "json")
        assert json.loads(out)["ip"] == "10.1.0.10"

        # what is missing goes in one batch: a refused part creates none of it
        extra = '[[compartments]]\nid = "cache"\nhost = "h2"\n'
        extra += '[[endpoints]]\nid = "cache0"\nnetwork = "blue"\ncompartment = "cache"\n'
        extra += 'ip = "10.9.0.1"\n'
        f.write_text(TOPOLOGY + extra)
        rc, _, err = await plexus(controller_proc, "apply", str(f))
        assert rc == 1, err
        assert "nothing was created: endpoint cache0: address 10.9.0.1 is outside" in err
        rc, _, _ = await plexus(controller_proc, "compartment", "show", "cache")
        assert rc == 1
    finally:
        for a in agents:
            await a.stop()


async def test_apply_refuses_bad_files_and_waits_for_hosts(
    controller_proc: ControllerProcess, tmp_path: Path
) -> None:
    f = tmp_path / "topo.toml"
    f.write_text('[[networks]]\nid = "blue"\nsubnet = "10.1.0.0/33"\n')
    rc, _, err = await plexus(controller_proc, "apply", str(f))
    assert rc == 1 and "networks.0.subnet" in err
    f.write_text(
        '[[compartments]]\nid = "c"\nhost = "h1"\n[[compartments]]\nid = "c"\nhost = "h2"\n'
    )
    rc, _, err = await plexus(controller_proc, "apply", str(f))
    assert rc == 1 and "compartment ids repeated: c" in err
    f.write_text("[[networks]\n")
    rc, _, err = await plexus(controller_proc, "apply", str(f))
    assert rc == 1 and "cannot read" in err
    f.write_text('[[compartments]]\nid = "c"\nhost = "ghost"\n')
    rc, _, err = await plexus(controller_proc, "apply", str(f), "--hosts-timeout", "0.3")
    assert rc == 3 and "hosts not online after 0.3 s: ghost" in err


def test_the_demo_topology_round_trips_through_toml(tmp_path: Path) -> None:
    from cli.apply import load

    topo = demo.topology(["h1", "h2", "h3"])
    f = tmp_path / "demo.toml"
    f.write_text(topo.to_toml())
    assert load(f) == topo
    assert topo.hosts() == ["h1", "h2", "h3"] and len(topo.endpoints) == 6


async def test_broker_init_run_and_add_host_through_the_cli(tmp_path: Path) -> None:
    """The CLI path a user takes: init (credentials, ACL), run, add a host, reload."""
    directory = tmp_path / "broker"
    rc, _, err = await plexus("http://unused", "broker", "run", "--dir", str(directory))
    assert rc == 2 and "plexus broker init" in err  # no anonymous broker by accident
    port = free_port()
    rc, out, err = await plexus(
        "http://unused", "broker", "init", "--dir", str(directory),
        "--listen", f"127.0.0.1:{port}", "--host", "h1", "-o", "json",
    )  # fmt: skip
    assert rc == 0, err
    assert [i["identity"] for i in json.loads(out)] == ["@controller", "h1"]
    rc, _, err = await plexus("http://unused", "broker", "init", "--dir", str(directory))
    assert rc == 2 and "already holds" in err
    text = (directory / "mosquitto.conf").read_text()
    assert f"listener {port} 127.0.0.1" in text and "set_tcp_nodelay true" in text
    assert "allow_anonymous false" in text
    broker_log = tmp_path / "broker.log"
    # Mosquitto logs to stderr here (log_dest stderr)
    with await asyncio.to_thread(broker_log.open, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *(PLEXUS, "broker", "run", "--dir", str(directory)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
    try:
        await asyncio.to_thread(wait_port, port)
        base = BrokerURL.parse(f"mqtt://127.0.0.1:{port}")
        ident = directory / "identities"
        ctl, h1 = base.with_credentials(ident / "@controller"), base.with_credentials(ident / "h1")
        async with client(h1, "h1") as agent, client(ctl, "ctl") as controller:
            await agent.subscribe(topics.host_desired("h1"), qos=1)
            await controller.publish(topics.host_desired("h1"), b"x", qos=1)
            async with asyncio.timeout(5):
                msg = await anext(aiter(agent.messages))
            assert msg.payload == b"x"
        reloads = LogWatch(broker_log)
        rc, out, err = await plexus(
            "http://unused", "broker", "add-host", "h2", "--dir", str(directory), "-o", "json"
        )
        assert rc == 0 and "h2" in {i["identity"] for i in json.loads(out)}, err
        await reloads.wait("Reloading config.")  # add-host reloaded the running broker
        async with client(base.with_credentials(ident / "h2"), "h2"):
            pass
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()
    rc, _, err = await plexus(
        "http://unused", "broker", "run", "--allow-anonymous", "--listen", "nowhere:99999",
        "--dir", str(tmp_path),
    )  # fmt: skip
    assert rc == 2 and "is not HOST:PORT" in err
