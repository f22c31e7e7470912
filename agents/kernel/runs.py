"""Runs of actions done on one thread of their own, with requests packed here: the
compartments' namespaces made (:func:`add_spaces`), their default routes set
(:func:`set_routes`), their veth pairs made (:mod:`.veths`).

Each such action needs the compartment's own namespace: pyroute2's requests one at a
time (~1 ms of the agent's Python each, more for the first on a socket) and a thread
made per namespace entered were most of a cold pass. Here one thread, made for the run
and ended after (:func:`.netns.in_netns` with ``ns`` None; never one of the default
executor), enters each namespace in turn (:func:`.netns.visit_each`) and sends the
requests on a raw netlink socket made there. An action the run could not do (and every
one, if the thread itself failed) is done after it the slow way (``slow``: the driver's
``apply``, one at a time), which says why it fails.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from proto import names

from .. import plan as p
from ..errors import KernelError
from ..model import HANDOVER
from .batch import BATCHED
from .netlink import GONE
from .netns import enter, in_netns, listnetns, lo_up, visit_each
from .rawnl import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    RT,
    attr,
    message,
    raw_socket,
    send_all,
)
from .tune import tune_compartment, tune_router

T = TypeVar("T")
Slow = Callable[[Sequence[p.Action]], Awaitable[list[KernelError | None]]]

RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNICAST = 254, 4, 1
RTA_GATEWAY, RTA_TABLE = 5, 15


def run_of(action: p.Action) -> str | None:
    """Which run the driver may do an action in with its neighbours: ``batch``
    (:mod:`.batch`), ``dellink`` (:mod:`.dellinks`), ``addveth`` (:mod:`.veths`),
    ``netns`` and ``route`` (here), or None (on its own). A runtime's namespace's route
    and a handed-over pair are never in a run (their checks are the slow way's); nor a
    lone veth delete (the driver deletes it the plain way)."""
    if isinstance(action, BATCHED):
        return "batch"
    if isinstance(action, p.AddVeth):
        return None if action.veth.netns == HANDOVER else "addveth"
    if isinstance(action, p.AddNamespace):
        return "netns"
    if isinstance(action, p.SetRoute):
        return None if action.netns.startswith("/") else "route"
    return "dellink" if isinstance(action, p.DelVeth) else None


async def on_thread(
    run: Sequence[p.Action],
    sent: Sequence[int],
    work: Callable[[], list[T | OSError]],
    slow: Slow,
) -> tuple[list[KernelError | None], dict[int, T]]:
    """``work`` (the actions ``sent``: their indexes in ``run``, in order) on a thread
    of its own; the others, and those it failed, the ``slow`` way. One outcome per
    action of ``run``, and what ``work`` returned for those it did."""
    try:
        results = await in_netns(None, work) if sent else []
    except OSError:  # the thread's own socket or namespace: none is known done
        results, sent = [], []
    done: dict[int, T] = {
        i: r for i, r in zip(sent, results, strict=True) if not isinstance(r, OSError)
    }
    retried = iter(await slow([a for i, a in enumerate(run) if i not in done]))
    return [None if i in done else next(retried) for i in range(len(run))], done


# -- namespaces ------------------------------------------------------------------------


def _space(item: tuple[str, bool]) -> None:
    name, new = item
    enter(name, new)
    if not new:  # one made by enter has lo up already
        lo_up()
    # (the tuning hands back a netlink socket of the namespace, for the slow way's
    # pyroute2: none is kept here)
    os.close((tune_router if names.is_router_netns(name) else tune_compartment)())


async def add_spaces(run: Sequence[p.AddNamespace], slow: Slow) -> list[KernelError | None]:
    """Make (or, already there, tune) a run of namespaces; one outcome each."""
    present = set(listnetns())
    spaces = [(a.name, a.name not in present) for a in run]
    outcomes, _ = await on_thread(run, range(len(run)), lambda: visit_each(spaces, _space), slow)
    return outcomes


# -- default routes --------------------------------------------------------------------


def encode_route(gateway: str | None, seq: int) -> bytes:
    """``route("replace", dst="0.0.0.0/0", gateway, table=254)``, or with ``gateway``
    None ``route("del", dst="0.0.0.0/0", table=254)``."""
    table = attr(RTA_TABLE, struct.pack("=I", RT_TABLE_MAIN))
    if gateway is None:
        body = RT.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, 0, 0, 0, 0) + table
        kind, flags = RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK
    else:
        body = RT.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, 0, RTN_UNICAST, 0)
        body += attr(RTA_GATEWAY, socket.inet_aton(gateway)) + table
        kind, flags = RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE
    return message(kind, flags, seq, body)


def _route(item: tuple[str, str | None]) -> None:
    ns, gateway = item
    enter(ns, create=False)
    with raw_socket() as sock:
        (code,) = send_all(sock, encode_route(gateway, 1))
    if code and not (gateway is None and code in GONE):
        raise OSError(code, f"default route in {ns}: {os.strerror(code)}")


async def set_routes(run: Sequence[p.SetRoute], slow: Slow) -> list[KernelError | None]:
    """Set (or remove) the default routes of a run of the agent's own namespaces."""
    routes = [(a.netns, a.gateway) for a in run]
    outcomes, _ = await on_thread(run, range(len(run)), lambda: visit_each(routes, _route), slow)
    return outcomes


__all__ = [
    "add_spaces",
    "encode_route",
    "on_thread",
    "run_of",
    "set_routes",
]
