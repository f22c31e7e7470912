"""A private PostgreSQL cluster for the shared store's tests: :class:`lab.postgres.Cluster`
(also the lab's), in ``/tmp/plexus-pg-*`` or under ``PLEXUS_PG_TMP``; skipped where
PostgreSQL is not installed (a failure under CI)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import psycopg
import pytest

from lab import postgres


def bindir() -> Path:
    found = postgres.bindir()
    if found is not None:
        return found
    if os.environ.get("CI"):
        pytest.fail("PostgreSQL is not installed (scripts/install installs it)")
    pytest.skip("PostgreSQL is not installed")


class Cluster(postgres.Cluster):
    def __init__(self) -> None:
        bindir()
        super().__init__(base=os.environ.get("PLEXUS_PG_TMP", "/tmp"))

    def database(self) -> str:
        """A new, empty database; its URL."""
        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)
