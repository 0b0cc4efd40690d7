"""The migration runner (router/history/migrate.py): each shipped file once, in order, under a lock;
a changed or unknown migration refused."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import asyncpg
import pytest

from router.core.tenants import Tenant
from router.history import migrate, open_store
from router.history.migrate import Migration, MigrationError, available, pending


def test_the_shipped_migrations_run_from_one_without_gaps() -> None:
    for dialect in ("postgresql", "sqlite"):
        shipped = available(dialect)
        assert [m.version for m in shipped] == list(range(1, len(shipped) + 1))
        assert shipped[0].name == "history"
    # Both dialects have the same migrations.
    assert [m.name for m in available("postgresql")] == [m.name for m in available("sqlite")]


def test_pending_is_what_the_database_lacks_and_refuses_a_changed_or_unknown_one() -> None:
    one, two = Migration(1, "a", "CREATE TABLE a (x int);"), Migration(2, "b", "CREATE TABLE b (x int);")
    assert pending({}, [one, two]) == [one, two]
    assert pending({1: one.checksum}, [one, two]) == [two]
    assert pending({1: one.checksum, 2: two.checksum}, [one, two]) == []
    with pytest.raises(MigrationError, match="0001_a was changed"):
        pending({1: "0" * 64}, [one, two])
    with pytest.raises(MigrationError, match=r"0003.*newer version"):
        pending({3: "x"}, [one, two])


def _package(tmp_path: Path, files: dict[str, str], name: str) -> str:
    folder = tmp_path / name / "migrations" / "sqlite"
    folder.mkdir(parents=True)
    (tmp_path / name / "__init__.py").write_text("")
    for file, text in files.items():
        (folder / file).write_text(text)
    sys.path.insert(0, str(tmp_path))
    return name


def test_a_gap_or_a_badly_named_file_is_refused(tmp_path: Path) -> None:
    gap = _package(tmp_path, {"0001_a.sql": "", "0003_c.sql": ""}, "gap_pkg")
    with pytest.raises(MigrationError, match="0002 is missing"):
        available("sqlite", gap)
    bad = _package(tmp_path, {"0001_a.sql": "", "2_b.sql": ""}, "bad_pkg")
    with pytest.raises(MigrationError, match=r"expected NNNN_name\.sql"):
        available("sqlite", bad)
    sys.path.remove(str(tmp_path))


async def test_sqlite_migrates_once_and_refuses_an_edited_migration(
    sqlite_url: str, tenants: dict[str, Tenant]
) -> None:
    store = await open_store(sqlite_url, tenants)
    assert await store.migrate() == []
    await store.close()
    path = sqlite_url.removeprefix("sqlite:///")
    db = sqlite3.connect(path)
    assert db.execute(f"SELECT version, name FROM {migrate.TABLE}").fetchall() == [(1, "history")]
    db.execute(f"UPDATE {migrate.TABLE} SET checksum = 'edited'")
    db.commit()
    db.close()
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await open_store(sqlite_url, tenants)


async def test_postgresql_applies_each_migration_once_when_processes_start_together(
    pg_url: str, tenants: dict[str, Tenant]
) -> None:
    stores = [await open_store(pg_url, tenants, migrate=False) for _ in range(4)]
    applied = await asyncio.gather(*(s.migrate() for s in stores))
    assert sorted(applied) == [[], [], [], ["0001_history"]]
    for s in stores:
        await s.close()
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(f"SELECT version, name, checksum FROM {migrate.TABLE}")
        assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
            (1, "history", available("postgresql")[0].checksum)
        ]
        await conn.execute(f"UPDATE {migrate.TABLE} SET checksum = 'edited'")
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await open_store(pg_url, tenants)


async def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    """Each migration commits with its record or not at all (SQLite: the statements of one transaction)."""
    from router.history.sqlite import _statements

    db = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError):
        for statement in _statements("CREATE TABLE ok (x int);\n-- a comment\nCREATE TABLE broken (;\n"):
            db.execute(statement)
    db.execute("ROLLBACK")
    assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
