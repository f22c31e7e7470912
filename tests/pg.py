"""A private PostgreSQL cluster for the shared store's tests.

``initdb`` in a directory of its own (``/tmp/plexus-pg-*``, or under ``PLEXUS_PG_TMP``),
run as the ``postgres`` system user when the tests run as root (PostgreSQL refuses
root); the server listens on a unix socket in that directory only (no TCP port), is
recorded in ``PLEXUS_RECORDS`` (its pid and its directory), and is stopped and removed
by :meth:`Cluster.remove` whatever happened.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from lab.records import record, record_pid


def bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are (Debian keeps them out of ``PATH``)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    if versions:
        return versions[-1].parent
    if os.environ.get("CI"):
        pytest.fail("PostgreSQL is not installed (scripts/install installs it)")
    pytest.skip("PostgreSQL is not installed")


class Cluster:
    def __init__(self) -> None:
        self.bin = bindir()
        base = os.environ.get("PLEXUS_PG_TMP", "/tmp")
        self.dir = Path(tempfile.mkdtemp(prefix="plexus-pg-", dir=base))
        record("dir", str(self.dir))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.sudo: list[str] = []
        try:
            if os.geteuid() == 0:
                user = pwd.getpwnam("postgres")
                os.chown(self.dir, user.pw_uid, user.pw_gid)
                self.sudo = ["runuser", "-u", "postgres", "--"]
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "plexus",
                      "-E", "UTF8", "--no-sync")  # fmt: skip
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.sudo, str(self.bin / tool), *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-800:]
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {tail}")

    def start(self) -> None:
        options = f"-k {self.dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip
        record_pid(int((self.data / "postmaster.pid").read_text().split()[0]))

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://plexus@/{database}?host={self.dir}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)
