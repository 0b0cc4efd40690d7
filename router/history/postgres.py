"""The history in PostgreSQL (asyncpg): events, norm items and the audit log; the only module that
touches asyncpg.

`append` stores a batch in one transaction: the events with `INSERT … ON CONFLICT (event_id) DO
NOTHING`, then, under a transaction-level advisory lock per contact (taken in one order, so two
consumers never deadlock), the items of every contact that got a new event, recomputed from all of its
events. The consumer acks the batch only after this commits.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

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
from router.core.report import ReportRow
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

log = logs.get("router.history.postgres")

# The type of each event column, for `unnest` of one array per column.
_EVENT_TYPES = {
    "event_id": "uuid",
    "contact_id": "uuid",
    "reply_id": "uuid",
    "at": "timestamptz",
    "due": "timestamptz",
    "received_at": "timestamptz",
    "on_time": "bool",
    "closed": "bool",
    "counted": "bool",
    "transfers": "int4",
    "attempt": "int4",
}
_COLUMNS_SQL = ", ".join(DB_EVENT_COLUMNS)
_UNNEST = ", ".join(f"${i}::{_EVENT_TYPES.get(c, 'text')}[]" for i, c in enumerate(DB_EVENT_COLUMNS, start=1))
_SELECT = ", ".join(f"{c}::jsonb" if c == "deadlines" else c for c in DB_EVENT_COLUMNS)
INSERT_EVENTS = (
    f"INSERT INTO history_events ({_COLUMNS_SQL}) "
    f"SELECT {_SELECT} FROM unnest({_UNNEST}) AS t({_COLUMNS_SQL}) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING contact_id"
)
_READ = ", ".join(f"{c}::text" if c == "deadlines" else c for c in DB_EVENT_COLUMNS)
SELECT_EVENTS = f"SELECT {_READ} FROM history_events"
# One lock per contact, in one order, for the rest of the transaction.
LOCK_CONTACTS = (
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT hashtextextended(c::text, 17) AS k FROM unnest($1::uuid[]) AS c ORDER BY 1) AS s"
)
# The report: the met items from the aggregate (a histogram of minutes per norm, month and outcome),
# the others from the items, open or past the deadline as of $4. A few hundred rows for a quarter.
REPORT = """
SELECT month, kind, nullif(norm_channel, '') AS norm_channel, nullif(norm_category, '') AS norm_category,
       term, CASE WHEN on_time THEN 'on_time' ELSE 'late' END AS status, within_extension,
       sum(n)::bigint AS n, array_agg(minutes) AS minutes, array_agg(n) AS counts
FROM history_stats
WHERE tenant = $1 AND month >= $2 AND month < $3 AND n > 0
GROUP BY 1, 2, 3, 4, 5, 6, 7
UNION ALL
SELECT month, kind, norm_channel, norm_category, term,
       CASE WHEN due < $4 THEN 'overdue' ELSE 'open' END AS status, false AS within_extension,
       count(*)::bigint AS n, NULL::integer[] AS minutes, NULL::bigint[] AS counts
FROM history_items
WHERE tenant = $1 AND month >= $2 AND month < $3 AND NOT met
GROUP BY 1, 2, 3, 4, 5, 6
"""
_STATS_KEY = (
    "tenant, month, kind, coalesce(norm_channel, ''), coalesce(norm_category, ''), term, on_time, "
    "coalesce(within_extension, false), (work_seconds + 30) / 60"
)
# What the met items of some contacts add to the aggregate (read before their items are replaced).
STATS_OF_CONTACTS = (
    f"SELECT {_STATS_KEY}, count(*) FROM history_items WHERE contact_id = ANY($1::uuid[]) AND met "
    "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
)
ADD_STATS = """
INSERT INTO history_stats (tenant, month, kind, norm_channel, norm_category, term, on_time, within_extension,
                           minutes, n)
SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[],
                     $8::bool[], $9::int4[], $10::int8[])
ON CONFLICT (tenant, month, kind, norm_channel, norm_category, term, on_time, within_extension, minutes)
DO UPDATE SET n = history_stats.n + EXCLUDED.n
"""
REBUILD_STATS = (
    f"INSERT INTO history_stats SELECT {_STATS_KEY}, count(*) FROM history_items WHERE met {{where}} "
    "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
)
# Contacts with a close at or before $2, with their last close and their last reply (which reopens).
CLOSED_BEFORE = """
SELECT c.contact_id,
       (SELECT max(at) FROM history_events e
        WHERE e.contact_id = c.contact_id AND e.event = 'contact.closed'),
       (SELECT max(at) FROM history_events e
        WHERE e.contact_id = c.contact_id AND e.event = 'contact.reply')
FROM (SELECT DISTINCT contact_id FROM history_events
      WHERE tenant = $1 AND event = 'contact.closed' AND at <= $2) AS c
"""
# The advisory lock of the migrations, and of the periodic purge (any two constants of this service).
MIGRATION_LOCK = 7_310_417_001
PURGE_LOCK = 7_310_417_002


def _convert(column: str, value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _event_arrays(events: Sequence[EventRow]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in DB_EVENT_COLUMNS]
    for e in events:
        for i, field_name in enumerate(EventRow.__dataclass_fields__):
            value = e.deadlines_json() if field_name == "deadlines" else getattr(e, field_name)
            columns[i].append(value)
    return columns


class PostgresHistory:
    """`HistoryStore` (router/core/history.py) on PostgreSQL."""

    name = "history"

    def __init__(self, pool: asyncpg.Pool, tenants: Mapping[str, Tenant]):
        self.pool = pool
        self.tenants = tenants

    @classmethod
    async def open(
        cls, url: str, tenants: Mapping[str, Tenant], *, migrate_now: bool = True
    ) -> PostgresHistory:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4, command_timeout=600)
        store = cls(pool, tenants)
        if migrate_now:
            try:
                await store.migrate()
            except BaseException:
                await pool.close()
                raise
        return store

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    # -- schema ------------------------------------------------------------------------------------

    async def migrate(self) -> list[str]:
        shipped = migrate.available("postgresql")
        done: list[str] = []
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {migrate.TABLE} (version integer PRIMARY KEY, "
                    "name text NOT NULL, checksum text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                )
                rows = await conn.fetch(f"SELECT version, checksum FROM {migrate.TABLE}")
                for m in migrate.pending({r["version"]: r["checksum"] for r in rows}, shipped):
                    async with conn.transaction():
                        await conn.execute(m.sql)
                        await conn.execute(
                            f"INSERT INTO {migrate.TABLE} (version, name, checksum) VALUES ($1, $2, $3)",
                            m.version,
                            m.name,
                            m.checksum,
                        )
                    done.append(f"{m.version:04d}_{m.name}")
                    log.info("history_migrated", migration=done[-1])
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        return done

    # -- events and items --------------------------------------------------------------------------

    async def append(self, events: Sequence[EventRow]) -> int:
        unique = sorted({e.event_id: e for e in events}.values(), key=lambda e: e.event_id)
        if not unique:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await conn.fetch(INSERT_EVENTS, *_event_arrays(unique))
            contacts = sorted({r["contact_id"] for r in stored if r["contact_id"] is not None})
            if contacts:
                await conn.execute(LOCK_CONTACTS, contacts)
                await self._reproject(conn, contacts)
        return len(stored)

    async def _reproject(self, conn: asyncpg.Connection, contacts: list[uuid.UUID]) -> None:
        """Replace the contacts' items by those of all their events, and move the aggregate by the
        difference."""
        deltas: dict[tuple[Any, ...], int] = {}
        for r in await conn.fetch(STATS_OF_CONTACTS, contacts):
            key = tuple(r[:9])
            deltas[key] = deltas.get(key, 0) - r[9]
        rows = await conn.fetch(f"{SELECT_EVENTS} WHERE contact_id = ANY($1::uuid[])", contacts)
        items = project_all((event_from(r, _convert) for r in rows), self.tenants)
        await conn.execute("DELETE FROM history_items WHERE contact_id = ANY($1::uuid[])", contacts)
        await self._insert_items(conn, items)
        for item in items:
            if item.met:
                key = stats_key(item)
                deltas[key] = deltas.get(key, 0) + 1
        changed = sorted((k, n) for k, n in deltas.items() if n)  # in one order: no deadlock between two
        if changed:
            columns = list(zip(*(k for k, _ in changed), strict=True))
            await conn.execute(ADD_STATS, *columns, [n for _, n in changed])

    @staticmethod
    async def _insert_items(conn: asyncpg.Connection, items: Sequence[Item]) -> None:
        if items:
            await conn.copy_records_to_table(
                "history_items", records=[item_values(i) for i in items], columns=list(ITEM_COLUMNS)
            )

    async def events_of(self, contact_id: str) -> list[EventRow]:
        rows = await self.pool.fetch(
            f"{SELECT_EVENTS} WHERE contact_id = $1 ORDER BY at, event_id", contact_id
        )
        return [event_from(r, _convert) for r in rows]

    async def count_events(self, tenant: str | None = None) -> int:
        if tenant is None:
            n: int = await self.pool.fetchval("SELECT count(*) FROM history_events")
        else:
            n = await self.pool.fetchval("SELECT count(*) FROM history_events WHERE tenant = $1", tenant)
        return n

    async def count_event_ids(self) -> tuple[int, int]:
        """(rows, distinct event ids): equal, unless something stored an event twice."""
        row = await self.pool.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM history_events"
        )
        return int(row["n"]), int(row["d"])

    async def items_of(self, contact_id: str) -> list[Item]:
        rows = await self.pool.fetch(
            f"SELECT {', '.join(ITEM_COLUMNS)} FROM history_items WHERE contact_id = $1 "
            "ORDER BY started_at, kind",
            contact_id,
        )
        return [_item(r) for r in rows]

    async def rebuild(self, tenant: str | None = None) -> RebuildResult:
        result = RebuildResult()
        where, args = ("AND tenant = $1", [tenant]) if tenant else ("", [])
        async with self.pool.acquire() as conn, conn.transaction():
            # Appends wait until the rebuild has committed (their own items then follow).
            await conn.execute("LOCK TABLE history_items, history_stats IN EXCLUSIVE MODE")
            await conn.execute(f"DELETE FROM history_items WHERE contact_id IS NOT NULL {where}", *args)
            result.kept_anonymous = await conn.fetchval(
                f"SELECT count(*) FROM history_items WHERE contact_id IS NULL {where}", *args
            )
            batch: list[Item] = []
            async for cid, events in _by_contact(conn, where, args):
                result.contacts += 1
                batch += project(cid, events, self.tenants.get(events[0].tenant))
                if len(batch) >= 20_000:
                    await self._insert_items(conn, batch)
                    result.items += len(batch)
                    batch = []
            await self._insert_items(conn, batch)
            result.items += len(batch)
            await conn.execute(f"DELETE FROM history_stats WHERE true {where}", *args)
            await conn.execute(REBUILD_STATS.format(where=where), *args)
        log.info("history_rebuilt", contacts=result.contacts, items=result.items, tenant=tenant)
        return result

    async def report_rows(self, tenant: str, first: date, end: date, as_of: datetime) -> list[ReportRow]:
        rows = await self.pool.fetch(REPORT, tenant, first, end, as_of)
        return [
            ReportRow(
                r["month"],
                r["kind"],
                r["norm_channel"],
                r["norm_category"],
                r["term"],
                r["status"],
                r["within_extension"],
                int(r["n"]),
                tuple(zip(r["minutes"], r["counts"], strict=True)) if r["minutes"] else (),
            )
            for r in rows
        ]

    # -- audit -------------------------------------------------------------------------------------

    async def audit(self, entry: AuditEntry) -> None:
        await self.pool.execute(
            "INSERT INTO history_audit (at, tenant, contact_id, action, agent, credential) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            entry.at,
            entry.tenant,
            entry.contact_id,
            entry.action,
            entry.agent,
            entry.credential,
        )

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
        rows = await self.pool.fetch(
            "SELECT at, tenant, contact_id, action, agent, credential FROM history_audit "
            f"WHERE {column} = $1 AND ($2::text IS NULL OR tenant = $2) ORDER BY at, id LIMIT $3",
            value,
            tenant,
            limit,
        )
        return [
            AuditEntry(r["at"], r["tenant"], str(r["contact_id"]), r["action"], r["agent"], r["credential"])
            for r in rows
        ]

    async def event_counts(
        self, tenant: str, events: Sequence[str], since: datetime
    ) -> dict[tuple[str, str | None], int]:
        rows = await self.pool.fetch(
            "SELECT event, team, count(*) AS n FROM history_events WHERE tenant = $1 AND at >= $2 "
            "AND event = ANY($3::text[]) GROUP BY event, team",
            tenant,
            since,
            list(events),
        )
        return {(r["event"], r["team"]): int(r["n"]) for r in rows}

    # -- retention and erasure (PersonalData) ------------------------------------------------------

    async def find(self, subject: Subject) -> set[str]:
        """Contacts named by a reference (derived from the contact id): the history keeps no address
        or number to find them by."""
        if not subject.references:
            return set()
        rows = await self.pool.fetch(
            "SELECT DISTINCT contact_id FROM history_events WHERE tenant = $1 AND contact_id IS NOT NULL",
            subject.tenant,
        )
        ids = (str(r["contact_id"]) for r in rows)
        return {cid for cid in ids if reference_for(subject.tenant, cid) in subject.references}

    async def erase(self, subject: Subject) -> Removal:
        removal = Removal(self.name)
        ids = sorted(subject.contact_ids)
        if not ids:
            return removal
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('history.retention', 'on', true)")
            await conn.execute(LOCK_CONTACTS, ids)
            gone = await conn.fetch(
                "DELETE FROM history_events WHERE tenant = $1 AND (contact_id = ANY($2::uuid[]) "
                "OR reply_id = ANY($2::uuid[])) RETURNING contact_id",
                subject.tenant,
                ids,
            )
            removal.add("event rows", len(gone))
            await self._forget_items(conn, subject.tenant, ids, removal)
        removal.contact_ids = {str(r["contact_id"]) for r in gone if r["contact_id"] is not None}
        return removal

    @staticmethod
    async def _forget_items(
        conn: asyncpg.Connection, tenant: str, ids: Sequence[str], removal: Removal
    ) -> None:
        """Items of contacts whose events are gone: the met ones stay for the report without ids or
        times; the unmet ones (an erased open contact) go."""
        dropped = await conn.execute(
            "DELETE FROM history_items WHERE tenant = $1 AND contact_id = ANY($2::uuid[]) AND NOT met",
            tenant,
            ids,
        )
        kept = await conn.execute(
            "UPDATE history_items SET subject_id = NULL, contact_id = NULL, started_at = NULL, due = NULL, "
            "extended_due = NULL, met_at = NULL, breached_at = NULL "
            "WHERE tenant = $1 AND contact_id = ANY($2::uuid[])",
            tenant,
            ids,
        )
        removal.add("open items removed", int(dropped.split()[-1]))
        removal.add("items kept without ids", int(kept.split()[-1]))

    async def purge(self, policy: RetentionPolicy, now: datetime, *, dry_run: bool) -> Removal:
        removal = Removal(self.name, dry_run=dry_run)
        tenants = set(policy.tenants()) | set(self.tenants)
        for tenant in sorted(tenants):
            retention = policy.by_tenant.get(tenant, Retention())
            await self._purge_contacts(
                tenant, past_cutoff(history_retention(retention), now), removal, dry_run
            )
            await self._purge_audit(tenant, past_cutoff(audit_retention(retention), now), removal, dry_run)
        return removal

    async def _purge_contacts(self, tenant: str, cutoff: datetime, removal: Removal, dry_run: bool) -> None:
        rows = await self.pool.fetch(
            CLOSED_BEFORE,
            tenant,
            cutoff,
        )
        closed = closed_contacts([(str(r[0]), r[1], r[2]) for r in rows])
        ids = sorted(c.contact_id for c in closed if c.closed_at is not None and c.closed_at <= cutoff)
        if not ids:
            return
        removal.contact_ids |= set(ids)
        removal.add("contacts", len(ids))
        if dry_run:
            n = await self.pool.fetchval(
                "SELECT count(*) FROM history_events WHERE contact_id = ANY($1::uuid[])", ids
            )
            removal.add("event rows", n)
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('history.retention', 'on', true)")
            await conn.execute(LOCK_CONTACTS, ids)
            status = await conn.execute("DELETE FROM history_events WHERE contact_id = ANY($1::uuid[])", ids)
            removal.add("event rows", int(status.split()[-1]))
            await self._forget_items(conn, tenant, ids, removal)

    async def _purge_audit(self, tenant: str, cutoff: datetime, removal: Removal, dry_run: bool) -> None:
        if dry_run:
            n = await self.pool.fetchval(
                "SELECT count(*) FROM history_audit WHERE tenant = $1 AND at <= $2", tenant, cutoff
            )
            removal.add("audit rows", n)
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('history.retention', 'on', true)")
            status = await conn.execute(
                "DELETE FROM history_audit WHERE tenant = $1 AND at <= $2", tenant, cutoff
            )
            removal.add("audit rows", int(status.split()[-1]))


async def _by_contact(
    conn: asyncpg.Connection, where: str, args: list[Any]
) -> AsyncIterator[tuple[str, list[EventRow]]]:
    """Every contact's events, one contact at a time (a cursor: the history need not fit in memory)."""
    current: str | None = None
    events: list[EventRow] = []
    query = f"{SELECT_EVENTS} WHERE contact_id IS NOT NULL {where} ORDER BY contact_id"
    async for record in conn.cursor(query, *args, prefetch=5000):
        event = event_from(record, _convert)
        if event.contact_id != current:
            if current is not None:
                yield current, events
            current, events = event.contact_id, []
        events.append(event)
    if current is not None:
        yield current, events


def stats_key(item: Item) -> tuple[Any, ...]:
    """The item's key in history_stats (as `_STATS_KEY` computes it in SQL)."""
    assert item.work_seconds is not None
    return (
        item.tenant,
        item.month,
        item.kind,
        item.norm_channel or "",
        item.norm_category or "",
        item.term,
        bool(item.on_time),
        bool(item.within_extension),
        (item.work_seconds + 30) // 60,
    )


def _item(r: Mapping[str, Any]) -> Item:
    values = {c: _convert(c, r[c]) for c in ITEM_COLUMNS}
    for flag in ("met", "on_time", "within_extension"):
        values.pop(flag)
    return Item(**values)


class PgRunLock:
    """`RunLock` (router/core/ports.py) as a PostgreSQL session advisory lock, held on a connection of
    its own until released: a process that dies releases it with its connection."""

    def __init__(self, store: PostgresHistory, key: int = PURGE_LOCK):
        self.store = store
        self.key = key
        self._held: dict[str, Any] = {}

    async def acquire(self, ttl_ms: int) -> str | None:
        conn = await self.store.pool.acquire()
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key):
            await self.store.pool.release(conn)
            return None
        token = str(uuid.uuid4())
        self._held[token] = conn
        return token

    async def release(self, token: str) -> None:
        conn = self._held.pop(token, None)
        if conn is None:
            return
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", self.key)
        finally:
            await self.store.pool.release(conn)
