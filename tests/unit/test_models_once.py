"""A network's (and a published port's) fields are defined once: the REST bodies, the
API's views, the store and the wire are all made of them. These tests fail when one of
them drifts from the others."""

from __future__ import annotations

from pathlib import Path

import proto
from controller.api import views
from controller.service import Controller
from controller.state import NetworkRow
from controller.store import SqliteStore
from proto.models import NetworkFields, PortFields
from proto.rest import Network, NetworkCreate, PublishedPort

WIRE = {"v", "kind"}


def test_the_rest_bodies_and_the_wire_share_one_field_list() -> None:
    assert set(NetworkCreate.model_fields) == set(NetworkFields.model_fields)
    spec = set(proto.NetworkSpec.model_fields) - WIRE - {"generation"}
    assert spec == set(NetworkFields.model_fields)
    assert set(Network.model_fields) >= spec | {"generation", "table_generation"}
    assert set(PublishedPort.model_fields) == set(PortFields.model_fields)
    assert set(proto.PortMapping.model_fields) - WIRE == set(PortFields.model_fields)
    for name, f in NetworkFields.model_fields.items():  # the CLI's help and OpenAPI's
        assert f.description, name


def test_a_network_round_trips_through_create_store_and_view(tmp_path: Path) -> None:
    """Every field a user sets comes back from the store and in the API's view as set."""
    body = NetworkCreate.model_validate(
        {
            "id": "blue",
            "mode": "overlay",
            "subnet": "10.1.0.0/24",
            "gateway": "10.1.0.254",
            "vni": 77,
            "mtu": 1400,
            "ip_range": "10.1.0.128/25",
            "outbound_nat": True,
            "nat_exceptions": ["192.168.0.0/16"],
        }
    )
    store = SqliteStore(tmp_path / "s.db")
    ctl = Controller(store)
    row = ctl.create_network(body).value
    store.close()
    again = Controller(SqliteStore(tmp_path / "s.db"))
    stored = again.state.networks["blue"]
    assert stored == row and isinstance(stored, NetworkRow)
    view = Network.model_validate(views.network(again.state, stored))
    sent, shown = body.model_dump(), view.model_dump()
    assert {k: shown[k] for k in body.model_fields_set} == {
        k: sent[k] for k in body.model_fields_set
    }
    assert view.generation == stored.spec.generation == 1
    again.store.close()


def test_a_store_written_before_the_spec_was_held_whole_still_loads(tmp_path: Path) -> None:
    """Network rows of older stores are flat (every field beside ``table_gen``)."""
    import json
    import sqlite3

    path = tmp_path / "old.db"
    SqliteStore(path).close()
    flat = {
        "id": "blue",
        "mode": "nat",
        "subnet": "10.5.0.0/24",
        "gateway": "10.5.0.1",
        "vni": None,
        "mtu": 1500,
        "generation": 3,
        "table_gen": 9,
        "created": 1.5,
        "uplink": None,
        "uplinks": {},
        "ip_range": None,
        "outbound_nat": False,
        "nat_exceptions": [],
    }
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO networks(id, vni, data) VALUES (?, ?, ?)", ("blue", None, json.dumps(flat))
    )
    db.commit()
    db.close()
    ctl = Controller(SqliteStore(path))
    net = ctl.state.networks["blue"]
    assert (net.mode, net.generation, net.table_gen, net.created) == ("nat", 3, 9, 1.5)
    assert net.host_local and net.spec.mtu == 1500
    ctl.store.close()


def test_a_stored_row_that_no_longer_reads_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    import sqlite3

    import pytest

    from controller.errors import StoreError

    path = tmp_path / "bad.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO networks(id, vni, data) VALUES ('x', NULL, '{\"spec\": {}}')")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="a stored networks row does not read"):
        SqliteStore(path)


def test_a_policys_fields_are_defined_once() -> None:
    """The REST bodies, the view, the wire and the topology file share
    ``proto.policy.PolicyFields``; a topology with policies and labels round-trips
    through TOML."""
    import tomllib

    from proto.policy import Policy, PolicyFields
    from proto.rest import PolicyCreate, PolicyView, Topology

    fields = set(PolicyFields.model_fields)
    assert set(PolicyCreate.model_fields) == fields
    assert set(Policy.model_fields) - WIRE - {"generation"} == fields
    assert set(PolicyView.model_fields) >= fields | {"generation", "warnings"}
    topo = Topology.model_validate(
        {
            "endpoints": [
                {"id": "e", "network": "n", "compartment": "c", "labels": {"app": "web"}}
            ],
            "policies": [
                {
                    "id": "p",
                    "network": "n",
                    "selector": ["app=web"],
                    "rules": [
                        {
                            "priority": 1,
                            "direction": "in",
                            "action": "allow",
                            "protocol": "tcp",
                            "local_ports": ["80-90"],
                            "remote_selector": [],
                        },
                    ],
                }
            ],
        }
    )
    assert Topology.model_validate(tomllib.loads(topo.to_toml())) == topo
