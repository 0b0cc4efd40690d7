"""The history in SQLite (the standard library's sqlite3), for the embedded mode and small setups: the
same `HistoryStore` as router/history/postgres.py, behind one thread of its own (sqlite3 blocks).

One connection, one thread: every call runs in that thread in turn, each write in a `BEGIN IMMEDIATE`
transaction, so `append` stores events and their items together or not at all, as in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from router import logs
from router.core.contact import reference_for
from router.core.history import (
    AuditEntry,
    EventRow,
    Item,
    RebuildResult,
    audit_retention,
    history_retention,
    project,
)
from router.core.ports import Removal, Subject
from router.core.report import ReportRow, fold
from router.core.retention import Retention, RetentionPolicy
from router.core.tenants import Tenant
from router.history import migrate
from router.history.common import (
    DB_EVENT_COLUMNS,
    ITEM_COLUMNS,
    closed_contacts,
    event_from,
    item_values,
    past_cutoff,
    project_all,
)

log = logs.get("router.history.sqlite")
T = TypeVar("T")

_TIMES = frozenset({"at", "due", "received_at", "started_at", "extended_due", "met_at", "breached_at"})
_FLAGS = frozenset({"on_time", "closed", "counted", "met", "within_extension"})
SELECT_EVENTS = f"SELECT {', '.join(DB_EVENT_COLUMNS)} FROM history_events"
REPORT = """
SELECT month, kind, norm_channel, norm_category, term,
       CASE WHEN met THEN CASE WHEN on_time THEN 'on_time' ELSE 'late' END
            WHEN due < ? THEN 'overdue' ELSE 'open' END AS status,
       coalesce(within_extension, 0) AS within_extension,
       CASE WHEN met THEN (work_seconds + 30) / 60 END AS minutes,
       count(*) AS n
FROM history_items
WHERE tenant = ? AND month >= ? AND month < ?
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
"""


def text_time(value: datetime) -> str:
    """UTC, fixed width: text order is time order."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _to_db(value: Any) -> Any:
    if isinstance(value, datetime):
        return text_time(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _from_db(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _TIMES:
        return datetime.fromisoformat(value)
    if column in _FLAGS:
        return bool(value)
    if column == "month":
        return date.fromisoformat(value)
    return value


def path_of(url: str) -> str:
    """`sqlite:///relative/path`, `sqlite:////absolute/path` or `sqlite://:memory:`."""
    rest = url.removeprefix("sqlite://")
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    return rest.removeprefix("/") if rest.startswith("/") else rest


class SqliteHistory:
    """`HistoryStore` (router/core/history.py) on SQLite."""

    name = "history"

    def __init__(self, path: str, tenants: Mapping[str, Tenant]):
        self.path = path
        self.tenants = tenants
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-sqlite")
        self._db: sqlite3.Connection | None = None

    @classmethod
    async def open(
        cls, url: str, tenants: Mapping[str, Tenant], *, migrate_now: bool = True
    ) -> SqliteHistory:
        store = cls(path_of(url), tenants)
        await store._run(store._connect)
        if migrate_now:
            try:
                await store.migrate()
            except BaseException:
                await store.close()
                raise
        return store

    def _connect(self, db: None = None) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "open the store first"
        return self._db

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(shut)
        self._pool.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda: self._conn().execute("SELECT 1").fetchone())

    # -- schema ------------------------------------------------------------------------------------

    async def migrate(self) -> list[str]:
        return await self._run(self._migrate)

    def _migrate(self) -> list[str]:
        db = self._conn()
        shipped = migrate.available("sqlite")
        done: list[str] = []
        db.execute("BEGIN IMMEDIATE")  # the lock: another process waits here (busy_timeout)
        try:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {migrate.TABLE} (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = dict(db.execute(f"SELECT version, checksum FROM {migrate.TABLE}").fetchall())
            for m in migrate.pending(applied, shipped):
                for statement in _statements(m.sql):
                    db.execute(statement)
                db.execute(
                    f"INSERT INTO {migrate.TABLE} (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
                    (m.version, m.name, m.checksum, text_time(datetime.now(UTC))),
                )
                done.append(f"{m.version:04d}_{m.name}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for name in done:
            log.info("history_migrated", migration=name)
        return done

    # -- events and items --------------------------------------------------------------------------

    async def append(self, events: Sequence[EventRow]) -> int:
        unique = sorted({e.event_id: e for e in events}.values(), key=lambda e: e.event_id)
        if not unique:
            return 0
        return await self._run(self._append, unique)

    def _append(self, events: list[EventRow]) -> int:
        db = self._conn()
        sql = (
            f"INSERT INTO history_events ({', '.join(DB_EVENT_COLUMNS)}) VALUES "
            f"({', '.join('?' for _ in DB_EVENT_COLUMNS)}) ON CONFLICT (event_id) DO NOTHING"
        )
        with _transaction(db):
            stored = 0
            contacts: set[str] = set()
            for e in events:
                cur = db.execute(sql, _event_values(e))
                if cur.rowcount:
                    stored += 1
                    if e.contact_id is not None:
                        contacts.add(e.contact_id)
            if contacts:
                self._reproject(db, sorted(contacts))
        return stored

    def _reproject(self, db: sqlite3.Connection, contacts: list[str]) -> None:
        marks = ", ".join("?" for _ in contacts)
        rows = db.execute(f"{SELECT_EVENTS} WHERE contact_id IN ({marks})", contacts).fetchall()
        items = project_all((_event(r) for r in rows), self.tenants)
        db.execute(f"DELETE FROM history_items WHERE contact_id IN ({marks})", contacts)
        _insert_items(db, items)

    async def events_of(self, contact_id: str) -> list[EventRow]:
        def read() -> list[EventRow]:
            rows = self._conn().execute(
                f"{SELECT_EVENTS} WHERE contact_id = ? ORDER BY at, event_id", (contact_id,)
            )
            return [_event(r) for r in rows.fetchall()]

        return await self._run(read)

    async def count_events(self, tenant: str | None = None) -> int:
        def count() -> int:
            if tenant is None:
                row = self._conn().execute("SELECT count(*) FROM history_events").fetchone()
            else:
                row = (
                    self._conn()
                    .execute("SELECT count(*) FROM history_events WHERE tenant = ?", (tenant,))
                    .fetchone()
                )
            return int(row[0])

        return await self._run(count)

    async def items_of(self, contact_id: str) -> list[Item]:
        def read() -> list[Item]:
            rows = self._conn().execute(
                f"SELECT {', '.join(ITEM_COLUMNS)} FROM history_items WHERE contact_id = ? "
                "ORDER BY started_at, kind",
                (contact_id,),
            )
            return [_item(r) for r in rows.fetchall()]

        return await self._run(read)

    async def rebuild(self, tenant: str | None = None) -> RebuildResult:
        return await self._run(self._rebuild, tenant)

    def _rebuild(self, tenant: str | None) -> RebuildResult:
        db = self._conn()
        result = RebuildResult()
        where, args = ("AND tenant = ?", [tenant]) if tenant else ("", [])
        with _transaction(db):
            db.execute(f"DELETE FROM history_items WHERE contact_id IS NOT NULL {where}", args)
            result.kept_anonymous = db.execute(
                f"SELECT count(*) FROM history_items WHERE contact_id IS NULL {where}", args
            ).fetchone()[0]
            rows = db.execute(
                f"{SELECT_EVENTS} WHERE contact_id IS NOT NULL {where} ORDER BY contact_id", args
            )
            current: str | None = None
            events: list[EventRow] = []
            batch: list[Item] = []
            for row in rows:
                event = _event(row)
                if event.contact_id != current and current is not None:
                    result.contacts += 1
                    batch += project(current, events, self.tenants.get(events[0].tenant))
                    events = []
                current = event.contact_id
                events.append(event)
            if current is not None:
                result.contacts += 1
                batch += project(current, events, self.tenants.get(events[0].tenant))
            _insert_items(db, batch)
            result.items = len(batch)
        log.info("history_rebuilt", contacts=result.contacts, items=result.items, tenant=tenant)
        return result

    async def report_rows(self, tenant: str, first: date, end: date, as_of: datetime) -> list[ReportRow]:
        def read() -> list[ReportRow]:
            rows = self._conn().execute(
                REPORT, (text_time(as_of), tenant, first.isoformat(), end.isoformat())
            )
            return fold(
                ((date.fromisoformat(r[0]), r[1], r[2], r[3], r[4], r[5], bool(r[6])), r[7], int(r[8]))
                for r in rows.fetchall()
            )

        return await self._run(read)

    # -- audit -------------------------------------------------------------------------------------

    async def audit(self, entry: AuditEntry) -> None:
        def write() -> None:
            with _transaction(self._conn()) as db:
                db.execute(
                    "INSERT INTO history_audit (at, tenant, contact_id, action, agent, credential) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        text_time(entry.at),
                        entry.tenant,
                        entry.contact_id,
                        entry.action,
                        entry.agent,
                        entry.credential,
                    ),
                )

        await self._run(write)

    async def audit_log(
        self,
        tenant: str | None = None,
        *,
        contact_id: str | None = None,
        agent: str | None = None,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        if (contact_id is None) == (agent is None):
            raise ValueError("name a contact or an agent")
        column, value = ("contact_id", contact_id) if contact_id is not None else ("agent", agent)

        def read() -> list[AuditEntry]:
            rows = self._conn().execute(
                "SELECT at, tenant, contact_id, action, agent, credential FROM history_audit "
                f"WHERE {column} = ? AND (? IS NULL OR tenant = ?) ORDER BY at, id LIMIT ?",
                (value, tenant, tenant, limit),
            )
            return [
                AuditEntry(datetime.fromisoformat(r[0]), r[1], r[2], r[3], r[4], r[5])
                for r in rows.fetchall()
            ]

        return await self._run(read)

    async def event_counts(
        self, tenant: str, events: Sequence[str], since: datetime
    ) -> dict[tuple[str, str | None], int]:
        names = list(events)
        if not names:
            return {}

        def read() -> dict[tuple[str, str | None], int]:
            marks = ", ".join("?" for _ in names)
            rows = self._conn().execute(
                f"SELECT event, team, count(*) FROM history_events WHERE tenant = ? AND at >= ? "
                f"AND event IN ({marks}) GROUP BY event, team",
                (tenant, text_time(since), *names),
            )
            return {(r[0], r[1]): int(r[2]) for r in rows.fetchall()}

        return await self._run(read)

    # -- retention and erasure (PersonalData) ------------------------------------------------------

    async def find(self, subject: Subject) -> set[str]:
        if not subject.references:
            return set()

        def read() -> set[str]:
            rows = self._conn().execute(
                "SELECT DISTINCT contact_id FROM history_events WHERE tenant = ? AND contact_id IS NOT NULL",
                (subject.tenant,),
            )
            return {
                r[0] for r in rows.fetchall() if reference_for(subject.tenant, r[0]) in subject.references
            }

        return await self._run(read)

    async def erase(self, subject: Subject) -> Removal:
        return await self._run(self._erase, subject)

    def _erase(self, subject: Subject) -> Removal:
        removal = Removal(self.name)
        ids = sorted(subject.contact_ids)
        if not ids:
            return removal
        db = self._conn()
        marks = ", ".join("?" for _ in ids)
        with _transaction(db), _retention(db):
            gone = db.execute(
                f"SELECT DISTINCT contact_id FROM history_events WHERE tenant = ? AND "
                f"(contact_id IN ({marks}) OR reply_id IN ({marks}))",
                [subject.tenant, *ids, *ids],
            ).fetchall()
            cur = db.execute(
                f"DELETE FROM history_events WHERE tenant = ? AND "
                f"(contact_id IN ({marks}) OR reply_id IN ({marks}))",
                [subject.tenant, *ids, *ids],
            )
            removal.add("event rows", cur.rowcount)
            _forget_items(db, subject.tenant, ids, removal)
        removal.contact_ids = {r[0] for r in gone if r[0] is not None}
        return removal

    async def purge(self, policy: RetentionPolicy, now: datetime, *, dry_run: bool) -> Removal:
        return await self._run(self._purge, policy, now, dry_run)

    def _purge(self, policy: RetentionPolicy, now: datetime, dry_run: bool) -> Removal:
        removal = Removal(self.name, dry_run=dry_run)
        db = self._conn()
        for tenant in sorted(set(policy.tenants()) | set(self.tenants)):
            retention = policy.by_tenant.get(tenant, Retention())
            contacts_cutoff = past_cutoff(history_retention(retention), now)
            audit_cutoff = text_time(past_cutoff(audit_retention(retention), now))
            rows = db.execute(
                "SELECT c.contact_id, "
                "(SELECT max(at) FROM history_events e WHERE e.contact_id = c.contact_id "
                " AND e.event = 'contact.closed'), "
                "(SELECT max(at) FROM history_events e WHERE e.contact_id = c.contact_id "
                " AND e.event = 'contact.reply') "
                "FROM (SELECT DISTINCT contact_id FROM history_events "
                "      WHERE tenant = ? AND event = 'contact.closed' AND at <= ?) AS c",
                (tenant, text_time(contacts_cutoff)),
            ).fetchall()
            closed = closed_contacts([(r[0], _from_db("at", r[1]), _from_db("at", r[2])) for r in rows])
            ids = sorted(c.contact_id for c in closed if c.closed_at and c.closed_at <= contacts_cutoff)
            removal.contact_ids |= set(ids)
            removal.add("contacts", len(ids))
            marks = ", ".join("?" for _ in ids)
            if dry_run:
                if ids:
                    n = db.execute(
                        f"SELECT count(*) FROM history_events WHERE contact_id IN ({marks})", ids
                    ).fetchone()[0]
                    removal.add("event rows", n)
                n = db.execute(
                    "SELECT count(*) FROM history_audit WHERE tenant = ? AND at <= ?", (tenant, audit_cutoff)
                ).fetchone()[0]
                removal.add("audit rows", n)
                continue
            with _transaction(db), _retention(db):
                if ids:
                    cur = db.execute(f"DELETE FROM history_events WHERE contact_id IN ({marks})", ids)
                    removal.add("event rows", cur.rowcount)
                    _forget_items(db, tenant, ids, removal)
                cur = db.execute(
                    "DELETE FROM history_audit WHERE tenant = ? AND at <= ?", (tenant, audit_cutoff)
                )
                removal.add("audit rows", cur.rowcount)
        return removal


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: Any, *rest: Any) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


class _retention:
    """Inside a transaction: the purge or the erasure may delete rows of the append-only tables."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("INSERT INTO history_retention (running) VALUES (1)")

    def __exit__(self, *exc: Any) -> None:
        self.db.execute("DELETE FROM history_retention")


def _statements(sql: str) -> list[str]:
    """The statements of a migration file (sqlite3 runs one at a time; `executescript` would commit)."""
    out: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if not buffer and line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        out.append(buffer.strip())
    return out


def _event_values(e: EventRow) -> list[Any]:
    values = []
    for field_name in EventRow.__dataclass_fields__:
        value = e.deadlines_json() if field_name == "deadlines" else getattr(e, field_name)
        values.append(_to_db(value))
    return values


def _event(row: Sequence[Any]) -> EventRow:
    return event_from(dict(zip(DB_EVENT_COLUMNS, row, strict=True)), _from_db)


def _insert_items(db: sqlite3.Connection, items: Sequence[Item]) -> None:
    if not items:
        return
    sql = (
        f"INSERT INTO history_items ({', '.join(ITEM_COLUMNS)}) VALUES "
        f"({', '.join('?' for _ in ITEM_COLUMNS)})"
    )
    db.executemany(sql, ([_to_db(v) for v in item_values(i)] for i in items))


def _item(row: Sequence[Any]) -> Item:
    values = {c: _from_db(c, v) for c, v in zip(ITEM_COLUMNS, row, strict=True)}
    for flag in ("met", "on_time", "within_extension"):
        values.pop(flag)
    return Item(**values)


def _forget_items(db: sqlite3.Connection, tenant: str, ids: Sequence[str], removal: Removal) -> None:
    marks = ", ".join("?" for _ in ids)
    cur = db.execute(
        f"DELETE FROM history_items WHERE tenant = ? AND contact_id IN ({marks}) AND NOT met", [tenant, *ids]
    )
    removal.add("open items removed", cur.rowcount)
    cur = db.execute(
        "UPDATE history_items SET subject_id = NULL, contact_id = NULL, started_at = NULL, due = NULL, "
        "extended_due = NULL, met_at = NULL, breached_at = NULL "
        f"WHERE tenant = ? AND contact_id IN ({marks})",
        [tenant, *ids],
    )
    removal.add("items kept without ids", cur.rowcount)
