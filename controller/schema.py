"""The stores' schema, as numbered migrations (one list per database).

Version 1 is the schema SQLite stores had before versions were kept (a store with
the row tables and no ``schema_version`` is at version 1). Version 2 adds the change
log's ``head`` (both databases), the log itself, ``changes``, and the function that
commits, ``plexus_commit`` (PostgreSQL only: a SQLite store serves one controller,
which has nobody to catch up with). Version 3 adds the ``leader`` row (PostgreSQL
only; nothing for SQLite, whose one controller always leads): which replica publishes
to the broker, its epoch (one more at every takeover), the deadline of its lease, in
the database's clock, and the change it has published through (:mod:`controller.leader`). At start a
store runs the migrations after its version, in order, in one transaction; a store
whose version is newer than :data:`LATEST` is refused (:func:`pending`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    [],  # the leader row: one controller always leads
]

#: one write in one statement (one round trip, and no transaction to open and close
#: from the client): the head checked and locked, the rows, the floors (never
#: backwards), the change logged, the head advanced, the followers notified
_COMMIT = (
    "CREATE OR REPLACE FUNCTION plexus_commit(expect BIGINT, w JSONB, delta TEXT)"
    " RETURNS BIGINT LANGUAGE plpgsql AS $$"
    """
DECLARE
    current BIGINT;
BEGIN
    SELECT seq INTO current FROM head FOR UPDATE;
    IF current <> expect THEN
        RAISE EXCEPTION 'head moved' USING ERRCODE = 'PX409', DETAIL = current::text;
    END IF;
    DELETE FROM endpoints WHERE id IN (SELECT jsonb_array_elements_text(w->'del'->'endpoints'));
    DELETE FROM policies WHERE id IN (SELECT jsonb_array_elements_text(w->'del'->'policies'));
    DELETE FROM compartments
        WHERE id IN (SELECT jsonb_array_elements_text(w->'del'->'compartments'));
    DELETE FROM networks WHERE id IN (SELECT jsonb_array_elements_text(w->'del'->'networks'));
    DELETE FROM hosts WHERE id IN (SELECT jsonb_array_elements_text(w->'del'->'hosts'));
    INSERT INTO hosts (id, data)
        SELECT r->>0, r->>1 FROM jsonb_array_elements(w->'put'->'hosts') r
        ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data;
    INSERT INTO networks (id, vni, data)
        SELECT r->>0, (r->>1)::INTEGER, r->>2 FROM jsonb_array_elements(w->'put'->'networks') r
        ON CONFLICT (id) DO UPDATE SET vni = EXCLUDED.vni, data = EXCLUDED.data;
    INSERT INTO compartments (id, host, data)
        SELECT r->>0, r->>1, r->>2 FROM jsonb_array_elements(w->'put'->'compartments') r
        ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, data = EXCLUDED.data;
    INSERT INTO endpoints (id, network, compartment, scope, ip, mac, idx, data)
        SELECT r->>0, r->>1, r->>2, r->>3, r->>4, r->>5, (r->>6)::INTEGER, r->>7
        FROM jsonb_array_elements(w->'put'->'endpoints') r
        ON CONFLICT (id) DO UPDATE SET
        ip = EXCLUDED.ip, mac = EXCLUDED.mac, idx = EXCLUDED.idx, data = EXCLUDED.data;
    INSERT INTO policies (id, network, data)
        SELECT r->>0, r->>1, r->>2 FROM jsonb_array_elements(w->'put'->'policies') r
        ON CONFLICT (id) DO UPDATE SET network = EXCLUDED.network, data = EXCLUDED.data;
    INSERT INTO meta (key, value)
        SELECT f.key, f.value::BIGINT FROM jsonb_each_text(w->'floors') f
        ON CONFLICT (key) DO UPDATE SET value = GREATEST(meta.value, EXCLUDED.value);
    INSERT INTO changes (seq, delta) VALUES (expect + 1, delta);
    UPDATE head SET seq = expect + 1;
    PERFORM pg_notify('plexus_changes', (expect + 1)::TEXT);
    RETURN expect + 1;
END
"""
    "$$"
)

#: PostgreSQL's: the same tables (BIGINT for what may pass 2**31), and the log
POSTGRES: list[list[str]] = [
    [s.format(int="BIGINT") for s in _ROWS],
    [s.format(int="BIGINT") for s in _HEAD]
    + [
        "CREATE TABLE changes ("
        " seq BIGINT PRIMARY KEY, delta TEXT NOT NULL,"
        " committed TIMESTAMPTZ NOT NULL DEFAULT now())",
        _COMMIT,
    ],
    [
        "CREATE TABLE leader (one INTEGER PRIMARY KEY CHECK (one = 1),"
        " replica TEXT NOT NULL, epoch BIGINT NOT NULL, deadline TIMESTAMPTZ NOT NULL,"
        " published BIGINT NOT NULL)",
        "INSERT INTO leader (one, replica, epoch, deadline, published)"
        " VALUES (1, '', 0, '-infinity', 0)",
    ],
]

#: the SQLSTATE ``plexus_commit`` raises when the head is not the one expected
HEAD_MOVED = "PX409"

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


def migrate(
    run: Callable[..., object],
    version: int | None,
    unversioned: int,
    steps: Sequence[Sequence[str]],
    where: str,
    mark: str,
) -> None:
    """Bring a store to :data:`LATEST` in the caller's transaction: ``run(sql[, params])``
    executes; ``version`` is the store's (None: no version recorded, then
    ``unversioned``: 1 when the row tables are there, 0 when the store is new);
    ``steps`` the store's statements of each migration; ``mark`` its driver's
    placeholder."""
    found = version if version is not None else unversioned
    todo = pending(found, where)
    for i in todo:
        for statement in steps[i]:
            run(statement)
    if version is None:
        run(f"INSERT INTO schema_version VALUES ({mark})", (LATEST,))
    elif todo:
        run(f"UPDATE schema_version SET version = {mark}", (LATEST,))
