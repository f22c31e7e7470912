"""Plexus's nftables table through ``nft -j``: replaced whole in one transaction,
read back as (chain, comment) pairs with their counters, deleted. Other tables are
never named, so never touched."""

from __future__ import annotations

import asyncio
import errno
import json
import subprocess
from collections.abc import Iterable
from typing import Any

from ..errors import KernelError
from ..model import Rule
from ..rules import CHAINS, FAMILY, TABLE
from .netns import in_netns

_TABLE = {"family": FAMILY, "name": TABLE}


async def _nft(*args: str, stdin: bytes | None = None, netns: str = "") -> tuple[int, bytes, bytes]:
    """Run ``nft``: in the host's namespace, or (``netns``) forked from a thread that
    entered that namespace, so the child runs there."""
    argv = ["nft", *args]
    try:
        if netns:

            def run() -> subprocess.CompletedProcess[bytes]:
                return subprocess.run(argv, input=stdin, capture_output=True, check=False)

            done = await in_netns(netns, run)
            return done.returncode, done.stdout, done.stderr
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise KernelError("nft", TABLE, errno.ENOENT, "nft is not installed") from None
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out, err


def _where(netns: str) -> str:
    return f"{FAMILY} {TABLE}" + (f" in {netns}" if netns else "")


def document(rules: Iterable[Rule]) -> dict[str, Any]:
    """One transaction: (re)create the table with its chains and ``rules``. The
    leading add makes the delete safe when the table does not exist yet."""
    cmds: list[dict[str, Any]] = [
        {"add": {"table": _TABLE}},
        {"delete": {"table": _TABLE}},
        {"add": {"table": _TABLE}},
    ]
    for c in CHAINS:
        chain = {
            "family": FAMILY,
            "table": TABLE,
            "name": c.name,
            "type": c.type,
            "hook": c.hook,
            "prio": c.prio,
            "policy": "accept",
        }
        cmds.append({"add": {"chain": chain}})
    for r in sorted(rules, key=lambda r: (r.chain, r.comment)):
        cmds.append(
            {
                "add": {
                    "rule": {
                        "family": FAMILY,
                        "table": TABLE,
                        "chain": r.chain,
                        "expr": json.loads(r.expr),
                        "comment": r.comment,
                    }
                }
            }
        )
    return {"nftables": cmds}


async def replace(rules: Iterable[Rule], netns: str = "") -> None:
    doc = json.dumps(document(rules)).encode()
    code, _, err = await _nft("-j", "-f", "-", stdin=doc, netns=netns)
    if code != 0:
        raise KernelError("SetRules", _where(netns), errno.EINVAL, err.decode().strip())


async def delete(netns: str = "") -> None:
    cmds = {"nftables": [{"add": {"table": _TABLE}}, {"delete": {"table": _TABLE}}]}
    code, _, err = await _nft("-j", "-f", "-", stdin=json.dumps(cmds).encode(), netns=netns)
    if code != 0:
        raise KernelError("DelRules", _where(netns), errno.EINVAL, err.decode().strip())


async def read(netns: str = "") -> tuple[frozenset[Rule] | None, dict[str, tuple[int, int]]]:
    """The table's rules, or None when it is absent or a base chain is missing or
    changed (either way it must be replaced); and each rule's packet and byte counts."""
    code, out, err = await _nft("-j", "list", "table", FAMILY, TABLE, netns=netns)
    if code != 0:
        if b"No such file or directory" in err:
            return None, {}
        raise KernelError("read", _where(netns), errno.EIO, err.decode().strip())
    items = json.loads(out).get("nftables", [])
    chains = {}
    rules: set[Rule] = set()
    counters: dict[str, tuple[int, int]] = {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            chains[c["name"]] = (c.get("type"), c.get("hook"), c.get("prio"), c.get("policy"))
        elif "rule" in item:
            r = item["rule"]
            comment = r.get("comment") or ""
            rules.add(Rule(r["chain"], comment))
            for e in r.get("expr", []):
                if isinstance(e, dict) and isinstance(e.get("counter"), dict):
                    counters[comment] = (e["counter"]["packets"], e["counter"]["bytes"])
    want = {c.name: (c.type, c.hook, c.prio, "accept") for c in CHAINS}
    if chains != want:
        return None, counters
    return frozenset(rules), counters
