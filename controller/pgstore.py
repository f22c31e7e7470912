"""The PostgreSQL store: several controllers on one database (``--store postgresql://…``).

The same tables and unique constraints as :class:`~controller.store.SqliteStore`
(:mod:`controller.schema`), and the same promise: :meth:`PostgresStore.apply` returns
only after its COMMIT, and any failure is a :class:`~controller.errors.StoreError`
with the reason (503 on the API). A lost connection (PostgreSQL restarted) fails the
call in progress; the next call connects again by itself.

**The change log.** Every commit is one statement, ``SELECT plexus_commit(expect,
rows, delta)`` (a PL/pgSQL function of the schema, :mod:`controller.schema`: one round
trip, its own transaction). It locks the ``head`` row (``SELECT … FOR UPDATE``),
checks that it is still the head the caller's state is at, writes the rows, appends
the delta to ``changes`` as ``seq = head + 1``, advances the head and ``NOTIFY
plexus_changes, 'seq'`` (sent at COMMIT). The locked head row orders
the writers, so sequence numbers have no gaps and follow commit order: whoever reads
the changes after N misses none (a ``BIGSERIAL`` would leave gaps on rollback, and two
writers could commit out of their numbers' order). When another controller committed
first, :class:`~controller.errors.StoreConflict` is raised and nothing is written; the
caller holds the head (:meth:`~PostgresStore.exclusive`: the commit function then runs
in that transaction, committed after it), reads :meth:`~PostgresStore.changes_since`
its head, applies them, and runs its command again (:mod:`controller.replica`).
Generation floors are raised with ``GREATEST``: never backwards, whichever replica
writes. The leader trims the log (:mod:`controller.leader`); :meth:`~PostgresStore.changes_since`
a change no longer logged raises :class:`~controller.errors.LogTrimmed`.

**Host rows.** Every replica follows every agent's retained status. A status writes a
host row only when what is kept changes (a new host, its VTEP or its version,
:meth:`~controller.service.Controller.host_reported`); the runtime fields (online,
applied generations, errors, last seen) are each replica's own view of the agent and
are not written here: a host row holds its id, VTEP, version and desired generation.
So when N replicas fold in the same new status, the first commits it, the others get a
conflict, catch up (the row now has that VTEP and version) and run the status again,
which then writes nothing: one write per real change, whatever N. Catching up keeps a
replica's runtime fields (:func:`controller.replica.catch_up`).

psycopg 3's synchronous connection, because the :class:`~controller.store.Store` seam
is synchronous: a command validates against the state, commits and applies in one go,
with no await between them, so no other request can run on a state that is half
updated. A commit blocks the event loop for its round trips, as SQLite's fsync does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg.types.json import Jsonb

from . import schema
from .errors import LogTrimmed, StoreConflict, StoreError
from .rowcodec import decode, decode_delta, encode, encode_delta, spec_json
from .state import (
    TABLE_OF,
    TABLES,
    CompartmentRow,
    Delta,
    EndpointRow,
    HostRow,
    NetworkRow,
    Row,
    Table,
)
from .store import ORDER

#: the channel a commit notifies, with its sequence number as the payload
CHANNEL = "plexus_changes"
#: the advisory lock held while migrating (controllers starting together)
_MIGRATION_LOCK = 0x706C6578  # "plex"

_IDLE = psycopg.pq.TransactionStatus.IDLE


def where(url: str) -> str:
    """The database a URL names, for messages: host, port and name, never a password."""
    try:
        info = conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "(an unreadable postgresql:// URL)"
    host = str(info.get("host") or "localhost")
    port = f":{info['port']}" if info.get("port") else ""
    return f"{host}{port}/{info.get('dbname') or ''}"


def _reason(e: psycopg.Error) -> str:
    primary = getattr(getattr(e, "diag", None), "message_primary", None)
    text = primary or str(e) or type(e).__name__
    return text.strip().splitlines()[0][:300]


class PostgresStore:
    """A PostgreSQL database shared by every controller replica (module docstring)."""

    def __init__(self, url: str, *, connect_timeout: int = 5, lock_timeout: float = 5.0) -> None:
        self.url = url
        self.where = where(url)
        #: what the URL does not say: a commit blocks the event loop, so nothing may wait
        #: for long (a server gone quiet, a replica stalled holding the head row)
        self.defaults: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "tcp_user_timeout": 10_000,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "options": f"-c lock_timeout={int(lock_timeout * 1000)} "
            "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=30000",
        }
        self._conn: psycopg.Connection[Any] | None = None
        self._listener: psycopg.Connection[Any] | None = None
        #: whether this store holds the head in an open transaction (:meth:`exclusive`)
        self._held = False
        #: network id -> (its spec, the spec's JSON): unchanged specs are encoded once
        self._specs: dict[str, tuple[Any, str]] = {}
        #: network id -> IPAM scope kind (an endpoint's ``scope`` column)
        self._host_local: dict[str, bool] = {}
        self._migrate()
        with self._transaction("reading the head") as conn:
            self.head: int = _one(conn, "SELECT seq FROM head")

    # -- connections ---------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            given = conninfo.conninfo_to_dict(self.url)
            params = {k: v for k, v in self.defaults.items() if k not in given}
            return psycopg.connect(self.url, autocommit=True, **params)
        except psycopg.Error as e:
            raise StoreError(f"cannot reach PostgreSQL at {self.where}: {_reason(e)}") from e

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._drop()
            conn = self._conn = self._connect()
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def _transaction(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        """One transaction; every psycopg error as a StoreError saying ``what`` failed."""
        conn = self._connection()
        try:
            with conn.transaction():  # a savepoint while the head is held (exclusive)
                yield conn
        except psycopg.Error as e:
            raise self._error(conn, what, e) from e

    def _error(self, conn: psycopg.Connection[Any], what: str, e: psycopg.Error) -> StoreError:
        if conn.closed or conn.broken:
            self._drop()
            return StoreError(
                f"{what} failed: lost the connection to PostgreSQL at {self.where} "
                f"({_reason(e)}); the next call connects again"
            )
        return StoreError(f"{what} failed: {_reason(e)}")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the log's head from now until the block's write commits (or the block
        ends: rolled back). No other controller commits in between, so a command that
        catches up in the block and runs again cannot conflict (controller.replica)."""
        conn = self._connection()
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT seq FROM head FOR UPDATE")
        except psycopg.Error as e:
            self._end(conn)
            raise self._error(conn, "holding the head", e) from e
        self._held = True
        try:
            yield
        finally:
            self._held = False
            self._end(conn)

    def _end(self, conn: psycopg.Connection[Any]) -> None:
        """Roll back what is left open on ``conn`` (the held transaction, not committed)."""
        if not (conn.closed or conn.broken) and conn.info.transaction_status != _IDLE:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                self._drop()

    def close(self) -> None:
        self._drop()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # -- schema --------------------------------------------------------------------

    def _migrate(self) -> None:
        """Bring the database to :data:`schema.LATEST`, under an advisory lock."""
        with self._transaction("migrating the schema") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(schema.VERSION_TABLE)
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            tables = row is None and _one(conn, "SELECT to_regclass('meta') IS NOT NULL")
            version = None if row is None else int(row[0])
            schema.migrate(conn.execute, version, int(tables), schema.POSTGRES, self.where, "%s")

    # -- reading -------------------------------------------------------------------

    def load(self) -> tuple[list[Row], dict[str, int]]:
        rows: list[Row] = []
        with self._transaction("reading the store") as conn:
            if not self._held:  # held: nobody commits meanwhile (one snapshot anyway)
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for table in TABLES:
                for (data,) in conn.execute(f"SELECT data FROM {table} ORDER BY id"):
                    rows.append(decode(table, data))
            floors = {k: int(v) for k, v in conn.execute("SELECT key, value FROM meta")}
            head = _one(conn, "SELECT seq FROM head")
        self._host_local = {r.id: r.host_local for r in rows if isinstance(r, NetworkRow)}
        self.head = head
        return rows, floors

    def changes_since(self, seq: int) -> list[tuple[int, Delta]]:
        """The changes after ``seq``, in order; :class:`LogTrimmed` when the log no
        longer holds the next one (the caller reloads, :func:`controller.replica.catch_up`)."""
        with self._transaction("reading the change log") as conn:
            found = conn.execute(
                "SELECT seq, delta FROM changes WHERE seq > %s ORDER BY seq", (seq,)
            ).fetchall()
            if not found:  # one statement, one snapshot: a commit since is no gap
                head, oldest = conn.execute(
                    "SELECT (SELECT seq FROM head), (SELECT min(seq) FROM changes WHERE seq > %s)",
                    (seq,),
                ).fetchone() or (seq, None)
                if head > seq and (oldest is None or oldest > seq + 1):
                    raise _trimmed(seq + 1, oldest or 0)
        out = [(int(n), decode_delta(text)) for n, text in found]
        for i, (n, delta) in enumerate(out):
            if n != seq + 1 + i:
                raise _trimmed(seq + 1 + i, n)
            for table, ident in delta.deletes:
                if table == "networks":
                    self._host_local.pop(ident, None)
            for row in delta.puts:
                if isinstance(row, NetworkRow):
                    self._host_local[row.id] = row.host_local
        return out

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for another commit's notification; whether one
        came (a follower then reads :meth:`changes_since` its head). Listening starts at
        the first call, and notifications in between are kept for the next one."""
        try:
            if self._listener is None or self._listener.closed or self._listener.broken:
                self._listener = self._connect()
                self._listener.execute(f"LISTEN {CHANNEL}")
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error as e:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            raise StoreError(f"listening to PostgreSQL at {self.where}: {_reason(e)}") from e
        return False

    # -- writing -------------------------------------------------------------------

    def apply(self, delta: Delta, expect: int | None = None) -> None:
        expect = self.head if expect is None else expect
        conn = self._connection()
        work, puts = self._work(conn, delta)
        try:
            # one statement, its own transaction (or in the held one, committed after)
            found = conn.execute(
                "SELECT plexus_commit(%s, %s, %s)", (expect, Jsonb(work), encode_delta(puts, delta))
            ).fetchone()
            if self._held:
                self._held = False
                conn.execute("COMMIT")
        except psycopg.Error as e:
            if e.sqlstate == schema.HEAD_MOVED:
                head = int(e.diag.message_detail or 0)
                raise StoreConflict(
                    f"another controller committed change {head}; this one had read up to {expect}",
                    expected=expect,
                    head=head,
                ) from None
            raise self._error(conn, "store write", e) from e
        assert found is not None
        self.head = int(found[0])

    def _work(
        self, conn: psycopg.Connection[Any], delta: Delta
    ) -> tuple[dict[str, Any], list[tuple[Table, str]]]:
        """What ``plexus_commit`` gets of ``delta`` (each table's deletes, and its puts
        as columns, the last of each row), and the rows as written (for the log)."""
        gone: dict[str, list[str]] = {}
        for table, ident in delta.deletes:
            gone.setdefault(table, []).append(ident)
            if table == "networks":
                self._specs.pop(ident, None)
                self._host_local.pop(ident, None)
        written: list[tuple[Table, str]] = []
        put: dict[str, dict[str, tuple[Any, ...]]] = {}
        for row in sorted(delta.puts, key=lambda r: -ORDER[TABLE_OF[type(r)]]):
            table = TABLE_OF[type(row)]
            data, values = self._values(conn, row)
            written.append((table, data))
            put.setdefault(table, {})[row.id] = values
        rows = {t: list(by_id.values()) for t, by_id in put.items()}
        return {"del": gone, "put": rows, "floors": delta.floors}, written

    def _values(self, conn: psycopg.Connection[Any], row: Row) -> tuple[str, tuple[Any, ...]]:
        """A row's JSON and its table's columns."""
        if isinstance(row, NetworkRow):
            cached = self._specs.get(row.id)
            if cached is None or cached[0] is not row.spec:
                cached = self._specs[row.id] = (row.spec, spec_json(row.spec))
            self._host_local[row.id] = row.host_local
            data = encode(row, cached[1])
            return data, (row.id, row.vni, data)
        if isinstance(row, HostRow):  # what is kept of a host (module docstring)
            data = encode(HostRow(row.id, row.vtep, row.version, desired_gen=row.desired_gen))
            return data, (row.id, data)
        data = encode(row)
        if isinstance(row, EndpointRow):
            scope = row.host if self._is_host_local(conn, row.network) else ""
            return data, (
                row.id, row.network, row.compartment, scope, row.ip, row.mac, row.index, data,
            )  # fmt: skip
        if isinstance(row, CompartmentRow):
            return data, (row.id, row.host, data)
        return data, (row.id, row.network, data)

    def _is_host_local(self, conn: psycopg.Connection[Any], network: str) -> bool:
        known = self._host_local.get(network)
        if known is None:  # made by another replica before this one caught up
            found = conn.execute("SELECT data FROM networks WHERE id = %s", (network,)).fetchone()
            known = found is not None and decode("networks", found[0]).host_local  # type: ignore[union-attr]
            if found is not None:
                self._host_local[network] = known
        return known


def _trimmed(wanted: int, oldest: int) -> LogTrimmed:
    since = f"the oldest logged is {oldest}" if oldest else "none is logged"
    return LogTrimmed(
        f"the change log no longer holds change {wanted} ({since}): trimmed",
        wanted=wanted,
        oldest=oldest,
    )


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]
