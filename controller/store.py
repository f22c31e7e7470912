"""Durable storage of the controller's rows.

:class:`Store` is the seam: anything that can load every row and apply a
:class:`~controller.state.Delta` atomically, after the change it last saw, can serve.
:class:`SqliteStore` is the default: one file, WAL, one transaction per delta, one
controller. :class:`~controller.pgstore.PostgresStore` serves several controllers on one
database (:func:`open_store` picks by the address). Both keep their schema as numbered
migrations (:mod:`controller.schema`).

The change log's head: every commit advances it by one, in the same transaction. A
SQLite store keeps only the head (one small update per write, which also refuses a
second process writing the same file) and no log: its one controller has nobody to
catch up with. Its cost per commit is within run-to-run noise in
``benchmarks.store_writes`` on the 2-core machine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Literal, Protocol

from proto import NetworkSpec

from . import schema
from .errors import StoreError
from .rowcodec import decode, encode, spec_json
from .state import (
    TABLE_OF,
    CompartmentRow,
    Delta,
    EndpointRow,
    HostRow,
    NetworkRow,
    PolicyRow,
    Row,
)

#: deletes go in this order (what refers to a row first: foreign keys), puts reversed
ORDER = {"endpoints": 0, "policies": 0, "compartments": 1, "networks": 2, "hosts": 3}


def is_url(store: str) -> bool:
    """Whether ``--store`` names a PostgreSQL database rather than a SQLite file."""
    return store.startswith(("postgresql://", "postgres://"))


def open_store(store: str, sync: Literal["full", "normal"] = "normal") -> Store:
    """The store ``--store`` names: a ``postgresql://`` (or ``postgres://``) URL, or
    the path of a SQLite file."""
    if is_url(store):
        from .pgstore import PostgresStore  # psycopg only for those who use it

        return PostgresStore(store)
    return SqliteStore(store, sync=sync)


class Store(Protocol):
    #: the sequence number of the last change this store loaded, wrote or was told its
    #: caller caught up with (:mod:`controller.replica` sets it after catching up)
    head: int

    def load(self) -> tuple[list[Row], dict[str, int]]:
        """Every row, and the generation floors (and :attr:`head`, read with them)."""
        ...

    def apply(self, delta: Delta, expect: int | None = None) -> None:
        """Write a delta atomically: all of it, or nothing (raising StoreError), as
        change ``expect + 1`` (``expect``: :attr:`head` unless given). Returns after the
        commit. Raises :class:`~controller.errors.StoreConflict`, writing nothing, when
        another controller committed since ``expect``."""
        ...

    def changes_since(self, seq: int) -> list[tuple[int, Delta]]:
        """The changes committed after ``seq``, in order, with their numbers."""
        ...

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for another controller's commit; whether one
        came (then read :meth:`changes_since`)."""
        ...

    def exclusive(self) -> AbstractContextManager[None]:
        """While the block runs, no other controller commits: catching up in it and
        then writing cannot conflict. Held until the block's write commits."""
        ...

    def close(self) -> None: ...


class SqliteStore:
    """SQLite file store. ``sync="full"`` survives power loss; ``"normal"`` (default)
    survives a crash of the process, which is what an acknowledged API call needs."""

    def __init__(self, path: str | Path, sync: Literal["full", "normal"] = "normal") -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={sync.upper()}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            self.head: int = self._db.execute("SELECT seq FROM head").fetchone()[0]
            self._specs: dict[str, tuple[NetworkSpec, str]] = {}
            #: network id -> IPAM scope kind, so that writing an endpoint needs no lookup
            self._host_local = {
                ident: decode("networks", data).host_local  # type: ignore[union-attr]
                for ident, data in self._db.execute("SELECT id, data FROM networks")
            }
        except sqlite3.Error as e:
            raise StoreError(f"cannot open store {self.path}: {e}") from e

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"cannot begin a transaction: {e}") from e
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        """Bring the file to :data:`schema.LATEST` (see :mod:`controller.schema`)."""
        with self._transaction() as db:
            db.execute(schema.VERSION_TABLE)
            row = db.execute("SELECT version FROM schema_version").fetchone()
            meta = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            tables = row is None and db.execute(meta).fetchone() is not None
            version = None if row is None else int(row[0])
            schema.migrate(db.execute, version, int(tables), schema.SQLITE, self.path, "?")

    def load(self) -> tuple[list[Row], dict[str, int]]:
        rows: list[Row] = []
        for table in ("hosts", "networks", "compartments", "endpoints", "policies"):
            order = " ORDER BY rowid"
            for (data,) in self._db.execute(f"SELECT data FROM {table}{order}"):
                rows.append(decode(table, data))
        floors = dict(self._db.execute("SELECT key, value FROM meta"))
        self.head = self._db.execute("SELECT seq FROM head").fetchone()[0]
        return rows, floors

    def apply(self, delta: Delta, expect: int | None = None) -> None:
        expect = self.head if expect is None else expect
        try:
            with self._transaction() as db:
                moved = db.execute("UPDATE head SET seq = seq + 1 WHERE seq = ?", (expect,))
                if moved.rowcount != 1:
                    raise StoreError(
                        f"another process wrote the SQLite store {self.path} (a SQLite "
                        "store serves one controller): restart this one"
                    )
                for table, ident in sorted(delta.deletes, key=lambda d: ORDER[d[0]]):
                    db.execute(f"DELETE FROM {table} WHERE id = ?", (ident,))
                    if table == "networks":
                        self._specs.pop(ident, None)
                        self._host_local.pop(ident, None)
                for row in sorted(delta.puts, key=lambda r: -ORDER[TABLE_OF[type(r)]]):
                    self._put(db, row)
                for key, value in delta.floors.items():
                    db.execute(
                        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) "
                        "DO UPDATE SET value = max(value, excluded.value)",
                        (key, value),
                    )
        except sqlite3.Error as e:
            raise StoreError(f"store write failed: {e}") from e
        self.head = expect + 1

    def changes_since(self, seq: int) -> list[tuple[int, Delta]]:
        if seq == self.head:
            return []
        raise StoreError(f"the SQLite store {self.path} keeps no change log (one controller)")

    def wait(self, timeout: float) -> bool:
        """Nobody else writes a SQLite store: nothing to wait for (at once, False)."""
        return False

    def exclusive(self) -> AbstractContextManager[None]:
        """Nobody else writes a SQLite store: nothing to hold."""
        return nullcontext()

    def _put(self, db: sqlite3.Connection, row: Row) -> None:
        if isinstance(row, NetworkRow):
            # every endpoint change writes its network (the table generation): its
            # spec, unchanged, is encoded once
            cached = self._specs.get(row.id)
            if cached is None or cached[0] is not row.spec:
                cached = self._specs[row.id] = (row.spec, spec_json(row.spec))
            data = encode(row, cached[1])
        else:
            data = encode(row)
        if isinstance(row, HostRow):
            db.execute("INSERT OR REPLACE INTO hosts(id, data) VALUES (?, ?)", (row.id, data))
        elif isinstance(row, NetworkRow):
            db.execute(
                "INSERT INTO networks(id, vni, data) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET vni = excluded.vni, data = excluded.data",
                (row.id, row.vni, data),
            )
            self._host_local[row.id] = row.host_local
        elif isinstance(row, CompartmentRow):
            db.execute(
                "INSERT INTO compartments(id, host, data) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET host = excluded.host, data = excluded.data",
                (row.id, row.host, data),
            )
        elif isinstance(row, EndpointRow):
            db.execute(
                "INSERT INTO endpoints(id, network, compartment, scope, ip, mac, idx, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "ip = excluded.ip, mac = excluded.mac, idx = excluded.idx, data = excluded.data",
                (
                    row.id,
                    row.network,
                    row.compartment,
                    row.host if self._host_local[row.network] else "",
                    row.ip,
                    row.mac,
                    row.index,
                    data,
                ),
            )
        elif isinstance(row, PolicyRow):
            db.execute(
                "INSERT INTO policies(id, network, data) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET network = excluded.network, data = excluded.data",
                (row.id, row.network, data),
            )

    def close(self) -> None:
        self._db.close()
