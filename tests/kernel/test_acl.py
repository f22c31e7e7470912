"""ACL policies on the real kernel: the Linux driver in a namespace of the test's own
(tests/kernel/acl_check.py), probed with real connections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.kernel import netns
from lab.records import record
from proto import names
from tests.kernel.acl_check import COMPARTMENTS
from tests.kernel.lab import require_root

pytestmark = pytest.mark.kernel
CHECK = Path(__file__).with_name("acl_check.py")


def test_a_policy_admits_what_it_allows_and_a_label_change_costs_set_elements() -> None:
    require_root()
    ns, host = f"pxtest-acl-{os.getpid()}", f"acl{os.getpid()}"
    for comp in COMPARTMENTS:  # the driver makes them; the records remove them after a crash
        record("netns", names.netns(host, comp))
    record("netns", ns)
    netns.create(ns)
    try:
        root = Path(__file__).parents[2]
        run = subprocess.run(
            ["nsenter", f"--net=/run/netns/{ns}", sys.executable, str(CHECK), host],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        netns.remove(ns)
    # a logged block: dropped, and the nflog group got it with its policy and rule
    assert out["client->web:81 (logged)"] is None
    assert ["plexus web-in:in-50 ", "10.44.0.11", "10.44.0.10", "tcp", 81] in out["logged"]
    assert out["client->web:80"] == "web 10.44.0.11"  # allowed: role=client, tcp 80
    assert out["other->web:80"] is None  # selected in, not allowed: dropped
    assert out["client ping web"] is False  # icmp not allowed
    assert out["web->other:80 (out open)"] == "other 10.44.0.10"  # no out rule: open
    assert out["second pass actions"] == 0  # read back equals desired
    assert out["membership actions"] == ["SetElements"]  # in place, no table rewrite
    assert out["other->web:80 after label"] == "web 10.44.0.12"
    assert out["other ping web after label"] is False
