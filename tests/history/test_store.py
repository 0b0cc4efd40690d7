"""The history store's behaviour, written once and run on SQLite and on PostgreSQL (fixture `store`)."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from router.core.contact import reference_for
from router.core.erasure import Privacy
from router.core.erasure import subject as make_subject
from router.core.history import HistoryStore, audit_entry
from router.core.ports import Subject
from router.core.report import ReportRow
from router.core.retention import RetentionPolicy
from router.core.tenants import Tenant
from router.history import open_store
from router.history.postgres import PostgresHistory
from router.history.sqlite import SqliteHistory
from tests.harness import AMS
from tests.history.events import closed, event, met, new_id, routed

WED = datetime(2026, 11, 4, 10, 0, tzinfo=AMS)  # a Wednesday; Ommen works 08:30-17:00, Mon-Fri


@pytest.fixture
def ommen(tenants: dict[str, Tenant]) -> Tenant:
    return tenants["ommen"]


async def test_append_stores_each_event_once_however_often_it_comes(
    store: HistoryStore, ommen: Tenant
) -> None:
    cid = new_id()
    events = [*routed(ommen, cid, WED), met(ommen, cid, WED + timedelta(days=2))]
    assert await store.append(events) == 3
    assert await store.append(events) == 0
    assert await store.append([events[1], events[1], events[2]]) == 0
    assert await store.count_events() == 3
    assert {e.event_id for e in await store.events_of(cid)} == {e.event_id for e in events}


async def test_the_items_do_not_depend_on_the_order_events_arrive_in(
    store: HistoryStore, ommen: Tenant
) -> None:
    a, b = new_id(), new_id()
    answer = WED + timedelta(days=2)  # Friday 10:00: Wed 7 h + Thu 8.5 h + Fri 1.5 h of office time
    for cid in (a, b):
        events = [*routed(ommen, cid, WED), met(ommen, cid, answer)]
        if cid == b:
            for e in reversed(events):
                await store.append([e])
        else:
            await store.append(events)
    items = {cid: [asdict(i) for i in await store.items_of(cid)] for cid in (a, b)}
    for cid in (a, b):
        for i in items[cid]:
            i.pop("subject_id"), i.pop("contact_id")
    assert items[a] == items[b]
    ack, respond = await store.items_of(a)
    assert (ack.kind, ack.met_by, ack.on_time, ack.work_seconds) == ("acknowledge", "automatic", True, 0)
    assert (respond.kind, respond.term, respond.met_by, respond.on_time) == (
        "respond",
        "5 workdays",
        "response",
        True,
    )
    assert respond.work_seconds == 17 * 3600
    assert respond.due == datetime(2026, 11, 11, 17, 0, tzinfo=AMS)
    assert (respond.norm_channel, respond.norm_category, respond.month) == ("mail", None, date(2026, 11, 1))


async def test_report_rows_count_items_by_norm_month_and_status(store: HistoryStore, ommen: Tenant) -> None:
    on_time, late, overdue, still_open = new_id(), new_id(), new_id(), new_id()
    for cid in (on_time, late, overdue):
        await store.append(routed(ommen, cid, WED))
    await store.append(routed(ommen, still_open, WED + timedelta(days=7)))
    await store.append([met(ommen, on_time, WED + timedelta(days=2))])
    await store.append([closed(ommen, late, datetime(2026, 11, 12, 9, 0, tzinfo=AMS))])
    as_of = datetime(2026, 11, 12, 12, 0, tzinfo=AMS)  # past the three deadlines of the 11th, not the 18th
    rows = await store.report_rows("ommen", date(2026, 11, 1), date(2026, 12, 1), as_of)
    respond = sorted((r.status, r.times, r.count) for r in rows if r.kind == "respond")
    # late: Wed 4th 10:00 -> Thu 12th 09:00 = 7 h + 5 days of 8.5 h (Thu, Fri, Mon, Tue, Wed) + 0.5 h
    assert respond == [
        ("late", ((int((7 + 5 * 8.5 + 0.5) * 60), 1),), 1),
        ("on_time", ((17 * 60, 1),), 1),
        ("open", (), 1),
        ("overdue", (), 1),
    ]
    assert {r.status for r in rows if r.kind == "acknowledge"} == {"on_time"}
    assert all(r.month == date(2026, 11, 1) and r.norm_channel == "mail" for r in rows)
    assert await store.report_rows("ommen", date(2026, 12, 1), date(2027, 1, 1), as_of) == []
    assert await store.report_rows("coevorden", date(2026, 11, 1), date(2026, 12, 1), as_of) == []


async def test_the_audit_log_lists_per_contact_and_per_agent(store: HistoryStore) -> None:
    c1, c2 = new_id(), new_id()
    entries = [
        audit_entry(
            at=WED,
            tenant="ommen",
            contact_id=c1,
            action="contact.viewed",
            agent="kcc-017",
            credential="ommen-kcc",
        ),
        audit_entry(
            at=WED + timedelta(minutes=5),
            tenant="ommen",
            contact_id=c1,
            action="contact.transferred",
            agent="kcc-017",
            credential="ommen-kcc",
        ),
        audit_entry(
            at=WED + timedelta(minutes=1),
            tenant="ommen",
            contact_id=c2,
            action="contact.viewed",
            agent="kcc-020",
            credential="ommen-kcc",
        ),
    ]
    for e in entries:
        await store.audit(e)
    assert await store.audit_log(contact_id=c1) == entries[:2]
    assert await store.audit_log(agent="kcc-017") == entries[:2]
    assert await store.audit_log(agent="kcc-020") == [entries[2]]
    assert await store.audit_log("coevorden", agent="kcc-020") == []
    with pytest.raises(ValueError, match="agent"):
        audit_entry(
            at=WED,
            tenant="ommen",
            contact_id=c1,
            action="contact.viewed",
            agent="Jan Jansen",
            credential=None,
        )
    with pytest.raises(ValueError, match="action"):
        audit_entry(
            at=WED, tenant="ommen", contact_id=c1, action="looked at the address", agent=None, credential=None
        )


async def _try_changes(store: HistoryStore) -> list[str]:
    """What the database says to an UPDATE and a DELETE of each append-only table."""
    statements = [
        f"{verb} {table}" for table in ("history_events", "history_audit") for verb in ("UPDATE", "DELETE")
    ]
    sql = {
        "UPDATE history_events": "UPDATE history_events SET team = 'x'",
        "DELETE history_events": "DELETE FROM history_events",
        "UPDATE history_audit": "UPDATE history_audit SET action = 'x'",
        "DELETE history_audit": "DELETE FROM history_audit",
    }
    refusals = []
    if isinstance(store, PostgresHistory):
        for s in statements:
            with pytest.raises(asyncpg.RaiseError) as caught:
                await store.pool.execute(sql[s])
            refusals.append(str(caught.value))
    else:
        assert isinstance(store, SqliteHistory)
        db = sqlite3.connect(store.path)
        try:
            for s in statements:
                with pytest.raises(sqlite3.DatabaseError) as caught_sqlite:
                    db.execute(sql[s])
                refusals.append(str(caught_sqlite.value))
        finally:
            db.close()
    return refusals


async def test_events_and_audit_rows_are_never_updated_or_deleted_by_hand(
    store: HistoryStore, ommen: Tenant
) -> None:
    await store.append(routed(ommen, new_id(), WED))
    await store.audit(
        audit_entry(
            at=WED, tenant="ommen", contact_id=new_id(), action="contact.viewed", agent=None, credential=None
        )
    )
    refusals = await _try_changes(store)
    assert len(refusals) == 4 and all("append-only" in r for r in refusals)
    assert await store.count_events() == 2


async def test_rebuild_recomputes_the_items_append_made(store: HistoryStore, ommen: Tenant) -> None:
    cids = [new_id() for _ in range(5)]
    for n, cid in enumerate(cids):
        await store.append(
            [*routed(ommen, cid, WED + timedelta(hours=n)), met(ommen, cid, WED + timedelta(days=n))]
        )
    before = {cid: await store.items_of(cid) for cid in cids}
    result = await store.rebuild()
    assert (result.contacts, result.items, result.kept_anonymous) == (5, 10, 0)
    assert {cid: await store.items_of(cid) for cid in cids} == before
    assert (await store.rebuild("coevorden")).contacts == 0


def _policy(tenants: dict[str, Tenant]) -> RetentionPolicy:
    return RetentionPolicy({t: tenant.loaded.rules.retention for t, tenant in tenants.items()})


async def test_the_purge_removes_closed_contacts_past_the_term_and_keeps_their_figures(
    store: HistoryStore, ommen: Tenant, tenants: dict[str, Tenant]
) -> None:
    old, recent, reopened = new_id(), new_id(), new_id()
    start = datetime(2025, 10, 6, 10, 0, tzinfo=AMS)  # a Monday
    for cid in (old, recent, reopened):
        await store.append([*routed(ommen, cid, start), met(ommen, cid, start + timedelta(days=1))])
    await store.append(
        [closed(ommen, old, start + timedelta(days=2)), closed(ommen, reopened, start + timedelta(days=2))]
    )
    await store.append(
        [
            event(
                "contact.reply",
                start + timedelta(days=20),
                contact_id=reopened,
                reply_id=new_id(),
                team="kcc",
                channel="mail",
            )
        ]
    )
    now = datetime(2026, 11, 20, 12, 0, tzinfo=AMS)
    await store.append([closed(ommen, recent, now - timedelta(days=30))])
    await store.audit(
        audit_entry(
            at=now - timedelta(days=800),
            tenant="ommen",
            contact_id=old,
            action="contact.viewed",
            agent="kcc-017",
            credential=None,
        )
    )
    await store.audit(
        audit_entry(
            at=now - timedelta(days=300),
            tenant="ommen",
            contact_id=old,
            action="contact.viewed",
            agent="kcc-017",
            credential=None,
        )
    )
    month = date(2025, 10, 1)
    figures_before = await store.report_rows("ommen", month, date(2025, 11, 1), now)

    dry = await store.purge(_policy(tenants), now, dry_run=True)
    assert dry.dry_run and dry.contact_ids == {old}
    assert dry.counts == {"contacts": 1, "event rows": 4, "audit rows": 1}
    assert await store.count_events() == 13

    done = await store.purge(_policy(tenants), now, dry_run=False)
    assert done.contact_ids == {old}
    assert done.counts == {"contacts": 1, "event rows": 4, "items kept without ids": 2, "audit rows": 1}
    assert await store.events_of(old) == [] and await store.items_of(old) == []
    assert len(await store.events_of(recent)) == 4 and len(await store.events_of(reopened)) == 5
    assert [e.at for e in await store.audit_log(agent="kcc-017")] == [now - timedelta(days=300)]
    # The figures of the report are the same, without the contact's ids.
    assert sorted(await store.report_rows("ommen", month, date(2025, 11, 1), now), key=repr) == sorted(
        figures_before, key=repr
    )
    assert (await store.rebuild()).kept_anonymous == 2
    assert sorted(await store.report_rows("ommen", month, date(2025, 11, 1), now), key=repr) == sorted(
        figures_before, key=repr
    )
    again = await store.purge(_policy(tenants), now, dry_run=False)
    assert again.contact_ids == set() and again.counts == {}


async def test_an_erasure_removes_the_residents_rows_through_the_privacy_port(
    store: HistoryStore, ommen: Tenant, tenants: dict[str, Tenant]
) -> None:
    answered, open_one, other = new_id(), new_id(), new_id()
    for cid in (answered, open_one, other):
        await store.append(routed(ommen, cid, WED))
    await store.append(
        [met(ommen, answered, WED + timedelta(days=1)), met(ommen, other, WED + timedelta(days=1))]
    )
    # A reference names a contact the history has; an address or a number it cannot know.
    assert await store.find(make_subject("ommen", references=[reference_for("ommen", answered)])) == {
        answered
    }
    assert await store.find(make_subject("ommen", emails=["a@example.nl"])) == set()
    assert await store.find(make_subject("coevorden", references=[reference_for("ommen", answered)])) == set()

    privacy = Privacy([store], _policy(tenants), clock=None)  # type: ignore[arg-type]
    who, done = await privacy.erase(
        make_subject("ommen", references=[reference_for("ommen", answered)], contact_ids=[open_one])
    )
    assert who.contact_ids == {answered, open_one}
    [removal] = done
    assert removal.contact_ids == {answered, open_one}
    assert removal.counts == {"event rows": 5, "open items removed": 1, "items kept without ids": 3}
    assert await store.events_of(answered) == [] and await store.events_of(open_one) == []
    assert len(await store.events_of(other)) == 3
    rows = await store.report_rows("ommen", date(2026, 11, 1), date(2026, 12, 1), WED + timedelta(days=2))
    assert sum(r.count for r in rows if r.kind == "respond") == 2  # answered (anonymous) and other
    assert (await store.erase(Subject("ommen"))).counts == {}


async def test_report_rows_are_plain_rows(store: HistoryStore, ommen: Tenant) -> None:
    await store.append(routed(ommen, new_id(), WED))
    [ack, respond] = sorted(
        await store.report_rows("ommen", date(2026, 11, 1), date(2026, 12, 1), WED), key=lambda r: r.kind
    )
    assert ack == ReportRow(
        date(2026, 11, 1), "acknowledge", "mail", None, "immediately", "on_time", False, 1, ((0, 1),)
    )
    assert respond == ReportRow(date(2026, 11, 1), "respond", "mail", None, "5 workdays", "open", False, 1)


async def test_the_history_joins_privacy_as_a_store_opened_on_first_use(
    sqlite_url: str, tenants: dict[str, Tenant]
) -> None:
    from router.history.privacy import HistoryPersonalData

    ommen = tenants["ommen"]
    cid = new_id()
    first = await open_store(sqlite_url, tenants)
    await first.append(routed(ommen, cid, WED))
    await first.close()
    lazy = HistoryPersonalData(sqlite_url, tenants)
    privacy = Privacy([lazy], _policy(tenants), clock=None)  # type: ignore[arg-type]
    who, [removal] = await privacy.erase(make_subject("ommen", references=[reference_for("ommen", cid)]))
    assert who.contact_ids == {cid} and removal.store == "history" and removal.counts["event rows"] == 2
    assert (await lazy.purge(_policy(tenants), WED, dry_run=True)).counts == {}
    await lazy.close()


async def test_the_postgresql_aggregate_follows_every_change_of_the_items(
    pg_url: str, tenants: dict[str, Tenant]
) -> None:
    """history_stats (what the report reads for met items) equals a count over the items, after
    appends in any order, doubles, a purge, an erasure and a rebuild."""
    from router.history.postgres import _STATS_KEY

    ommen = tenants["ommen"]
    store = await open_store(pg_url, tenants)
    assert isinstance(store, PostgresHistory)

    async def consistent() -> None:
        stats = await store.pool.fetch("SELECT * FROM history_stats WHERE n <> 0")
        direct = await store.pool.fetch(
            f"SELECT {_STATS_KEY}, count(*) FROM history_items WHERE met GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
        )
        assert sorted(tuple(r) for r in stats) == sorted(tuple(r) for r in direct)

    cids = [new_id() for _ in range(12)]
    for n, cid in enumerate(cids):
        events = [*routed(ommen, cid, WED + timedelta(hours=n)), met(ommen, cid, WED + timedelta(days=n % 9))]
        if n % 3 == 0:
            events.append(closed(ommen, cid, WED + timedelta(days=10)))
        for e in reversed(events) if n % 2 else events:
            await store.append([e, e])
    await consistent()
    await store.erase(make_subject("ommen", contact_ids=cids[:2]))
    await consistent()
    await store.purge(_policy(tenants), WED + timedelta(days=800), dry_run=False)
    await consistent()
    before = await store.pool.fetch(
        "SELECT * FROM history_stats WHERE n <> 0 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
    )
    await store.rebuild()
    await consistent()
    assert await store.pool.fetch("SELECT * FROM history_stats ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9") == before
    await store.close()


async def test_the_deployments_erasure_and_purge_reach_the_history_when_it_is_configured(
    sqlite_url: str, tenants: dict[str, Tenant], settings: Any, redis_client: Any
) -> None:
    """`contact-router erase` and the hourly purge go through `privacy_for`: with HISTORY_URL the
    history is one of its stores, after Redis and the queues; without, it is not."""
    from router.core.clock import SystemClock
    from router.service import keys_for, privacy_for

    keys = keys_for(settings, embedded=False, warn=False)
    without = privacy_for(settings, tenants, redis_client, keys, SystemClock())
    assert [s.name for s in without.stores][-1] != "history"
    configured = settings.model_copy(update={"history_url": SecretStr(sqlite_url)})
    privacy = privacy_for(configured, tenants, redis_client, keys, SystemClock())
    assert [s.name for s in privacy.stores][-1] == "history"
    cid = new_id()
    first = await open_store(sqlite_url, tenants)
    await first.append(routed(tenants["ommen"], cid, WED))
    await first.close()
    try:
        _, done = await privacy.erase(make_subject("ommen", contact_ids=[cid]))
    finally:
        await privacy.close()
    assert {r.store: r.contact_ids for r in done}["history"] == {cid}
    again = await open_store(sqlite_url, tenants)
    try:
        assert await again.events_of(cid) == []
    finally:
        await again.close()


def test_a_tenant_names_the_audit_term_in_its_retention() -> None:
    from router.core.history import audit_retention
    from router.core.retention import Period, Retention

    assert audit_retention(Retention()) == Period(2, "year")
    assert audit_retention(Retention.model_validate({"audit": "3 years"})) == Period(3, "year")
