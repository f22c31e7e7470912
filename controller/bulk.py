"""``POST /v1/batch``: many commands validated together and committed as one change.

A batch runs the very commands the single calls run (:class:`~controller.service.Controller`
and :mod:`controller.policies`), in order, each against the state the ones before it
left, with the controller *staging* (:attr:`Controller.staging`: a command applies its
delta to the state, not to the store). Then, all or nothing:

- an operation refused (or anything raised): every staged row is put back as it was and
  the batch is refused with the reason of each refused operation (:class:`Refused`);
- else the staged commands are folded into one :class:`~controller.state.Applied`
  (each row as it was before the batch and as it is after it), their generations
  renumbered as one change would have made them (:func:`_renumber`), and written to the
  store in **one** transaction. What the broker gets follows from that one change as
  from any other (:meth:`Publication.of`): one desired document per touched host, one
  table change per touched network (one per
  :data:`~controller.publication.CHANGE_RECORDS` records, so that no message outgrows
  the payload limit), and one wait over all of it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from proto.rest import BatchOp, CompartmentCreate, EndpointCreate, NetworkCreate, PolicyCreate

from . import policies, publication, replica
from .errors import ControllerError, Invalid
from .service import Controller, Outcome
from .state import TABLE_OF, Applied, Delta, EndpointRow, Row, Table

#: deletes go in this order (what refers to a row before it), puts in the reverse
ORDER: tuple[Table, ...] = ("endpoints", "policies", "compartments", "networks", "hosts")

#: the state's table of each kind
TABLES: dict[str, Table] = {
    "network": "networks",
    "compartment": "compartments",
    "endpoint": "endpoints",
    "policy": "policies",
}
_BODIES: dict[str, type[Any]] = {
    "network": NetworkCreate,
    "compartment": CompartmentCreate,
    "endpoint": EndpointCreate,
    "policy": PolicyCreate,
}


@dataclass
class Done:
    """An operation of the batch, done: its id and, for a create, the row it made."""

    op: str
    kind: str
    id: str
    row: Row | None = None


class Refused(ControllerError):
    """Nothing of the batch was committed. ``items``: (index, error) of each operation
    refused, in order; the batch's status is the first one's."""

    def __init__(self, items: list[tuple[int, ControllerError]]) -> None:
        index, first = items[0]
        more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
        super().__init__(f"ops[{index}]: {first.reason}{more}; nothing was committed")
        self.status = first.status
        self.error = first.error
        self.items = items


@replica.command
def run(ctl: Controller, ops: Sequence[BatchOp]) -> Outcome[list[Done]]:
    """Run ``ops`` as one change (see the module's docstring); raises :class:`Refused`,
    or :class:`~controller.errors.StoreError` when the store refuses the commit."""
    state = ctl.state
    floors = dict(state.floors)
    merged = Applied()
    done: list[Done] = []
    made: list[bool] = []  # whether each done operation is a create
    refused: list[tuple[int, ControllerError]] = []
    ctl.staging = True
    try:
        for i, op in enumerate(ops):
            try:
                out = _one(ctl, op)
            except ControllerError as e:
                refused.append((i, e))
                continue
            _merge(merged, out.change)
            made.append(op.op == "create")
            done.append(Done(op.op, op.kind, out.value.id if made[-1] else str(op.id)))
        if refused:
            raise Refused(refused)
        fixed = _renumber(merged)
        if fixed:
            state.apply(Delta(puts=fixed))
            for row in fixed:
                rows = merged.table(TABLE_OF[type(row)])
                rows[row.id] = (rows[row.id][0], row)
        delta = _delta(merged, {k: v for k, v in state.floors.items() if floors.get(k) != v})
        ctl.store.apply(delta)
    except BaseException:
        _revert(ctl, merged, floors)
        raise
    finally:
        ctl.staging = False
    for d, create in zip(done, made, strict=True):
        if create:
            d.row = _current(ctl, d)
    return Outcome(done, merged)


def _one(ctl: Controller, op: BatchOp) -> Outcome[Any]:
    if op.op == "delete":
        ident = str(op.id)
        if op.kind == "network":
            return ctl.delete_network(ident, force=op.force)
        if op.kind == "compartment":
            return ctl.delete_compartment(ident, force=op.force)
        if op.kind == "endpoint":
            return ctl.delete_endpoint(ident)
        return policies.delete_policy(ctl, ident)
    try:
        body = _BODIES[op.kind].model_validate(op.body)
    except ValidationError as e:
        raise Invalid(f"{op.kind} body: {_reason(e)}") from None
    if op.kind == "network":
        return ctl.create_network(body)
    if op.kind == "compartment":
        return ctl.create_compartment(body)
    if op.kind == "endpoint":
        return ctl.create_endpoint(body)
    return policies.create_policy(ctl, body)


def _reason(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False, include_input=False)[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _current(ctl: Controller, d: Done) -> Row | None:
    """The row a create made, as committed (its generations renumbered); None when a
    later operation of the batch deleted it."""
    table = TABLES[d.kind]
    row: Row | None = getattr(ctl.state, table).get(d.id)
    return row


def _merge(into: Applied, change: Applied) -> None:
    """Fold a later change into ``into``: each row as it was first and as it is last."""
    for table in ORDER:
        if changed := change.table(table):
            rows = into.table(table)
            for ident, (old, new) in changed.items():
                rows[ident] = (rows[ident][0] if ident in rows else old, new)


def _renumber(merged: Applied) -> list[Row]:
    """The rows whose generations the staged commands raised once each, as one change
    raises them: a host's desired generation by one; a network's table generation by
    one per :data:`~controller.publication.CHANGE_RECORDS` records written or deleted
    (its deletes first, then its records, in order), each record at its chunk's; a
    network made in the batch at its first generation, records and all (its snapshot
    carries them). Returns those that differ from what staging left."""
    out: list[Row] = []
    for old_h, new_h in merged.hosts.values():
        if old_h is not None and new_h is not None and new_h.desired_gen > old_h.desired_gen + 1:
            out.append(dataclasses.replace(new_h, desired_gen=old_h.desired_gen + 1))
    written: dict[str, list[EndpointRow]] = defaultdict(list)
    deleted: Counter[str] = Counter()
    for old_e, new_e in merged.endpoints.values():
        if new_e is not None:
            written[new_e.network].append(new_e)
        elif old_e is not None:
            deleted[old_e.network] += 1
    for net_id, (old_n, new_n) in merged.networks.items():
        if new_n is None or (old_n is not None and new_n.table_gen <= old_n.table_gen):
            continue
        if old_n is None:  # one generation, whatever its size: its snapshot carries it
            first = last = new_n.spec.generation
            eps = written[net_id]
            gens = [first] * len(eps)
        else:
            first = old_n.table_gen + 1
            eps = [e for e in written[net_id] if e.gen >= first]
            skip = deleted[net_id]
            gens = [first + (skip + i) // publication.CHANGE_RECORDS for i in range(len(eps))]
            last = first + max(0, skip + len(eps) - 1) // publication.CHANGE_RECORDS
        out.extend(
            dataclasses.replace(e, gen=g) for e, g in zip(eps, gens, strict=True) if e.gen != g
        )
        if new_n.table_gen != last:
            out.append(dataclasses.replace(new_n, table_gen=last))
    return out


def _delta(merged: Applied, floors: dict[str, int]) -> Delta:
    """The store's side of the merged change: each row as it is after the batch."""
    delta = Delta(floors=floors)
    for table in ORDER:
        for ident, (old, new) in merged.table(table).items():
            if new is None and old is not None:
                delta.delete(table, ident)
            elif new is not None and new is not old:
                delta.put(new)
    return delta


def _revert(ctl: Controller, merged: Applied, floors: dict[str, int]) -> None:
    """Put the state back as it was before the batch (the store was not written)."""
    delta = Delta()
    for table in ORDER:
        for ident, (old, new) in merged.table(table).items():
            if old is None and new is not None:
                delta.delete(table, ident)
    for table in reversed(ORDER):
        for old, new in merged.table(table).values():
            if old is not None and old is not new:
                delta.put(old)
    ctl.state.apply(delta)
    ctl.state.floors.clear()
    ctl.state.floors.update(floors)
