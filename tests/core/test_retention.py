"""Retention terms, the rules' `retention:` block, the normalisation behind the resident index, which
queued message belongs to a resident, and the purge/erasure runner over its ports: no servers."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.core.clock import ManualClock
from router.core.contact import contact_id, reference_for
from router.core.erasure import (
    ErasureIncomplete,
    PeriodicPurge,
    Privacy,
    identities,
    matches,
    normalise_email,
    normalise_phone,
    subject,
)
from router.core.ports import Removal, Subject
from router.core.retention import (
    DEFAULT_CLOSED_CONTACTS,
    DEFAULT_DEAD_LETTERS,
    Period,
    Retention,
    RetentionPolicy,
    parse_period,
)
from router.core.rules import RulesError, check, load_file

ROOT = Path(__file__).resolve().parents[2]
UTC0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


# -- terms -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("12 months", Period(12, "month")),
        ("1 month", Period(1, "month")),
        ("30 days", Period(30, "day")),
        ("1day", Period(1, "day")),
        (" 2 YEARS ", Period(2, "year")),
        ("6 weeks", Period(6, "week")),
        ("3 maanden", Period(3, "month")),
        ("1 jaar", Period(1, "year")),
    ],
)
def test_terms_parse(text: str, period: Period) -> None:
    assert parse_period(text) == period


@pytest.mark.parametrize(
    "text", ["", "12", "twelve months", "12 workdays", "3 hours", "-1 days", "1.5 years"]
)
def test_bad_terms_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="expected a term like"):
        parse_period(text)


def test_bounds() -> None:
    with pytest.raises(ValueError, match="at least 1 day"):
        parse_period("0 days")
    with pytest.raises(ValueError, match="at most 100 years"):
        parse_period("101 years")
    assert str(Period(1, "year")) == "1 year" and str(Period(12, "month")) == "12 months"


def test_months_are_calendar_months_clamped_to_the_month_end() -> None:
    assert Period(1, "month").after(UTC0) == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    assert Period(13, "month").after(UTC0) == datetime(2027, 2, 28, 12, 0, tzinfo=UTC)
    leap = datetime(2024, 2, 29, 8, 0, tzinfo=UTC)
    assert Period(1, "year").after(leap) == datetime(2025, 2, 28, 8, 0, tzinfo=UTC)
    assert Period(4, "year").after(leap) == datetime(2028, 2, 29, 8, 0, tzinfo=UTC)
    assert Period(30, "day").after(UTC0) == UTC0 + timedelta(days=30)
    assert Period(2, "week").after(UTC0) == UTC0 + timedelta(days=14)


def test_past_the_term_exactly_at_its_end() -> None:
    term = Period(30, "day")
    end = UTC0 + timedelta(days=30)
    assert not term.past(UTC0, end - timedelta(microseconds=1))
    assert term.past(UTC0, end)
    # Any time zone, the same moment.
    ams = UTC0.astimezone(datetime.now().astimezone().tzinfo)
    assert term.past(ams, end)


@given(
    count=st.integers(1, 40),
    unit=st.sampled_from(["day", "week", "month", "year"]),
    start=st.datetimes(datetime(2000, 1, 1), datetime(2060, 1, 1), timezones=st.just(UTC)),
    age=st.integers(0, 20 * 366 * 86400),
)
def test_latest_start_never_misses_a_start_past_its_term(
    count: int, unit: str, start: datetime, age: int
) -> None:
    """The purge asks its index for starts up to `latest_start(now)`: nothing past the term is beyond it."""
    term = Period(count, unit)  # type: ignore[arg-type]
    now = start + timedelta(seconds=age)
    if term.past(start, now):
        assert start <= term.latest_start(now)


def test_policy_defaults_and_the_shortest_term_for_an_unknown_tenant() -> None:
    policy = RetentionPolicy(
        {
            "ommen": Retention(dead_letters=parse_period("30 days")),
            "coevorden": Retention(dead_letters=parse_period("1 month")),  # 28-31 days: longer than 4 weeks
            "dalfsen": Retention(dead_letters=parse_period("4 weeks")),
        }
    )
    assert policy.dead_letters("ommen") == Period(30, "day")
    assert policy.dead_letters(None) == Period(4, "week")
    assert policy.dead_letters("elsewhere") == Period(4, "week")
    assert policy.closed_contacts("ommen") == DEFAULT_CLOSED_CONTACTS == Period(12, "month")
    assert RetentionPolicy({}).dead_letters(None) == DEFAULT_DEAD_LETTERS == Period(30, "day")


# -- the rules' retention block --------------------------------------------------------------------


RULES = """\
tenant: voorbeeld
name: Gemeente Voorbeeld
teams: [{id: kcc, name: KCC}]
default_team: kcc
coordinating_team: kcc
transfer_limit: 1
"""


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "voorbeeld.yaml"
    path.write_text(RULES + extra, encoding="utf-8")
    return path


def test_retention_in_the_rules_with_defaults(tmp_path: Path) -> None:
    assert load_file(write(tmp_path, "")).rules.retention == Retention()
    loaded = load_file(write(tmp_path, "retention: {closed_contacts: 2 years}\n"))
    assert loaded.rules.retention.closed_contacts == Period(2, "year")
    assert loaded.rules.retention.dead_letters == Period(30, "day")
    ommen = load_file(ROOT / "rules" / "ommen.yaml").rules.retention
    assert (ommen.closed_contacts, ommen.dead_letters) == (Period(12, "month"), Period(30, "day"))
    assert check(ROOT / "rules") == []  # the template included


def test_bad_retention_gives_file_line_and_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "retention:\n  closed_contacts: twelve months\n  dead_letters: 12\n  closed_contact: 1 year\n",
    )
    with pytest.raises(RulesError) as err:
        load_file(path)
    found = {str(p).removeprefix(str(path)) for p in err.value.problems}
    assert found == {
        ":8: retention.closed_contacts: expected a term like '12 months', '30 days' or '2 years' "
        "(days, weeks, months or years), got 'twelve months'",
        ":9: retention.dead_letters: a term needs a unit, e.g. '12 days' or '12 months'",
        ":10: retention.closed_contact: Extra inputs are not permitted",
    }


# -- normalised identities -------------------------------------------------------------------------


def test_addresses_and_numbers_are_normalised_as_the_index_keeps_them() -> None:
    assert normalise_email("  J.Jansen@Example.NL ") == "j.jansen@example.nl"
    for raw in ("06-12 34 56 78", "+31 6 12345678", "0031612345678", "(06) 12345678", "+31612345678"):
        assert normalise_phone(raw) == "+31612345678", raw
    assert normalise_phone("12 (34)") == "1234"  # no valid number: kept without separators
    who = subject("ommen", emails=["A@B.nl", " "], phones=["06 12345678"], references=[" omm-5kq3-zp7a "])
    assert who == Subject(
        "ommen",
        references=frozenset({"OMM-5KQ3-ZP7A"}),
        emails=frozenset({"a@b.nl"}),
        phones=frozenset({"+31612345678"}),
    )
    assert identities({"sender": {"email": "X@Y.nl", "phone": "0612345678", "name": "X"}}) == [
        ("email", "x@y.nl"),
        ("phone", "+31612345678"),
    ]
    assert identities({"sender": None}) == identities({}) == []


# -- which queued message belongs to the resident --------------------------------------------------


CID = contact_id("ommen", "mail", "m1")
OTHER = contact_id("ommen", "mail", "m2")
WHO = subject("ommen", emails=["anna@example.nl"], phones=["+31611122233"], contact_ids=[CID])


def contact(native: str = "m1", tenant: str = "ommen", **sender: str) -> dict[str, object]:
    return {
        "tenant": tenant,
        "channel": "mail",
        "source": {"adapter": "mail", "native_id": native},
        "sender": sender or None,
        "body": "...",
    }


def dumps(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_matches_contacts_work_items_escalations_and_raw_mail() -> None:
    mine = {**contact(), "id": CID}
    theirs = {**contact("m2", email="someone@example.nl"), "id": OTHER}
    assert matches(WHO, dumps(mine))
    assert not matches(WHO, dumps(theirs))
    # A dead letter never had an id: derived from its source; by address or number too.
    assert matches(WHO, dumps(contact("m1")))
    assert matches(WHO, dumps(contact("m9", email="ANNA@example.nl")))
    assert matches(WHO, dumps(contact("m9", phone="06 11122233")))
    # The same address at another tenant is another tenant's resident.
    assert not matches(WHO, dumps(contact("m9", tenant="coevorden", email="anna@example.nl")))
    # Team work items, a follow-up of the contact, a callback item, by header.
    assert matches(WHO, dumps({"contact": mine, "routing": {"team": "kcc"}}))
    assert matches(WHO, dumps({"contact": {**theirs, "id": OTHER}, "routing": {"follow_up_of": CID}}))
    assert matches(WHO, dumps({"contact": theirs, "callback_request": {"contact_id": CID}}))
    assert not matches(WHO, dumps({"contact": theirs, "routing": {"team": "kcc"}}))
    assert matches(WHO, b"{}", {"x-contact-id": CID.encode()})
    # Another municipality's message is not the subject's, whatever contact id it is given.
    elsewhere = {**contact("m1", tenant="coevorden", email="anna@example.nl")}
    assert not matches(WHO, dumps({"contact": elsewhere}), {"x-contact-id": CID})
    assert not matches(WHO, dumps({"tenant": "coevorden", "contact_id": CID}))
    # Escalations (ids only), by contact id or reference.
    assert matches(WHO, dumps({"event": "deadline.breached", "tenant": "ommen", "contact_id": CID}))
    by_ref = subject("ommen", references=[reference_for("ommen", CID)])
    assert matches(
        by_ref,
        dumps({"event": "deadline.breached", "contact_id": OTHER, "reference": reference_for("ommen", CID)}),
    )
    assert matches(by_ref, dumps(contact("m1")))
    assert not matches(WHO, dumps({"event": "deadline.breached", "tenant": "ommen", "contact_id": OTHER}))
    # A raw mail an adapter could not parse: by the address or number in it, for the tenant's key.
    raw = b"From: Anna <Anna@Example.nl>\r\nSubject: hoi\r\n\r\nBel 0611122233"
    assert matches(WHO, raw, {}, "ommen.mail")
    assert not matches(WHO, raw, {}, "coevorden.mail")
    assert matches(subject("ommen", phones=["+31611122233"]), b"Bel me op 0611122233", {}, "ommen.mail")
    assert not matches(WHO, b"From: someone@example.nl", {}, "ommen.mail")


def test_matches_other_json_an_adapter_dead_lettered_by_the_address_or_number_in_it() -> None:
    """A web form or webhook body that failed validation is JSON but no contact: searched as text."""
    form = dumps({"email": "anna@example.nl", "message": "hoi"})
    assert matches(WHO, form, {}, "ommen.webform")
    assert not matches(WHO, form, {}, "coevorden.webform")
    whatsapp = dumps({"entry": [{"changes": [{"value": {"contacts": [{"wa_id": "31611122233"}]}}]}]})
    assert matches(subject("ommen", phones=["+31611122233"]), whatsapp, {}, "ommen.social")
    assert not matches(WHO, dumps({"email": "someone@example.nl"}), {}, "ommen.webform")
    # Someone else's contact that mentions the address is theirs, not the subject's.
    mentions = {**contact("m7", email="someone@example.nl"), "id": OTHER, "body": "anna@example.nl"}
    assert not matches(WHO, dumps(mentions), {}, "ommen.mail")


# -- the runner over the ports ---------------------------------------------------------------------


class FakeStore:
    def __init__(self, name: str, finds: set[str] = frozenset(), fail: bool = False):  # type: ignore[assignment]
        self.name = name
        self.finds = set(finds)
        self.fail = fail
        self.erased: list[Subject] = []
        self.purged: list[tuple[datetime, bool]] = []

    async def find(self, who: Subject) -> set[str]:
        return self.finds

    async def erase(self, who: Subject) -> Removal:
        if self.fail:
            raise ConnectionError("away")
        self.erased.append(who)
        return Removal(self.name, set(who.contact_ids), {"things": len(who.contact_ids)})

    async def purge(self, policy: RetentionPolicy, now: datetime, *, dry_run: bool) -> Removal:
        self.purged.append((now, dry_run))
        await asyncio.sleep(0.05)
        return Removal(self.name, dry_run=dry_run)


async def test_erasure_asks_every_store_first_then_erases_in_order() -> None:
    a, b = FakeStore("a", {"c1"}), FakeStore("b", {"c2"})
    privacy = Privacy([a, b], RetentionPolicy({}), ManualClock(UTC0))
    found, removed = await privacy.erase(subject("ommen", emails=["x@y.nl"]))
    assert found.contact_ids == {"c1", "c2"}
    assert [r.store for r in removed] == ["a", "b"]
    assert a.erased == b.erased == [found]
    with pytest.raises(ValueError):
        await privacy.erase(subject("ommen"))


async def test_a_failing_store_says_what_was_done() -> None:
    a, b, c = FakeStore("a", {"c1"}), FakeStore("b", fail=True), FakeStore("c")
    with pytest.raises(ErasureIncomplete) as err:
        await Privacy([a, b, c], RetentionPolicy({}), ManualClock(UTC0)).erase(
            subject("ommen", contact_ids=["c0"])
        )
    assert err.value.store == "b" and [r.store for r in err.value.done] == ["a"]
    assert err.value.subject.contact_ids == {"c0", "c1"} and c.erased == []


class MemoryLock:
    def __init__(self) -> None:
        self.holder: str | None = None

    async def acquire(self, ttl_ms: int) -> str | None:
        if self.holder is not None:
            return None
        self.holder = uuid.uuid4().hex
        return self.holder

    async def release(self, token: str) -> None:
        if self.holder == token:
            self.holder = None


async def test_periodic_purge_runs_one_at_a_time_with_the_clock_and_stops() -> None:
    store, lock, clock = FakeStore("a"), MemoryLock(), ManualClock(UTC0)
    privacy = Privacy([store], RetentionPolicy({}), clock)
    one, two = PeriodicPurge(privacy, lock), PeriodicPurge(privacy, lock)
    results = await asyncio.gather(one.run_once(), two.run_once())
    assert sorted(r is None for r in results) == [False, True]
    assert store.purged == [(UTC0, False)] and lock.holder is None

    loop = PeriodicPurge(privacy, lock, interval=0.01, first_after=0.01)
    task = asyncio.create_task(loop.run())
    for _ in range(200):
        if loop.runs >= 3:
            break
        await asyncio.sleep(0.01)
    loop.stop()
    await asyncio.wait_for(task, 2)
    assert loop.runs >= 3


async def test_periodic_purge_survives_a_failing_run() -> None:
    class Failing(FakeStore):
        async def purge(self, policy: RetentionPolicy, now: datetime, *, dry_run: bool) -> Removal:
            raise ConnectionError("away")

    lock = MemoryLock()
    loop = PeriodicPurge(
        Privacy([Failing("a")], RetentionPolicy({}), ManualClock(UTC0)), lock, interval=0.01, first_after=0
    )
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.1)
    loop.stop()
    await asyncio.wait_for(task, 2)
    assert lock.holder is None  # released after each failure, so the next run can take it


async def test_a_contact_that_turns_up_during_the_erasure_is_erased_too() -> None:
    """Routed from router.contacts while the other stores were erased: a second round takes it."""

    class Arriving(FakeStore):
        async def find(self, who: Subject) -> set[str]:
            return {"c1", "c2"} if self.erased else {"c1"}

    a, b = Arriving("a"), FakeStore("b")
    found, removed = await Privacy([a, b], RetentionPolicy({}), ManualClock(UTC0)).erase(
        subject("ommen", emails=["x@y.nl"])
    )
    assert found.contact_ids == {"c1", "c2"}
    assert [r.store for r in removed] == ["a", "b", "a", "b"]
    assert b.erased[-1].contact_ids == {"c1", "c2"}


def test_the_erasure_scrubs_the_router_queue_first_and_the_historys_queue_too() -> None:
    from router.amqp.scrub import QueuePersonalData
    from router.core.topology import Names

    queues = [
        q for _, q in QueuePersonalData("amqp://x", Names("t."), {"ommen": ["kcc"]}).queues_for("ommen")
    ]
    assert queues[0] == "t.router.contacts"
    assert "t.history.events" in queues and "t.team.ommen.kcc" in queues
