"""The stores' schema, as numbered migrations (one list per database).

Version 1 is the schema SQLite stores had before versions were kept (a store with
the row tables and no ``schema_version`` is at version 1). Version 2 adds the change
log's ``head`` (both databases) and the log itself, ``changes`` (PostgreSQL only: a
SQLite store serves one controller, which has nobody to catch up with). At start a
store runs the migrations after its version, in order, in one transaction; a store
whose version is newer than :data:`LATEST` is refused (:func:`pending`).
"""

from __future__ import annotations

from .errors import StoreError

_ROWS = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value {int} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS hosts (id TEXT PRIMARY KEY, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS networks ("
    " id TEXT PRIMARY KEY, vni INTEGER UNIQUE, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS compartments ("
    " id TEXT PRIMARY KEY, host TEXT NOT NULL, data TEXT NOT NULL)",
    # the unique constraints are the last line against a duplicate address, MAC or
    # interface, whatever a controller's memory says
    "CREATE TABLE IF NOT EXISTS endpoints ("
    " id TEXT PRIMARY KEY,"
    " network TEXT NOT NULL REFERENCES networks(id),"
    " compartment TEXT NOT NULL REFERENCES compartments(id),"
    " scope TEXT NOT NULL, ip TEXT NOT NULL, mac TEXT NOT NULL, idx INTEGER NOT NULL,"
    " data TEXT NOT NULL,"
    " UNIQUE (network, scope, ip), UNIQUE (network, mac), UNIQUE (compartment, idx))",
    "CREATE TABLE IF NOT EXISTS policies ("
    " id TEXT PRIMARY KEY, network TEXT NOT NULL REFERENCES networks(id), data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS endpoints_network ON endpoints(network)",
    "CREATE INDEX IF NOT EXISTS policies_network ON policies(network)",
    "CREATE INDEX IF NOT EXISTS compartments_host ON compartments(host)",
]

#: the head of the change log: one row, the sequence number of the last commit
_HEAD = [
    "CREATE TABLE head (one INTEGER PRIMARY KEY CHECK (one = 1), seq {int} NOT NULL)",
    "INSERT INTO head (one, seq) VALUES (1, 0)",
]

#: SQLite's migrations: ``SQLITE[i]`` takes a store from version i to i + 1
SQLITE: list[list[str]] = [
    [s.format(int="INTEGER") for s in _ROWS],
    [s.format(int="INTEGER") for s in _HEAD],
]

#: PostgreSQL's: the same tables (BIGINT for what may pass 2**31), and the log
POSTGRES: list[list[str]] = [
    [s.format(int="BIGINT") for s in _ROWS],
    [s.format(int="BIGINT") for s in _HEAD]
    + [
        "CREATE TABLE changes ("
        " seq BIGINT PRIMARY KEY, delta TEXT NOT NULL,"
        " committed TIMESTAMPTZ NOT NULL DEFAULT now())"
    ],
]

LATEST = len(SQLITE)
assert len(POSTGRES) == LATEST

#: the table of the version: one row
VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


def pending(found: int, where: str) -> range:
    """The migrations a store at version ``found`` needs (their indexes); StoreError
    when the store is newer than this code."""
    if found > LATEST:
        raise StoreError(
            f"store {where} is at schema version {found}, newer than this controller's "
            f"{LATEST}: run the controller version that wrote it (or a newer one)"
        )
    return range(found, LATEST)
