"""Controllers that share a store: catching up with the others, and running a command
again when one of them committed first.

A command (a :class:`~controller.service.Controller` method that commits, those of
:mod:`controller.policies` and :mod:`controller.pins`, a whole batch,
:func:`controller.bulk.run`) validates against the state, builds its delta from it and
commits. When the store answers :class:`~controller.errors.StoreConflict` (another
controller committed since this one last read the store), nothing was written and the
state was not touched. :func:`command` then takes the log's head
(:meth:`~controller.store.Store.exclusive`: no other controller commits until this
command's write has), catches up (:func:`catch_up`: the changes committed since,
applied to the state in order) and runs the command again, against the state as it is
now: validated again, addresses and MACs picked again. The first run is optimistic
(no lock, one round trip for the head check in the commit); the second cannot
conflict, so a controller that keeps losing the race to a busier one still gets its
write in at the second run, not after a number of tries. The command
is the retry point because it is the narrowest unit that can run again: its delta is a
function of the state and its arguments only, and nothing before it (an API route, the
bus) saw a half-done result; ``Controller._commit``, where the conflict shows, cannot
run again what built its delta. A command refused (a network not found, an address
taken) may have been refused by a state that is behind: it runs again too when
catching up brought anything (a SQLite store, with its one controller, never has news:
no query). A command run inside another (a batch's staged
operations, which write nothing themselves) is retried by the outer one only.

A replica behind the trimmed part of the log (its next change deleted by the leader,
:mod:`controller.leader`) is told so by the store (:class:`~controller.errors.LogTrimmed`)
and reloads: :func:`reload` reads every table and applies the difference as one change.

Catching up keeps this replica's own view of each agent (online, applied generations,
errors, last seen): what the store holds of a host is its VTEP, version and desired
generation (:mod:`controller.pgstore`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import structlog

from .errors import ControllerError, LogTrimmed, StoreConflict, StoreError
from .state import TABLE_OF, TABLES, Applied, Delta, HostRow, Row, State, Table

log = structlog.get_logger("plexus.controller")

P = ParamSpec("P")
R = TypeVar("R")

#: the Controller methods that commit (the class is decorated with :func:`commands`)
COMMANDS = (
    "host_reported",
    "decommission_host",
    "create_network",
    "delete_network",
    "create_compartment",
    "delete_compartment",
    "collect",
    "create_endpoint",
    "set_ports",
    "delete_endpoint",
)

#: the controllers (by id) running a command now: a command inside one is not retried
_running: set[int] = set()


def catch_up(ctl: Any) -> list[Applied]:
    """Apply to ``ctl``'s state what other controllers committed since its store's
    head, in order; what each change did (empty: nothing new), also appended to
    ``ctl.news``: the runtime publishes them before the next change
    (:meth:`~controller.runtime.Runtime.publish`), which also keeps the publication's
    caches true to the state."""
    out = []
    try:
        changes = ctl.store.changes_since(ctl.store.head)
    except LogTrimmed as e:
        out.append(reload(ctl, e))
        changes = ctl.store.changes_since(ctl.store.head)
    for seq, delta in changes:
        out.append(ctl.state.apply(_keep_runtime(ctl.state, delta)))
        ctl.news.append((seq, out[-1]))
        ctl.store.head = seq
    return out


def reload(ctl: Any, trimmed: LogTrimmed) -> Applied:
    """This replica is behind the trimmed part of the log: read the whole store and
    apply the difference to the state as one change (rows that differ put, rows gone
    deleted, floors raised), appended to ``ctl.news`` like a change of the log, so the
    publication's caches follow it and a leader publishes it."""
    behind = ctl.store.head
    rows, floors = ctl.store.load()  # the tables and the head, in one snapshot
    delta = Delta(floors=floors)
    state = ctl.state
    found: dict[Table, set[str]] = {t: set() for t in TABLES}
    for row in sorted(rows, key=lambda r: TABLES.index(TABLE_OF[type(r)])):
        table = TABLE_OF[type(row)]
        found[table].add(row.id)
        if not _same(getattr(state, table).get(row.id), row):
            delta.put(row)
    for table in reversed(TABLES):  # what refers to a row before the row
        for ident in getattr(state, table).keys() - found[table]:
            delta.delete(table, ident)
    change: Applied = state.apply(_keep_runtime(state, delta))
    ctl.news.append((ctl.store.head, change))
    log.warning(
        "change_log_trimmed_reloaded",
        behind=behind,
        wanted=trimmed.wanted,
        oldest=trimmed.oldest,
        head=ctl.store.head,
        puts=len(delta.puts),
        deletes=len(delta.deletes),
    )
    return change


def _same(mine: Row | None, stored: Row) -> bool:
    """Whether this replica's row is the stored one (of a host: what the store keeps)."""
    if isinstance(mine, HostRow) and isinstance(stored, HostRow):
        kept = (mine.vtep, mine.version, mine.desired_gen)
        return kept == (stored.vtep, stored.version, stored.desired_gen)
    return mine == stored


def follow(ctl: Any, timeout: float) -> list[Applied]:
    """What other controllers committed, applied: at once when there is some, else
    after waiting up to ``timeout`` seconds for the store's notification."""
    out = catch_up(ctl)
    if not out and ctl.store.wait(timeout):
        out = catch_up(ctl)
    return out


def _keep_runtime(state: State, delta: Delta) -> Delta:
    """``delta`` with each host row it writes carrying this replica's runtime fields."""
    if not any(isinstance(r, HostRow) for r in delta.puts):
        return delta
    puts = []
    for row in delta.puts:
        mine = state.hosts.get(row.id) if isinstance(row, HostRow) else None
        if isinstance(row, HostRow) and mine is not None:
            row = HostRow(
                row.id, row.vtep, row.version, mine.state, row.desired_gen,
                mine.applied_desired, mine.applied_networks, mine.errors, mine.last_seen,
            )  # fmt: skip
        puts.append(row)
    return Delta(puts=puts, deletes=delta.deletes, floors=delta.floors)


def _news(ctl: Any) -> bool:
    """Catch up after a command was refused: whether another controller had committed
    something (the refusal may be of a state that was behind: run it again)."""
    try:
        return bool(catch_up(ctl))
    except StoreError:
        return False  # the refusal stands; the store's trouble shows at the next write


def command(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn(ctl, …)``, run again after catching up when the store reports a conflict
    (or the state was behind), holding the log's head the second time."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        ctl: Any = args[0]
        key = id(ctl)
        if key in _running or getattr(ctl, "staging", False):
            return fn(*args, **kwargs)
        _running.add(key)
        try:
            try:
                return fn(*args, **kwargs)
            except StoreConflict as e:
                log.debug("store_conflict", command=fn.__name__, expected=e.expected, head=e.head)
            except StoreError:
                raise
            except ControllerError:
                if not _news(ctl):
                    raise
            with ctl.store.exclusive():  # nobody commits until this command has
                catch_up(ctl)
                return fn(*args, **kwargs)
        finally:
            _running.discard(key)

    return run


T = TypeVar("T", bound=type)


def commands(cls: T) -> T:
    """The class with each of :data:`COMMANDS` under :func:`command`."""
    for name in COMMANDS:
        setattr(cls, name, command(getattr(cls, name)))
    return cls
