"""The PostgreSQL store against a real PostgreSQL (a private cluster, tests/pg.py): rows,
constraints, migrations, the change log between two controllers, and a server that
goes away and comes back."""

from __future__ import annotations

import dataclasses
import ipaddress
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

import proto
from controller import bulk, pins, policies, replica, schema
from controller.config import ControllerSettings
from controller.daemon import build
from controller.errors import Invalid, StoreConflict, StoreError
from controller.pgstore import PostgresStore, where
from controller.service import Controller
from controller.state import Delta, EndpointRow, State
from controller.store import open_store
from proto.rest import BatchOp, CompartmentCreate, EndpointCreate, NetworkCreate, PolicyCreate
from tests.pg import Cluster
from tests.support import ControllerProcess, Mosquitto


def status(host: str, vtep: str, version: str = "t") -> proto.HostStatus:
    return proto.HostStatus(host=host, state="online", version=version, vtep=vtep)


def populate(c: Controller) -> None:
    """One row of every kind, and their optional fields."""
    c.host_reported(status("h1", "198.18.0.1"))
    c.host_reported(status("h2", "198.18.0.2"))
    c.create_network(NetworkCreate.model_validate({"id": "blue", "subnet": "10.1.0.0/24"}))
    c.create_network(
        NetworkCreate.model_validate({"id": "nat", "subnet": "10.9.0.0/24", "mode": "nat"})
    )
    c.create_compartment(CompartmentCreate(id="c1", host="h1"))
    c.create_compartment(CompartmentCreate(id="c2", host="h2"))
    c.create_endpoint(
        EndpointCreate.model_validate(
            {
                "id": "e1",
                "network": "blue",
                "compartment": "c1",
                "labels": {"app": "web"},
                "dns": {"nameservers": ["10.1.0.53"], "search": ["example"]},
            }
        )
    )
    c.create_endpoint(
        EndpointCreate.model_validate(
            {
                "id": "e2",
                "network": "nat",
                "compartment": "c2",
                "ports": [{"protocol": "tcp", "host_port": 8080, "port": 80}],
            }
        )
    )
    policies.create_policy(
        c,
        PolicyCreate.model_validate(
            {
                "id": "web-in",
                "network": "blue",
                "rules": [{"priority": 10, "direction": "in", "action": "allow"}],
            }
        ),
    )
    pins.pin(c, "nat", "h1")


def tables(state: State) -> dict[str, object]:
    """What the store keeps of a state (hosts: their kept fields)."""
    hosts = {
        h.id: (h.vtep, h.version, h.desired_gen) for h in state.hosts.values()
    }  # runtime fields are not kept (controller.pgstore)
    return dict(
        hosts=hosts,
        networks=dict(state.networks),
        compartments=dict(state.compartments),
        endpoints=dict(state.endpoints),
        policies=dict(state.policies),
        floors=dict(state.floors),
    )


def test_every_row_kind_round_trips(pg_url: str) -> None:
    c = Controller(PostgresStore(pg_url))
    populate(c)
    c.delete_network("nat", force=True)  # a floor
    again = Controller(PostgresStore(pg_url))
    assert tables(again.state) == tables(c.state)
    assert again.state.floors["net:nat"] > 0
    assert again.state.endpoints["e1"].dns is not None


def test_a_constraint_violation_is_a_store_error_and_writes_nothing(pg_url: str) -> None:
    c = Controller(PostgresStore(pg_url))
    populate(c)
    e1 = c.state.endpoints["e1"]
    head = c.store.head
    dup = dataclasses.replace(e1, id="e9", index=5)  # e1's address and MAC
    with pytest.raises(StoreError, match="duplicate key value violates unique constraint"):
        c.store.apply(Delta(puts=[dup]))
    assert c.store.head == head
    with pytest.raises(StoreError, match="foreign key"):
        bad = dataclasses.replace(e1, id="e8", network="nope", index=7, mac="02:00:00:00:00:99")
        c.store.apply(Delta(puts=[bad]))
    # the connection is still good: the next write goes through
    c.create_endpoint(EndpointCreate(network="blue", compartment="c2"))  # type: ignore[call-arg]
    assert c.store.head == head + 1
    assert "e9" not in Controller(PostgresStore(pg_url)).state.endpoints


def _version(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
    assert row is not None
    return int(row[0])


def test_a_fresh_database_is_made_at_the_latest_version(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    PostgresStore(pg_url).close()  # and opening it again changes nothing
    assert _version(pg_url) == schema.LATEST


def test_a_version_1_database_is_migrated_with_its_rows(pg_url: str) -> None:
    c = Controller(PostgresStore(pg_url))
    populate(c)
    with psycopg.connect(pg_url) as conn:  # back to version 1, as it was made then
        conn.execute("DROP TABLE schema_version, head, changes, leader")
    store = PostgresStore(pg_url)
    assert _version(pg_url) == schema.LATEST
    assert store.head == 0
    assert tables(Controller(store).state) == tables(c.state)


def test_a_database_newer_than_the_code_is_refused_naming_both_versions(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match=f"schema version 99, newer than .*'s {schema.LATEST}"):
        PostgresStore(pg_url)


def test_two_stores_a_conflict_is_detected_and_changes_since_catches_up(pg_url: str) -> None:
    one, two = PostgresStore(pg_url), PostgresStore(pg_url)
    one.load(), two.load()
    one.apply(Delta(floors={"net:x": 5}))
    with pytest.raises(StoreConflict) as caught:
        two.apply(Delta(floors={"net:x": 3}))
    assert (caught.value.expected, caught.value.head) == (0, 1)
    changes = two.changes_since(two.head)
    assert [(n, d.floors) for n, d in changes] == [(1, {"net:x": 5})]
    two.head = 1
    two.apply(Delta(floors={"net:x": 3}))  # floors never go backwards
    assert one.load()[1] == {"net:x": 5}
    assert one.head == 2
    assert [n for n, _ in one.changes_since(0)] == [1, 2]


class Counting(PostgresStore):
    """A store that counts the conflicts it raised."""

    conflicts = 0

    def apply(self, delta: Delta, expect: int | None = None) -> None:
        try:
            super().apply(delta, expect)
        except StoreConflict:
            self.conflicts += 1
            raise


def test_two_controllers_creating_endpoints_alternately_never_share_an_address(
    pg_url: str,
) -> None:
    sa, sb = Counting(pg_url), Counting(pg_url)
    a, b = Controller(sa), Controller(sb)
    a.host_reported(status("h1", "198.18.0.1"))
    a.create_network(NetworkCreate.model_validate({"id": "blue", "subnet": "10.1.0.0/24"}))
    # b has not seen the host: refused by a state that is behind, it catches up and runs
    b.create_compartment(CompartmentCreate(id="c-b", host="h1"))
    a.create_compartment(CompartmentCreate(id="c-a", host="h1"))
    made: list[EndpointRow] = []
    for i in range(20):
        ctl = (a, b)[i % 2]
        # every command of one is behind the other's last commit: a conflict each time
        comp = CompartmentCreate(id=f"k{i}", host="h1")
        ctl.create_compartment(comp)
        body = EndpointCreate(network="blue", compartment=f"k{i}")  # type: ignore[call-arg]
        made.append(ctl.create_endpoint(body).value)
    ips = [e.ip for e in made]
    assert len(set(ips)) == len(ips) == 20
    assert sa.conflicts + sb.conflicts >= 19  # each one's first write after the other's
    assert a.news and b.news  # what each caught up with, for its runtime to publish
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.1.0.0/24") for ip in ips)
    replica.catch_up(a)
    replica.catch_up(b)
    assert tables(a.state) == tables(b.state) == tables(Controller(PostgresStore(pg_url)).state)
    assert a.state.networks["blue"].table_gen == b.state.networks["blue"].table_gen


def test_a_batch_behind_the_other_controller_runs_again_as_one_commit(pg_url: str) -> None:
    a, b = Controller(PostgresStore(pg_url)), Controller(PostgresStore(pg_url))
    a.host_reported(status("h1", "198.18.0.1"))
    a.create_network(NetworkCreate.model_validate({"id": "blue", "subnet": "10.1.0.0/24"}))
    b.host_reported(status("h1", "198.18.0.1"))  # b catches up here
    a.create_compartment(CompartmentCreate(id="taken", host="h1"))
    a.create_endpoint(EndpointCreate(network="blue", compartment="taken"))  # type: ignore[call-arg]
    ops = [
        BatchOp.model_validate(
            {"op": "create", "kind": "compartment", "body": {"id": f"k{i}", "host": "h1"}}
        )
        for i in range(3)
    ] + [
        BatchOp.model_validate(
            {
                "op": "create",
                "kind": "endpoint",
                "body": {"network": "blue", "compartment": f"k{i}"},
            }
        )
        for i in range(3)
    ]
    head = a.store.head
    out = bulk.run(b, ops)
    assert b.store.head == head + 1  # one commit, after catching up
    ips = {d.row.ip for d in out.value if isinstance(d.row, EndpointRow)}
    assert len(ips) == 3 and a.state.endpoints  # and none is the address a took
    assert not ips & {e.ip for e in a.state.endpoints.values()}


def test_a_refusal_by_a_state_that_is_up_to_date_stands(pg_url: str) -> None:
    a = Controller(PostgresStore(pg_url))
    with pytest.raises(Invalid, match="host 'h9' is not known"):
        a.create_compartment(CompartmentCreate(id="c", host="h9"))


def test_one_status_seen_by_two_controllers_is_written_once(pg_url: str) -> None:
    a, b = Controller(PostgresStore(pg_url)), Controller(PostgresStore(pg_url))
    a.host_reported(status("h1", "198.18.0.1"))
    b.host_reported(status("h1", "198.18.0.1"))  # a conflict, caught up: nothing to write
    assert a.store.head == b.store.head == 1
    b.host_reported(status("h1", "198.18.0.1", version="t2"))  # a new version: written
    a.host_reported(status("h1", "198.18.0.1", version="t2"))
    assert a.store.head == b.store.head == 2
    # b's own view of the agent is kept when it catches up with a's row
    assert b.state.hosts["h1"].state == "online"


def test_a_follower_wakes_on_the_notification(pg_url: str) -> None:
    a, b = Controller(PostgresStore(pg_url)), Controller(PostgresStore(pg_url))
    assert replica.follow(b, 0.05) == []  # listening from now on
    woke: list[float] = []

    def write() -> None:
        a.create_network(NetworkCreate.model_validate({"id": "blue", "subnet": "10.1.0.0/24"}))

    start = time.monotonic()
    writer = threading.Timer(0.2, write)
    writer.start()
    try:
        changes = replica.follow(b, 30)
        woke.append(time.monotonic() - start)
    finally:
        writer.join()
    assert [list(ch.networks) for ch in changes] == [["blue"]]
    assert "blue" in b.state.networks and woke[0] < 10


def test_postgresql_gone_fails_writes_clearly_and_back_they_resume(
    pg_cluster: Cluster, pg_url: str
) -> None:
    c = Controller(PostgresStore(pg_url, connect_timeout=2))
    populate(c)
    pg_cluster.stop()
    try:
        with pytest.raises(
            StoreError,
            match=r"lost the connection to PostgreSQL at .* the next call connects again",
        ):
            c.create_compartment(CompartmentCreate(id="x1", host="h1"))
        with pytest.raises(StoreError, match="cannot reach PostgreSQL at "):
            c.create_compartment(CompartmentCreate(id="x1", host="h1"))
        assert "x1" not in c.state.compartments
    finally:
        pg_cluster.start()
    c.create_compartment(CompartmentCreate(id="x1", host="h1"))  # the same store object
    assert "x1" in Controller(PostgresStore(pg_url)).state.compartments


def test_the_store_is_picked_by_its_address_and_named_without_its_password(
    pg_url: str,
) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    store.close()
    url = "postgresql://me:secret@db.example:5433/plexus"
    assert ControllerSettings(store=url).store_name == "postgresql://me@db.example:5433/plexus"
    assert where(url) == "db.example:5433/plexus"


async def test_the_api_answers_503_with_the_reason_while_postgresql_is_gone(
    pg_cluster: Cluster, pg_url: str, tmp_path: Path
) -> None:
    settings = ControllerSettings(
        store=pg_url, api_auth="none", api_token_file=tmp_path / "api-token"
    )
    rt, server = build(settings)
    assert isinstance(rt.controller.store, PostgresStore)
    rt.controller.host_reported(status("h1", "198.18.0.1"))
    transport = httpx.ASGITransport(app=server.config.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as client:
        pg_cluster.stop()
        try:
            r = await client.post("/v1/compartments", json={"id": "c1", "host": "h1"})
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "unavailable"
            assert "PostgreSQL" in r.json()["reason"]
        finally:
            pg_cluster.start()
        r = await client.post("/v1/compartments", json={"id": "c1", "host": "h1"})
        assert r.status_code == 201, r.text
    rt.controller.store.close()


def test_a_controller_stalled_holding_the_head_fails_the_others_writes_not_forever(
    pg_url: str,
) -> None:
    a = Controller(PostgresStore(pg_url, lock_timeout=0.3))
    a.host_reported(status("h1", "198.18.0.1"))
    with psycopg.connect(pg_url) as stalled:  # a transaction that holds the head row
        stalled.execute("SELECT seq FROM head FOR UPDATE")
        start = time.monotonic()
        with pytest.raises(StoreError, match="lock timeout"):
            a.create_compartment(CompartmentCreate(id="c1", host="h1"))
        assert time.monotonic() - start < 5
    a.create_compartment(CompartmentCreate(id="c1", host="h1"))


def test_two_controllers_writing_at_once_each_get_every_write_in(pg_url: str) -> None:
    """Two threads, one controller each, creating endpoints as fast as they can: every
    conflict is caught up and run again holding the head, so none is refused, and no
    address is given twice."""
    sa, sb = Counting(pg_url), Counting(pg_url)
    a, b = Controller(sa), Controller(sb)
    a.host_reported(status("h1", "198.18.0.1"))
    a.create_network(NetworkCreate.model_validate({"id": "blue", "subnet": "10.1.0.0/22"}))
    b.host_reported(status("h1", "198.18.0.1"))
    failed: list[BaseException] = []

    def writer(ctl: Controller, name: str) -> None:
        try:
            for i in range(40):
                ctl.create_compartment(CompartmentCreate(id=f"{name}{i}", host="h1"))
                body = EndpointCreate(network="blue", compartment=f"{name}{i}")  # type: ignore[call-arg]
                ctl.create_endpoint(body)
        except BaseException as e:
            failed.append(e)

    threads = [threading.Thread(target=writer, args=(c, n)) for c, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == []
    final = Controller(PostgresStore(pg_url)).state
    ips = [e.ip for e in final.endpoints.values()]
    assert len(ips) == len(set(ips)) == 80
    assert sa.conflicts + sb.conflicts > 0  # they did meet


def test_two_controller_processes_on_one_database_share_the_networks(
    mosquitto: Mosquitto, pg_url: str, tmp_path: Path
) -> None:
    """``plexus controller --store postgresql://…`` twice: networks made through either
    API get distinct VNIs, and each controller serves what the other made once it has
    caught up (at its next write)."""
    token = ["--api-token-file", str(tmp_path / "api-token")]
    procs = [
        ControllerProcess(mosquitto.url, pg_url, tmp_path / f"c{i}.log", extra=token)
        for i in (1, 2)
    ]
    try:
        for p in procs:
            p.start()
        vnis = []
        for i in range(6):
            p = procs[i % 2]
            body = {"id": f"n{i}", "subnet": f"10.{i}.0.0/24"}
            r = httpx.post(f"{p.url}/v1/networks", json=body, timeout=10)
            assert r.status_code == 201, r.text
            vnis.append(r.json()["vni"])
        assert len(set(vnis)) == 6
        for p in procs:  # the last writer knows all; the other after its next write
            body = {"id": f"x{p.port}", "subnet": "10.99.0.0/24"}
            r = httpx.post(f"{p.url}/v1/networks", json=body, timeout=10)
            assert r.status_code == 201, r.text
        seen = [
            {n["id"] for n in httpx.get(f"{p.url}/v1/networks", timeout=10).json()} for p in procs
        ]
        assert {f"n{i}" for i in range(6)} <= seen[0] & seen[1]
    finally:
        for p in procs:
            p.stop()


def test_holding_the_head_that_times_out_leaves_the_connection_usable(pg_url: str) -> None:
    store = PostgresStore(pg_url, lock_timeout=0.2)
    with psycopg.connect(pg_url) as other:
        other.execute("SELECT seq FROM head FOR UPDATE")
        refused = pytest.raises(StoreError, match=r"holding the head failed: .*lock timeout")
        with refused, store.exclusive():
            pass
    store.apply(Delta(floors={"net:x": 1}))
    assert store.load()[1] == {"net:x": 1}


def test_a_row_put_twice_in_one_delta_is_written_as_the_last_put(pg_url: str) -> None:
    c = Controller(PostgresStore(pg_url))
    populate(c)
    e1 = c.state.endpoints["e1"]
    c.store.apply(Delta(puts=[dataclasses.replace(e1, gen=90), dataclasses.replace(e1, gen=91)]))
    assert Controller(PostgresStore(pg_url)).state.endpoints["e1"].gen == 91
