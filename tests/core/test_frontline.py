"""Case work as frontline agents live it (issue 16), as plain decisions: the deadline a work list shows,
terms counted from the call, callbacks that can end, the coordinating team's final assignment, and
extensions the resident is told about. No Redis, no RabbitMQ."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from router.core import casework, topology
from router.core.calendar.terms import Term
from router.core.casework import CaseError, CaseState, Desk
from router.core.clock import epoch_ms
from router.core.contact import Contact, Sender, Source
from router.core.deadlines import NO_DEADLINE_SCORE, soonest_open, time_left
from router.core.phones import e164_or_as_is
from router.core.routing import route
from router.core.rules import CallbackPolicy
from router.core.tenants import Tenant
from tests.core.test_casework_decisions import AMS, NAMES, TENANTS, apply, with_limit

MON_1630 = datetime(2026, 5, 11, 16, 30, tzinfo=AMS)
TUE_2000 = datetime(2026, 5, 12, 20, 0, tzinfo=AMS)
WED_10 = datetime(2026, 5, 13, 10, 0, tzinfo=AMS)


def note(tenant: str, at: datetime, **metadata: str) -> Contact:
    return Contact(
        tenant=tenant,
        channel="phone",
        received_at=at,
        source=Source(adapter="phone", native_id=f"call-{at.isoformat()}-{sorted(metadata.items())}"),
        sender=Sender(name="Inwoner", phone="+31612345678"),
        subject="Vraag",
        body="Notitie",
        metadata={"phone.agent": "kcc-1", **metadata},
    )


def written(tenant: str, channel: str = "mail", subject: str = "Vraag", email: str | None = None) -> Contact:
    return Contact(
        tenant=tenant,
        channel=channel,
        received_at=WED_10,
        source=Source(adapter="test", native_id=f"{tenant}-{channel}-{subject}-{email}"),
        sender=Sender(name="Inwoner", email=email, phone="06 12345678"),
        subject=subject,
        body="Tekst",
    )


def routed(tenant: Tenant, c: Contact, at: datetime = WED_10) -> CaseState:
    staged = route(c, tenant, NAMES, at, "token").staged
    return CaseState(staged.cid, {**staged.fields, "status": staged.final_status}, dict(staged.callbacks))


def desk(tenant: Tenant, at: datetime = WED_10, mails: bool = False) -> Desk:
    return Desk(tenant, NAMES, at, mails)


def with_policy(tenant: Tenant, attempts: int, then: str) -> Tenant:
    policy = CallbackPolicy(attempts=attempts, then=then)  # type: ignore[arg-type]
    rules = tenant.loaded.rules.model_copy(update={"callback_policy": policy})
    return dataclasses.replace(tenant, loaded=dataclasses.replace(tenant.loaded, rules=rules))


def bodies(messages: list[Any], exchange: str) -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in messages if m.exchange == NAMES(exchange)]


# -- 1. the work list: the soonest open deadline of any kind, on its own clock ------------------------


def test_hour_terms_count_clock_time_and_workday_terms_working_time() -> None:
    calendar = TENANTS["ommen"].calendar
    night = datetime(2026, 5, 13, 22, 0, tzinfo=AMS)
    due = night + timedelta(seconds=60)  # a danger report with 60 s of its 3 hours left, at night
    assert time_left(calendar, night, due, "3 hours") == timedelta(seconds=60)
    assert calendar.working_time_left(night, due) == timedelta(0)  # what the list showed before
    # a workday term counts office time only: Wed 22:00 -> Fri 17:00 (Thursday is Hemelvaartsdag)
    friday = datetime(2026, 5, 15, 17, 0, tzinfo=AMS)
    assert time_left(calendar, night, friday, "2 workdays") == timedelta(hours=8, minutes=30)
    assert time_left(calendar, friday, night, "2 days") < timedelta(0)  # overdue: negative


def test_soonest_open_skips_met_immediate_and_acknowledged_deadlines() -> None:
    deadlines = [
        {"kind": "acknowledge", "term": "immediately", "due": "2026-05-13T10:00:00+02:00"},
        {"kind": "respond", "term": "5 workdays", "due": "2026-05-20T17:00:00+02:00"},
        {"kind": "resolve", "term": "6 weeks", "due": "2026-06-24T17:00:00+02:00"},
    ]
    first = soonest_open(deadlines, {})
    assert first is not None and (first.kind, first.term) == ("respond", "5 workdays")
    first = soonest_open(deadlines, {"met:respond": "x"})
    assert first is not None and first.kind == "resolve"
    assert soonest_open(deadlines, {"met:respond": "x", "met:resolve": "y"}) is None
    ack = [{"kind": "acknowledge", "term": "1 day", "due": "2026-05-14T17:00:00+02:00"}]
    assert soonest_open(ack, {}, acknowledged=True) is None


def test_meeting_the_first_deadline_moves_the_item_to_the_next_one() -> None:
    coevorden = TENANTS["coevorden"]
    state = routed(coevorden, written("coevorden"))
    ack, respond = (next(d for d in state.deadlines() if d["kind"] == k) for k in ("acknowledge", "respond"))
    assert casework.contact_score(state) == epoch_ms(datetime.fromisoformat(ack["due"]))
    change, _ = casework.record_response(state, desk(coevorden), kind="acknowledge", note=None, agent="a")
    assert change.listed_add == [(state.team, state.cid, epoch_ms(datetime.fromisoformat(respond["due"])))]
    done = apply(state, change)
    change, _ = casework.record_response(done, desk(coevorden), kind="respond", note=None, agent="a")
    assert change.listed_add == [(state.team, state.cid, NO_DEADLINE_SCORE)]


# -- 2. phone notes: terms count from the call ----------------------------------------------------------


def test_coevorden_call_monday_1630_logged_tuesday_2000_callback_due_wednesday_closing_time() -> None:
    c = note(
        "coevorden", MON_1630, **{"phone.outcome": "colleague_unavailable", "phone.to_team": "burgerzaken"}
    )
    decided = route(c, TENANTS["coevorden"], NAMES, TUE_2000, "t")
    (cb,) = decided.staged.callbacks.values()
    # Monday before closing is day 0; two workdays: Tuesday, Wednesday. From the logging (Tuesday 20:00)
    # it would have been Monday 18 May (Thursday 14 is Hemelvaartsdag).
    assert cb["due"] == "2026-05-13T17:00:00+02:00"
    assert (cb["counted_from"], cb["created_at"]) == (MON_1630.isoformat(), TUE_2000.isoformat())
    assert bodies(decided.messages, topology.ESCALATIONS) == []  # not due yet: a timer, no escalation


def test_a_phone_transfer_refused_at_the_limit_counts_the_callback_from_the_call_too() -> None:
    tenant = with_limit(TENANTS["coevorden"], 0)
    c = note("coevorden", MON_1630, **{"phone.outcome": "transferred", "phone.to_team": "burgerzaken"})
    decided = route(c, tenant, NAMES, TUE_2000, "t")
    assert decided.summary == "callback_requested"
    (cb,) = decided.staged.callbacks.values()
    assert cb["due"] == "2026-05-13T17:00:00+02:00"


def test_a_note_older_than_its_callback_deadline_arrives_escalated() -> None:
    call = datetime(2026, 5, 4, 10, 0, tzinfo=AMS)
    c = note("coevorden", call, **{"phone.outcome": "colleague_unavailable", "phone.to_team": "burgerzaken"})
    decided = route(c, TENANTS["coevorden"], NAMES, WED_10, "t")
    (cb,) = decided.staged.callbacks.values()
    assert datetime.fromisoformat(cb["due"]) < WED_10
    [escalation] = [m for m in decided.messages if m.exchange == NAMES(topology.ESCALATIONS)]
    body = json.loads(escalation.body)
    assert escalation.message_id == f"escalation:{cb['id']}|callback|breach"  # as the scheduler names it
    assert (body["event"], body["kind"], body["callback_id"], body["team"], body["on_arrival"]) == (
        "deadline.breached",
        "callback",
        cb["id"],
        "burgerzaken",
        True,
    )
    events = [b["event"] for b in bodies(decided.messages, topology.EVENTS)]
    assert events.count("deadline.breached") == 1
    # no timers left to fire it again; the history and the team item say so
    assert not [m for m, _ in decided.staged.timers if m.startswith(cb["id"])]
    history = [json.loads(h) for h in decided.staged.history]
    assert [h["event"] for h in history][-1] == "deadline.breached" and history[-1]["on_arrival"] is True
    [item] = bodies(decided.messages, topology.TEAMS)
    assert item["routing"]["escalated"] == ["callback"]


def test_a_written_contact_routed_after_its_deadline_is_escalated_on_arrival() -> None:
    c = written("ommen").model_copy(update={"received_at": WED_10 - timedelta(days=21)})
    decided = route(c, TENANTS["ommen"], NAMES, WED_10, "t")
    kinds = [
        json.loads(m.body)["kind"] for m in decided.messages if m.exchange == NAMES(topology.ESCALATIONS)
    ]
    assert kinds == ["respond"]
    assert not [m for m, _ in decided.staged.timers if "|respond|" in m]
    # in time: a timer, nothing escalated
    fresh = route(written("ommen"), TENANTS["ommen"], NAMES, WED_10, "t")
    assert [m for m in fresh.messages if m.exchange == NAMES(topology.ESCALATIONS)] == []
    assert [m for m, _ in fresh.staged.timers] == [
        f"{fresh.staged.cid}|respond|warning",
        f"{fresh.staged.cid}|respond|breach",
    ]


# -- 3. callback requests that can end --------------------------------------------------------------


def test_three_refusals_of_one_transfer_make_one_callback_request() -> None:
    tenant = with_limit(TENANTS["ommen"], 0)
    state = routed(tenant, note("ommen", WED_10))
    ids = []
    for agent in ("a1", "a2", "a3"):  # each decision taken on the state the one before left
        change, result = casework.transfer(state, desk(tenant), to_team="burgerzaken", note=None, agent=agent)
        assert isinstance(result, CaseError) and result.status == 409
        ids.append(result.body["callback_request"]["id"])
        state = apply(state, change)
    assert len(set(ids)) == 1 and len(state.callbacks) == 1
    assert state.fields["callbacks"] == "1"
    # another team gets its own; an agent asking the same team again gets the open one
    change, other = casework.request_callback(
        state, desk(tenant), team="vergunningen", reason="r", phone=None, preferred_time=None, agent="a"
    )
    assert other["id"] != ids[0]
    change, same = casework.request_callback(
        state, desk(tenant), team="burgerzaken", reason="nog eens", phone=None, preferred_time=None, agent="b"
    )
    assert same["id"] == ids[0] and change.callbacks == {} and change.outbox == []
    assert [h["event"] for h in change.history] == ["callback.requested_again"]


def test_an_agents_number_is_stored_in_e164() -> None:
    state = routed(TENANTS["ommen"], written("ommen"))
    _, cb = casework.request_callback(
        state,
        desk(TENANTS["ommen"]),
        team="burgerzaken",
        reason="r",
        phone="06 12345678",
        preferred_time=None,
        agent="a",
    )
    assert cb["phone"] == "+31612345678"
    # the sender's number of a contact published directly ("06 12345678") is normalised too
    assert state.contact().sender is not None and state.contact().sender.phone == "06 12345678"  # type: ignore[union-attr]
    _, cb = casework.request_callback(
        state, desk(TENANTS["ommen"]), team="kcc", reason="r", phone=None, preferred_time=None, agent="a"
    )
    assert cb["phone"] == "+31612345678"
    assert e164_or_as_is("niet bekend") == "niet bekend"


@pytest.mark.parametrize("reason", casework.CALLBACK_CLOSE_REASONS)
def test_the_team_closes_a_callback_request_with_a_reason(reason: str) -> None:
    ommen = TENANTS["ommen"]
    state = routed(ommen, note("ommen", WED_10))
    state = apply(
        state,
        casework.request_callback(
            state, desk(ommen), team="burgerzaken", reason="r", phone=None, preferred_time=None, agent="a"
        )[0],
    )
    cbid = f"{state.cid}-cb1"
    change, out = casework.close_callback(
        state, desk(ommen), cbid, reason=reason, note="n", agent="a", by="k"
    )
    assert (out["status"], out["closed_reason"], out["closed_at"]) == ("closed", reason, WED_10.isoformat())
    assert change.listed_remove == [("burgerzaken", cbid)]
    assert change.timers_remove == [f"{cbid}|callback|warning", f"{cbid}|callback|breach"]
    [ev] = bodies(change.outbox, topology.EVENTS)
    assert (ev["event"], ev["reason"], ev["follow_up"], ev["agent"], ev["by"]) == (
        "callback.closed",
        reason,
        None,  # no policy: no follow-up
        "a",
        "k",
    )
    closed = apply(state, change)
    with pytest.raises(CaseError) as again:
        casework.close_callback(closed, desk(ommen), cbid, reason=reason, note=None, agent="a")
    assert again.value.status == 409


def _open_callback(tenant: Tenant, email: str | None = None) -> CaseState:
    c = written("ommen", channel="phone", email=email)
    state = routed(tenant, c)
    change, _ = casework.request_callback(
        state, desk(tenant), team="burgerzaken", reason="r", phone=None, preferred_time=None, agent="a"
    )
    return apply(state, change)


def test_the_policy_gives_up_after_its_attempts_and_the_team_sends_a_letter() -> None:
    tenant = with_policy(TENANTS["ommen"], 2, "letter")
    state = _open_callback(tenant)
    cbid = f"{state.cid}-cb1"
    change, out = casework.record_attempt(
        state, desk(tenant), cbid, outcome="no_answer", note=None, agent="a"
    )
    assert out["status"] == "open"
    state = apply(state, change)
    change, out = casework.record_attempt(
        state, desk(tenant), cbid, outcome="wrong_number", note=None, agent="a"
    )
    assert (out["status"], out["closed_reason"], out["attempts"]) == ("closed", "unreachable", 2)
    closed = next(h for h in change.history if h["event"] == "callback.closed")
    assert (closed["by_policy"], closed["follow_up"]) == (True, "letter")
    [item] = [json.loads(m.body) for m in change.outbox if m.exchange == NAMES(topology.TEAMS)]
    notice = item["notice"]
    assert (notice["kind"], notice["channel"], notice["sent_by_service"]) == (
        "callback_unreachable",
        "letter",
        False,
    )
    reference = state.contact().reference
    assert reference in notice["subject"] and reference in notice["text"]
    assert "2 keer geprobeerd u te bellen" in notice["text"] and "14 0529" in notice["text"]
    assert change.notices == []  # a letter is the team's to send
    assert "callback.closed" in [b["event"] for b in bodies(change.outbox, topology.EVENTS)]


def test_the_policy_mails_the_resident_when_the_service_can() -> None:
    tenant = with_policy(TENANTS["ommen"], 1, "email")
    state = _open_callback(tenant, email="inwoner@example.nl")
    cbid = f"{state.cid}-cb1"
    change, out = casework.record_attempt(
        state, desk(tenant, mails=True), cbid, outcome="no_answer", note=None, agent="a"
    )
    assert out["closed_reason"] == "unreachable"
    [notice] = change.notices
    assert (notice.channel, notice.to, notice.kind) == ("email", "inwoner@example.nl", "callback_unreachable")
    assert [m for m in change.outbox if m.exchange == NAMES(topology.TEAMS)] == []
    # no address: a letter by the team; "close": nothing follows
    state = _open_callback(tenant)
    change, _ = casework.record_attempt(
        state, desk(tenant, mails=True), f"{state.cid}-cb1", outcome="no_answer", note=None, agent="a"
    )
    assert (
        change.notices == [] and len([m for m in change.outbox if m.exchange == NAMES(topology.TEAMS)]) == 1
    )
    quiet = with_policy(TENANTS["ommen"], 1, "close")
    state = _open_callback(quiet, email="inwoner@example.nl")
    change, out = casework.record_attempt(
        state, desk(quiet, mails=True), f"{state.cid}-cb1", outcome="no_answer", note=None, agent="a"
    )
    assert out["closed_reason"] == "unreachable" and change.notices == []
    assert [m for m in change.outbox if m.exchange == NAMES(topology.TEAMS)] == []


def test_without_a_policy_unanswered_attempts_keep_the_request_open() -> None:
    ommen = TENANTS["ommen"]
    assert ommen.loaded.rules.callback_policy is None
    state = _open_callback(ommen)
    cbid = f"{state.cid}-cb1"
    for _ in range(5):
        change, out = casework.record_attempt(
            state, desk(ommen), cbid, outcome="no_answer", note=None, agent="a"
        )
        state = apply(state, change)
        assert out["status"] == "open"


# -- 5. past the limit on a written channel ---------------------------------------------------------


def test_the_coordinating_team_makes_one_final_assignment() -> None:
    coevorden = with_limit(TENANTS["coevorden"], 0)
    state = routed(coevorden, written("coevorden", subject="Vraag over mijn aanslag"))
    assert state.team == "belastingen"
    change, result = casework.transfer(state, desk(coevorden), to_team="vergunningen", note="n", agent="a")
    assert not isinstance(result, CaseError) and result["outcome"] == "sent_to_coordinating_team"
    state = apply(state, change)
    change, result = casework.transfer(state, desk(coevorden), to_team="vergunningen", note=None, agent="k")
    assert not isinstance(result, CaseError) and (result["outcome"], result["team"]) == (
        "assigned",
        "vergunningen",
    )
    state = apply(state, change)
    assert state.transfers == 0 and [h.kind for h in state.contact().hops] == [
        "routed",
        "reassigned",
        "reassigned",
    ]
    with pytest.raises(CaseError) as stays:
        casework.transfer(state, desk(coevorden), to_team="kcc", note=None, agent="a")
    assert stays.value.status == 409


# -- 6. extensions ----------------------------------------------------------------------------------


def test_an_objection_is_extended_by_six_weeks_and_the_resident_is_told_in_plain_dutch() -> None:
    ommen = TENANTS["ommen"]
    state = routed(ommen, written("ommen", subject="Bezwaar tegen de aanslag", email="inwoner@example.nl"))
    assert state.fields["category"] == "bezwaar"
    resolve = next(d for d in state.deadlines() if d["kind"] == "resolve")
    assert resolve["term"] == "12 weeks + 6 weeks"
    change, out = casework.extend(
        state, desk(ommen, mails=True), kind="resolve", reason="advies commissie nodig", agent="a", by="k"
    )
    expected = ommen.calendar.deadline(WED_10, Term.parse("18 weeks"))
    assert (out["due"], out["original_due"], out["extension"]) == (
        expected.isoformat(),
        resolve["due"],
        "6 weeks",
    )
    stored = next(d for d in json.loads(change.fields["deadlines"]) if d["kind"] == "resolve")
    assert (stored["due"], stored["original_due"], stored["extended_at"]) == (
        expected.isoformat(),
        resolve["due"],
        WED_10.isoformat(),
    )
    assert change.timers_add[f"{state.cid}|resolve|breach"] == epoch_ms(expected)
    assert f"{state.cid}|resolve|breach" in change.timers_remove
    history = change.history[-1]
    assert (
        history["event"],
        history["reason"],
        history["agent_name"] if "agent_name" in history else None,
    ) == (
        "deadline.extended",
        "advies commissie nodig",
        None,
    )
    [ev] = bodies(change.outbox, topology.EVENTS)
    assert (ev["event"], ev["kind"], ev["due"], ev["notice"], ev["notice_sent"]) == (
        "deadline.extended",
        "resolve",
        expected.isoformat(),
        "email",
        True,
    )
    assert "advies" not in json.dumps(ev)  # the agent's reason never leaves the history
    [notice] = change.notices
    assert notice.to == "inwoner@example.nl" and notice.kind == "deadline_extended"
    assert (
        "uw bezwaar" in notice.text and "6 weken" in notice.text and state.contact().reference in notice.text
    )
    assert "advies" not in notice.text
    # without a mail sender the team gets the text to send
    change, out = casework.extend(state, desk(ommen), kind="resolve", reason="r", agent="a")
    assert out["notice"]["sent_by_service"] is False and change.notices == []
    [item] = bodies(change.outbox, topology.TEAMS)
    assert item["notice"]["text"] == out["notice"]["text"]


def test_an_extension_is_refused_where_the_norm_or_the_moment_does_not_allow_it() -> None:
    ommen = TENANTS["ommen"]
    state = routed(ommen, written("ommen", subject="Klacht over de behandeling"))
    assert state.fields["category"] == "klacht"

    def refused(s: CaseState, kind: str, at: datetime = WED_10) -> CaseError:
        with pytest.raises(CaseError) as e:
            casework.extend(s, desk(ommen, at), kind=kind, reason="r", agent="a")
        return e.value

    assert refused(state, "acknowledge").status == 409  # 5 workdays: no extension term
    assert refused(state, "respond").status == 409  # 5 workdays: no extension term either
    post = routed(ommen, written("ommen", channel="post", subject="Klacht over de behandeling"))
    assert "respond" not in [d["kind"] for d in post.deadlines()]
    assert refused(post, "respond").body["fields"][0]["field"] == "kind"  # no such deadline
    resolve = next(d for d in state.deadlines() if d["kind"] == "resolve")
    assert (
        refused(state, "resolve", datetime.fromisoformat(resolve["due"]) + timedelta(minutes=1)).status == 409
    )
    change, out = casework.extend(state, desk(ommen), kind="resolve", reason="r", agent="a")
    assert out["extension"] == "4 weeks"
    assert refused(apply(state, change), "resolve").status == 409  # once
    met = apply(
        state, casework.record_response(state, desk(ommen), kind="acknowledge", note=None, agent="a")[0]
    )
    assert casework.extend(met, desk(ommen), kind="resolve", reason="r", agent="a")[1]["kind"] == "resolve"
    resolved = CaseState(state.cid, {**state.fields, "met:resolve": WED_10.isoformat()})
    assert refused(resolved, "resolve").status == 409
    closed = CaseState(state.cid, {**state.fields, "status": "closed"})
    assert refused(closed, "resolve").status == 409
