"""A private PostgreSQL cluster: the lab's shared store and the tests'.

``initdb`` in a directory of its own, run as the ``postgres`` system user when run as
root (PostgreSQL refuses root); the server listens on a unix socket in that directory
only (no TCP port), is recorded in ``PLEXUS_RECORDS`` (its pid and its directory), and
is stopped and removed by :meth:`Cluster.remove` whatever happened.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from .records import record, record_pid
from .spec import LabError


def bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are (Debian keeps them out of ``PATH``)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    return versions[-1].parent if versions else None


class Cluster:
    """``initdb`` in ``directory`` (made; or a new ``/tmp/plexus-pg-*`` under ``base``)."""

    def __init__(self, directory: Path | None = None, base: str = "/tmp") -> None:
        found = bindir()
        if found is None:
            raise LabError("PostgreSQL is not installed (initdb not found)")
        self.bin = found
        if directory is None:
            self.dir = Path(tempfile.mkdtemp(prefix="plexus-pg-", dir=base))
        else:
            self.dir = directory.resolve()
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        record("dir", str(self.dir))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.sudo: list[str] = []
        try:
            if os.geteuid() == 0:
                user = pwd.getpwnam("postgres")
                os.chown(self.dir, user.pw_uid, user.pw_gid)
                self.sudo = ["runuser", "-u", "postgres", "--"]
            if not (self.data / "PG_VERSION").exists():
                self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "plexus",
                          "-E", "UTF8", "--no-sync")  # fmt: skip
        except KeyError:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise LabError("no `postgres` system user to run PostgreSQL as") from None
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.sudo, str(self.bin / tool), *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-800:]
            raise LabError(f"{tool} {' '.join(args)} failed: {tail}")

    def start(self) -> int:
        """Start the server; its pid (recorded)."""
        options = f"-k {self.dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        record_pid(pid)
        return pid

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
