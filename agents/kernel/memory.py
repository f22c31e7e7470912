"""An in-memory kernel: the same semantics as the Linux driver, no kernel."""

from __future__ import annotations

import copy
import dataclasses
import errno

from .. import plan as p
from ..model import HostState
from . import KernelError


class MemoryKernel:
    def __init__(self, state: HostState | None = None) -> None:
        self.state = state or HostState()
        self.applied: list[p.Action] = []
        #: actions of these types fail with EPERM (fault injection for tests)
        self.fail: set[type] = set()

    async def read(self) -> HostState:
        return copy.deepcopy(self.state)

    async def close(self) -> None:
        return None

    async def apply(self, action: p.Action) -> None:
        if type(action) in self.fail:
            raise KernelError(type(action).__name__, str(action), errno.EPERM, "injected")
        self.applied.append(action)
        st = self.state
        match action:
            case p.AddNamespace(name):
                st.namespaces.add(name)
            case p.DelNamespace(name):
                st.namespaces.discard(name)
                st.routes.pop(name, None)
                for v in [v for v in st.veths.values() if v.netns == name]:
                    del st.veths[v.name]
            case p.AddBridge(br) | p.SetBridge(_, br):
                st.bridges[br.name] = br
            case p.DelBridge(name):
                st.bridges.pop(name, None)
                for v in [v for v in st.veths.values() if v.bridge == name]:
                    st.veths[v.name] = dataclasses.replace(v, bridge="")
            case p.AddVxlan(vx):
                if vx.bridge not in st.bridges:
                    raise KernelError("AddVxlan", vx.name, errno.ENODEV, "no bridge")
                st.vxlans[vx.name] = vx
            case p.DelVxlan(name):
                st.vxlans.pop(name, None)
                st.fdb = {f for f in st.fdb if f.device != name}
                st.neigh = {n for n in st.neigh if n.device != name}
            case p.AddVeth(v):
                if v.netns not in st.namespaces:
                    raise KernelError("AddVeth", v.name, errno.ENOENT, f"no namespace {v.netns}")
                if v.bridge not in st.bridges:
                    raise KernelError("AddVeth", v.name, errno.ENODEV, f"no bridge {v.bridge}")
                st.veths[v.name] = v
            case p.DelVeth(name):
                gone = st.veths.pop(name, None)
                if gone is not None and st.routes.get(gone.netns) is not None:
                    st.routes[gone.netns] = None
            case p.SetRoute(ns, gw):
                if ns not in st.namespaces:
                    raise KernelError("SetRoute", ns, errno.ENOENT, "no namespace")
                st.routes[ns] = gw
            case p.AddFdb(f):
                if f.device not in st.vxlans:
                    raise KernelError("AddFdb", f.device, errno.ENODEV, "no device")
                st.fdb.add(f)
            case p.DelFdb(f):
                st.fdb.discard(f)
            case p.AddNeigh(n):
                if n.device not in st.vxlans:
                    raise KernelError("AddNeigh", n.device, errno.ENODEV, "no device")
                st.neigh = {x for x in st.neigh if (x.device, x.ip) != (n.device, n.ip)}
                st.neigh.add(n)
            case p.DelNeigh(n):
                st.neigh.discard(n)
            case p.SetRules(rules):
                st.rules = rules
            case p.DelRules():
                st.rules = None
            case p.SetSysctl(key, value):
                st.sysctls[key] = value
