"""What the broker must hold, derived in one place from what the store holds.

:meth:`Publication.of` turns a committed change (:class:`~controller.state.Applied`)
into the publishes it needs — O(1) of them for an endpoint — and the networks whose
snapshot must be refreshed; :meth:`Publication.reconcile` compares the broker's
retained state with the store after a (re)connect; :meth:`Publication.snapshot`
refreshes a network's snapshot (the shards changes touched: :mod:`controller.snapshots`).
The caches that make these cheap (record encodings, hosts' desired documents in parts,
network spec encodings, snapshots' layouts) are all here, and only here. It reads the
state; it never changes it.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import proto
from proto import topics
from proto.policy import Policy

from .publish import Publish as Publish  # named here too (bus, runtime)
from .snapshots import SHARD_RECORDS, Snapshots
from .state import Applied, EndpointRow, NetworkRow, PolicyRow, State

#: records per table change of a batch (:mod:`controller.bulk`), as per snapshot shard
CHANGE_RECORDS = SHARD_RECORDS


@dataclass
class Batch:
    """What one committed change needs: publishes in order, and the networks whose
    snapshot is to be refreshed (coalesced by the bus)."""

    publish: list[Publish] = field(default_factory=list)
    snapshots: set[str] = field(default_factory=set)


Part = tuple[proto.Compartment, bytes]


@dataclass
class HostDoc:
    """One host's desired document in parts: each compartment's model and its msgpack
    encoding, in compartment id order. (Its networks are the state's
    ``host_networks``: its endpoints' and those held on it.)"""

    parts: dict[str, Part] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def put(self, cid: str, part: Part) -> None:
        self.drop(cid)
        self.parts[cid] = part
        bisect.insort(self.order, cid)

    def drop(self, cid: str) -> None:
        if self.parts.pop(cid, None) is not None:
            del self.order[bisect.bisect_left(self.order, cid)]


class Publication:
    """The broker's side of the state. Not thread-safe: call from one event loop."""

    def __init__(self, state: State) -> None:
        self.state = state
        #: endpoint id → (gen, VTEP, its record, the record's msgpack encoding)
        self._records: dict[str, tuple[int, str | None, proto.EndpointRecord, bytes]] = {}
        #: each host's desired document in parts (see :class:`HostDoc`); a change marks
        #: the compartments it touched stale, and only those are built again
        self._docs: dict[str, HostDoc] = {}
        self._stale: set[str] = set()
        self._placed: dict[str, str] = {}  # compartment -> the host whose document has it
        self._specs: dict[str, tuple[NetworkRow, bytes]] = {}
        self._policies: dict[str, tuple[PolicyRow, bytes]] = {}
        self.snapshots = Snapshots(state, self.record_frame)

    # -- a committed change ------------------------------------------------------------

    def of(self, change: Applied) -> Batch:
        """The publishes ``change`` needs, in this order: network specs (and the first
        snapshot of a new network), desired documents (lazy; before the table changes:
        README, "The wire contract"), table changes, the clearing of what was deleted."""
        st = self.state
        self._mark_stale(change)
        out = Batch()
        clears: list[Publish] = []
        for ident, (old_ep, new_ep) in change.endpoints.items():
            ep = new_ep or old_ep  # an endpoint never changes networks
            if ep is not None:
                self.snapshots.touch(ep.network, ident, new_ep is not None)
            if new_ep is None:
                self._records.pop(ident, None)
        for net_id, (old_net, new_net) in change.networks.items():
            if new_net is None:
                clears.append(Publish(topics.network(net_id), b"", True))
                clears.extend(self.snapshots.clear(net_id))
                self._specs.pop(net_id, None)
            elif old_net is None or old_net.spec != new_net.spec:
                out.publish.append(self.network_publish(new_net))
                if old_net is None:
                    out.publish.extend(self.snapshot(net_id))
        for ident, (_, new_pol) in change.policies.items():
            if new_pol is None:
                self._policies.pop(ident, None)
        for host_id, (old_host, new_host) in sorted(change.hosts.items()):
            if new_host is None:
                self._docs.pop(host_id, None)  # a decommissioned host's document goes
                clears.append(Publish(topics.host_desired(host_id), b"", True))
                clears.append(Publish(topics.host_status(host_id), b"", True))
            elif old_host is None or old_host.desired_gen != new_host.desired_gen:
                out.publish.append(self.desired_later(host_id))
        out.publish.extend(self._changes(change, out.snapshots))
        out.publish.extend(clears)
        assert all(n in st.networks for n in out.snapshots)
        return out

    def _changes(self, change: Applied, dirty: set[str]) -> Iterable[Publish]:
        """A :class:`proto.NetworkChange` per generation the change raised a network's
        table by (one; a batch's, one per CHANGE_RECORDS records, deletes first)."""
        written: dict[str, list[EndpointRow]] = {}
        gone: dict[str, list[str]] = {}
        for ident, (old_ep, new_ep) in change.endpoints.items():
            if new_ep is not None:
                written.setdefault(new_ep.network, []).append(new_ep)
            elif old_ep is not None:
                gone.setdefault(old_ep.network, []).append(ident)
        for net_id, (old_net, new_net) in sorted(change.networks.items()):
            if old_net is None or new_net is None or new_net.table_gen <= old_net.table_gen:
                continue
            first, last = old_net.table_gen + 1, new_net.table_gen
            upserts: dict[int, list[proto.EndpointRecord]] = {}
            for ep in written.get(net_id, ()):
                if ep.gen >= first:
                    upserts.setdefault(ep.gen, []).append(self.record(ep))
            deletes = sorted(gone.get(net_id, []))
            for gen in range(first, last + 1):
                k = (gen - first) * CHANGE_RECORDS
                msg = proto.NetworkChange(
                    network=net_id,
                    generation=gen,
                    upserts=tuple(upserts.get(gen, ())),
                    deletes=tuple(deletes[k : k + CHANGE_RECORDS] if gen < last else deletes[k:]),
                )
                yield Publish(topics.network_changes(net_id), proto.encode(msg), False)
            dirty.add(net_id)

    def _mark_stale(self, change: Applied) -> None:
        """Compartments whose part of their host's desired document ``change`` changed."""
        stale = self._stale
        stale.update(change.compartments)
        for old_ep, new_ep in change.endpoints.values():
            for ep in (old_ep, new_ep):
                if ep is not None:
                    stale.add(ep.compartment)
        for old_net, new_net in change.networks.values():
            if old_net is not None and new_net is not None and old_net.subnet != new_net.subnet:
                # prefix lengths change
                eps = self.state.by_network.get(new_net.id, {}).values()
                stale.update(ep.compartment for ep in eps)

    # -- endpoint records --------------------------------------------------------------

    def _record(self, ep: EndpointRow) -> tuple[int, str | None, proto.EndpointRecord, bytes]:
        host = self.state.hosts.get(ep.host)
        vtep = host.vtep if host else None
        cached = self._records.get(ep.id)
        if cached is None or cached[0] != ep.gen or cached[1] != vtep:
            rec = ep.record(vtep)
            cached = self._records[ep.id] = (ep.gen, vtep, rec, proto.encode(rec))
        return cached

    def record(self, ep: EndpointRow) -> proto.EndpointRecord:
        return self._record(ep)[2]

    def record_frame(self, ep: EndpointRow) -> bytes:
        """The record's encoding, cached with it: a snapshot of 20,000 records is
        assembled, not validated and encoded again after every change."""
        return self._record(ep)[3]

    # -- networks ----------------------------------------------------------------------

    def _spec(self, net: NetworkRow) -> tuple[proto.NetworkSpec, bytes]:
        cached = self._specs.get(net.id)
        if cached is None or cached[0].spec != net.spec:
            cached = self._specs[net.id] = (net, proto.encode(net.spec))
        return cached[0].spec, cached[1]

    def network_publish(self, net: NetworkRow) -> Publish:
        return Publish(topics.network(net.id), self._spec(net)[1], True)

    def snapshot(self, net_id: str) -> list[Publish]:
        """The network's snapshot refreshed (:meth:`Snapshots.publish`)."""
        return self.snapshots.publish(net_id)

    # -- hosts' desired documents ------------------------------------------------------

    def _desired_parts(
        self, host: str
    ) -> tuple[
        list[tuple[proto.NetworkSpec, bytes]],
        list[tuple[proto.Compartment, bytes]],
        list[tuple[Policy, bytes]],
    ]:
        """The host's network specs, compartments and its networks' policies, each with
        its msgpack encoding: O(compartments changed since the last call), not
        O(the host's compartments)."""
        self._refresh()
        doc = self._docs.get(host)
        if doc is None:
            doc = self._docs[host] = HostDoc()
            for cid in self.state.comps_by_host.get(host, {}):
                doc.put(cid, self._compartment_part(cid))
                self._placed[cid] = host
        comps = [doc.parts[cid] for cid in doc.order]
        # its endpoints' networks and those held on it
        nets = sorted(n for n, c in self.state.host_networks.get(host, {}).items() if c > 0)
        return [self._spec(self.state.networks[n]) for n in nets], comps, self._policy_parts(nets)

    def _policy_parts(self, nets: list[str]) -> list[tuple[Policy, bytes]]:
        """The policies of ``nets`` (README, "Policies"), by network and id."""
        out = []
        for net in nets:
            for ident, row in sorted(self.state.policies_by_network.get(net, {}).items()):
                cached = self._policies.get(ident)
                if cached is None or cached[0] is not row:
                    cached = self._policies[ident] = (
                        row,
                        proto.pack(row.spec.model_dump(mode="json")),
                    )
                out.append((row.spec, cached[1]))
        return out

    def _refresh(self) -> None:
        """Rebuild the stale compartments in the documents built so far."""
        stale, self._stale = self._stale, set()
        for cid in stale:
            was = self._placed.pop(cid, None)
            if was in self._docs:
                self._docs[was].drop(cid)
            comp = self.state.compartments.get(cid)
            if comp is not None and comp.host in self._docs:
                self._docs[comp.host].put(cid, self._compartment_part(cid))
                self._placed[cid] = comp.host

    def _compartment_part(self, cid: str) -> Part:
        eps = sorted(self.state.by_compartment.get(cid, {}).values(), key=lambda e: e.index)
        local = [ep.local(self.state.networks[ep.network].spec.prefixlen) for ep in eps]
        row = self.state.compartments[cid]
        doc = proto.Compartment(
            id=cid, endpoints=tuple(local), netns=row.netns, handover=row.handover
        )
        return doc, proto.encode(doc)

    def desired(self, host: str) -> proto.HostDesired:
        """The host-local desired document, built from the state (consistent by
        construction: its parts are validated models, not validated again)."""
        specs, comps, pols = self._desired_parts(host)
        return proto.HostDesired.model_construct(
            host=host,
            generation=self.state.hosts[host].desired_gen,
            networks=tuple(s for s, _ in specs),
            compartments=tuple(c for c, _ in comps),
            policies=tuple(p for p, _ in pols),
        )

    def desired_later(self, host: str) -> Publish:
        """The host's desired document, built when the bus sends it (see :class:`Publish`)."""
        return Publish(topics.host_desired(host), None, True, lambda: self._desired_frame(host))

    def desired_publish(self, host: str) -> Publish:
        return Publish(topics.host_desired(host), self._desired_frame(host), True)

    def _desired_frame(self, host: str) -> bytes:
        """The desired document's frame, assembled from the cached encodings of its parts."""
        specs, comps, pols = self._desired_parts(host)
        head = proto.HostDesired(host=host, generation=self.state.hosts[host].desired_gen)
        dump = head.model_dump(mode="json")
        if pols:  # left out while empty, as the model leaves it out
            dump["policies"] = []
        return proto.pack_parts(
            dump,
            {
                "networks": [b for _, b in specs],
                "compartments": [b for _, b in comps],
                "policies": [b for _, b in pols],
            },
        )

    # -- after a (re)connect -----------------------------------------------------------

    def reconcile(self, retained: dict[str, bytes]) -> list[Publish]:
        """What to publish so that the broker's retained state equals the store's."""
        state = self.state
        out: list[Publish] = []
        wanted: set[str] = set()
        for host in sorted(state.hosts):
            topic = topics.host_desired(host)
            wanted.add(topic)
            have = _generation(retained.get(topic), proto.HostDesired)
            if have != state.hosts[host].desired_gen:
                out.append(self.desired_publish(host))
        for net_id in sorted(state.networks):
            net = state.networks[net_id]
            topic = topics.network(net_id)
            wanted.add(topic)
            if _generation(retained.get(topic), proto.NetworkSpec) != net.generation:
                out.append(self.network_publish(net))
            prefix = topics.network(net_id) + "/snapshot/"
            held = {t: p for t, p in retained.items() if t.startswith(prefix)}
            if self.snapshots.adopt(net_id, held):  # the table as it is: nothing to publish
                wanted.update(held)
            else:
                publishes = self.snapshot(net_id)
                wanted.update(p.topic for p in publishes if p.payload)
                out.extend(publishes)
        planned = {p.topic for p in out}
        for topic in sorted(retained):
            if topic not in wanted and topic not in planned and retained[topic]:
                out.append(Publish(topic, b"", True))
        return out


def _generation(
    payload: bytes | None, kind: type[proto.HostDesired] | type[proto.NetworkSpec]
) -> int | None:
    if not payload:
        return None
    with contextlib.suppress(proto.WireError):
        return proto.decode(payload, kind).generation
    return None
