"""The Linux driver on the real kernel, in a namespace of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from agents.kernel import netns
from lab.records import record
from proto import names
from tests.kernel.lab import require_root

CHECK = Path(__file__).with_name("batch_check.py")
DELLINKS = Path(__file__).with_name("dellinks_check.py")
VETHS = Path(__file__).with_name("veths_check.py")


def in_fresh_namespace(name: str, script: Path, *args: str) -> dict[str, Any]:
    """Run ``script`` in a namespace of its own (made, recorded, removed), and return
    the JSON of its last line."""
    require_root()
    ns = f"pxtest-{name}-{os.getpid()}"
    record("netns", ns)
    netns.create(ns)
    try:
        root = Path(__file__).parents[2]
        run = subprocess.run(
            ["nsenter", f"--net=/run/netns/{ns}", sys.executable, str(script), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        assert run.returncode == 0, run.stderr
        out: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
        return out
    finally:
        netns.remove(ns)


def test_fdb_and_neighbours_are_programmed_in_batches() -> None:
    out = in_fresh_namespace("batch", CHECK, "3000")
    # 3,000 endpoints: 3,000 FDB + 5 flood entries + 3,000 neighbours; only the entry
    # on the missing device failed
    assert len(out["add_failed"]) == 1 and "pxvmissing" in out["add_failed"][0]
    assert out["fdb"] == 3005 and out["neigh"] == 3000 and out["all_there"]
    assert out["re_add_failed"] == 0
    assert out["change_failed"] == []
    assert out["after_change"] == {"fdb": True, "neigh": True}
    assert out["view_equals_kernel"]


def test_a_run_of_veth_deletes_is_one_kernel_operation_and_touches_nothing_else() -> None:
    """:mod:`agents.kernel.dellinks`: 40 veths deleted in one run (one already gone),
    beside a veth and a bridge that are not the driver's, in a namespace of the test."""
    require_root()
    host = f"dl{os.getpid()}"
    record("netns-prefix", names.netns_prefix(host))
    out = in_fresh_namespace("dellinks", DELLINKS, host, "40")
    assert out["made"] == 40
    assert out["failed"] == [] and out["veths_left"] == 0 and out["view_equals_kernel"]
    assert out["foreign_left"] == ["fgnveth0", "fgnveth1", "fgnbridge"]
    assert out["in_doomed_group"] == [] and out["inner_left"] == ["lo"]
    assert not [n for n in netns.listnetns() if n.startswith(names.netns_prefix(host))]


def test_a_run_of_veth_adds_is_made_on_one_thread_and_a_leftover_the_old_way() -> None:
    """:mod:`agents.kernel.veths`: 30 pairs in one run, one compartment holding a
    leftover of the inner end's name, one compartment missing; their default routes in
    one run; each compartment and the host's namespace read as the driver reads them
    (:mod:`agents.kernel.dumps`) is what pyroute2 reads. Neither end of a pair, up, has
    an IPv6 address (the leftover's, made the slow way, neither); a pair whose MTU is
    under IPv6's minimum (no IPv6 on it) is made as the others."""
    require_root()
    host = f"va{os.getpid()}"
    record("netns-prefix", names.netns_prefix(host))
    out = in_fresh_namespace("veths", VETHS, host, "30")
    assert out["failed_index"] == [30], out["failed"]
    assert "gone" in out["failed"][0] and "No such file" in out["failed"][0]
    assert out["as_desired"] == [True] * 30  # the leftover's compartment too
    quiet = [{"running": True, "addr_gen_mode": "1", "ipv6": []}] * 30  # no link-local
    quiet[2] = {**quiet[2], "addr_gen_mode": None}  # MTU 1200: no IPv6 at all on it
    assert out["sysctls"] == [{"retrans": "100", "arp_notify": "1", **q} for q in quiet]
    assert out["host_ends"] == quiet
    assert out["routes_failed"] == []
    assert out["inside_as_pyroute2_reads_it"] == [True] * 30
    assert out["host_as_pyroute2_reads_it"] and out["vxlan_as_desired"]
    assert {"bridge", "vxlan", "veth"} <= set(out["host_kinds"])
    assert out["view_equals_kernel"]
    assert not out["loop_thread_moved"] and out["threads_left"] == []
    assert not [n for n in netns.listnetns() if n.startswith(names.netns_prefix(host))]
