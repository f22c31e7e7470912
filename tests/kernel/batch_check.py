"""Run inside a fresh network namespace (``nsenter --net``): the Linux driver programs
N remote endpoints (FDB + neighbour entries) in batches, reads them back in full, then
changes and deletes some; prints the findings as one JSON line."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from agents import plan as p
from agents.kernel.linux import LinuxKernel
from agents.model import FLOOD_MAC, Bridge, Fdb, Neigh, Vxlan


def entries(n: int, vx: str, mac_byte: int = 1) -> tuple[list[Fdb], list[Neigh]]:
    fdb, neigh = [], []
    for i in range(n):
        mac = f"02:{mac_byte:02x}:00:{i >> 16:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
        fdb.append(Fdb(vx, mac, f"198.18.{i % 5}.2"))
        neigh.append(Neigh(vx, f"10.230.{i // 250 + 1}.{i % 250 + 2}", mac))
    return fdb, neigh


async def main(n: int) -> dict[str, object]:
    k = LinuxKernel("bt")
    out: dict[str, object] = {}
    try:
        br, vx = "pxbbatchtest", "pxvbatchtest"
        await k.read()
        await k.apply(p.AddBridge(Bridge(br, "bt", 1450, "10.230.0.1/16")))
        await k.apply(p.AddVxlan(Vxlan(vx, "bt", 4242, "127.0.0.1", 4789, 1450, br)))
        fdb, neigh = entries(n, vx)
        flood = [Fdb(vx, FLOOD_MAC, f"198.18.{i}.2") for i in range(5)]
        acts: list[p.Action] = [*map(p.AddFdb, fdb + flood), *map(p.AddNeigh, neigh)]
        # an entry on a device that does not exist fails alone; the rest are done
        acts.insert(n // 2, p.AddNeigh(Neigh("pxvmissing", "10.9.9.9", "02:00:00:00:00:09")))
        t = time.perf_counter()
        outcomes = await k.apply_many(acts)
        out["add_seconds"] = time.perf_counter() - t
        out["add_failed"] = [str(o) for o in outcomes if o is not None]
        view = (await k.read(False)).copy()
        st = await k.read(True)
        out["fdb"], out["neigh"] = len(st.fdb), len(st.neigh)
        out["all_there"] = set(fdb + flood) <= st.fdb and set(neigh) == set(st.neigh.values())
        out["view_equals_kernel"] = False  # a failed action leaves no view: a full read
        # the same again (EEXIST is success), a new MAC for half, deletes of the rest
        # plus some that were never there (ENOENT is success)
        again = await k.apply_many([*map(p.AddFdb, fdb)])
        out["re_add_failed"] = sum(o is not None for o in again)
        new_fdb, new_neigh = entries(n // 2, vx, mac_byte=2)
        change: list[p.Action] = [*map(p.DelFdb, fdb[: n // 2]), *map(p.DelNeigh, neigh[n // 2 :])]
        change += [*map(p.DelFdb, fdb[n // 2 :]), *map(p.AddFdb, new_fdb)]
        change += [*map(p.AddNeigh, new_neigh)]
        change += [p.DelFdb(Fdb(vx, "02:ff:ff:ff:ff:ff", "198.18.9.9"))]
        await k.read(True)
        t = time.perf_counter()
        outcomes = await k.apply_many(change)
        out["change_seconds"] = time.perf_counter() - t
        out["change_failed"] = [str(o) for o in outcomes if o is not None]
        view = (await k.read(False)).copy()
        st = await k.read(True)
        out["view_equals_kernel"] = view == st
        out["after_change"] = {
            "fdb": st.fdb == set(new_fdb + flood),
            "neigh": set(st.neigh.values()) == set(new_neigh),
        }
    finally:
        await k.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1])))))
