"""The agent's logic between the wire and the kernel, without MQTT.

:meth:`Agent.on_message` validates and folds one message in (never raises);
:meth:`Agent.reconcile` runs one pass: read the kernel, compute the desired state,
plan, apply. The MQTT session (:mod:`agents.daemon`) only moves bytes.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar, overload

import structlog

import proto
from proto import names, topics
from proto.parts import Netns
from proto.rows import ChangeRows, SnapshotRows

from .acl import Compiled
from .conflicts import conflicts
from .desired import Changes, desired_state, without
from .errors import KernelError
from .kernel import Kernel
from .metrics import AgentMetrics
from .model import HANDOVER, TAKEN, HostState, Veth
from .plan import plan
from .tables import Table

log = structlog.get_logger("plexus.agent")
M = TypeVar("M", bound=proto.Wire)


class Decoder(Protocol):
    def __call__(self, data: bytes, expect: type[M]) -> M: ...


class RowsDecoder(Protocol):
    @overload
    def __call__(self, data: bytes, expect: type[proto.NetworkSnapshot]) -> SnapshotRows: ...
    @overload
    def __call__(self, data: bytes, expect: type[proto.NetworkChange]) -> ChangeRows: ...


MAX_ERRORS = 32


@dataclass
class PassResult:
    actions: int
    errors: list[str]
    duration: float
    complete: bool


@dataclass
class Agent:
    host: str
    kernel: Kernel
    vtep: str | None
    #: host links a transparent network may enslave (the host's configuration)
    allowed_uplinks: frozenset[str] = frozenset()
    version: str = proto.__version__
    metrics: AgentMetrics = field(default_factory=AgentMetrics)
    doc: proto.HostDesired | None = None
    tables: dict[str, Table] = field(default_factory=dict)
    #: the ACL structure of the last document (agents.acl)
    acl: Compiled = field(default_factory=Compiled, repr=False)
    applied_desired: int = 0
    applied_networks: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: runtime-owned compartments whose namespace the last pass found gone → that one
    gone: dict[str, Netns] = field(default_factory=dict)
    #: the broker the session is on now (its URL, no credentials; the daemon sets it)
    broker: str = ""
    #: set whenever something arrived that a pass should look at
    dirty: bool = True
    #: after each pass on the driver's view, check it against a full read (tests)
    verify_view: bool = False
    #: what changed since the last clean pass (the tables report to it)
    changes: Changes = field(init=False)
    #: payload → model (its desired documents reuse the compartments of the one before),
    #: and a table's payload → rows (a simulator of many agents in one process passes
    #: decoders that share what they decoded between them)
    decode: Decoder = field(default_factory=proto.DesiredDecoder)
    decode_rows: RowsDecoder = proto.decode_rows

    def __post_init__(self) -> None:
        self.changes = Changes(self.host)

    @property
    def settled(self) -> bool:
        """The last pass was complete and clean (see :attr:`Changes.settled`)."""
        return self.changes.settled

    # -- wire --------------------------------------------------------------------------

    def followed(self) -> set[str]:
        """Networks whose endpoint table this host must hold."""
        if self.doc is None:
            return set()
        return {n.id for n in self.doc.networks if n.mode in proto.TABLE_MODES}

    def on_message(self, topic: str, payload: bytes) -> str | None:
        """Fold one message in. Returns None, or the reason it was rejected (logged and
        counted here). Never raises."""
        try:
            return self._on_message(topic, payload)
        except proto.WireError as e:
            return self._reject(e.code, topic, e.reason)
        except Exception as e:  # a daemon never dies of a message
            log.exception("message_handler_failed", topic=topic)
            return self._reject("internal", topic, repr(e))

    def _on_message(self, topic: str, payload: bytes) -> str | None:
        t = topics.parse(topic)
        if t.kind == "host_desired":
            if t.host != self.host:
                return self._reject("other_host", topic, f"topic of host {t.host}")
            if not payload:
                return None  # cleared (host decommissioned): keep the dataplane, fail static
            doc = self.decode(payload, proto.HostDesired)
            if doc.host != self.host:
                return self._reject("other_host", topic, f"document names host {doc.host}")
            if self.doc is not None and doc.generation <= self.doc.generation:
                return self._reject(
                    "stale",
                    topic,
                    f"generation {doc.generation} not newer than {self.doc.generation}",
                )
            self.doc = doc
            follow = self.followed()
            for net in list(self.tables):
                if net not in follow:
                    del self.tables[net]
            for net in sorted(follow - self.tables.keys()):
                self.tables[net] = self.changes.table(net)
            self.dirty = True
            return None
        if t.kind in ("network_snapshot", "network_snapshot_index", "network_changes"):
            assert t.network is not None
            table = self.tables.get(t.network)
            if table is None:
                return self._reject("not_member", topic, "a network this host does not follow")
            if not payload:
                return None
            if t.kind == "network_snapshot":
                snap = self.decode_rows(payload, proto.NetworkSnapshot)
                if snap.network != t.network or snap.shard != t.shard:
                    return self._reject("topic_mismatch", topic, "payload names another shard")
                outcome = table.on_snapshot(snap)
            elif t.kind == "network_snapshot_index":
                index = proto.decode(payload, proto.SnapshotIndex)
                if index.network != t.network:
                    return self._reject("topic_mismatch", topic, "payload names another network")
                outcome = table.on_index(index)
            else:
                change = self.decode_rows(payload, proto.NetworkChange)
                if change.network != t.network:
                    return self._reject("topic_mismatch", topic, "payload names another network")
                outcome = table.on_change(change)
            if outcome in ("stale", "duplicate"):
                log.debug("message_ignored", topic=topic, outcome=outcome)
            else:
                self.dirty = True
            return None
        return self._reject("unexpected_topic", topic, t.kind)

    def on_session(self) -> None:
        """A new broker session: changes may have been missed while there was none, so
        every table is checked against a snapshot again (whose retained messages the
        new session's subscriptions bring: what was held of it goes)."""
        for table in self.tables.values():
            table.mark_unverified()
            table.release()

    def on_dropped(self) -> None:
        """The receive queue refused a message, which may have been a change: counted,
        and every table is checked against a snapshot again."""
        self.metrics.dropped.inc()
        for table in self.tables.values():
            table.mark_unverified()

    def on_live(self, topic: str) -> None:
        """A message published while subscribed arrived on ``topic`` (not the retained
        copy the broker sends at subscription time, which may predate a change
        published just before the subscription). A snapshot then makes its table
        current as of a refresh that came after its changes were followed, so it may
        leave the snapshot topic (see :attr:`Table.synced`)."""
        if "/snapshot/" not in topic:
            return
        try:
            net = topics.parse(topic).network
        except proto.WireError:
            return
        table = self.tables.get(net or "")
        if table is not None:
            table.mark_verified()

    def _reject(self, reason: str, topic: str, detail: str) -> str:
        self.metrics.rejected.labels(reason).inc()
        log.warning("message_rejected", host=self.host, topic=topic, reason=reason, detail=detail)
        return reason

    # -- kernel ------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self.doc is not None and all(t.complete for t in self.tables.values())

    async def reconcile(self, full: bool = True) -> PassResult:
        """One pass: read the kernel (``full``) or the driver's view of it, diff against
        the desired state, apply the difference. Nothing happens before the desired
        document. With ``verify_view``, a pass on the view ends with a full read that
        must equal it (tests run agents so)."""
        start = time.perf_counter()
        self.dirty = False
        if self.doc is None:
            return PassResult(0, [], 0.0, False)
        doc, complete = self.doc, self.complete
        gens = {n: t.generation for n, t in self.tables.items() if t.complete}
        errors: list[str] = []
        actions = []
        gone: dict[str, Netns] = {}
        want_ns = runtime_namespaces(doc)
        try:
            actual = await self.kernel.read(full, frozenset(want_ns))
            if full:
                self.metrics.rule_counters(actual.counters)
            remote = self.changes.remote(self.tables, self.vtep, actual)
            want = desired_state(
                self.host, doc, remote, self.vtep, self.allowed_uplinks, self.tables, self.acl
            )
            missing = want.runtime - actual.runtime
            if missing:
                without(want, missing)
                for ns in sorted(missing):
                    comp = want_ns[ns]
                    assert comp.netns is not None
                    gone[comp.id] = comp.netns
                    log.warning("namespace_gone", host=self.host, compartment=comp.id, ns=ns)
                    errors.append(
                        f"compartment {comp.id}: namespace {comp.netns.path} (inode "
                        f"{comp.netns.inode}) is gone; its endpoints cannot be plumbed"
                    )
            actions = plan(want, actual, complete=complete, entries=self.changes.scope(full))
            for refusal in want.refused:
                self.metrics.rejected.labels("not_owned").inc()
                log.warning("desired_refused", host=self.host, detail=refusal)
                errors.append(f"refused: {refusal}")
            for conflict in conflicts(self.host, doc.networks, actual.foreign):
                log.warning("network_conflict", host=self.host, detail=conflict)
                errors.append(f"conflict: {conflict}")
        except KernelError as e:
            errors.append(str(e))
        outcomes = await self.kernel.apply_many(actions) if actions else []
        # counted in C where it can be: a cold pass has 40,000 actions
        done = Counter(map(type, actions))
        failed = [(a, f) for a, f in zip(actions, outcomes, strict=True) if f is not None]
        for action, failure in failed:
            name = type(action).__name__
            done[type(action)] -= 1
            self.metrics.errors.labels(name).inc()
            errors.append(str(failure))
            if len(errors) <= MAX_ERRORS:  # a failed batch of 10,000 logs 32, counts all
                log.warning(
                    "action_failed",
                    host=self.host,
                    action=name,
                    error=str(failure),
                    errno=failure.errno,
                )
        for kind, n in done.items():
            if n:
                self.metrics.actions.labels(kind.__name__).inc(n)
        self.changes.passed(complete and not errors)
        if not errors:
            self.applied_desired = doc.generation
            self.applied_networks = gens
        self.errors = errors[:MAX_ERRORS]
        self.gone = gone
        duration = time.perf_counter() - start
        if self.verify_view and not full and not errors:
            await self._verify_view(frozenset(want_ns))
        self.metrics.pass_seconds.observe(duration)
        log.info(
            "reconcile_pass",
            host=self.host,
            duration_ms=round(duration * 1000, 2),
            actions=len(actions),
            done={k.__name__: n for k, n in done.items() if n},
            errors=len(errors),
            complete=complete,
            full=full,
            desired_generation=doc.generation,
        )
        return PassResult(len(actions), errors, duration, complete)

    async def _verify_view(self, runtime: frozenset[str]) -> None:
        """Compare the driver's view with a full read of the kernel; log a difference."""
        view = _handed(await self.kernel.read(False, runtime))
        fresh = _handed(await self.kernel.read(True, runtime))
        if view != fresh:
            diff = {}
            for f in dataclasses.fields(view):
                mine, theirs = _items(getattr(view, f.name)), _items(getattr(fresh, f.name))
                if f.compare and mine != theirs:
                    diff[f.name] = {
                        "view_only": sorted(map(str, mine - theirs)),
                        "kernel_only": sorted(map(str, theirs - mine)),
                    }
            self.metrics.view_diverged.inc()
            log.error("view_diverged", host=self.host, diff=diff)

    def status(self, state: Literal["online", "offline"] = "online") -> proto.HostStatus:
        return proto.HostStatus(
            host=self.host,
            state=state,
            version=self.version,
            vtep=self.vtep,
            desired_generation=self.applied_desired,
            networks=dict(self.applied_networks),
            errors=tuple(e[:1024] for e in self.errors),
            time=time.time(),
            gone=dict(self.gone),
            broker=self.broker,
        )


def runtime_namespaces(doc: proto.HostDesired) -> dict[str, proto.Compartment]:
    """The runtime namespaces a desired document names, each with its compartment."""
    return {
        names.runtime_netns(c.netns.path, c.netns.inode): c
        for c in doc.compartments
        if c.netns is not None
    }


def _handed(st: HostState) -> HostState:
    """A copy of ``st`` in which a handed-over pair is one thing whether its inner end is
    in the host's namespace or taken: a runtime moves it (into the container, and back at
    Leave) where the view cannot see, so the view and a full read may rightly disagree."""
    out = st.copy()
    for v in st.veths.values():
        if v.netns in (HANDOVER, TAKEN):
            out.veths[v.name] = Veth(v.name, v.endpoint, v.bridge, HANDOVER, "", "", "", 0)
    return out


def _items(value: object) -> set[object]:
    """A state field as a set of comparable items, for a readable difference."""
    if isinstance(value, dict):
        return set(value.items())
    if isinstance(value, set | frozenset):
        return set(value)
    if isinstance(value, list | tuple):
        return set(map(repr, value))
    return {value}
