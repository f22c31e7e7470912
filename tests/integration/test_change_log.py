"""The change log trimmed by the leader, against a real PostgreSQL (tests/pg.py): what is
kept (the retention, and whatever the leader has not published), and a replica behind
the trimmed part, which reloads its state from the tables instead of missing changes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import psycopg
import pytest

from controller import replica
from controller.errors import LogTrimmed
from controller.leader import Lease
from controller.pgstore import PostgresStore
from controller.service import Controller
from proto.rest import CompartmentCreate, EndpointCreate, NetworkCreate
from tests.integration.replicas import converged, recording, started, three, write
from tests.integration.test_pgstore import populate, status, tables
from tests.support import LogWatch, Mosquitto, wait_for


def logged(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [int(n) for (n,) in conn.execute("SELECT seq FROM changes ORDER BY seq")]


def head(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT seq FROM head").fetchone()
    assert row is not None
    return int(row[0])


async def trim(url: str, published: int, retention: float = 0.0) -> Lease:
    """A leader that has published through ``published``, after one trim round."""
    lease = Lease(url, {}, "trimmer", retention=retention, trim_every=0)
    await lease.step()  # takes the lease
    assert lease.epoch
    lease.published = published
    await lease.step()  # renews it (the mark) and trims
    return lease


def endpoint(c: Controller, comp: str, network: str = "blue") -> str:
    return c.create_endpoint(
        EndpointCreate.model_validate({"network": network, "compartment": comp})
    ).value.id


@pytest.mark.parametrize("through_head", [True, False], ids=["all", "part"])
async def test_a_replica_behind_the_trimmed_log_reloads_its_state(
    pg_url: str, through_head: bool
) -> None:
    """``all``: nothing after the follower's head is logged any more; ``part``: the log
    goes on from a later change. Either way the follower finds the gap, reloads, keeps
    its own view of the agents, and follows the log again after."""
    a, b = Controller(PostgresStore(pg_url)), Controller(PostgresStore(pg_url))
    populate(a)
    replica.catch_up(b)
    b.host_reported(status("h1", "198.18.0.1"))  # b's view of h1: online
    behind = b.store.head
    # what b misses: rows made, changed, deleted, of every kind it holds
    a.create_compartment(CompartmentCreate(id="c3", host="h2"))
    new = endpoint(a, "c3")
    a.delete_endpoint("e1")
    a.delete_compartment("c1")
    a.host_reported(status("h2", "198.18.0.2", version="t2"))
    a.delete_network("nat", force=True)  # a floor
    a.create_network(NetworkCreate.model_validate({"id": "red", "subnet": "10.2.0.0/24"}))
    kept = a.store.head if through_head else a.store.head - 2
    lease = await trim(pg_url, kept)
    try:
        left = logged(pg_url)
        assert (left[0] if left else a.store.head + 1) == kept + 1 > behind + 1
        with pytest.raises(LogTrimmed, match=f"no longer holds change {behind + 1}"):
            b.store.changes_since(behind)
        b.news.clear()
        changes = replica.catch_up(b)
        assert b.store.head == a.store.head
        assert tables(b.state) == tables(a.state)
        reloaded = changes[0]
        assert reloaded.endpoints["e1"][1] is None and reloaded.endpoints[new][0] is None
        assert reloaded.hosts["h2"][1] is not None and reloaded.hosts["h2"][1].version == "t2"
        assert reloaded.policies == {}  # what did not change is not in the change
        assert b.news[0][1] is reloaded  # published like any change (a leader's bus)
        assert b.state.hosts["h1"].state == "online"  # b's own view, kept
        assert b.state.floors["net:nat"] > 0
        # and the log is followed again from there
        again = endpoint(a, "c2")
        assert [list(ch.endpoints) for ch in replica.catch_up(b)] == [[again]]
        assert tables(b.state) == tables(a.state)
        # b writes at the head: no conflict left behind
        b.create_compartment(CompartmentCreate(id="c4", host="h1"))
        replica.catch_up(a)
        assert tables(b.state) == tables(a.state)
    finally:
        await lease.resign()


async def test_the_log_is_trimmed_only_past_the_retention_and_the_published_mark(
    pg_url: str,
) -> None:
    a = Controller(PostgresStore(pg_url))
    populate(a)
    head = a.store.head
    lease = await trim(pg_url, 3)  # published through 3: what follows stays
    try:
        assert logged(pg_url) == list(range(4, head + 1))
        lease.published, lease.retention = head, 60
        await lease.step()  # all of it is younger than the retention
        assert logged(pg_url) == list(range(4, head + 1))
        lease.retention = 0
        await lease.step()  # the next round (trim_every 0)
        assert logged(pg_url) == []
        a.create_compartment(CompartmentCreate(id="c5", host="h1"))
        assert logged(pg_url) == [head + 1]  # numbers go on; only the head counts
    finally:
        await lease.resign()


async def test_a_long_log_is_trimmed_a_bounded_number_of_rows_a_round(pg_url: str) -> None:
    """At most ``trim_rows`` a DELETE (statements on the lease's connection are short);
    the rest at the next rounds."""
    a = Controller(PostgresStore(pg_url))
    populate(a)
    head = a.store.head
    lease = Lease(pg_url, {}, "trimmer", retention=0, trim_every=0, trim_rows=4)
    try:
        await lease.step()
        lease.published = head
        await lease.step()
        assert logged(pg_url) == list(range(5, head + 1))
        await lease.step()
        assert logged(pg_url) == list(range(9, head + 1))
        while logged(pg_url):
            await lease.step()
        assert lease.live()
    finally:
        await lease.resign()


async def test_a_follower_does_not_trim(pg_url: str) -> None:
    a = Controller(PostgresStore(pg_url))
    populate(a)
    leader = await trim(pg_url, 0)
    follower = Lease(pg_url, {}, "other", retention=0, trim_every=0)
    try:
        await follower.step()
        assert follower.epoch == 0
        assert logged(pg_url) == list(range(1, a.store.head + 1))
    finally:
        await leader.resign()
        await follower.resign()


async def test_a_command_of_a_replica_behind_the_trimmed_log_reloads_and_runs(
    pg_url: str,
) -> None:
    """The command conflicts, holds the head, catches up (a reload, in the held
    transaction) and runs again."""
    a, b = Controller(PostgresStore(pg_url)), Controller(PostgresStore(pg_url))
    populate(a)
    replica.catch_up(b)  # b knows c2; what follows, it does not
    a.create_compartment(CompartmentCreate(id="c3", host="h2"))
    taken = endpoint(a, "c3")
    lease = await trim(pg_url, a.store.head)
    try:
        made = endpoint(b, "c2")
        assert made != taken and b.state.endpoints[made].ip != a.state.endpoints[taken].ip
        replica.catch_up(a)
        assert tables(b.state) == tables(a.state)
    finally:
        await lease.resign()


async def test_a_stopped_follower_behind_the_trimmed_log_reloads_when_it_wakes(
    debug_broker: Mosquitto, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three controller processes whose leader keeps no log (retention 0): a follower
    SIGSTOPped while the others write wakes behind the trimmed log, reloads, serves
    every write, and writes again; every acknowledged write reaches the hosts."""
    monkeypatch.setenv("PLEXUS_CHANGE_LOG_RETENTION", "0")
    async with three(debug_broker, pg_url, tmp_path) as cl, recording(debug_broker.url) as rec:
        names, first, agents = await started(cl, debug_broker)
        acked: list[str] = []
        for i in range(6):
            await write(cl, names[i % 3], i, acked)
        follower = next(n for n in names if n != first[0])
        proc = cl.procs[follower].proc
        assert proc is not None
        leader_log = LogWatch(cl.procs[first[0]].log)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            behind = head(pg_url)
            rest = [n for n in names if n != follower]
            for i in range(6, 20):
                await write(cl, rest[i % 2], i, acked)
            await wait_for(
                lambda: (logged(pg_url) or [head(pg_url) + 1])[0] > behind + 1,
                15,
                "the log trimmed past the stopped follower",
            )
            await leader_log.wait("change_log_trimmed", 5)
            own_log = LogWatch(cl.procs[follower].log)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        await own_log.wait("change_log_trimmed_reloaded", 15)
        url = cl.procs[follower].url
        async with httpx.AsyncClient() as http:
            r = await http.get(f"{url}/v1/endpoints", timeout=5)
        assert {e["id"] for e in r.json()} >= set(acked)
        for i in range(20, 26):  # through every replica, the woken one too
            await write(cl, names[i % 3], i, acked)
        await converged(cl, agents, acked)
        for a in agents:
            await a.stop()
    assert len(acked) == 26
    assert rec.problems == []
