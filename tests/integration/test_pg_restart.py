"""PostgreSQL restarted under three ``plexus controller`` processes (issue 19): writes
get a clear 503 while it is down, nothing acknowledged is lost, and service resumes by
itself, without restarting a controller.

Three controllers on one private PostgreSQL (tests/pg.py), a real Mosquitto that logs
every PUBLISH it receives, two simulated hosts, and the recorder of
:mod:`tests.integration.replicas` (never backwards; a generation seen twice has the same
bytes). Run with ``-s`` to see the figures measured.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import psycopg

import proto
from controller.pgstore import CHANNEL, PostgresStore
from controller.state import EndpointRow
from proto import topics
from tests.integration.replicas import Cluster, converged, recording, started, three, write
from tests.pg import Cluster as PgCluster
from tests.support import LogWatch, Mosquitto, wait_for

#: how long a write may take to be refused while PostgreSQL is down (connect_timeout 5 s)
REFUSED_WITHIN = 6.0
#: how long after PostgreSQL is back every replica must take writes again
RESUMED_WITHIN = 10.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def attempt(cl: Cluster, name: str, i: int) -> httpx.Response:
    """Compartment k{i} and its endpoint e{i} through replica ``name``: the first answer
    that is not a 201 (or the endpoint's 201)."""
    url = cl.procs[name].url
    body = {"id": f"k{i}", "host": f"h{i % 2 + 1}"}
    r = await cl.http.post(f"{url}/v1/compartments", json=body, timeout=30)
    if r.status_code != 201:
        return r
    body = {"id": f"e{i}", "network": "blue", "compartment": f"k{i}"}
    return await cl.http.post(f"{url}/v1/endpoints", json=body, timeout=30)


async def epoch_metric(cl: Cluster, name: str) -> float:
    r = await cl.http.get(f"{cl.procs[name].url}/metrics", timeout=5)
    line = next(ln for ln in r.text.splitlines() if ln.startswith("plexus_leader_epoch "))
    return float(line.split()[1])


def connections(url: str) -> list[tuple[int, str, str]]:
    """The database's connections: pid, state, last query."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchall()


async def every_replica_listening(url: str) -> None:
    """Three connections whose last statement is ``LISTEN`` (one per replica)."""

    def listening() -> bool:
        return sum(1 for *_, q in connections(url) if q == f"LISTEN {CHANNEL}") == 3

    try:
        await wait_for(listening, 15, "every replica listening", interval=0.05)
    except TimeoutError:
        raise AssertionError(f"not every replica listening: {connections(url)}") from None


async def test_postgresql_restarted_under_three_controllers(
    debug_broker: Mosquitto, pg_cluster: PgCluster, pg_url: str, tmp_path: Path
) -> None:
    figures: dict[str, str] = {}
    async with three(debug_broker, pg_url, tmp_path) as cl, recording(debug_broker.url) as rec:
        names, first, agents = await started(cl, debug_broker)
        acked: list[str] = []
        for i in range(30):  # spread over the three
            r = await attempt(cl, names[i % 3], i)
            assert r.status_code == 201, (names[i % 3], i, r.status_code, r.text)
            acked.append(f"e{i}")
        await converged(cl, agents, acked)
        await every_replica_listening(pg_url)
        pids = {n: p.proc.pid for n, p in cl.procs.items() if p.proc is not None}
        cpu = {n: cpu_seconds(pid) for n, pid in pids.items()}
        # writes go on through the three while PostgreSQL stops and starts again
        answers: dict[int, int] = {}
        stop = asyncio.Event()
        converged_before = set(acked)
        own: dict[str, set[str]] = {n: set() for n in names}

        async def writer() -> None:
            for i in range(5000, 6000):
                if stop.is_set():
                    return
                r = await attempt(cl, names[i % 3], i)
                answers[r.status_code] = answers.get(r.status_code, 0) + 1
                if r.status_code == 201:
                    acked.append(f"e{i}")
                    own[names[i % 3]].add(f"e{i}")
                else:
                    reasons.add(r.json()["reason"][:80])
                await asyncio.sleep(0.02)

        reasons: set[str] = set()
        background = asyncio.create_task(writer(), name="writer")
        await wait_for(lambda: answers.get(201, 0) >= 3, 10, "writes going on")
        await asyncio.to_thread(pg_cluster.stop)
        down = time.monotonic()
        try:
            # writes through every replica: 503 naming PostgreSQL, at once; never a 500
            for k, name in enumerate(names):
                for step in range(2):  # the connection found lost, then none to be had
                    start = time.monotonic()
                    r = await attempt(cl, name, 1000 + 10 * k + step)
                    took = time.monotonic() - start
                    assert r.status_code == 503, r.text
                    assert "PostgreSQL" in r.json()["reason"], r.text
                    assert took < REFUSED_WITHIN, (name, took)
                    figures[f"503 from {name} ({step})"] = f"{took * 1000:.0f} ms"
                # reads answer from the replica's memory, as before: all it held when
                # the writes began, and each write it acknowledged itself; one that
                # another replica acknowledged just before the stop may not have
                # reached it (it follows through PostgreSQL): checked once it is back
                r = await cl.http.get(f"{cl.procs[name].url}/v1/endpoints", timeout=5)
                assert r.status_code == 200, r.text
                held = {e["id"] for e in r.json()}
                assert held >= converged_before | own[name], (
                    name,
                    sorted(converged_before - held),
                    sorted(own[name] - held),
                )
                r = await cl.http.get(f"{cl.procs[name].url}/v1/status", timeout=5)
                assert r.status_code == 200, r.text
                figures[f"/v1/status of {name} just after the stop"] = (
                    f"leader {r.json()['leader']!r} epoch {r.json()['epoch']}"
                )
            # the leader cannot renew its lease: it stops leading (nobody is live)
            for name in names:
                await wait_for(
                    lambda n=name: _is(epoch_metric(cl, n), 0.0), 10, f"{name} not leading"
                )
            lapsed = time.monotonic() - down
            for name in names:  # and /v1/status shows no leader rather than a stale one
                await wait_for(lambda n=name: _leaderless(cl, n), 10, f"{name} showing no leader")
            shown = time.monotonic() - down
            broker_log = LogWatch(debug_broker.workdir / "mosquitto.log")
            await asyncio.sleep(3)  # down for a while: the lease, the followers retry
            published = [
                ln for ln in broker_log.lines() if "Received PUBLISH from plexus-controller" in ln
            ]
            assert published == []
            for n, pid in pids.items():
                assert cl.procs[n].proc is not None and cl.procs[n].proc.poll() is None
                used = (cpu_seconds(pid) - cpu[n]) / (time.monotonic() - down)
                figures[f"CPU of {n} while down"] = f"{used * 100:.0f} % of a core"
                assert used < 0.5, (n, used)  # retrying, not spinning
        finally:
            await asyncio.to_thread(pg_cluster.start)
        up = time.monotonic()

        # every replica takes writes again by itself
        counter = iter(range(2000, 3000))
        resumed: dict[str, float] = {}

        async def until_acked(name: str) -> None:
            while True:
                i = next(counter)
                r = await attempt(cl, name, i)
                if r.status_code == 201:
                    acked.append(f"e{i}")
                    resumed[name] = time.monotonic() - up
                    return
                assert r.status_code == 503, r.text
                await asyncio.sleep(0.02)

        await asyncio.wait_for(asyncio.gather(*(until_acked(n) for n in names)), RESUMED_WITHIN)
        stop.set()
        await background
        assert set(answers) <= {201, 503}, answers
        now = await wait_for(lambda: cl.leader(names), 15, "a leader again")
        led = time.monotonic() - up
        await wait_for(lambda: [t for t, *_ in rec.seen if t > up], 15, "a publish again")
        first_publish = min(t for t, *_ in rec.seen if t > up) - up
        await every_replica_listening(pg_url)
        listening = time.monotonic() - up

        # followers follow again: a write through one replica is read on the others
        i = 3000
        for a in names:
            for b in (n for n in names if n != a):
                await write(cl, a, i, acked)
                assert acked[-1] == f"e{i}"
                seen_at = time.monotonic()
                await wait_for(lambda b=b, i=i: _found(cl, b, f"e{i}"), 10, f"e{i} on {b}")
                figures[f"write on {a} read on {b}"] = (
                    f"{(time.monotonic() - seen_at) * 1000:.0f} ms"
                )
                i += 1
        for i in range(3100, 3130):  # and more, spread over the three
            await write(cl, names[i % 3], i, acked)
        await converged(cl, agents, acked)
        for name in names:  # and every replica holds every write acknowledged by any
            await wait_for(
                lambda n=name: _holds(cl, n, set(acked)), 15, f"every acknowledged write on {name}"
            )
        for a in agents:
            await a.stop()
        table = (await cl.status(names[0]) or {})["networks"][0]["generation"]
        for n, p in cl.procs.items():
            assert p.proc is not None and p.proc.poll() is None, f"{n} died"

    store = PostgresStore(pg_url)
    try:
        rows, _ = store.load()
    finally:
        store.close()
    stored = {r.id for r in rows if isinstance(r, EndpointRow)}
    assert set(acked) <= stored, sorted(set(acked) - stored)
    changes = rec.generations(topics.network_changes("blue"))
    assert changes == list(range(changes[0], table + 1)), changes
    order = [  # what went out on the table changes' topic after the return, for a failure
        (round((t - up) * 1000), int(proto.decode(p).generation))  # type: ignore[union-attr]
        for t, topic, p in rec.seen
        if topic == topics.network_changes("blue") and t > up - 1
    ]
    assert rec.problems == [], (rec.problems, order)
    assert len(acked) >= 30 + 3 + 6 + 30
    print(f"\nPostgreSQL stopped -> every replica not leading: {lapsed * 1000:.0f} ms")
    print(f"PostgreSQL stopped -> /v1/status shows no leader on each: {shown * 1000:.0f} ms")
    print(f"writes meanwhile (status: count): {answers}; refusals: {sorted(reasons)}")
    for what, value in figures.items():
        print(f"{what}: {value}")
    for name in names:
        print(
            f"PostgreSQL back -> first write acknowledged by {name}: {resumed[name] * 1000:.0f} ms"
        )
    print(
        f"PostgreSQL back -> leader {now[0]} (epoch {now[1]}, was {first[0]} epoch {first[1]}):"
        f" {led * 1000:.0f} ms; first publish: {first_publish * 1000:.0f} ms"
    )
    print(f"PostgreSQL back -> every replica listening again: {listening * 1000:.0f} ms")
    assert max(resumed.values()) < RESUMED_WITHIN


async def _is(value: object, expected: float) -> bool:
    return await value == expected  # type: ignore[misc]


async def _leaderless(cl: Cluster, name: str) -> bool:
    s = await cl.status(name)
    return s is not None and (s["leader"], s["epoch"]) == ("", 0)


async def _holds(cl: Cluster, name: str, eps: set[str]) -> bool:
    r = await cl.http.get(f"{cl.procs[name].url}/v1/endpoints", timeout=5)
    return r.status_code == 200 and {e["id"] for e in r.json()} >= eps


async def _found(cl: Cluster, name: str, ep: str) -> bool:
    r = await cl.http.get(f"{cl.procs[name].url}/v1/endpoints/{ep}", timeout=5)
    return r.status_code == 200
