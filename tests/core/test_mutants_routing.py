"""The routing decision, field by field (scripts/mutation): what route() and follow_up() hand the store
and the broker, exactly, and why parse() refuses. The behaviour tests elsewhere check where a contact
goes; these pin the names and values of what is written, so that a changed key, flag or bound fails here
without a server."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from router.core import topology
from router.core.casework import NO_DEADLINE_SCORE
from router.core.clock import epoch_ms
from router.core.contact import Contact, Sender, Source
from router.core.messages import ONCE_PER_CONTACT
from router.core.ports import Delivery, Join
from router.core.routing import (
    MAX_BODY_BYTES,
    deadline_timers,
    follow_up,
    own_thread_ids,
    parse,
    route,
    thread_hints,
)
from router.core.tenants import load
from router.core.topology import Names

ROOT = Path(__file__).resolve().parents[2]
TENANTS = load(ROOT / "rules")
AMS = ZoneInfo("Europe/Amsterdam")
WED_10 = datetime(2026, 5, 13, 10, 0, tzinfo=AMS)  # Hemelvaartsdag is Thu 14 May 2026
NAMES = Names("t.")
EVENTS = NAMES(topology.EVENTS)
TEAMS = NAMES(topology.TEAMS)


def mail(
    tenant: str = "ommen", channel: str = "mail", subject: str = "Algemene vraag", **metadata: str
) -> Contact:
    return Contact(
        tenant=tenant,
        channel=channel,
        received_at=WED_10,
        source=Source(adapter="test", native_id=f"{channel}-{subject}-{sorted(metadata.items())}"),
        sender=Sender(name="Inwoner", email="inwoner@example.org", phone="+31612345678"),
        subject=subject,
        body="Tekst",
        metadata=metadata,
    )


def delivery(body: bytes) -> Delivery:
    return Delivery(body=body, message_id="m", routing_key="ommen.mail", headers={}, redelivered=False)


def body_of(message: object) -> dict:
    return json.loads(message.body)  # type: ignore[attr-defined]


# -- parse ----------------------------------------------------------------------------------------


def test_parse_refuses_a_body_past_the_limit_and_takes_one_at_it() -> None:
    raw = mail().model_dump_json().encode()
    at_limit = raw + b" " * (MAX_BODY_BYTES - len(raw))
    assert len(at_limit) == MAX_BODY_BYTES
    parsed = parse(delivery(at_limit), TENANTS, WED_10)
    assert not isinstance(parsed, str)
    assert parsed[0].cid == mail().cid and parsed[1] is TENANTS["ommen"]
    over = at_limit + b" "
    assert parse(delivery(over), TENANTS, WED_10) == (
        f"body too large: {MAX_BODY_BYTES + 1} bytes (limit {MAX_BODY_BYTES})"
    )


def test_parse_says_why_a_contact_cannot_be_routed() -> None:
    assert parse(delivery(b"{not json"), TENANTS, WED_10).startswith("malformed JSON: ")  # type: ignore[union-attr]
    assert parse(delivery(b"[1]"), TENANTS, WED_10).startswith("invalid contact: ")  # type: ignore[union-attr]
    missing = json.loads(mail().model_dump_json())
    del missing["channel"]
    assert parse(delivery(json.dumps(missing).encode()), TENANTS, WED_10) == (
        "invalid contact: channel: Field required"
    )
    other = mail(tenant="nergens").model_dump_json().encode()
    assert parse(delivery(other), TENANTS, WED_10) == "unknown tenant: no rules for the contact's tenant"
    early = WED_10 - timedelta(hours=2)  # the contact is two hours ahead of this router's clock
    assert parse(delivery(mail().model_dump_json().encode()), TENANTS, early) == (
        "invalid contact: received_at: is more than 60 minutes in the future"
    )


# -- threads --------------------------------------------------------------------------------------


def test_own_thread_ids_are_the_message_id_and_the_acknowledgements_in_that_order() -> None:
    both = mail(**{"thread.ack_message_id": "<ack@x>", "thread.message_id": "<own@x>"})
    assert own_thread_ids(both) == ["<own@x>", "<ack@x>"]
    assert own_thread_ids(mail(**{"thread.message_id": ""})) == []
    assert own_thread_ids(mail(**{"thread.ack_message_id": "<ack@x>"})) == ["<ack@x>"]


def test_thread_hints_take_the_tenants_own_reference_and_at_most_twenty_message_ids() -> None:
    ids = " ".join(f"<m{i}@x>" for i in range(25))
    refs, found = thread_hints(mail(subject="Re: uw zaak omm-5kq3-zp7a", **{"thread.in_reply_to": ids}))
    assert refs == ["OMM-5KQ3-ZP7A"]
    assert found == [f"<m{i}@x>" for i in range(20)]
    assert thread_hints(mail(subject="Re: uw zaak COE-5KQ3-ZP7A")) == ([], [])
    assert thread_hints(mail(subject="geen nummer")) == ([], [])


# -- route: a mail ------------------------------------------------------------------------------


def test_a_routed_mail_is_staged_with_exactly_these_fields_history_timers_and_score() -> None:
    c = mail(**{"thread.message_id": "<own@x>"})
    r = route(c, TENANTS["ommen"], NAMES, WED_10 + timedelta(minutes=1), "tok")
    now = WED_10 + timedelta(minutes=1)
    assert r.summary == "routed"
    assert r.contact.category == r.decision.category
    assert [h.kind for h in r.contact.hops] == ["routed"]
    assert (r.contact.hops[0].team, r.contact.hops[0].at, r.contact.hops[0].note) == (
        r.decision.team,
        now,
        None,
    )
    deadlines = [d.as_dict() for d in r.deadlines]
    assert [d["kind"] for d in deadlines] == ["acknowledge", "respond"]
    s = r.staged
    assert (s.cid, s.tenant, s.team, s.token) == (c.cid, "ommen", r.decision.team, "tok")
    assert s.fields == {
        "contact": r.contact.model_dump_json(),
        "tenant": "ommen",
        "channel": "mail",
        "team": r.decision.team,
        "category": r.decision.category or "",
        "rule": r.decision.rule,
        "status": "routing",
        "transfers": "0",
        "version": "1",
        "received_at": WED_10.isoformat(),
        "routed_at": now.isoformat(),
        "deadlines": s.fields["deadlines"],
        "callbacks": "0",
    }
    assert json.loads(s.fields["deadlines"]) == deadlines
    assert [json.loads(h) for h in s.history] == [
        {
            "event": "contact.routed",
            "at": now.isoformat(),
            "team": r.decision.team,
            "rule": r.decision.rule,
            "rule_at": r.decision.where,
            "reasons": list(r.decision.reasons),
        }
    ]
    respond = next(d for d in r.deadlines if d.kind == "respond")
    # "immediately" (the acknowledgement) has no timers; the reaction a warning and a breach.
    assert s.timers == [
        (f"{c.cid}|respond|warning", epoch_ms(respond.warning_at)),
        (f"{c.cid}|respond|breach", epoch_ms(respond.due)),
    ]
    assert s.team_score_ms == epoch_ms(respond.due)
    assert (s.reference, s.thread_ids, s.final_status) == (c.reference, ["<own@x>"], "routed")
    assert (s.callbacks, s.listed, s.join, s.thread_target) == ({}, [], None, None)


def test_a_routed_mail_publishes_the_team_item_then_received_then_routed() -> None:
    c = mail()
    r = route(c, TENANTS["ommen"], NAMES, WED_10, "tok")
    item, received, routed = r.messages
    deadlines = [d.as_dict() for d in r.deadlines]
    assert (item.exchange, item.routing_key, item.message_id) == (TEAMS, f"ommen.{r.decision.team}", c.cid)
    assert item.headers == {
        topology.H_CONTACT_ID: c.cid,
        topology.H_IDEMPOTENCY: c.idempotency_key,
        topology.H_RULE: r.decision.rule,
    }
    assert body_of(item) == {
        "contact": json.loads(r.contact.model_dump_json()),
        "routing": {
            "team": r.decision.team,
            "category": r.decision.category,
            "rule": r.decision.rule,
            "rule_at": r.decision.where,
            "reasons": list(r.decision.reasons),
            "deadlines": deadlines,
            "transfers": 0,
            "transfer_limit": 1,
        },
    }
    common = {"tenant": "ommen", "contact_id": c.cid, "channel": "mail", "at": WED_10.isoformat()}
    assert (received.exchange, received.routing_key) == (EVENTS, "ommen.contact.received")
    assert {k: v for k, v in body_of(received).items() if k != "event_id"} == {
        "event": "contact.received",
        "received_at": WED_10.isoformat(),
        **common,
    }
    assert body_of(received)["event_id"] == received.message_id
    assert (routed.exchange, routed.routing_key) == (EVENTS, "ommen.contact.routed")
    assert {k: v for k, v in body_of(routed).items() if k != "event_id"} == {
        "event": "contact.routed",
        "team": r.decision.team,
        "rule": r.decision.rule,
        "category": r.decision.category,
        "deadlines": deadlines,
        **common,
    }


def test_routing_a_contact_again_repeats_its_events_under_the_same_ids() -> None:
    """A batch routed again after a failed publish (confirms on a cluster) sends its events again: under
    the ids of the first attempt, so that subscribers drop the copies; another contact's differ."""
    c = mail()
    first = route(c, TENANTS["ommen"], NAMES, WED_10, "tok")
    again = route(c, TENANTS["ommen"], NAMES, WED_10 + timedelta(seconds=5), "tok2")
    other = route(mail(subject="Iets anders"), TENANTS["ommen"], NAMES, WED_10, "tok")
    ids = [m.message_id for m in first.messages[1:]]
    assert ids == [m.message_id for m in again.messages[1:]]
    assert [body_of(m)["event_id"] for m in again.messages[1:]] == ids
    assert len(set(ids)) == 2 and not set(ids) & {m.message_id for m in other.messages[1:]}
    # Name-based UUIDs (version 5) of the contact id and the event, as any system can derive them.
    assert ids == [
        str(uuid.uuid5(ONCE_PER_CONTACT, f"{c.cid}/{e}")) for e in ("contact.received", "contact.routed")
    ]


def test_a_contact_is_listed_by_its_soonest_open_deadline_of_any_kind() -> None:
    # An Ommen letter has an acknowledgement (5 workdays) and no reaction norm: listed by the former.
    r = route(mail(channel="post"), TENANTS["ommen"], NAMES, WED_10, "tok")
    assert "respond" not in [d.kind for d in r.deadlines]
    ack = next(d for d in r.deadlines if d.kind == "acknowledge")
    assert r.staged.team_score_ms == epoch_ms(ack.due)
    # A Coevorden mail: acknowledgement within a day comes before the reaction in five workdays.
    c = mail(channel="mail").model_copy(update={"tenant": "coevorden"})
    r = route(c, TENANTS["coevorden"], NAMES, WED_10, "tok")
    ack, respond = (next(d for d in r.deadlines if d.kind == k) for k in ("acknowledge", "respond"))
    assert ack.due < respond.due and r.staged.team_score_ms == epoch_ms(ack.due)
    # ...unless the adapter already acknowledged it: then the reaction.
    sent = c.model_copy(update={"metadata": {**c.metadata, "acknowledged_at": WED_10.isoformat()}})
    assert route(sent, TENANTS["coevorden"], NAMES, WED_10, "tok").staged.team_score_ms == epoch_ms(
        respond.due
    )
    # Nothing open ("immediately" is the adapter's): last.
    r = route(
        mail(channel="webform").model_copy(update={"tenant": "coevorden"}),
        TENANTS["coevorden"],
        NAMES,
        WED_10,
        "t",
    )
    assert [str(d.term) for d in r.deadlines] == ["immediately"]
    assert r.staged.team_score_ms == NO_DEADLINE_SCORE


def test_deadline_timers_skip_immediately_and_an_acknowledgement_already_sent() -> None:
    tenant = TENANTS["ommen"]
    post = mail(channel="post")  # acknowledge in 5 workdays
    deadlines = tenant.deadlines_for("post", None, WED_10)
    ack = next(d for d in deadlines if d.kind == "acknowledge")
    assert deadline_timers(post, [ack]) == [
        (f"{post.cid}|acknowledge|warning", epoch_ms(ack.warning_at)),
        (f"{post.cid}|acknowledge|breach", epoch_ms(ack.due)),
    ]
    sent = mail(channel="post", acknowledged_at=WED_10.isoformat())
    assert deadline_timers(sent, [ack]) == []
    respond = next(d for d in tenant.deadlines_for("mail", None, WED_10) if d.kind == "respond")
    assert [m for m, _ in deadline_timers(sent, [respond])] == [
        f"{sent.cid}|respond|warning",
        f"{sent.cid}|respond|breach",
    ]


# -- route: phone notes ---------------------------------------------------------------------------


def phone(**metadata: str) -> Contact:
    return mail(channel="phone", **metadata)


def test_a_phone_note_answered_is_closed_unlisted_and_publishes_no_team_item() -> None:
    r = route(
        phone(**{"phone.outcome": "answered", "phone.agent": "a1"}), TENANTS["ommen"], NAMES, WED_10, "t"
    )
    assert r.summary == "answered"
    s = r.staged
    assert (s.final_status, s.team_score_ms, s.timers) == ("closed", None, [])
    assert s.fields["status"] == "routing"  # final once the broker has the events (Store.commit)
    assert (s.fields["resolution"], s.fields["closed_at"]) == ("answered on the phone", WED_10.isoformat())
    assert [m.routing_key for m in r.messages] == [
        "ommen.contact.received",
        "ommen.contact.routed",
        "ommen.contact.closed",
    ]
    assert [json.loads(h)["event"] for h in s.history] == ["contact.routed", "contact.closed"]


def test_a_phone_note_to_an_unknown_team_is_noted_and_routed_as_it_is() -> None:
    r = route(
        phone(**{"phone.outcome": "transferred", "phone.to_team": "nergens"}),
        TENANTS["ommen"],
        NAMES,
        WED_10,
        "t",
    )
    assert r.summary == "routed"
    assert [json.loads(h) for h in r.staged.history][1] == {
        "event": "phone.to_team_unknown",
        "at": WED_10.isoformat(),
        "to_team": "nergens",
    }


def test_a_phone_note_transferred_moves_it_and_the_item_goes_to_the_new_team_only() -> None:
    r = route(
        phone(**{"phone.outcome": "transferred", "phone.to_team": "burgerzaken", "phone.agent": "a1"}),
        TENANTS["ommen"],
        NAMES,
        WED_10,
        "t",
    )
    assert r.summary == "transferred"
    assert (r.staged.team, r.staged.fields["transfers"]) == ("burgerzaken", "1")
    teams = [m for m in r.messages if m.exchange == TEAMS]
    assert [m.routing_key for m in teams] == ["ommen.burgerzaken"]
    assert body_of(teams[0])["routing"]["transfers"] == 1
    assert [m.routing_key for m in r.messages if m.exchange == EVENTS] == [
        "ommen.contact.received",
        "ommen.contact.routed",
        "ommen.contact.transferred",
    ]
    # the work-list entry for the team it left is not staged: the contact was never listed there
    assert r.staged.listed == []


def test_a_phone_note_transferred_to_its_own_team_is_routed_as_it_is() -> None:
    first = route(phone(), TENANTS["ommen"], NAMES, WED_10, "t").staged.team
    r = route(
        phone(**{"phone.outcome": "transferred", "phone.to_team": first}),
        TENANTS["ommen"],
        NAMES,
        WED_10,
        "t",
    )
    assert (r.summary, r.staged.team, r.staged.fields["transfers"]) == ("routed", first, "0")


def test_a_phone_note_colleague_unavailable_carries_the_callback_in_the_team_item() -> None:
    meta = {"phone.outcome": "colleague_unavailable", "phone.preferred_time": "na 14:00", "phone.agent": "a1"}
    r = route(phone(**meta), TENANTS["ommen"], NAMES, WED_10, "t")
    assert r.summary == "callback_requested"
    ((n, cb),) = r.staged.callbacks.items()
    assert n == 1
    assert (cb["team"], cb["reason"], cb["preferred_time"], cb["origin"], cb["created_by"]) == (
        r.staged.team,
        "Algemene vraag",  # no note: the subject
        "na 14:00",
        "phone_note",
        "a1",
    )
    assert cb["phone"] == "+31612345678"  # the sender's number
    item = next(m for m in r.messages if m.exchange == TEAMS)
    assert body_of(item)["callback_request"] == {k: v for k, v in cb.items() if k != "tenant"}
    assert [e[1] for e in r.staged.listed] == [f"{r.staged.cid}-cb1"]
    assert sorted(m for m, _ in r.staged.timers) == sorted(
        [m for m, _ in deadline_timers(r.contact, r.deadlines)]
        + [f"{r.staged.cid}-cb1|callback|warning", f"{r.staged.cid}-cb1|callback|breach"]
    )


def test_a_callback_reason_is_the_note_then_the_subject_then_a_default() -> None:
    def reason(c: Contact) -> str:
        return route(c, TENANTS["ommen"], NAMES, WED_10, "t").staged.callbacks[1]["reason"]

    assert reason(phone(**{"phone.outcome": "colleague_unavailable", "phone.note": "bel na 3"})) == "bel na 3"
    no_subject = phone(**{"phone.outcome": "colleague_unavailable"}).model_copy(update={"subject": None})
    assert reason(no_subject) == "terugbelverzoek"


def test_a_phone_note_with_an_unknown_outcome_is_routed_as_it_is() -> None:
    r = route(phone(**{"phone.outcome": "iets anders"}), TENANTS["ommen"], NAMES, WED_10, "t")
    assert (r.summary, r.staged.callbacks, r.staged.final_status) == ("routed", {}, "routed")
    assert len(r.staged.history) == 1


# -- follow_up ------------------------------------------------------------------------------------


def test_a_reply_joins_its_target_with_exactly_these_fields_and_messages() -> None:
    c = mail(subject="Re: vraag", **{"thread.message_id": "<re@x>"})
    target = "0f0e0d0c-0b0a-4908-8706-050403020100"
    now = WED_10 + timedelta(minutes=5)
    r = follow_up(c, NAMES, now, "tok", {"id": target, "team": "burgerzaken"})
    assert (r.summary, r.deadlines, r.contact) == ("joined", [], c)
    d = r.decision
    assert (d.team, d.category, d.rule, d.rule_line, d.file, d.reasons) == (
        "burgerzaken",
        None,
        "follow-up",
        0,
        "(thread)",
        (f"reply to contact {target}",),
    )
    s = r.staged
    assert (s.cid, s.tenant, s.team, s.token, s.reference) == (
        c.cid,
        "ommen",
        "burgerzaken",
        "tok",
        c.reference,
    )
    assert s.fields == {
        "contact": c.model_dump_json(),
        "tenant": "ommen",
        "channel": "mail",
        "team": "burgerzaken",
        "category": "",
        "rule": "follow-up",
        "status": "routing",
        "transfers": "0",
        "version": "1",
        "received_at": WED_10.isoformat(),
        "routed_at": now.isoformat(),
        "deadlines": "[]",
        "callbacks": "0",
        "merged_into": target,
    }
    assert [json.loads(h) for h in s.history] == [
        {"event": "contact.merged", "at": now.isoformat(), "into": target}
    ]
    assert (s.team_score_ms, s.thread_ids, s.thread_target, s.final_status) == (
        None,
        ["<re@x>"],
        target,
        "merged",
    )
    assert (s.timers, s.callbacks, s.listed) == ([], {}, [])
    assert s.join is not None
    assert (s.join.target, s.join.tenant, s.join.team, s.join.score_ms) == (
        target,
        "ommen",
        "burgerzaken",
        NO_DEADLINE_SCORE,
    )
    assert isinstance(s.join, Join)
    assert json.loads(s.join.event) == {
        "event": "contact.reply",
        "at": now.isoformat(),
        "reply_id": c.cid,
        "channel": "mail",
        "received_at": WED_10.isoformat(),
    }
    item, event = r.messages
    assert (item.exchange, item.routing_key, item.message_id) == (TEAMS, "ommen.burgerzaken", c.cid)
    assert item.headers == {
        topology.H_CONTACT_ID: c.cid,
        topology.H_IDEMPOTENCY: c.idempotency_key,
        topology.H_RULE: "follow-up",
    }
    assert body_of(item) == {
        "contact": json.loads(c.model_dump_json()),
        "routing": {"team": "burgerzaken", "follow_up_of": target, "rule": "follow-up"},
    }
    assert (event.exchange, event.routing_key) == (EVENTS, "ommen.contact.reply")
    assert {k: v for k, v in body_of(event).items() if k != "event_id"} == {
        "event": "contact.reply",
        "at": now.isoformat(),
        "reply_id": c.cid,
        "team": "burgerzaken",
        "tenant": "ommen",
        "contact_id": target,
        "channel": "mail",
    }


def test_times_are_written_as_given() -> None:
    at = datetime(2026, 5, 13, 8, 0, tzinfo=UTC)
    r = route(mail(), TENANTS["ommen"], NAMES, at, "t")
    assert r.staged.fields["routed_at"] == "2026-05-13T08:00:00+00:00"


# -- found by scripts/mutation --------------------------------------------------------------------


def test_a_categorised_contact_gets_the_categorys_deadlines_and_carries_the_category() -> None:
    c = mail(subject="Gevaarlijke situatie: omgevallen boom")
    r = route(c, TENANTS["ommen"], NAMES, WED_10, "t")
    assert (r.decision.category, r.decision.team) == ("gevaar", "openbare_ruimte")
    assert r.contact.category == "gevaar"
    assert json.loads(r.staged.fields["contact"])["category"] == "gevaar"
    respond = next(d for d in r.deadlines if d.kind == "respond")
    assert str(respond.term) == "3 hours"  # the category's norm, not the mail channel's 5 workdays
    routed = body_of(r.messages[2])
    assert (routed["event"], routed["category"]) == ("contact.routed", "gevaar")


def test_a_phone_note_answered_ends_with_no_timers_even_with_deadlines() -> None:
    note = phone(**{"phone.outcome": "answered"}).model_copy(update={"subject": "Gevaarlijke situatie"})
    r = route(note, TENANTS["ommen"], NAMES, WED_10, "t")
    assert "respond" in [d.kind for d in r.deadlines]
    assert (r.staged.final_status, r.staged.timers, r.staged.team_score_ms) == ("closed", [], None)


def test_a_phone_note_carries_the_agent_and_the_note_into_what_it_does() -> None:
    meta = {"phone.agent": "a1", "phone.note": "wil paspoort"}
    r = route(phone(**{"phone.outcome": "answered"}, **meta), TENANTS["ommen"], NAMES, WED_10, "t")
    assert json.loads(r.staged.history[1])["agent"] == "a1"
    r = route(
        phone(**{"phone.outcome": "transferred", "phone.to_team": "burgerzaken"}, **meta),
        TENANTS["ommen"],
        NAMES,
        WED_10,
        "t",
    )
    hop = r.contact.hops[-1]
    assert (hop.kind, hop.agent, hop.note) == ("transferred", "a1", "wil paspoort")


def test_a_phone_note_transferred_past_the_limit_says_callback_requested() -> None:
    tenant = TENANTS["ommen"]
    rules = tenant.loaded.rules.model_copy(update={"transfer_limit": 0})
    tenant = dataclasses.replace(tenant, loaded=dataclasses.replace(tenant.loaded, rules=rules))
    note = phone(**{"phone.outcome": "transferred", "phone.to_team": "burgerzaken"})
    r = route(note, tenant, NAMES, WED_10, "t")
    assert (r.summary, r.staged.team, r.staged.callbacks[1]["team"]) == (
        "callback_requested",
        "kcc",
        "burgerzaken",
    )


def test_a_phone_note_whose_agent_is_no_id_names_no_agent_in_its_events() -> None:
    # Published to `contacts` directly, past the phone adapter (which refuses it): free text stays in
    # the contact's record, and no event carries it.
    note = phone(**{"phone.outcome": "answered", "phone.agent": "jan@ommen.nl"})
    r = route(note, TENANTS["ommen"], NAMES, WED_10, "t")
    closed = body_of([m for m in r.messages if m.exchange == EVENTS][-1])
    assert (closed["event"], closed["agent"], closed["by"]) == ("contact.closed", None, None)
    assert json.loads(r.staged.history[1])["agent"] == "jan@ommen.nl"
    assert all("jan@ommen.nl" not in m.body for m in r.messages if m.exchange == EVENTS)
