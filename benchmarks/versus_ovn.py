"""Plexus and OVN side by side, in one run on this machine (root): the same three shapes
of work on a 3-host ``plexus lab`` and on a 3-chassis OVN lab (:mod:`benchmarks.ovn_lab`:
Debian's OVN, installed if missing), both up, each shape on Plexus and then on OVN
(never both working at once: a change in the machine's load falls on both alike), then
one table with both figures and the ratio Plexus / OVN per row (below 1: Plexus is
faster), and one ``BENCH {json}`` line per row.

1. one add, waited for on every host: ``POST /v1/endpoints?wait=true`` (its
   compartment made just before) against ``ovn-nbctl --wait=hv lsp-add …
   -- lsp-set-addresses …`` (its VIF plugged just before); both wall, at the client
   (ovn-nbctl's includes its process start, ~6 ms), and as each server reports it (the
   controller's ``elapsed_ms``; ``--print-wait-time``'s ovn-controller(s) completion);
2. 200 at once: one ``POST /v1/batch?wait=true`` of 200 endpoint creates against one NB
   transaction of 200 LSPs with ``--wait=hv``; the same 200 deleted in one call / one
   transaction; and, beside OVN's one transaction, Plexus's 200 concurrent single calls
   until ``/v1/status`` says in sync;
3. restarts with 200 ports present: an agent (SIGTERM, then started) against an
   ovn-controller (``exit --restart``, then started), until its host reports in sync /
   ``ovn-nbctl --wait=hv sync`` returns; the controller against ovn-northd, the same way.

    sudo .venv/bin/python -m benchmarks.versus_ovn [--count 100] [--bulk 200] [--runs 5]
                                                   [--no-batch] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from cli.client import AsyncClient
from proto.signals import exit_on_signals

from .common import console, git_commit, lab_run, machine, summary
from .ovn_lab import SWITCH, OvnError, OvnLab, install, version
from .versus_plexus import BatchMissing, Plan, Plexus, address


@dataclass(frozen=True)
class Row:
    key: str
    what: str
    #: the OVN samples it is set against (another row's, where OVN has one way only)
    ovn_key: str = ""

    @property
    def against(self) -> str:
        return self.ovn_key or self.key


def rows(bulk: int) -> tuple[Row, ...]:
    return (
        Row("add", "1  one add, wait for every host (wall)"),
        Row("add_server", "1  one add, server-reported"),
        Row("bulk", f"2  {bulk} in one call / one NB txn, wait (wall)"),
        Row("bulk_server", f"2  {bulk} in one call / one NB txn, server-reported"),
        Row("burst", f"2  Plexus {bulk} concurrent calls → in sync (OVN: one txn)", "bulk"),
        Row("bulk_delete", f"2  {bulk} deleted in one call / one NB txn, wait (wall)"),
        Row("restart_host", f"3  agent / ovn-controller restart ({bulk} ports) → caught up"),
        Row("restart_host_online", "3    agent restart → its host online (Plexus only)"),
        Row("restart_central", f"3  controller / ovn-northd restart ({bulk} ports) → caught up"),
        Row("restart_central_online", "3    controller restart → hosts online (Plexus only)"),
    )


LEGEND = """\
1  Plexus: POST /v1/endpoints?wait=true, its compartment made before; OVN: ovn-nbctl --wait=hv
   --print-wait-time lsp-add ls0 pK -- lsp-set-addresses pK "MAC IP", its VIF plugged before
   (ovn-nbctl's wall includes its own process start, ~6 ms). Server-reported: the controller's
   convergence.elapsed_ms / nbctl's ovn-controller(s) completion (1 ms resolution).
2  Plexus: one POST /v1/batch?wait=true&timeout=30 of N endpoint creates (then one of N deletes);
   OVN: one ovn-nbctl --wait=hv transaction of N lsp-add + lsp-set-addresses (then of N lsp-del).
   Plexus's delete also removes the veth pairs; OVN's leaves the VIFs plugged.
   Burst: N concurrent POST /v1/endpoints (no wait), /v1/status polled every 2 ms until in sync.
3  Plexus: SIGTERM, reported offline, 0.5 s, started → /v1/status (every 5 ms) says it (every host)
   online and in sync; OVN: ovn-appctl exit [--restart], 0.5 s, started → ovn-nbctl --wait=hv sync.
N = --bulk; times in ms; nearest-rank percentiles (p99 of fewer than 100 samples is their max)."""


def ratio(plexus: float | None, ovn: float | None) -> float | None:
    """Plexus / OVN, or None when either is missing (or OVN's is 0)."""
    if plexus is None or ovn is None or ovn == 0 or math.isnan(plexus) or math.isnan(ovn):
        return None
    return round(plexus / ovn, 3)


def at(stats: dict[str, float] | None, q: str) -> float | None:
    return None if stats is None else stats[q]


def side(samples: Sequence[float]) -> dict[str, float] | None:
    return summary(samples) if samples else None


def compare(
    rows: Iterable[Row], plexus: dict[str, list[float]], ovn: dict[str, list[float]]
) -> list[dict[str, Any]]:
    """Per row: both sides' summaries (None when not measured) and the ratios."""
    out = []
    for row in rows:
        p, o = side(plexus.get(row.key, [])), side(ovn.get(row.against, []))
        if p is None and o is None:
            continue
        out.append(
            {
                "row": row.key,
                "what": row.what,
                "plexus": p,
                "ovn": o,
                "ratio_p50": ratio(at(p, "p50"), at(o, "p50")),
                "ratio_p99": ratio(at(p, "p99"), at(o, "p99")),
            }
        )
    return out


def cell(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table(results: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title, show_edge=False, header_style="bold")
    t.add_column("what (ms)")
    for c in ("Plexus n", "p50", "p99", "OVN n", "p50", "p99", "P/O p50", "P/O p99"):
        t.add_column(c, justify="right")
    for r in results:
        p, o = r["plexus"] or {}, r["ovn"] or {}
        t.add_row(
            r["what"],
            str(p.get("n", "—")), cell(p.get("p50")), cell(p.get("p99")),
            str(o.get("n", "—")), cell(o.get("p50")), cell(o.get("p99")),
            cell(r["ratio_p50"], "x"), cell(r["ratio_p99"], "x"),
        )  # fmt: skip
    return t


# -- the OVN side ----------------------------------------------------------------------


def mac(k: int) -> str:
    return f"0a:00:00:{(k >> 16) & 255:02x}:{(k >> 8) & 255:02x}:{k & 255:02x}"


def waited_hv(printed: str) -> float:
    """``--print-wait-time``'s ovn-controller(s) completion (ms, 1 ms resolution)."""
    m = re.search(r"ovn-controller\(s\) completion:\s*(\d+)\s*ms", printed)
    if m is None:
        raise OvnError(f"no ovn-controller(s) completion in {printed!r}")
    return float(m[1])


def ms(since: float) -> float:
    return (time.monotonic() - since) * 1000


class Ovn:
    """The same three shapes of work on an :class:`OvnLab`, as :class:`Plexus` has
    them: LSP ``pK`` on the VIF ``vifK`` of chassis K mod 3 (``iface-id=pK``)."""

    def __init__(self, lab: OvnLab, plan: Plan, say: Callable[[str], None]) -> None:
        self.lab, self.plan, self.say = lab, plan, say

    def plug(self, ks: Iterable[int]) -> None:
        """VIFs ``vifK`` (iface-id ``pK``), one ovs-vsctl transaction per chassis."""
        per: dict[int, list[str]] = defaultdict(list)
        for k in ks:
            per[self.lab.chassis[k % len(self.lab.chassis)]] += [
                "--", "add-port", "br-int", f"vif{k}",
                "--", "set", "Interface", f"vif{k}", "type=internal", f"external_ids:iface-id=p{k}",
            ]  # fmt: skip
        for i, args in per.items():
            self.lab.vsctl(i, *args)

    @staticmethod
    def adds(ks: Iterable[int]) -> list[str]:
        return [
            a
            for k in ks
            for a in ("--", "lsp-add", SWITCH, f"p{k}",
                      "--", "lsp-set-addresses", f"p{k}", f"{mac(k)} {address(k)}")
        ]  # fmt: skip

    @staticmethod
    def dels(ks: Iterable[int]) -> list[str]:
        return [a for k in ks for a in ("--", "lsp-del", f"p{k}")]

    def one_by_one(self) -> dict[str, list[float]]:
        lab, count = self.lab, self.plan.count
        out: dict[str, list[float]] = defaultdict(list)
        self.say(f"OVN 1: {count} x (VIF plugged, then ovn-nbctl --wait=hv lsp-add)")
        for k in range(count):
            self.plug([k])
            t0 = time.monotonic()
            printed = lab.nbctl("--wait=hv", "--print-wait-time", *self.adds([k]))
            out["add"].append(ms(t0))
            out["add_server"].append(waited_hv(printed))
        lab.nbctl("--wait=hv", *self.dels(range(count)))
        return dict(out)

    def at_once(self) -> dict[str, list[float]]:
        """Ends with ``bulk`` LSPs present."""
        lab, bulk, runs = self.lab, self.plan.bulk, self.plan.runs
        out: dict[str, list[float]] = defaultdict(list)
        self.plug(range(self.plan.count, bulk))
        self.say(f"OVN 2: {runs} x ({bulk} lsp-add in one NB transaction, then lsp-del)")
        for _ in range(runs):
            t0 = time.monotonic()
            printed = lab.nbctl("--wait=hv", "--print-wait-time", *self.adds(range(bulk)))
            out["bulk"].append(ms(t0))
            out["bulk_server"].append(waited_hv(printed))
            t0 = time.monotonic()
            lab.nbctl("--wait=hv", *self.dels(range(bulk)))
            out["bulk_delete"].append(ms(t0))
        lab.nbctl("--wait=hv", *self.adds(range(bulk)))
        return dict(out)

    def restarts(self) -> dict[str, list[float]]:
        lab, runs, settle = self.lab, self.plan.runs, self.plan.settle
        out: dict[str, list[float]] = defaultdict(list)
        self.say(f"OVN 3: {runs} ovn-controller restarts, {runs} ovn-northd restarts")
        for _ in range(runs):
            out["restart_host"].append(lab.restart_ovn_controller(lab.chassis[0], settle) * 1000)
        for _ in range(runs):
            out["restart_central"].append(lab.restart_northd(settle) * 1000)
        return dict(out)


# -- the run ---------------------------------------------------------------------------


async def both(
    spec: Any, plan: Plan, say: Callable[[str], None]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Both labs up (the OVN one beside the ``plexus lab`` of ``spec``, each idle while
    the other works); each shape of work on Plexus, then on OVN, shape by shape, so
    that a change in the machine's load falls on both sides alike."""
    plexus_out: dict[str, list[float]] = {}
    ovn_out: dict[str, list[float]] = {}
    say("OVN lab up (NB, SB, northd; 3 chassis)")
    with OvnLab() as lab:
        async with AsyncClient(spec.controller_url, timeout=60) as http:
            plexus, ovn = Plexus(spec, http, plan, say), Ovn(lab, plan, say)
            await plexus.prepare()
            for mine, theirs in (
                (plexus.one_by_one, ovn.one_by_one),
                (plexus.at_once, ovn.at_once),
                (plexus.restarts, ovn.restarts),
            ):
                plexus_out |= await mine()
                ovn_out |= theirs()  # blocks the loop: nothing else runs meanwhile
    return plexus_out, ovn_out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.versus_ovn", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--count", type=int, default=100, help="single adds (row 1)")
    ap.add_argument("--bulk", type=int, default=200, help="endpoints / LSPs at once (rows 2, 3)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each row 2 and row 3 figure")
    ap.add_argument("--settle", type=float, default=0.5, help="s between a stop and the start")
    ap.add_argument(
        "--no-batch", action="store_true", help="leave out Plexus's POST /v1/batch rows"
    )
    ap.add_argument("--quick", action="store_true", help="10 adds, 30 at once, 2 runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.count, args.bulk, args.runs = 10, 30, 2
    if args.bulk < args.count:
        ap.error("--bulk must be at least --count (the bulk rows reuse row 1's compartments)")
    if os.geteuid() != 0:
        sys.exit("this benchmark builds labs of namespaces and daemons: run it as root")
    exit_on_signals()
    plan = Plan(args.count, args.bulk, args.runs, args.settle, not args.no_batch)
    started = time.monotonic()

    def say(step: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f} s  {step}[/dim]")

    install(say)
    say("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    try:
        plexus, ovn = lab_run(3, "vo", lambda spec: both(spec, plan, say))
    except BatchMissing as e:
        sys.exit(f"versus_ovn: {e}")
    say("both labs down")

    results = compare(rows(args.bulk), plexus, ovn)
    ovn_version, commit = version(), git_commit()
    title = (
        f"Plexus {commit} vs {ovn_version}, {os.cpu_count()} cores: ratio P/O < 1 = Plexus faster"
    )
    console.print(table(results, title))
    console.print(LEGEND, highlight=False)
    if args.no_batch:
        console.print("(--no-batch: Plexus's POST /v1/batch rows left out)")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    console.print(f"whole run: {time.monotonic() - started:.0f} s; load average at the end: {load}")
    common = {"benchmark": "versus_ovn", "commit": commit, "ovn_version": ovn_version,
              "machine": machine(), "args": vars(args)}  # fmt: skip
    for r in results:
        print("BENCH " + json.dumps({**common, **r}, sort_keys=True), flush=True)
    return results


if __name__ == "__main__":
    main()
