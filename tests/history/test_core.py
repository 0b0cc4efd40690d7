"""The pure parts: what an event row keeps (and never keeps), the items a contact's events make, and the
report's arithmetic."""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta

import pytest

from router.core.history import EventRow, parse_event, project
from router.core.report import (
    DEFINITIONS,
    ReportRow,
    compute,
    fold,
    parse_report_period,
    percentile,
)
from router.core.retention import Period
from router.core.tenants import Tenant
from router.history.common import past_cutoff
from tests.harness import AMS
from tests.history.events import closed, event, met, new_id, routed

WED = datetime(2026, 11, 4, 10, 0, tzinfo=AMS)


def body(**fields: object) -> bytes:
    base = {
        "event": "contact.transferred",
        "event_id": str(uuid.uuid4()),
        "at": WED.isoformat(),
        "tenant": "ommen",
    }
    return json.dumps({**base, **fields}).encode()


def test_an_event_row_keeps_ids_codes_times_and_counts_only() -> None:
    planted = {
        "contact_id": str(uuid.uuid4()),
        "team": "burgerzaken",
        "from_team": "kcc",
        "agent": "kcc-017",
        "by": "ommen-kcc",
        "transfers": 1,
        "counted": True,
        # None of these may reach the history, whatever a later event adds:
        "note": "Mevrouw Jansen, Dorpsstraat 1, belt over haar BSN 123456782",
        "body": "Geachte heer, …",
        "sender": {"name": "Jan Jansen", "email": "jan@example.nl", "phone": "+31612345678"},
        "agent_name": "Jan Jansen",
        "reference": "OMM-ABCD-EFGH",
        "resolution": "antwoord gegeven aan jan@example.nl",
    }
    row = parse_event(body(**planted))
    assert isinstance(row, EventRow)
    assert (row.team, row.from_team, row.agent, row.by, row.transfers, row.counted) == (
        "burgerzaken",
        "kcc",
        "kcc-017",
        "ommen-kcc",
        1,
        True,
    )
    kept = json.dumps([str(getattr(row, f.name)) for f in fields(row)])
    for secret in ("Jansen", "Dorpsstraat", "123456782", "example.nl", "+3161", "OMM-ABCD", "Geachte"):
        assert secret not in kept
    assert not {"note", "body", "sender", "agent_name", "reference", "resolution"} & {
        f.name for f in fields(row)
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agent", "Jan Jansen"),
        ("agent", "jan@example.nl"),
        ("team", "Team van Jan"),
        ("channel", "+31612345678"),
        ("contact_id", "jan@example.nl"),
        ("rule", "x" * 200),
        ("transfers", -1),
        ("due", "tomorrow"),
    ],
)
def test_a_field_that_is_no_id_or_code_is_left_out(field: str, value: object) -> None:
    row = parse_event(body(**{field: value}))
    assert isinstance(row, EventRow) and getattr(row, field) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1]", "not a JSON object"),
        (json.dumps({"event": "x"}).encode(), "event_id: not a UUID"),
        (
            json.dumps(
                {
                    "event_id": str(uuid.uuid4()),
                    "event": "x",
                    "tenant": "Ommen!",
                    "at": "2026-01-01T00:00:00+00:00",
                }
            ).encode(),
            "tenant",
        ),
        (
            json.dumps(
                {"event_id": str(uuid.uuid4()), "event": "x", "tenant": "ommen", "at": "2026-01-01T00:00:00"}
            ).encode(),
            "at",
        ),
    ],
)
def test_what_cannot_be_a_row_says_which_field(raw: bytes, reason: str) -> None:
    result = parse_event(raw)
    assert isinstance(result, str) and reason in result and "Ommen!" not in result


def test_every_event_the_service_publishes_parses(tenants: dict[str, Tenant]) -> None:
    """The fields of each event of router/core/routing.py, casework.py and redis/scheduler.py."""
    cid, cb = new_id(), f"{new_id()}-cb1"
    samples = {
        "contact.received": {"contact_id": cid, "channel": "mail", "received_at": WED.isoformat()},
        "contact.routed": {
            "contact_id": cid,
            "channel": "mail",
            "team": "kcc",
            "rule": "Algemene vragen",
            "category": None,
            "deadlines": [d.as_dict() for d in tenants["ommen"].deadlines_for("mail", None, WED)],
        },
        "contact.reply": {"contact_id": cid, "reply_id": new_id(), "team": "kcc", "channel": "mail"},
        "contact.transferred": {
            "contact_id": cid,
            "from_team": "kcc",
            "team": "burgerzaken",
            "agent": "a-1",
            "by": "k",
            "transfers": 1,
            "counted": True,
        },
        "transfer.refused": {
            "contact_id": cid,
            "team": "kcc",
            "to_team": "belastingen",
            "agent": "a-1",
            "by": "k",
            "transfers": 1,
            "limit": 1,
            "callback_id": cb,
        },
        "callback.requested": {
            "contact_id": cid,
            "callback_id": cb,
            "team": "kcc",
            "due": WED.isoformat(),
            "origin": "agent",
            "agent": "a-1",
            "by": "k",
        },
        "callback.attempted": {
            "contact_id": cid,
            "callback_id": cb,
            "outcome": "no_answer",
            "attempt": 1,
            "agent": "a-1",
            "by": "k",
            "closed": False,
        },
        "deadline.met": {
            "contact_id": cid,
            "kind": "respond",
            "on_time": True,
            "due": WED.isoformat(),
            "agent": "a-1",
            "by": "k",
        },
        "contact.closed": {"contact_id": cid, "team": "kcc", "agent": "a-1", "by": "k"},
        "deadline.warning": {
            "contact_id": cid,
            "callback_id": None,
            "kind": "respond",
            "team": "kcc",
            "due": WED.isoformat(),
            "reference": "OMM-AAAA-BBBB",
        },
        "deadline.breached": {
            "contact_id": cid,
            "callback_id": cb,
            "kind": "callback",
            "team": "kcc",
            "due": WED.isoformat(),
            "reference": "OMM-AAAA-BBBB",
        },
    }
    for name, extra in samples.items():
        row = event(name, WED, **extra)
        for key, value in extra.items():
            if key in ("deadlines", "reference", "limit", "received_at", "due") or value is None:
                continue
            assert getattr(row, key) == value, (name, key)
    assert len(event("contact.routed", WED, **samples["contact.routed"]).deadlines) == 2


def _items(tenant: Tenant, events: list[EventRow]) -> list[tuple[object, ...]]:
    cid = events[0].contact_id
    assert cid is not None
    return [
        (i.kind, i.met_by, i.on_time, i.work_seconds, i.within_extension)
        for i in project(cid, events, tenant)
    ]


def test_a_contacts_items_are_the_same_in_any_order(tenants: dict[str, Tenant]) -> None:
    ommen = tenants["ommen"]
    cid = new_id()
    events = [
        *routed(ommen, cid, WED),
        met(ommen, cid, WED + timedelta(days=8)),
        closed(ommen, cid, WED + timedelta(days=9)),
    ]
    expected = _items(ommen, events)
    # Respond met late on Thursday 12th 10:00: 7 h + 5 × 8.5 h + 1.5 h.
    assert expected == [
        ("acknowledge", "automatic", True, 0, None),
        ("respond", "response", False, 51 * 3600, None),
    ]
    for order in itertools.permutations(events):
        assert _items(ommen, list(order)) == expected


def test_closing_meets_what_is_open_and_an_extension_counts_late(tenants: dict[str, Tenant]) -> None:
    ommen = tenants["ommen"]
    cid = new_id()
    # A complaint by post: acknowledge in 5 workdays, resolve in 6 weeks + 4 weeks (Ommen's norms).
    events = [
        *routed(ommen, cid, WED, channel="post", category="klacht"),
        closed(ommen, cid, WED + timedelta(weeks=8)),
    ]
    items = {i.kind: i for i in project(cid, events, ommen)}
    assert {"acknowledge", "resolve"} <= set(items)
    resolve = items["resolve"]
    assert (resolve.term, resolve.met_by, resolve.on_time, resolve.within_extension) == (
        "6 weeks + 4 weeks",
        "closed",
        False,
        True,
    )
    assert (resolve.norm_channel, resolve.norm_category) == (None, "klacht")
    assert resolve.extended_due is not None and resolve.due < resolve.extended_due
    # Elapsed time for a week term: the real time between receipt and the close.
    assert resolve.work_seconds == int(timedelta(weeks=8).total_seconds())


def test_a_callback_request_is_met_when_the_resident_is_reached(tenants: dict[str, Tenant]) -> None:
    ommen = tenants["ommen"]
    cid = new_id()
    cb = f"{cid}-cb1"
    due = ommen.deadline("callback", ommen.loaded.rules.callback_term(), WED).due  # type: ignore[arg-type]
    events = [
        *routed(ommen, cid, WED, channel="phone"),
        event(
            "callback.requested",
            WED,
            contact_id=cid,
            callback_id=cb,
            team="kcc",
            due=due.isoformat(),
            origin="agent",
        ),
        event(
            "callback.attempted",
            WED + timedelta(hours=1),
            contact_id=cid,
            callback_id=cb,
            outcome="no_answer",
            closed=False,
        ),
        event(
            "callback.attempted",
            WED + timedelta(days=1),
            contact_id=cid,
            callback_id=cb,
            outcome="reached",
            closed=True,
        ),
        event(
            "deadline.breached",
            WED + timedelta(hours=20),
            contact_id=cid,
            callback_id=cb,
            kind="callback",
            team="kcc",
        ),
    ]
    items = {i.kind: i for i in project(cid, events, ommen)}
    callback = items["callback"]
    assert (callback.subject_id, callback.term, callback.met_by, callback.on_time) == (
        cb,
        "3 workdays",
        "callback",
        True,
    )
    assert callback.work_seconds == int(8.5 * 3600)
    assert callback.breached_at == (WED + timedelta(hours=20)).astimezone(UTC)


def test_periods() -> None:
    q4 = parse_report_period("2026Q4")
    assert (q4.label, q4.months, q4.end) == (
        "2026Q4",
        (date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)),
        date(2027, 1, 1),
    )
    assert (
        parse_report_period("2026").months[-1] == date(2026, 12, 1)
        and len(parse_report_period("2026").months) == 12
    )
    assert parse_report_period("2026-02").months == (date(2026, 2, 1),)
    assert parse_report_period("2026-q1").label == "2026Q1"
    for bad in ("2026Q5", "2026-13", "Q4", "26Q4", ""):
        with pytest.raises(ValueError, match=r"period|month"):
            parse_report_period(bad)


def test_fold_gathers_the_times_of_one_group() -> None:
    key = (date(2026, 10, 1), "respond", "mail", None, "5 workdays", "on_time", False)
    other = (*key[:5], "open", False)
    [a, b] = fold([(key, 30, 2), (key, 10, 1), (other, None, 4), (key, 30, 1)])
    assert a == ReportRow(*key, 4, ((10, 1), (30, 3)))  # type: ignore[arg-type]
    assert b == ReportRow(*other, 4)  # type: ignore[arg-type]


def test_percentiles_by_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([(10, 1)], 0.9) == 10
    assert percentile([(1, 1), (2, 1), (3, 1), (4, 1)], 0.5) == 2
    assert percentile([(1, 1), (2, 1), (3, 1), (4, 1)], 0.9) == 4
    assert percentile([(5, 9), (100, 1)], 0.9) == 5
    assert percentile([(5, 8), (100, 2)], 0.9) == 100


def test_compute_counts_per_norm_and_month_and_renders_every_format() -> None:
    oct_, nov = date(2026, 10, 1), date(2026, 11, 1)
    rows = [
        ReportRow(oct_, "respond", "mail", None, "5 workdays", "on_time", False, 3, ((60, 3),)),
        ReportRow(oct_, "respond", "mail", None, "5 workdays", "late", False, 1, ((600, 1),)),
        ReportRow(nov, "respond", "mail", None, "5 workdays", "overdue", False, 1),
        ReportRow(nov, "resolve", None, "klacht", "6 weeks + 4 weeks", "late", True, 1, ((5000, 1),)),
        ReportRow(
            date(2026, 9, 1), "respond", "mail", None, "5 workdays", "on_time", False, 100, ((1, 100),)
        ),  # not in Q4
    ]
    report = compute(
        rows,
        tenant="ommen",
        tenant_name="Gemeente Ommen",
        period=parse_report_period("2026Q4"),
        as_of=datetime(2027, 1, 5, tzinfo=UTC),
    )
    respond, resolve = report.norms
    assert (
        respond.label == "respond · mail · 5 workdays"
        and resolve.label == "resolve · klacht · 6 weeks + 4 weeks"
    )
    t = respond.total
    assert (t.items, t.on_time, t.late, t.overdue, t.open) == (5, 3, 1, 1, 0)
    assert (t.pct_on_time, t.pct_late, t.pct_overdue) == (60.0, 20.0, 20.0)
    assert (t.median_minutes, t.p90_minutes) == (60, 600)
    assert respond.months[date(2026, 12, 1)].items == 0 and respond.months[oct_].items == 4
    assert resolve.total.late_within_extension == 1
    as_json = report.as_dict()
    assert as_json["period"] == "2026Q4" and as_json["norms"][0]["total"]["pct_met_on_time"] == 60.0
    assert set(as_json["definitions"]) == {term for term, _ in DEFINITIONS}
    csv_lines = report.to_csv().splitlines()
    assert csv_lines[0].startswith("kind,channel,category,term,clock,month,items,met_on_time")
    assert (
        "respond,mail,,5 workdays,office hours of workdays,2026Q4,5,3,1,0,1,0,60.0,20.0,20.0,60,600"
        in csv_lines
    )
    page = report.to_html({"overview": b"\x89PNG fake"})
    assert "data:image/png;base64," in page and "Definitions" in page and "1:00" in page and "10:00" in page


@pytest.mark.parametrize(
    "term", [Period(30, "day"), Period(12, "month"), Period(2, "year"), Period(1, "month")]
)
def test_the_purge_cutoff_is_exactly_where_the_term_ends(term: Period) -> None:
    for now in (
        datetime(2026, 3, 31, 12, tzinfo=UTC),
        datetime(2026, 3, 1, 0, 30, tzinfo=UTC),
        datetime(2028, 2, 29, tzinfo=UTC),
    ):
        cut = past_cutoff(term, now)
        assert term.past(cut, now) and not term.past(cut + timedelta(microseconds=1), now)
