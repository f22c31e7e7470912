"""Kernel names derived from ids: stable across restarts, within IFNAMSIZ (15).

Ownership: interfaces are ``px`` + a kind letter + 10 hex digits of the id's hash and
carry the alias ``plexus:<kind>:<id>``; namespaces are ``plexus:<host>:<compartment>``
(``:`` cannot occur in an id, so one host's prefix never matches another's).
"""

from __future__ import annotations

import hashlib

ALIAS_PREFIX = "plexus:"
IF_PREFIX = "px"


def _h(ident: str) -> str:
    return hashlib.sha256(ident.encode()).hexdigest()[:10]


def bridge(network: str) -> str:
    return f"pxb{_h(network)}"


def vxlan(network: str) -> str:
    return f"pxv{_h(network)}"


def veth(endpoint: str) -> str:
    return f"pxe{_h(endpoint)}"


def alias(kind: str, ident: str) -> str:
    return f"{ALIAS_PREFIX}{kind}:{ident}"


def parse_alias(value: str | None) -> tuple[str, str] | None:
    if not value or not value.startswith(ALIAS_PREFIX):
        return None
    kind, _, ident = value[len(ALIAS_PREFIX) :].partition(":")
    return (kind, ident) if ident else None


def netns_prefix(host: str) -> str:
    return f"plexus:{host}:"


def netns(host: str, compartment: str) -> str:
    return f"{netns_prefix(host)}{compartment}"


def inner(index: int) -> str:
    return f"eth{index}"
