"""Durable storage of the controller's rows.

:class:`Store` is the seam: anything that can load every row and apply a
:class:`~controller.state.Delta` atomically can serve (a server database later).
:class:`SqliteStore` is the default: one file, WAL, one transaction per delta.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from proto import NetworkSpec
from proto.parts import Dns, Netns
from proto.policy import Policy

from .errors import StoreError
from .state import (
    TABLE_OF,
    CompartmentRow,
    Delta,
    EndpointRow,
    HostRow,
    NetworkRow,
    PolicyRow,
    Row,
    Table,
)

ROW_TYPES: dict[Table, type[Row]] = {t: cls for cls, t in TABLE_OF.items()}


class Store(Protocol):
    def load(self) -> tuple[list[Row], dict[str, int]]:
        """Every row, and the generation floors."""
        ...

    def apply(self, delta: Delta) -> None:
        """Write a delta atomically: all of it, or nothing (raising StoreError)."""
        ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY, vni INTEGER UNIQUE, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS compartments (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    network TEXT NOT NULL REFERENCES networks(id),
    compartment TEXT NOT NULL REFERENCES compartments(id),
    scope TEXT NOT NULL, ip TEXT NOT NULL, mac TEXT NOT NULL, idx INTEGER NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (network, scope, ip), UNIQUE (network, mac), UNIQUE (compartment, idx));
CREATE TABLE IF NOT EXISTS policies (
    id TEXT PRIMARY KEY, network TEXT NOT NULL REFERENCES networks(id), data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS endpoints_network ON endpoints(network);
CREATE INDEX IF NOT EXISTS policies_network ON policies(network);
CREATE INDEX IF NOT EXISTS compartments_host ON compartments(host);
"""


#: each row type's fields, for a shallow dict of a row (its values are JSON already:
#: strings, numbers, tuples, flat dicts; ``dataclasses.asdict`` deep-copies them)
_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in TABLE_OF}


def _encode(row: Row, spec_json: str | None = None) -> str:
    """A row as stored; a network's spec as ``spec_json`` when the caller has it."""
    if isinstance(row, NetworkRow):
        if spec_json is None:
            spec_json = _spec_json(row.spec)
        rest: dict[str, Any] = {"table_gen": row.table_gen, "created": row.created}
        if row.hosts:
            rest["hosts"] = list(row.hosts)
        tail = json.dumps(rest)[1:]
        return f'{{"spec":{spec_json},{tail}'
    if isinstance(row, PolicyRow):
        spec = row.spec.model_dump(mode="json", exclude={"v", "kind"})
        return json.dumps({"spec": spec, "created": row.created}, separators=(",", ":"))
    values = {f: getattr(row, f) for f in _FIELDS[type(row)]}
    return json.dumps(values, separators=(",", ":"), default=_model)


def _model(value: object) -> object:
    """A model in a row (an endpoint's DNS settings) as JSON."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON")


def _spec_json(spec: NetworkSpec) -> str:
    return json.dumps(spec.model_dump(mode="json", exclude={"v", "kind"}), separators=(",", ":"))


def _decode(table: Table, data: str) -> Row:
    """A stored row; StoreError when it no longer reads (a row a later validator
    refuses, a file edited by hand): one line naming it, not a traceback."""
    try:
        return _decode_row(table, json.loads(data))
    except (ValueError, KeyError, TypeError) as e:  # pydantic's ValidationError too
        raise StoreError(f"a stored {table} row does not read: {str(e)[:300]}") from None


def _decode_row(table: Table, values: dict[str, Any]) -> Row:
    if table == "networks":
        return _network(values)
    if table == "policies":
        spec = Policy.model_validate(values["spec"], strict=False)
        return PolicyRow(spec, created=values.get("created", 0.0))
    for key in ("errors", "labels"):
        if key in values:
            values[key] = tuple(values[key])
    if "ports" in values:
        values["ports"] = tuple(tuple(p) for p in values["ports"])
    if values.get("dns") is not None:
        values["dns"] = Dns.model_validate(values["dns"])
    if values.get("netns") is not None:
        values["netns"] = Netns.model_validate(values["netns"])
    return ROW_TYPES[table](**values)


def _network(values: dict[str, Any]) -> NetworkRow:
    """A network row: ``{"spec": …, "table_gen": …, "created": …}``, or as stores
    written before the spec was held whole wrote it (its fields flat, beside those)."""
    if "spec" in values:
        spec = values["spec"]
    else:
        spec = {k: v for k, v in values.items() if k not in ("table_gen", "created", "hosts")}
    return NetworkRow(
        NetworkSpec.model_validate(spec, strict=False),
        table_gen=values["table_gen"],
        created=values.get("created", 0.0),
        hosts=tuple(values.get("hosts", ())),
    )


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
            self._db.executescript(_SCHEMA)
            self._specs: dict[str, tuple[NetworkSpec, str]] = {}
            #: network id -> IPAM scope kind, so that writing an endpoint needs no lookup
            self._host_local = {
                ident: _decode("networks", data).host_local  # type: ignore[union-attr]
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

    def load(self) -> tuple[list[Row], dict[str, int]]:
        rows: list[Row] = []
        for table in ("hosts", "networks", "compartments", "endpoints", "policies"):
            order = " ORDER BY rowid"
            for (data,) in self._db.execute(f"SELECT data FROM {table}{order}"):
                rows.append(_decode(table, data))
        floors = dict(self._db.execute("SELECT key, value FROM meta"))
        return rows, floors

    def apply(self, delta: Delta) -> None:
        try:
            with self._transaction() as db:
                # endpoints go before compartments/networks on delete (foreign keys)
                order = {
                    "endpoints": 0,
                    "policies": 0,
                    "compartments": 1,
                    "networks": 2,
                    "hosts": 3,
                }
                for table, ident in sorted(delta.deletes, key=lambda d: order[d[0]]):
                    db.execute(f"DELETE FROM {table} WHERE id = ?", (ident,))
                    if table == "networks":
                        self._specs.pop(ident, None)
                        self._host_local.pop(ident, None)
                for row in sorted(delta.puts, key=lambda r: -order[TABLE_OF[type(r)]]):
                    self._put(db, row)
                for key, value in delta.floors.items():
                    db.execute(
                        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) "
                        "DO UPDATE SET value = max(value, excluded.value)",
                        (key, value),
                    )
        except sqlite3.Error as e:
            raise StoreError(f"store write failed: {e}") from e

    def _put(self, db: sqlite3.Connection, row: Row) -> None:
        if isinstance(row, NetworkRow):
            # every endpoint change writes its network (the table generation): its
            # spec, unchanged, is encoded once
            cached = self._specs.get(row.id)
            if cached is None or cached[0] is not row.spec:
                cached = self._specs[row.id] = (row.spec, _spec_json(row.spec))
            data = _encode(row, cached[1])
        else:
            data = _encode(row)
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
