"""Which controller replica publishes: a lease in the database, and its fence.

Every replica serves the API and commits to the shared store; exactly one, the
**leader**, publishes to the broker (:class:`~controller.bus.Bus`). The lease is the
store's ``leader`` row (schema v3): the replica holding it, its **epoch** (one more at
every takeover) and a **deadline**, always in the database's clock (``now()``), never
a local one. Each replica runs :meth:`Lease.run` on a connection of its own (not the
write connection, which a long commit may hold):

- a follower tries to take the lease every :attr:`~Lease.poll` seconds: ``UPDATE …
  SET epoch = epoch + 1 … WHERE deadline < now()`` — one wins, the others find the row
  taken;
- the leader renews it every :attr:`~Lease.renew` seconds to ``now() + ttl``, ``WHERE
  replica = me AND epoch = mine``; no row updated means another replica took over:
  deposed, it becomes a follower at once.

So a killed leader is replaced within ``ttl + poll`` (1.2 + 0.25 s) of its last
renewal, and a stopped controller hands the lease over at once (:meth:`Lease.resign`).

**Resuming.** Each renewal also writes ``published``: the change (the log's sequence
number) the leader has published through (:attr:`Lease.published`, set by the bus after
a batch's acknowledgements). A new leader reads it as it takes the lease
(:attr:`Lease.published`) and publishes again the table changes of the commits after it
before anything else (the runtime keeps the recent ones, :mod:`controller.runtime`):
what the old leader had committed or acknowledged but not published, and what the other
replicas committed while nobody led, reach the agents that follow the changes; then it
reconciles the retained state. The mark lags by a renewal at most, so a few changes may
go out twice, byte for byte the same (QoS 1 allows it; agents ignore a generation they
hold).

**The fence.** Before each publish batch the bus asks :meth:`Lease.live`: a local
check, no round trip. A renewal sent at local monotonic time ``t0`` that succeeds
gives a deadline of at least ``t0 + ttl`` in real time (the database's ``now()`` is
read after ``t0``), so the lease is held until at least ``t0 + ttl``; :meth:`live` is
true until ``t0 + ttl - margin``. A leader stopped past that (SIGSTOP, a stall) finds on
waking that it is not live and publishes nothing until a renewal confirms it still
holds the same epoch; if another replica took over, the renewal updates no row and it
is a follower. The margin (0.4 s) covers what lies between the check and the broker
receiving the publish: the check is made before each batch and again as each publish
is handed to the MQTT client (no await in between), which writes it to the socket in a
following turn of the event loop. A publish reaches the broker after the deadline only
if the process is stopped for longer than the margin exactly in that window, a publish
taken by the client and not yet written; it then leaves when the process resumes (there
is no broker-side fence: MQTT has none, and Plexus uses no broker extension). That is
at most the publishes of one batch already handed over; what they carry is
generation-stamped, so no agent goes backwards, and a retained document put back is
replaced at the next change of that document (or the next reconciliation). A publish
fenced as it is handed over has its batch led again, if the replica still leads: the
table changes after the published mark, then the reconciliation.

A leader that is not live but not deposed either (a renewal late on a busy machine)
holds its batches until it knows (:meth:`~controller.bus.Bus`), rather than dropping
them.

**Trimming the log.** The leader also keeps the change log (``changes``) short: every
tenth of the retention (between a renewal and 10 s) it samples the log's head, and
deletes the changes up to the head it sampled ``retention`` seconds ago or more (a
prefix, by the primary key: one cheap DELETE of at most ``trim_rows``), never past the
lease's ``published`` mark (a new leader republishes what follows it, and its first trim
waits a retention).
A replica whose next change is gone reloads its state from the tables
(:func:`controller.replica.catch_up`).

**The store gone** (PostgreSQL restarted): :meth:`Lease.run` logs each failed round and
connects again at the next; the lease lapses by itself (:meth:`live`), so nothing is
published, and no task dies of it.

A SQLite store has one controller, always the leader at epoch 1: :class:`Sole`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any, Protocol

import structlog

log = structlog.get_logger("plexus.controller.leader")


class Leadership(Protocol):
    #: this replica's id
    replica: str
    #: the epoch this replica holds (0: a follower)
    epoch: int
    #: the leader as last read from the store: its replica id ("" when none) and epoch
    leader: tuple[str, int]
    #: the change published through: set by the bus while leading; at a takeover,
    #: the previous leader's, read from the store
    published: int

    def live(self) -> bool:
        """Whether this replica may publish now (it leads, its lease confirmed)."""
        ...


class Sole:
    """The one controller of a SQLite store: always the leader, at epoch 1."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.epoch = 1
        self.leader = (replica, 1)
        self.published = 0

    def live(self) -> bool:
        return True


class Lease:
    """The lease of a PostgreSQL store (module docstring)."""

    def __init__(
        self,
        url: str,
        defaults: dict[str, Any],
        replica: str,
        *,
        ttl: float = 1.2,
        renew: float = 0.3,
        poll: float = 0.25,
        margin: float = 0.4,
        retention: float = 300.0,
        trim_every: float | None = None,
        trim_rows: int = 10_000,
    ) -> None:
        assert margin + renew < ttl
        self.url = url
        self.defaults = defaults
        self.replica = replica
        self.ttl, self.renew, self.poll, self.margin = ttl, renew, poll, margin
        #: the change log kept, in seconds; trimmed every tenth of it (0.3 s to 10 s)
        self.retention, self.trim_rows = retention, trim_rows
        self.trim_every = (
            min(max(retention / 10, renew), 10.0) if trim_every is None else trim_every
        )
        #: while leading: (local monotonic time, the log's head then), one a trim round
        self._heads: collections.deque[tuple[float, int]] = collections.deque()
        self.epoch = 0
        self.leader: tuple[str, int] = ("", 0)
        self.published = 0
        self._until = 0.0  # local monotonic time up to which the lease is live
        self._read = 0.0  # local monotonic time of the last round that reached the store
        self._conn: Any = None

    def live(self) -> bool:
        return self.epoch > 0 and time.monotonic() < self._until

    async def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed or self._conn.broken:
            from psycopg import conninfo

            given = conninfo.conninfo_to_dict(self.url)
            params = {k: v for k, v in self.defaults.items() if k not in given}
            # the lease's statements are short: a stall must not outlive the lease
            params["options"] = "-c lock_timeout=1000 -c statement_timeout=2000"
            self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, **params)
        return self._conn

    async def step(self) -> None:
        """One round: renew the lease held, or try to take it; then read who leads."""
        conn = await self._connection()
        sent = time.monotonic()
        if self.epoch:
            cur = await conn.execute(
                "UPDATE leader SET deadline = now() + make_interval(secs => %s),"
                " published = GREATEST(published, %s)"
                " WHERE replica = %s AND epoch = %s RETURNING epoch",
                (self.ttl, self.published, self.replica, self.epoch),
            )
            if await cur.fetchone() is None:
                log.warning("leader_deposed", replica=self.replica, epoch=self.epoch)
                self.epoch, self._until = 0, 0.0
                self._heads.clear()
            else:
                self._until = sent + self.ttl - self.margin
                await self._trim(conn, sent)
        else:
            cur = await conn.execute(
                "UPDATE leader SET replica = %s, epoch = epoch + 1,"
                " deadline = now() + make_interval(secs => %s)"
                " WHERE deadline < now() RETURNING epoch, published",
                (self.replica, self.ttl),
            )
            row = await cur.fetchone()
            if row is not None:
                self.published = int(row[1])
                self.epoch = int(row[0])
                self._until = sent + self.ttl - self.margin
                log.info("leader_elected", replica=self.replica, epoch=self.epoch)
        cur = await conn.execute("SELECT replica, epoch FROM leader")
        found = await cur.fetchone()
        if found is not None:
            self.leader = (str(found[0]), int(found[1]))
        self._read = sent

    async def _trim(self, conn: Any, now: float) -> None:
        """The leader's trimming of the change log, every :attr:`trim_every` seconds:
        one DELETE of the changes up to the head sampled :attr:`retention` seconds ago
        or more (a prefix of the log, by its primary key; at most :attr:`trim_rows`,
        the rest at the next rounds), and never past the lease's ``published`` mark (a
        new leader republishes what follows it). A failed trim is logged, the lease
        untouched. A follower whose next change is gone reloads its state
        (:func:`controller.replica.catch_up`)."""
        import psycopg

        last = self._heads[-1][0] if self._heads else float("-inf")
        if now - last < self.trim_every:
            return
        try:
            cur = await conn.execute("SELECT seq FROM head")
            found = await cur.fetchone()
            self._heads.append((now, int(found[0])))
            upto = None
            while self._heads and self._heads[0][0] <= now - self.retention:
                upto = self._heads.popleft()[1]
            if upto is None:
                return
            cur = await conn.execute(
                "DELETE FROM changes WHERE seq <= %s AND seq <= (SELECT published FROM leader"
                " WHERE replica = %s AND epoch = %s) AND seq < (SELECT min(seq) FROM changes) + %s",
                (upto, self.replica, self.epoch, self.trim_rows),
            )
        except psycopg.Error as e:
            log.warning("change_log_trim_failed", replica=self.replica, error=str(e)[:300])
            return
        if cur.rowcount >= self.trim_rows:  # more to delete: again at the next round
            self._heads.appendleft((now - self.retention, upto))
        if cur.rowcount:
            log.info("change_log_trimmed", replica=self.replica, through=upto, rows=cur.rowcount)

    async def run(self) -> None:
        """Renew or take the lease until cancelled; a database error (PostgreSQL
        restarted, unreachable) is logged, the connection made again at the next round,
        and the lease left to expire: :meth:`live` turns false by itself, so the bus
        holds what it would publish. The epoch is kept: when the store is back, a
        renewal that finds it still this replica's leads on (nobody else took it
        meanwhile, so nobody else published); one that finds it gone deposes this
        replica. Once no round has reached the store for ``ttl``, the leader shown
        (:attr:`leader`, ``/v1/status``) is none: whoever led, its lease has run out
        unless renewed where this replica cannot see."""
        import psycopg

        while True:
            try:
                await self.step()
            except Exception as e:  # the store gone (psycopg.Error, OSError): never dies
                log.warning("lease_failed", replica=self.replica, error=str(e)[:300])
                if self._conn is not None:
                    with contextlib.suppress(psycopg.Error, OSError):
                        await self._conn.close()
                    self._conn = None
                if time.monotonic() - self._read > self.ttl:
                    self.leader = ("", 0)
            await asyncio.sleep(self.renew if self.epoch else self.poll)

    async def resign(self) -> None:
        """Give the lease up at once (a controller stopping): the next replica to poll
        takes it without waiting for the deadline."""
        import psycopg

        epoch, self.epoch, self._until = self.epoch, 0, 0.0
        try:
            if epoch:
                conn = await self._connection()
                await conn.execute(
                    "UPDATE leader SET deadline = '-infinity',"
                    " published = GREATEST(published, %s) WHERE replica = %s AND epoch = %s",
                    (self.published, self.replica, epoch),
                )
                log.info("leader_resigned", replica=self.replica, epoch=epoch)
        except (psycopg.Error, OSError) as e:
            log.warning("lease_resign_failed", error=str(e)[:300])
        finally:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


async def notified(url: str, defaults: dict[str, Any], channel: str) -> Any:
    """An async connection listening to ``channel`` (the follower's wake-up)."""
    import psycopg
    from psycopg import conninfo

    given = conninfo.conninfo_to_dict(url)
    params = {k: v for k, v in defaults.items() if k not in given}
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, **params)
    await conn.execute(f"LISTEN {channel}")
    return conn
