"""The norm-compliance report from a real history (issue 17): contacts routed by the router, answered
by agents through the API in time, late or never, breached by the scheduler, all on a manual clock;
the events the service published feed the history; the report's figures are the ones computed here by
hand. Runs on both backends (embedded, RabbitMQ + Redis) and both history stores."""

from __future__ import annotations

import json
from datetime import datetime

from router.core.history import HistoryStore, parse_event
from router.core.tenants import Tenant
from router.history import charts
from router.history.report import norm_report
from tests.harness import ALL_KEY, AMS, Harness


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=AMS)


async def feed(backend: Harness, store: HistoryStore) -> list[str]:
    """What the service published on `events` since the last call, into the history; the names."""
    rows = []
    for message in await backend.events():
        row = parse_event(message.body)
        assert not isinstance(row, str), row
        rows.append(row)
    assert await store.append(rows) == len(rows)
    return [r.event for r in rows]


async def respond(backend: Harness, cid: str, when: datetime) -> bool:
    backend.clock.set(when)
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/responses", headers=ALL_KEY, json={"kind": "respond"}
    )
    assert resp.status == 200, await resp.text()
    on_time: bool = (await resp.json())["on_time"]
    return on_time


async def tick(backend: Harness, when: datetime) -> int:
    backend.clock.set(when)
    assert backend.rt.scheduler is not None
    return await backend.rt.scheduler.tick()


async def test_the_report_counts_what_happened_to_the_contacts(
    backend: Harness, store: HistoryStore, tenants: dict[str, Tenant]
) -> None:
    # Ommen, by mail: acknowledgement "immediately" (the channel's own), reaction within 5 workdays;
    # office hours 08:30-17:00 Monday to Friday (8.5 h a day).
    backend.clock.set(at(10, 5, 10))  # Monday 5 October: due Monday 12 October 17:00
    a1 = await backend.route("ommen", "mail", "Wanneer wordt het oud papier opgehaald?")
    a2 = await backend.route("ommen", "mail", "Vraag over de afvalkalender")
    a3 = await backend.route("ommen", "mail", "Vraag over de bibliotheek")
    assert await respond(backend, a1, at(10, 6, 10))  # Mon 7 h + Tue 1.5 h = 510 min
    assert await respond(backend, a2, at(10, 9, 15))  # 7 + 3 × 8.5 + 6.5 h = 2340 min
    assert await tick(backend, at(10, 12, 17, 1)) >= 1  # a3 breached (and warned)
    assert not await respond(backend, a3, at(10, 14, 11))  # late: 7 + 6 × 8.5 + 2.5 h = 3630 min
    october_first = await feed(backend, store)
    assert october_first.count("deadline.breached") == 1 and october_first.count("deadline.met") == 3

    backend.clock.set(at(10, 14, 12))  # Wednesday 14 October: due Wednesday 21 October 17:00
    b1 = await backend.route("ommen", "mail", "Vraag over parkeren")
    b2 = await backend.route("ommen", "mail", "Vraag over de markt")
    backend.clock.set(at(10, 15, 9))  # b2 closed without a recorded response: met by the close
    resp = await backend.client.post(
        f"/v1/contacts/{b2}/close", headers=ALL_KEY, json={"resolution": "klaar"}
    )
    assert resp.status == 200  # Wed 5 h + Thu 0.5 h = 330 min
    await tick(backend, at(10, 21, 17, 1))  # b1 breached, never answered
    backend.clock.set(at(11, 2, 10))
    c1 = await backend.route("ommen", "mail", "Vraag over de kerstmarkt")  # still within its term
    later = await feed(backend, store)
    assert later.count("deadline.breached") == 1 and "contact.closed" in later
    assert len({a1, a2, a3, b1, b2, c1}) == 6

    report = await norm_report(store, tenants["ommen"], "2026Q4", at(11, 3, 10))
    by_label = {n.label: n for n in report.norms}
    assert set(by_label) == {"acknowledge · mail · immediately", "respond · mail · 5 workdays"}

    ack = by_label["acknowledge · mail · immediately"]
    assert (ack.total.items, ack.total.on_time, ack.total.pct_on_time) == (6, 6, 100.0)
    assert (ack.total.median_minutes, ack.total.p90_minutes) == (0, 0)

    respond_norm = by_label["respond · mail · 5 workdays"]
    october, november, december = (respond_norm.months[m] for m in report.period.months)
    # October: a1, a2, b2 on time; a3 late; b1 open past its deadline.
    assert (october.items, october.on_time, october.late, october.overdue, october.open) == (5, 3, 1, 1, 0)
    assert (october.pct_on_time, october.pct_late, october.pct_overdue) == (60.0, 20.0, 20.0)
    # Times met: 330, 510, 2340, 3630 minutes; nearest rank: the 2nd and the 4th of 4.
    assert (october.median_minutes, october.p90_minutes) == (510, 3630)
    assert (november.items, november.open, november.pct_on_time) == (1, 1, 0.0)
    assert (november.median_minutes, december.items) == (None, 0)
    total = respond_norm.total
    assert (total.items, total.on_time, total.late, total.overdue, total.open) == (6, 3, 1, 1, 1)
    assert (total.pct_on_time, total.pct_late, total.pct_overdue) == (50.0, 16.7, 16.7)
    assert (total.median_minutes, total.p90_minutes) == (510, 3630)
    assert respond_norm.clock == "office hours of workdays"

    doc = json.loads(json.dumps(report.as_dict()))
    assert doc["norms"][1]["months"][0] == {"month": "2026-10", **october.as_dict()}
    assert (
        "respond,mail,,5 workdays,office hours of workdays,2026-10,5,3,1,0,1,0,60.0,20.0,20.0,510,3630"
        in report.to_csv()
    )
    pictures = charts.charts(report)
    assert set(pictures) == {"overview", *by_label} and all(
        p.startswith(b"\x89PNG") for p in pictures.values()
    )
    assert report.to_html(pictures).count("data:image/png;base64,") == 3
