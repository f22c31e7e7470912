"""What an action does to a :class:`HostState`: the in-memory kernel's semantics, and
how the Linux driver keeps its view of the kernel current between full reads."""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Callable, Collection, Iterable

from proto import names

from .. import plan as p
from ..errors import KernelError
from ..model import HANDOVER, HostState, Veth


def apply_all(st: HostState, actions: Iterable[p.Action]) -> list[KernelError | None]:
    """:func:`apply_to` for each action in turn, with each one's outcome (None, or the
    :class:`KernelError` it raised). The FDB and neighbour entries (tens of thousands
    at a cold start) are dispatched on their type, without a ``match`` each."""
    fdb, neigh, vxlans = st.fdb, st.neigh, st.vxlans
    out: list[KernelError | None] = []
    done = out.append
    for action in actions:
        kind = type(action)
        if kind is p.AddFdb:
            f = action.fdb  # type: ignore[union-attr]
            if f.device in vxlans:
                fdb.add(f)
                done(None)
                continue
        elif kind is p.AddNeigh:
            n = action.neigh  # type: ignore[union-attr]
            if n.device in vxlans:
                neigh[n.device, n.ip] = n
                done(None)
                continue
        elif kind is p.DelFdb:
            fdb.discard(action.fdb)  # type: ignore[union-attr]
            done(None)
            continue
        try:  # a refusal (no device) is apply_to's to word, and every other action
            apply_to(st, action)
        except KernelError as e:
            done(e)
            continue
        done(None)
        fdb, neigh = st.fdb, st.neigh  # a device's deletion makes them anew
    return out


def apply_to(st: HostState, action: p.Action) -> None:
    """Change ``st`` as ``action`` changes the kernel; raises :class:`KernelError` where
    the kernel would refuse it."""
    match action:  # the entries first: a host has tens of thousands of them
        case p.AddFdb(f):
            if f.device not in st.vxlans:
                raise KernelError("AddFdb", f.device, errno.ENODEV, "no device")
            st.fdb.add(f)
        case p.DelFdb(f):
            st.fdb.discard(f)
        case p.AddNeigh(n):
            if n.device not in st.vxlans:
                raise KernelError("AddNeigh", n.device, errno.ENODEV, "no device")
            st.neigh[n.device, n.ip] = n
        case p.DelNeigh(n):
            if st.neigh.get((n.device, n.ip)) == n:
                del st.neigh[n.device, n.ip]
        case p.SetResolv(ns, content):
            st.resolv[ns] = content
        case p.DelResolv(ns):
            st.resolv.pop(ns, None)
        case p.AddNamespace(name):
            st.namespaces.add(name)
            st.routes.setdefault(name, None)  # as a read finds a new namespace: no default
        case p.DelNamespace(name):
            st.namespaces.discard(name)
            st.routes.pop(name, None)
            st.ns_rules.pop(name, None)
            st.resolv.pop(name, None)  # the driver removes its resolver file along
            for v in [v for v in st.veths.values() if v.netns == name]:
                del st.veths[v.name]
        case p.AddBridge(br) | p.SetBridge(_, br):
            st.bridges[br.name] = br
        case p.DelBridge(name):
            st.bridges.pop(name, None)
            if name == names.TRANSIT_BRIDGE:  # the routes through it go along
                st.host_routes.clear()
            for v in [v for v in st.veths.values() if v.bridge == name]:
                st.veths[v.name] = dataclasses.replace(v, bridge="")
            for x in [x for x in st.vxlans.values() if x.bridge == name]:
                st.vxlans[x.name] = dataclasses.replace(x, bridge="")
        case p.AddVxlan(vx):
            if vx.bridge not in st.bridges:
                raise KernelError("AddVxlan", vx.name, errno.ENODEV, "no bridge")
            st.vxlans[vx.name] = vx
        case p.DelVxlan(name):
            st.vxlans.pop(name, None)
            st.fdb = {f for f in st.fdb if f.device != name}
            st.neigh = {k: n for k, n in st.neigh.items() if n.device != name}
        case p.AddVeth(v):
            if v.netns not in st.namespaces and v.netns not in st.runtime and v.netns != HANDOVER:
                raise KernelError("AddVeth", v.name, errno.ENOENT, f"no namespace {v.netns}")
            if v.bridge not in st.bridges:
                raise KernelError("AddVeth", v.name, errno.ENODEV, f"no bridge {v.bridge}")
            st.veths[v.name] = v
        case p.DelVeth(name):
            gone = st.veths.pop(name, None)
            if gone is not None and st.routes.get(gone.netns) is not None:
                st.routes[gone.netns] = None
        case p.SetRoute(ns, gw, _):
            if ns not in st.namespaces and ns not in st.runtime:
                raise KernelError("SetRoute", ns, errno.ENOENT, "no namespace")
            st.routes[ns] = gw
        case p.SetRules(rules, "", elements):
            st.rules = rules
            st.elements = dict(elements)
        case p.SetElements(changes):
            if st.rules is None:
                raise KernelError("SetElements", "table", errno.ENOENT, "no table")
            for name, add, remove in changes:
                if name not in st.elements:
                    raise KernelError("SetElements", name, errno.ENOENT, "no such set")
                st.elements[name] = (st.elements[name] - remove) | add
        case p.DelRules(""):
            st.rules = None
            st.elements = {}
        case p.SetRules(rules, ns):
            if ns not in st.namespaces:
                raise KernelError("SetRules", ns, errno.ENOENT, "no namespace")
            st.ns_rules[ns] = rules
        case p.DelRules(ns):
            st.ns_rules.pop(ns, None)
        case p.SetHostRoute(prefix, via):
            if names.TRANSIT_BRIDGE not in st.bridges:
                raise KernelError("SetHostRoute", prefix, errno.ENETUNREACH, "no transit bridge")
            st.host_routes[prefix] = via
        case p.DelHostRoute(prefix):
            st.host_routes.pop(prefix, None)
        case p.SetSysctl(key, value):
            st.sysctls[key] = value
        case p.Announce():
            pass  # a frame: no state


def rescope(st: HostState, runtime: Collection[str], there: Callable[[str], bool]) -> None:
    """Bring a view's runtime namespaces to those asked for now (``runtime``) and still
    there (``there``: a stat each), as a full read would find them: one no longer asked
    for, or gone (the container was killed), is not looked into (its veths are stale
    halves, its route unknown); one newly asked for is there if ``there`` says so (a new
    namespace holds nothing of the agent's)."""
    for ns in [ns for ns in st.runtime if ns not in runtime or not there(ns)]:
        st.runtime.discard(ns)
        st.routes.pop(ns, None)
        for v in [v for v in st.veths.values() if v.netns == ns]:
            st.veths[v.name] = Veth(v.name, v.endpoint, v.bridge, "", "", "", "", 0, False)
    for ns in set(runtime) - st.runtime:
        if there(ns):
            st.runtime.add(ns)
            st.routes.setdefault(ns, None)
