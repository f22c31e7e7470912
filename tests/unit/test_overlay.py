"""The agent's remote entries, kept current by each change, always equal the ones
derived from its whole table (randomized: upserts, moves, deletes, an address freed
and reused in one change, snapshots replacing the table, a new VTEP)."""

from __future__ import annotations

import random

import proto
from agents import plan as p
from agents.agent import Agent
from agents.desired import Changes
from agents.kernel.memory import MemoryKernel
from agents.model import FLOOD_MAC, Fdb, Neigh
from agents.plan import Entries
from proto import names, rows, topics
from tests import samples

H = "h1"
VTEPS = {"h1": "198.18.0.1", "h2": "198.18.0.2", "h3": "198.18.0.3", "h4": "198.18.0.4"}


def expected(live: dict[str, proto.EndpointRecord], vtep: str) -> tuple[set[Fdb], dict]:
    """The remote entries, derived the plain way (the oracle)."""
    vx = names.vxlan("blue")
    remote = [r for r in live.values() if r.host != H and r.vtep and r.vtep != vtep]
    fdb = {Fdb(vx, r.mac, r.vtep) for r in remote if r.vtep}
    fdb |= {Fdb(vx, FLOOD_MAC, r.vtep) for r in remote if r.vtep}
    return fdb, {(vx, r.ip): Neigh(vx, r.ip, r.mac) for r in remote}


def record(rng: random.Random, rid: str, ip: str, gen: int) -> proto.EndpointRecord:
    host = rng.choice(list(VTEPS))
    vtep = rng.choice([VTEPS[host], VTEPS[host], None])
    mac = f"02:00:00:00:{rng.randrange(256):02x}:{rng.randrange(256):02x}"
    return proto.EndpointRecord(id=rid, host=host, mac=mac, ip=ip, vtep=vtep, gen=gen)


async def test_incremental_remote_entries_equal_a_rebuild() -> None:
    rng = random.Random(7)
    agent = Agent(H, MemoryKernel(), VTEPS[H])
    assert agent.on_message(topics.host_desired(H), proto.encode(samples.DESIRED)) is None
    ips = [f"10.1.0.{i}" for i in range(10, 60)]
    live: dict[str, proto.EndpointRecord] = {}
    gen = 2
    for i in range(20):
        live[f"e{i}"] = record(rng, f"e{i}", ips[i], gen)
    snap = proto.NetworkSnapshot(network="blue", generation=gen, records=tuple(live.values()))
    agent.on_message(topics.network_snapshot("blue", 0), proto.encode(snap))
    checked = failures = 0
    for step in range(400):
        gen += 1
        upserts: dict[str, proto.EndpointRecord] = {}
        deletes: list[str] = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.random()
            free = sorted(
                set(ips) - {r.ip for r in live.values()} - {r.ip for r in upserts.values()}
            )
            if kind < 0.35 and live:  # delete, and maybe reuse its address at once
                rid = rng.choice(sorted(live))
                gone = live.pop(rid)
                upserts.pop(rid, None)
                deletes.append(rid)
                if rng.random() < 0.5:
                    new = f"n{step}"
                    upserts[new] = live[new] = record(rng, new, gone.ip, gen)
            elif kind < 0.7 and live:  # a move: another host, VTEP or MAC
                rid = rng.choice(sorted(live))
                upserts[rid] = live[rid] = record(rng, rid, live[rid].ip, gen)
            elif free:
                new = f"a{step}"
                upserts[new] = live[new] = record(rng, new, free[0], gen)
        deletes = [d for d in deletes if d not in upserts]
        change = proto.NetworkChange(
            network="blue", generation=gen, upserts=tuple(upserts.values()), deletes=tuple(deletes)
        )
        agent.on_message(topics.network_changes("blue"), proto.encode(change))
        if step % 50 == 25:  # a snapshot of the same generation replaces the table
            agent.tables["blue"].complete = False
            snap = proto.NetworkSnapshot(
                network="blue", generation=gen, records=tuple(live.values())
            )
            agent.on_message(topics.network_snapshot("blue", 0), proto.encode(snap))
        if step == 300:
            agent.vtep = VTEPS["h2"]  # the host's VTEP changed: entries of h2 are local now
        kernel = agent.kernel
        assert isinstance(kernel, MemoryKernel)
        if rng.random() < 0.05:  # a pass that fails part-way: the next must diff all
            kernel.fail = {rng.choice([p.AddFdb, p.AddNeigh, p.DelFdb, p.DelNeigh])}
            failed = await agent.reconcile(full=False)
            kernel.fail = set()
            assert agent.settled == (not failed.errors)
            failures += bool(failed.errors)
        if rng.random() < 0.7:
            result = await agent.reconcile(full=rng.random() < 0.2)
            assert result.errors == []
            assert agent.vtep is not None
            fdb, neigh = expected(live, agent.vtep)
            have = agent.kernel.state  # type: ignore[attr-defined]
            assert have.fdb == fdb
            assert have.neigh == neigh
            checked += 1
    assert checked > 200 and failures > 3, (checked, failures)
    assert agent.settled


def test_changes_hand_the_planner_what_changed_since_the_last_clean_pass() -> None:
    """Every entry until a clean pass; then only the entries changed since the last
    clean one (kept across a pass that never ended); every entry again after a failed
    pass, or once a snapshot replaced the table."""
    vx = names.vxlan("blue")
    r1 = proto.EndpointRecord(id="e1", host="h2", mac="02:00:00:00:00:01", ip="10.1.0.1",
                              vtep=VTEPS["h2"], gen=2)  # fmt: skip
    r2 = r1.model_copy(
        update={"id": "e2", "host": "h3", "ip": "10.1.0.2", "vtep": VTEPS["h3"], "gen": 3}
    )
    changes = Changes(H)
    blue = changes.table("blue")
    tables = {"blue": blue}
    blue.on_snapshot(rows.of(proto.NetworkSnapshot(network="blue", generation=2, records=(r1,))))
    assert changes.remote(tables, VTEPS[H])["blue"].fdb == {
        Fdb(vx, r1.mac, VTEPS["h2"]),
        Fdb(vx, FLOOD_MAC, VTEPS["h2"]),
    }
    assert changes.scope(full=False) is None and not changes.settled
    changes.passed(clean=True)
    assert changes.settled and changes.scope(full=False) == Entries(frozenset(), frozenset())
    blue.on_change(rows.of(proto.NetworkChange(network="blue", generation=3, upserts=(r2,))))
    changes.remote(tables, VTEPS[H])
    new = {Fdb(vx, r2.mac, VTEPS["h3"]), Fdb(vx, FLOOD_MAC, VTEPS["h3"])}
    assert changes.scope(full=False) == Entries(frozenset(new), frozenset({(vx, r2.ip)}))
    assert changes.scope(full=True) is None
    # that pass never ended (it raised): its entries are still to diff, with the next
    blue.on_change(rows.of(proto.NetworkChange(network="blue", generation=4, deletes=("e1",))))
    changes.remote(tables, VTEPS[H])
    scope = changes.scope(full=False)
    assert scope is not None and scope.neigh == {(vx, r1.ip), (vx, r2.ip)}
    assert Fdb(vx, r1.mac, VTEPS["h2"]) in scope.fdb and new <= scope.fdb
    changes.passed(clean=False)
    assert changes.scope(full=False) is None
    changes.passed(clean=True)
    assert changes.scope(full=False) == Entries(frozenset(), frozenset())
    blue.complete = False  # a snapshot replaces the table: its overlay is rebuilt
    blue.on_snapshot(rows.of(proto.NetworkSnapshot(network="blue", generation=4, records=(r2,))))
    assert changes.remote(tables, VTEPS[H])["blue"].neigh == {(vx, r2.ip): Neigh(vx, r2.ip, r2.mac)}
    assert changes.scope(full=False) is None


def test_entries_equal_to_the_kernel_s_are_held_once() -> None:
    """An overlay made in full takes the kernel's equal entries as its own (after a
    restart its view and its desired state then share tens of thousands of them); a
    full read takes the last read's (the view's) the same way. Values are unchanged."""
    from agents.desired import Overlay
    from agents.kernel.read import _entries
    from agents.model import HostState

    vx = names.vxlan("blue")
    recs = {
        f"e{i}": rows.Row(f"e{i}", "h2", f"02:00:00:00:00:{i:02x}", f"10.1.0.{i}", VTEPS["h2"], 1)
        for i in range(1, 4)
    }
    kernel = HostState()
    kernel.fdb = {Fdb(vx, "02:00:00:00:00:01", VTEPS["h2"]), Fdb(vx, "02:00:00:00:00:09", "x")}
    kernel.neigh = {
        (vx, "10.1.0.1"): Neigh(vx, "10.1.0.1", "02:00:00:00:00:01"),
        (vx, "10.1.0.2"): Neigh(vx, "10.1.0.2", "02:00:00:00:00:99"),  # another MAC
    }
    ov = Overlay.of(H, "blue", VTEPS[H], recs, kernel)
    assert (ov.fdb, ov.neigh) == (Overlay.of(H, "blue", VTEPS[H], recs).fdb, ov.neigh)
    held = {f: f for f in ov.fdb}
    for f in kernel.fdb & ov.fdb:
        assert held[f] is next(k for k in kernel.fdb if k == f)
    assert ov.neigh[vx, "10.1.0.1"] is kernel.neigh[vx, "10.1.0.1"]
    assert ov.neigh[vx, "10.1.0.2"] == Neigh(vx, "10.1.0.2", "02:00:00:00:00:02")

    read = HostState()
    fdb_rows = [(f.device, 0x80, f.mac, f.dst) for f in sorted(ov.fdb)]
    neigh_rows = [(vx, 0x80, n.mac, n.ip) for n in ov.neigh.values()]
    neigh_rows.append((vx, 0x02, "02:00:00:00:00:42", "10.1.0.42"))  # not permanent: not ours
    last = HostState(fdb=set(ov.fdb), neigh=dict(ov.neigh))
    _entries(read, fdb_rows, neigh_rows, last)
    assert read.fdb == ov.fdb and read.neigh == ov.neigh
    held = {f: f for f in read.fdb}
    assert all(held[f] is f for f in ov.fdb)
    assert all(read.neigh[k] is n for k, n in ov.neigh.items())
