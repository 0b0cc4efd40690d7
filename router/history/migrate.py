"""Schema migrations: plain SQL files shipped in the package, applied in order, each exactly once.

    router/history/migrations/<dialect>/NNNN_<name>.sql     dialect: postgresql | sqlite

A database records what it has in `history_migrations` (version, name, SHA-256 of the file, when). A
store applies what is missing when it opens (`HistoryStore.migrate`), each file in its own transaction
together with its record, under a lock (PostgreSQL: an advisory lock; SQLite: `BEGIN IMMEDIATE`), so
that two processes starting at once apply it once. It refuses to run against a database that has a
migration this code does not know (newer code ran there) or one whose file changed after it was
applied: a migration is never edited, a new one is added.

Why not Alembic: it brings SQLAlchemy, and the two stores talk to asyncpg and sqlite3 directly; the
schema is small, its SQL is what a DBA reviews, and the runner is the forty lines below with tests of
their own (tests/history/test_migrations.py).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

Dialect = Literal["postgresql", "sqlite"]
TABLE = "history_migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The database and the migrations of this code do not fit together."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available(dialect: Dialect, package: str = "router.history") -> list[Migration]:
    """The migrations shipped for `dialect`, in order; versions must run 1, 2, 3 … without a gap."""
    folder = resources.files(package).joinpath("migrations", dialect)
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise MigrationError(f"{dialect}/{entry.name}: expected NNNN_name.sql")
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for i, m in enumerate(found, start=1):
        if m.version != i:
            raise MigrationError(f"{dialect}: migration {i:04d} is missing (found {m.version:04d})")
    return found


def pending(applied: dict[int, str], shipped: list[Migration]) -> list[Migration]:
    """What to apply, given version -> checksum of what the database has."""
    known = {m.version: m for m in shipped}
    for version, checksum in sorted(applied.items()):
        m = known.get(version)
        if m is None:
            raise MigrationError(
                f"the database has migration {version:04d}, which this version of contact-router does not "
                "know: it was migrated by a newer version"
            )
        if m.checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{m.name} was changed after it was applied to this database; "
                "add a new migration instead of editing one"
            )
    return [m for m in shipped if m.version not in applied]
