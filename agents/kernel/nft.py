"""Plexus's nftables table through ``nft -j``: replaced whole in one transaction (its
base chains, the regular chains its rules name, its named sets and maps with their
elements), its sets' and maps' elements changed in place, read back as (chain,
comment) pairs with their counters and the elements, deleted. Other tables are never
named, so never touched."""

from __future__ import annotations

import asyncio
import errno
import json
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

from ..acl import ACL_CHAINS, IN_MAP, OUT_MAP
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


BASE = {c.name: c for c in (*CHAINS, *ACL_CHAINS)}
MAPS = (IN_MAP, OUT_MAP)
Elements = Mapping[str, frozenset[Any]]


def _declare(name: str, elements: frozenset[Any]) -> dict[str, Any]:
    """A named map (``ifname . ipv4_addr : verdict``) or set (``ipv4_addr``)."""
    body: dict[str, Any] = {"family": FAMILY, "table": TABLE, "name": name}
    if name in MAPS:
        body |= {"type": ["ifname", "ipv4_addr"], "map": "verdict"}
        kind = "map"
    else:
        body["type"] = "ipv4_addr"
        kind = "set"
    if elements:
        body["elem"] = _elems(name, elements)
    return {"add": {kind: body}}


def _elems(name: str, elements: Iterable[Any]) -> list[Any]:
    if name in MAPS:
        return [
            [{"concat": [ifname, ip]}, {"goto": {"target": chain}}]
            for ifname, ip, chain in sorted(elements)
        ]
    return sorted(elements)


def _keys(name: str, elements: Iterable[Any]) -> list[Any]:
    if name in MAPS:
        return [{"concat": [ifname, ip]} for ifname, ip, _ in sorted(elements)]
    return sorted(elements)


def document(rules: Iterable[Rule], elements: Elements | None = None) -> dict[str, Any]:
    """One transaction: (re)create the table with its chains, ``elements``' sets and
    maps, and ``rules``. The leading add makes the delete safe when the table does not
    exist yet."""
    rules = sorted(rules, key=lambda r: (r.chain, r.comment))
    cmds: list[dict[str, Any]] = [
        {"add": {"table": _TABLE}},
        {"delete": {"table": _TABLE}},
        {"add": {"table": _TABLE}},
    ]
    used = {r.chain for r in rules}
    for c in (*CHAINS, *(c for c in ACL_CHAINS if c.name in used)):
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
    for name in sorted(used - BASE.keys()):  # regular chains: before what jumps there
        cmds.append({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name}}})
    for name, elems in sorted((elements or {}).items()):
        cmds.append(_declare(name, elems))
    for r in rules:
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


async def replace(rules: Iterable[Rule], netns: str = "", elements: Elements | None = None) -> None:
    doc = json.dumps(document(rules, elements)).encode()
    code, _, err = await _nft("-j", "-f", "-", stdin=doc, netns=netns)
    if code != 0:
        raise KernelError("SetRules", _where(netns), errno.EINVAL, err.decode().strip())


async def update(changes: Iterable[tuple[str, frozenset[Any], frozenset[Any]]]) -> None:
    """Change sets' and maps' elements in place, in one transaction: each change is
    (name, elements to add, elements to remove)."""
    cmds: list[dict[str, Any]] = []
    for name, add, remove in changes:
        where = {"family": FAMILY, "table": TABLE, "name": name}
        if remove:
            cmds.append({"delete": {"element": {**where, "elem": _keys(name, remove)}}})
        if add:
            cmds.append({"add": {"element": {**where, "elem": _elems(name, add)}}})
    if not cmds:
        return
    code, _, err = await _nft("-j", "-f", "-", stdin=json.dumps({"nftables": cmds}).encode())
    if code != 0:
        raise KernelError("SetElements", _where(""), errno.EINVAL, err.decode().strip())


async def delete(netns: str = "") -> None:
    cmds = {"nftables": [{"add": {"table": _TABLE}}, {"delete": {"table": _TABLE}}]}
    code, _, err = await _nft("-j", "-f", "-", stdin=json.dumps(cmds).encode(), netns=netns)
    if code != 0:
        raise KernelError("DelRules", _where(netns), errno.EINVAL, err.decode().strip())


def _element(name: str, e: Any) -> Any:
    """One element as :func:`_elems` writes it, read back."""
    if name in MAPS:
        key, verdict = e
        ifname, ip = key["concat"]
        return (ifname, ip, verdict["goto"]["target"])
    return e


async def read(
    netns: str = "",
) -> tuple[frozenset[Rule] | None, dict[str, tuple[int, int]], dict[str, frozenset[Any]]]:
    """The table's rules, or None when it is absent or a base chain is missing or
    changed (either way it must be replaced); each rule's packet and byte counts; its
    sets' and maps' elements."""
    code, out, err = await _nft("-j", "list", "table", FAMILY, TABLE, netns=netns)
    if code != 0:
        if b"No such file or directory" in err:
            return None, {}, {}
        raise KernelError("read", _where(netns), errno.EIO, err.decode().strip())
    items = json.loads(out).get("nftables", [])
    chains = {}
    rules: set[Rule] = set()
    counters: dict[str, tuple[int, int]] = {}
    elements: dict[str, frozenset[Any]] = {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            if "hook" in c:
                chains[c["name"]] = (c.get("type"), c.get("hook"), c.get("prio"), c.get("policy"))
        elif "rule" in item:
            r = item["rule"]
            comment = r.get("comment") or ""
            rules.add(Rule(r["chain"], comment))
            for e in r.get("expr", []):
                if isinstance(e, dict) and isinstance(e.get("counter"), dict):
                    counters[comment] = (e["counter"]["packets"], e["counter"]["bytes"])
        elif "set" in item or "map" in item:
            s = item.get("set") or item["map"]
            name = s["name"]
            elements[name] = frozenset(_element(name, e) for e in s.get("elem", []))
    want = {c.name: (c.type, c.hook, c.prio, "accept") for c in CHAINS}
    want |= {c.name: (c.type, c.hook, c.prio, "accept") for c in ACL_CHAINS if c.name in chains}
    if chains != want:
        return None, counters, elements
    return frozenset(rules), counters, elements
