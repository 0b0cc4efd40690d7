"""The norm-compliance report over a quarter of one large municipality, timed:
`python -m bench.history_report [--contacts 250000] [--url postgresql://…] [--keep]`.

Generates a history in PostgreSQL as the service would have written it (contact.received and
contact.routed with the deadlines of the tenant's norms, responses on time and late, closes, callback
requests and attempts, breaches; about four events per contact, received over the quarter's office
hours), copies the events in, runs `history rebuild` (the items from the events) and then the report
of the quarter five times, and prints the figures. Without `--url` it creates a database of its own on
PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres) and drops it afterwards. Not a test:
the target (a report in under 2 s) is for people to compare with; docs/architecture.md, "History".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from router.core.report import parse_report_period
from router.core.tenants import Tenant, load
from router.history.common import DB_EVENT_COLUMNS
from router.history.postgres import PostgresHistory
from router.history.report import norm_report

CHANNELS = [("mail", 50), ("webform", 20), ("phone", 15), ("post", 10), ("social", 5)]
CATEGORIES = [(None, 70), ("melding_openbare_ruimte", 12), ("factuur", 8), ("klacht", 5), ("bezwaar", 5)]
TEAMS = ("kcc", "burgerzaken", "openbare_ruimte", "belastingen", "financien")


def _pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def _row(name: str, at: datetime, cid: uuid.UUID, **fields: Any) -> tuple[Any, ...]:
    values = {
        "event_id": uuid.uuid4(),
        "event": name,
        "tenant": "ommen",
        "at": at,
        "contact_id": cid,
        **fields,
    }
    return tuple(values.get(c) for c in DB_EVENT_COLUMNS)


def contact_events(rng: random.Random, tenant: Tenant, received: datetime) -> list[tuple[Any, ...]]:
    """One contact's events: routed, then answered on time (75 %), late (15 %) or not at all."""
    cid = uuid.uuid4()
    channel, category = _pick(rng, CHANNELS), _pick(rng, CATEGORIES)
    team = rng.choice(TEAMS)
    deadlines = tenant.deadlines_for(channel, category, received)
    doc = orjson.dumps(
        [{"kind": d.kind, "term": str(d.term), "due": d.due.isoformat()} for d in deadlines]
    ).decode()
    rows = [
        _row("contact.received", received, cid, channel=channel, received_at=received),
        _row(
            "contact.routed",
            received,
            cid,
            channel=channel,
            category=category,
            team=team,
            rule="bench",
            deadlines=doc,
        ),
    ]
    respond = next((d for d in deadlines if d.kind == "respond"), None)
    fate = rng.random()
    if respond is not None and fate < 0.9:
        span = (respond.due - received).total_seconds()
        when = received + timedelta(
            seconds=span * (rng.uniform(0.05, 1.0) if fate < 0.75 else rng.uniform(1.01, 2.0))
        )
        if when > respond.due:
            rows.append(
                _row("deadline.breached", respond.due, cid, kind="respond", team=team, due=respond.due)
            )
        rows.append(
            _row("deadline.met", when, cid, kind="respond", on_time=when <= respond.due, agent="kcc-017")
        )
        if rng.random() < 0.8:
            rows.append(_row("contact.closed", when + timedelta(hours=1), cid, team=team, agent="kcc-017"))
    if channel == "phone" and rng.random() < 0.3:
        cb = f"{cid}-cb1"
        term = tenant.loaded.rules.callback_term()
        assert term is not None
        due = tenant.deadline("callback", term, received).due
        rows.append(
            _row("callback.requested", received, cid, callback_id=cb, team=team, due=due, origin="phone_note")
        )
        rows.append(
            _row(
                "callback.attempted",
                received + timedelta(hours=rng.uniform(1, 60)),
                cid,
                callback_id=cb,
                outcome="reached",
                closed=True,
                attempt=1,
                agent="kcc-017",
            )
        )
    return rows


def receipts(rng: random.Random, n: int, first: datetime, days: int) -> list[datetime]:
    """`n` moments over the quarter, mostly in office hours on weekdays (as residents write and call)."""
    out = []
    while len(out) < n:
        day = first + timedelta(days=rng.randrange(days))
        if day.weekday() >= 5 and rng.random() < 0.8:
            continue
        out.append(day + timedelta(hours=rng.uniform(7, 20)))
    return out


async def run(url: str, contacts: int, seed: int) -> dict[str, Any]:
    tenants = load(_rules_dir())
    tenant = tenants["ommen"]
    store = await PostgresHistory.open(url, tenants)
    try:
        rng = random.Random(seed)
        first = datetime(2026, 10, 1, tzinfo=tenant.calendar.zone)
        started = time.perf_counter()
        rows: list[tuple[Any, ...]] = []
        for received in receipts(rng, contacts, first, 92):
            rows += contact_events(rng, tenant, received)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        async with store.pool.acquire() as conn:
            for i in range(0, len(rows), 50_000):
                await conn.copy_records_to_table(
                    "history_events", records=rows[i : i + 50_000], columns=list(DB_EVENT_COLUMNS)
                )
            await conn.execute("ANALYZE history_events")
        copied = time.perf_counter() - started
        started = time.perf_counter()
        rebuilt = await store.rebuild()
        rebuild_s = time.perf_counter() - started
        async with store.pool.acquire() as conn:
            await conn.execute("ANALYZE history_items")
        period = parse_report_period("2026Q4")
        as_of = datetime(2027, 1, 10, tzinfo=UTC)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            report = await norm_report(store, tenant, period, as_of)
            timings.append(time.perf_counter() - started)
        rows_now = await store.count_events()
        sample = [(n.label, n.total.items, n.total.pct_on_time) for n in report.norms]
        return {
            "contacts": contacts,
            "events": rows_now,
            "items": rebuilt.items,
            "generate_s": round(generated, 2),
            "copy_s": round(copied, 2),
            "rebuild_s": round(rebuild_s, 2),
            "report_s": [round(t, 3) for t in timings],
            "report_median_s": round(statistics.median(timings), 3),
            "norms": sample,
        }
    finally:
        await store.close()


def _rules_dir() -> Any:
    from pathlib import Path

    return Path(os.environ.get("RULES_DIR", Path(__file__).resolve().parent.parent / "rules"))


async def main_async(args: argparse.Namespace) -> int:
    admin_url = os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = None
    url = args.url
    if url is None:
        name = f"history_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    try:
        figures = await run(url, args.contacts, args.seed)
    finally:
        if name is not None and not args.keep:
            admin = await asyncpg.connect(admin_url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(f"contacts {figures['contacts']:,}, events {figures['events']:,}, items {figures['items']:,}")
    print(
        f"generated in {figures['generate_s']} s, copied in {figures['copy_s']} s, "
        f"rebuilt in {figures['rebuild_s']} s"
    )
    print(
        f"report of 2026Q4: median {figures['report_median_s']} s over 5 runs {figures['report_s']} "
        "(target < 2 s)"
    )
    for label, items, pct in figures["norms"]:
        print(f"  {label:<48} {items:>8,} items, {pct} % on time")
    if name is not None and args.keep:
        print(f"kept the database {name}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contacts", type=int, default=250_000)
    p.add_argument(
        "--url", help="an existing, migrated or empty database (default: a new one, dropped after)"
    )
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--keep", action="store_true", help="keep the database it created")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
