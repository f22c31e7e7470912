"""The SQLite store's schema versions and change-log head, and which commands run again
after a conflict (controller.replica)."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest

import proto
from controller import bulk, pins, policies, replica, schema, service
from controller.errors import StoreError
from controller.service import Controller
from controller.store import SqliteStore
from proto.rest import NetworkCreate

ROOT = Path(__file__).resolve().parents[2]


def version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT version FROM schema_version").fetchone()[0])
    finally:
        db.close()


def test_a_new_file_is_made_at_the_latest_version(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "s.db").close()
    SqliteStore(tmp_path / "s.db").close()
    assert version(tmp_path / "s.db") == schema.LATEST


def test_a_file_without_a_version_is_version_1_and_is_migrated_with_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    c = Controller(SqliteStore(path))
    c.host_reported(proto.HostStatus(host="h1", state="online", version="t", vtep="198.18.0.1"))
    c.create_network(NetworkCreate.model_validate({"id": "blue", "subnet": "10.1.0.0/24"}))
    c.store.close()
    db = sqlite3.connect(path)  # as the code before versions left it
    db.executescript("DROP TABLE schema_version; DROP TABLE head;")
    db.close()
    again = Controller(SqliteStore(path))
    assert version(path) == schema.LATEST
    assert set(again.state.networks) == {"blue"} and set(again.state.hosts) == {"h1"}
    assert again.store.head == 0


def test_a_file_newer_than_the_code_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 42")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=f"schema version 42, newer than .*'s {schema.LATEST}"):
        SqliteStore(path)
    assert version(path) == 42  # untouched


def test_a_second_process_writing_the_same_file_is_refused_not_merged(tmp_path: Path) -> None:
    one, two = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    a, b = Controller(one), Controller(two)
    a.create_network(NetworkCreate.model_validate({"id": "blue", "subnet": "10.1.0.0/24"}))
    with pytest.raises(StoreError, match="another process wrote the SQLite store"):
        b.create_network(NetworkCreate.model_validate({"id": "red", "subnet": "10.2.0.0/24"}))
    assert "red" not in Controller(SqliteStore(tmp_path / "s.db")).state.networks


def _commits(module: Path) -> set[str]:
    """The public functions and methods of ``module`` that commit: call ``_commit``
    directly or through private helpers of the same module."""
    tree = ast.parse(module.read_text())
    calls: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            called = set()
            for sub in ast.walk(node):
                if isinstance(sub, ast.Call):
                    f = sub.func
                    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                    called.add(name)
            calls[node.name] = called
    committing = {"_commit"}
    while True:
        more = {n for n, c in calls.items() if c & committing} - committing
        if not more:
            break
        committing |= more
    return {n for n in committing if not n.startswith("_")}


def test_every_command_that_commits_runs_again_after_a_conflict() -> None:
    for module, owner in (
        ("service", service.Controller),
        ("policies", policies),
        ("pins", pins),
    ):
        names = _commits(ROOT / "controller" / f"{module}.py")
        assert names, module
        for name in names:
            fn = getattr(owner, name)
            assert getattr(fn, "__wrapped__", None) is not None, f"{module}.{name}"
    assert set(replica.COMMANDS) == _commits(ROOT / "controller" / "service.py")
    assert getattr(bulk.run, "__wrapped__", None) is not None
