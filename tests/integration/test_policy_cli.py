"""Policies and labels end to end without a kernel: ``plexus`` as a process, a real
controller and broker, simulated agents that receive their desired documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_cli import plexus
from tests.support import ControllerProcess, Mosquitto, SimAgent

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
id = "cli"
host = "h2"

[[endpoints]]
id = "web0"
network = "blue"
compartment = "web"
labels = { app = "web" }

[[endpoints]]
id = "cli0"
network = "blue"
compartment = "cli"
labels = { app = "cli" }

[[policies]]
id = "web-in"
network = "blue"
selector = ["app=web"]

[[policies.rules]]
priority = 10
direction = "in"
action = "allow"
protocol = "tcp"
local_ports = ["80", "8000-8080"]
remote_selector = ["app=cli"]
"""

DB_POLICY = {
    "id": "db-in",
    "network": "blue",
    "tier": 50,
    "selector": ["app=db"],
    "rules": [{"priority": 1, "direction": "in", "action": "block"}],
}


async def test_policies_and_labels_through_the_cli(
    mosquitto: Mosquitto, controller_proc: ControllerProcess, tmp_path: Path
) -> None:
    agents = [SimAgent(h, mosquitto.url, f"198.18.0.{i}") for i, h in enumerate(("h1", "h2"), 1)]
    for a in agents:
        await a.start()
    ctl = controller_proc
    try:
        f = tmp_path / "topo.toml"
        f.write_text(TOPOLOGY)
        rc, out, err = await plexus(ctl, "apply", str(f), "-o", "json")
        assert rc == 0, err
        assert [(s["kind"], s["result"]) for s in json.loads(out)][-1] == ("policy", "created")
        # applied by both of blue's hosts (apply waits): the policy is in their documents
        for a in agents:
            assert a.desired is not None and [p.id for p in a.desired.policies] == ["web-in"]
        assert agents[0].tables["blue"]["cli0"].labels == ("app=cli",)
        rc, out, _ = await plexus(ctl, "apply", str(f), "-o", "json")
        assert rc == 0 and {s["result"] for s in json.loads(out)} == {"exists"}
        f.write_text(TOPOLOGY.replace("priority = 10", "priority = 11"))
        rc, _, err = await plexus(ctl, "apply", str(f))
        assert rc == 1 and "policy web-in exists with rules=" in err

        rc, out, _ = await plexus(ctl, "policy", "list")
        assert rc == 0 and "web-in" in out and "blue" in out
        rc, out, _ = await plexus(ctl, "policy", "show", "web-in")
        assert rc == 0 and "in-10" in out and "8000-8080" in out
        rc, out, err = await plexus(ctl, "policy", "trace", "cli0", "web0", "tcp", "8080")
        assert rc == 0, err
        assert "web-in" in out and "in-10" in out and "verdict: allow" in out
        rc, out, _ = await plexus(ctl, "policy", "trace", "cli0", "web0", "udp", "53", "-o", "json")
        data = json.loads(out)
        assert data["verdict"] == "deny"
        assert data["destination"]["verdict"] == "default-deny-of-tier"
        rc, _, err = await plexus(ctl, "policy", "trace", "cli0", "web0", "tcp")
        assert rc == 1 and "422" in err and "destination port" in err

        # a policy from a JSON file: its selector matches nothing yet, a warning
        p = tmp_path / "db.json"
        p.write_text(json.dumps(DB_POLICY))
        rc, out, err = await plexus(ctl, "policy", "create", str(p), "--wait")
        assert rc == 0, err
        assert "warning: selector app=db matches no endpoint of network blue" in err
        assert "applied by 2 host(s)" in out
        # a new endpoint with that label: selected, no warning left
        rc, _, err = await plexus(ctl, "compartment", "create", "db", "--host", "h2")
        assert rc == 0, err
        rc, out, err = await plexus(
            ctl, "endpoint", "create", "db0", "--network", "blue", "--compartment", "db",
            "--label", "app=db", "-l", "tier=back", "--wait", "-o", "json",
        )  # fmt: skip
        assert rc == 0, err
        assert json.loads(out)["labels"] == {"app": "db", "tier": "back"}
        rc, out, err = await plexus(ctl, "policy", "show", "db-in")
        assert rc == 0 and "warning" not in err
        rc, out, _ = await plexus(ctl, "policy", "trace", "web0", "db0", "icmp", "-o", "json")
        assert json.loads(out)["destination"]["policy"] == "db-in"

        # labels: set one, remove one, clear; each a new record at the peers
        rc, out, err = await plexus(ctl, "endpoint", "label", "db0", "app=cache", "tier-", "--wait")
        assert rc == 0 and "app=cache" in out and "tier" not in out, err
        assert agents[0].tables["blue"]["db0"].labels == ("app=cache",)
        rc, out, _ = await plexus(ctl, "policy", "trace", "web0", "db0", "icmp", "-o", "json")
        assert json.loads(out)["destination"]["verdict"] == "default-allow"
        rc, out, err = await plexus(ctl, "endpoint", "label", "db0", "--clear", "-o", "json")
        assert rc == 0 and json.loads(out)["labels"] == {}, err
        rc, _, err = await plexus(ctl, "endpoint", "label", "db0", "novalue")
        assert rc == 1 and "KEY=VALUE" in err

        # replace, delete: the hosts' documents follow
        p.write_text(json.dumps({**DB_POLICY, "tier": 60}))
        rc, out, err = await plexus(ctl, "policy", "replace", str(p), "--wait", "-o", "json")
        assert rc == 0 and json.loads(out)["generation"] == 2, err
        assert agents[1].desired is not None
        assert {p.id: p.tier for p in agents[1].desired.policies} == {"db-in": 60, "web-in": 100}
        rc, _, err = await plexus(ctl, "policy", "delete", "db-in", "--wait")
        assert rc == 0, err
        assert [p.id for p in agents[1].desired.policies] == ["web-in"]
        rc, _, err = await plexus(ctl, "policy", "show", "db-in")
        assert rc == 1 and "not found" in err

        # a network held on a host without an endpoint there: in its document, then not
        rc, _, err = await plexus(ctl, "network", "create", "red", "--subnet", "10.2.0.0/24")
        assert rc == 0, err
        rc, out, err = await plexus(ctl, "network", "hold", "red", "h1", "--wait", "-o", "json")
        assert rc == 0 and json.loads(out)["pinned"] == ["h1"], err
        assert agents[0].desired is not None
        assert "red" in [n.id for n in agents[0].desired.networks]
        rc, out, err = await plexus(ctl, "network", "release", "red", "h1", "--wait", "-o", "json")
        assert rc == 0 and json.loads(out)["pinned"] == [], err
        assert "red" not in [n.id for n in agents[0].desired.networks]
    finally:
        for a in agents:
            await a.stop()
