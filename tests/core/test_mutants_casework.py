"""The case-work decisions, field by field (scripts/mutation): the exact change, answer and refusal of
each decision. tests/core/test_casework_decisions.py says what the rules are; these pin what is written
and said, so that a changed key, status code, message or bound fails here without a server."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from router.core import casework, topology
from router.core.casework import NO_DEADLINE_SCORE, CaseError, CaseState, Change, Desk
from router.core.clock import epoch_ms
from router.core.contact import Contact, Sender, Source
from router.core.messages import OutMessage
from router.core.routing import route
from router.core.tenants import Tenant, load
from router.core.topology import Names
from tests.core.test_casework_decisions import apply, with_limit, without_callback_norm

ROOT = Path(__file__).resolve().parents[2]
TENANTS = load(ROOT / "rules")
OMMEN = TENANTS["ommen"]
AMS = ZoneInfo("Europe/Amsterdam")
WED_10 = datetime(2026, 5, 13, 10, 0, tzinfo=AMS)  # Hemelvaartsdag is Thu 14 May 2026
NAMES = Names("t.")
EVENTS = NAMES(topology.EVENTS)
TEAMS = NAMES(topology.TEAMS)
CID_36 = "0f0e0d0c-0b0a-4908-8706-050403020100"


def contact(channel: str = "mail", phone: str | None = "+31612345678") -> Contact:
    return Contact(
        tenant="ommen",
        channel=channel,
        received_at=WED_10,
        source=Source(adapter="test", native_id=f"{channel}-{phone}"),
        sender=Sender(name="Inwoner", phone=phone),
        subject="Algemene vraag",
        body="Tekst",
    )


def routed(c: Contact, tenant: Tenant = OMMEN) -> CaseState:
    staged = route(c, tenant, NAMES, WED_10, "token").staged
    return CaseState(staged.cid, {**staged.fields, "status": staged.final_status}, dict(staged.callbacks))


def desk(tenant: Tenant = OMMEN, at: datetime = WED_10) -> Desk:
    return Desk(tenant, NAMES, at)


def event(m: OutMessage) -> dict[str, Any]:
    """An event's payload without its random id (checked against the message id); keyed by tenant."""
    assert m.exchange == EVENTS
    body = json.loads(m.body)
    assert body.pop("event_id") == m.message_id
    assert m.routing_key == f"{body['tenant']}.{body['event']}"
    return dict(body)


def refusal(call: Any) -> CaseError:
    with pytest.raises(CaseError) as refused:
        call()
    return refused.value


# -- plain data -----------------------------------------------------------------------------------


def test_a_case_state_reads_missing_fields_as_empty() -> None:
    s = CaseState("c", {"tenant": "ommen", "team": "kcc"})
    assert (s.version, s.status, s.transfers, s.channel, s.deadlines()) == ("", "", 0, "", [])
    assert CaseState("c", {"transfers": "2"}).transfers == 2


def test_a_case_error_carries_its_status_message_and_extra_fields() -> None:
    e = CaseError(409, "nee", team="kcc")
    assert (e.status, str(e), e.body) == (409, "nee", {"error": "nee", "team": "kcc"})


def test_merge_is_one_change_after_the_other() -> None:
    c1, c2 = contact(), contact("phone")
    a = Change(
        fields={"a": "1", "b": "1"},
        history=[{"e": 1}],
        outbox=[OutMessage("x", "k1", "{}", "1")],
        callbacks={1: {"status": "open", "team": "kcc"}},
        listed_add=[("kcc", "m1", 1)],
        listed_remove=[("kcc", "r1")],
        timers_add={"t1": 1, "t": 1},
        timers_remove=["x1"],
        contact=c1,
    )
    b = Change(
        fields={"b": "2"},
        history=[{"e": 2}],
        outbox=[OutMessage("x", "k2", "{}", "2")],
        callbacks={1: {"status": "closed"}, 2: {"status": "open"}},
        listed_add=[("kcc", "m2", 2)],
        listed_remove=[("kcc", "r2")],
        timers_add={"t": 2},
        timers_remove=["x2"],
    )
    m = a.merge(b)
    assert m.fields == {"a": "1", "b": "2"}
    assert m.history == [{"e": 1}, {"e": 2}]
    assert [o.routing_key for o in m.outbox] == ["k1", "k2"]
    assert m.callbacks == {1: {"status": "closed", "team": "kcc"}, 2: {"status": "open"}}
    assert a.callbacks == {1: {"status": "open", "team": "kcc"}}  # untouched
    assert m.listed_add == [("kcc", "m1", 1), ("kcc", "m2", 2)]
    assert m.listed_remove == [("kcc", "r1"), ("kcc", "r2")]
    assert m.timers_add == {"t1": 1, "t": 2}
    assert m.timers_remove == ["x1", "x2"]
    assert m.contact is c1
    assert a.merge(dataclasses.replace(b, contact=c2)).contact is c2


def test_callback_ids_round_trip_and_anything_else_is_no_id() -> None:
    assert casework.callback_id(CID_36, 3) == f"{CID_36}-cb3"
    assert casework.parse_callback_id(f"{CID_36}-cb12") == (CID_36, 12)
    assert casework.parse_callback_id(CID_36) is None
    assert casework.parse_callback_id(f"{CID_36}-cbx") is None
    assert casework.parse_callback_id(f"{CID_36}-cb") is None
    assert casework.parse_callback_id(f"{CID_36}a-cb1") is None
    assert casework.parse_callback_id(f"{CID_36[:-1]}-cb1") is None
    assert casework.timer_members("s", "k") == ["s|k|warning", "s|k|breach"]


def test_the_score_is_the_earliest_open_deadline_of_any_kind() -> None:
    deadlines = [
        {"kind": "respond", "term": "5 workdays", "due": "2026-05-20T17:00:00+02:00"},
        {"kind": "resolve", "term": "6 weeks", "due": "2026-05-19T17:00:00+02:00"},
        {"kind": "acknowledge", "term": "1 day", "due": "2026-05-14T17:00:00+02:00"},
    ]

    def score(**met: str) -> int:
        return casework.contact_score(CaseState("c", {"deadlines": json.dumps(deadlines), **met}))

    assert score() == epoch_ms(datetime.fromisoformat("2026-05-14T17:00:00+02:00"))
    assert score(**{"met:acknowledge": "x"}) == epoch_ms(datetime.fromisoformat("2026-05-19T17:00:00+02:00"))
    assert score(**{"met:acknowledge": "x", "met:resolve": "x"}) == epoch_ms(
        datetime.fromisoformat("2026-05-20T17:00:00+02:00")
    )
    assert score(**{"met:acknowledge": "x", "met:resolve": "x", "met:respond": "x"}) == NO_DEADLINE_SCORE
    # "immediately" is the adapter's, met at the edge: never what an item is listed by
    immediate = [{"kind": "acknowledge", "term": "immediately", "due": "2026-05-13T10:00:00+02:00"}]
    assert casework.contact_score(CaseState("c", {"deadlines": json.dumps(immediate)})) == NO_DEADLINE_SCORE


def test_a_public_callback_has_every_field_with_empty_ones_as_none() -> None:
    cb = {"id": "i", "contact_id": "c", "team": "t", "status": "open", "due": "d", "phone": ""}
    assert casework.public_callback(cb) == {
        "id": "i",
        "contact_id": "c",
        "team": "t",
        "reason": None,
        "phone": None,
        "preferred_time": None,
        "status": "open",
        "due": "d",
        "term": None,
        "counted_from": None,
        "created_at": None,
        "created_by": None,
        "origin": None,
        "attempts": 0,
        "last_outcome": None,
        "closed_at": None,
        "closed_reason": None,
    }
    full = {
        **cb,
        "reason": "r",
        "phone": "p",
        "preferred_time": "pt",
        "term": "3 workdays",
        "created_at": "ca",
        "created_by": "cb",
        "origin": "o",
        "attempts": "2",
        "last_outcome": "lo",
        "closed_at": "cat",
        "closed_reason": "cr",
    }
    out = casework.public_callback(full)
    assert (out["reason"], out["phone"], out["preferred_time"], out["term"]) == ("r", "p", "pt", "3 workdays")
    assert (out["created_at"], out["created_by"], out["origin"], out["attempts"]) == ("ca", "cb", "o", 2)
    assert (out["last_outcome"], out["closed_at"], out["closed_reason"]) == ("lo", "cat", "cr")
    # counted from the creation unless the request says otherwise (a phone note: the call)
    assert out["counted_from"] == "ca"
    assert casework.public_callback({**full, "counted_from": "call"})["counted_from"] == "call"


# -- transfers ------------------------------------------------------------------------------------


def test_each_outright_refusal_of_a_transfer_says_exactly_why() -> None:
    state = routed(contact())
    assert state.team == "kcc"

    def check(**kw: Any) -> CaseError:
        args = {"to_team": "burgerzaken", "from_team": None, "if_match": None, **kw}
        return refusal(lambda: casework.check_transfer(state, desk(), **args))

    closed = CaseState(state.cid, {**state.fields, "status": "closed"})
    e = refusal(
        lambda: casework.check_transfer(closed, desk(), to_team="burgerzaken", from_team=None, if_match=None)
    )
    assert (e.status, e.body) == (409, {"error": "the contact is closed; it cannot be transferred"})
    e = check(if_match='"7"')
    assert (e.status, e.body) == (
        412,
        {"error": "the contact changed since you read it (If-Match does not match)", "version": "1"},
    )
    e = check(from_team="belastingen")
    assert (e.status, e.body) == (
        409,
        {"error": "the contact is no longer with team 'belastingen' (now 'kcc')", "team": "kcc"},
    )
    e = check(to_team="Burgerzaken")
    teams = ", ".join(OMMEN.loaded.rules.team_ids())
    assert (e.status, e.body) == (
        422,
        {
            "error": "team 'Burgerzaken' is unknown",
            "fields": [
                {"field": "to_team", "message": f"team 'Burgerzaken' is unknown; teams of ommen: {teams}"}
            ],
        },
    )
    e = check(to_team="kcc")
    assert (e.status, e.body) == (
        409,
        {
            "error": "the contact is already with that team",
            "fields": [{"field": "to_team", "message": "the contact is already with 'kcc'"}],
        },
    )
    # what does apply: the version quoted or not, the team it is with
    casework.check_transfer(state, desk(), to_team="burgerzaken", from_team="kcc", if_match='"1"')
    casework.check_transfer(state, desk(), to_team="burgerzaken", from_team=None, if_match="1")


def test_a_transfer_writes_exactly_this_change_and_answer() -> None:
    state = routed(contact())
    now = WED_10 + timedelta(hours=1)
    change, result = casework.transfer(
        state,
        desk(at=now),
        to_team="burgerzaken",
        note="paspoort",
        agent="a1",
        by="ommen-kcc",
        agent_name="Jan de Vries",
    )
    assert result == {
        "id": state.cid,
        "team": "burgerzaken",
        "from_team": "kcc",
        "transfers": 1,
        "transfer_limit": 1,
        "outcome": "transferred",
        "intended_team": "burgerzaken",
        "message": "transferred to team 'burgerzaken'",
    }
    assert change.contact is not None
    assert change.fields == {
        "contact": change.contact.model_dump_json(),
        "team": "burgerzaken",
        "transfers": "1",
        # A transfer hands the item to the new team: whoever took it at the old one no longer has it.
        "owner": "",
        "owner_name": "",
        "taken_at": "",
    }
    hop = change.contact.hops[-1]
    assert (hop.kind, hop.team, hop.from_team, hop.agent, hop.at, hop.note) == (
        "transferred",
        "burgerzaken",
        "kcc",
        "a1",
        now,
        "paspoort",
    )
    assert change.history == [
        {
            "event": "contact.transferred",
            "at": now.isoformat(),
            "from_team": "kcc",
            "team": "burgerzaken",
            "agent": "a1",
            "by": "ommen-kcc",
            "agent_name": "Jan de Vries",  # the display name: in the history, never in an event
            "note": "paspoort",
            "transfers": 1,
        }
    ]
    item, ev = change.outbox
    assert (item.exchange, item.routing_key, item.headers) == (
        TEAMS,
        "ommen.burgerzaken",
        {topology.H_CONTACT_ID: state.cid},
    )
    assert json.loads(item.body) == {
        "contact": change.contact.model_dump(mode="json"),
        "routing": {
            "team": "burgerzaken",
            "deadlines": state.deadlines(),
            "transfers": 1,
            "hop": "transferred",
        },
    }
    assert item.message_id != state.cid
    assert event(ev) == {
        "event": "contact.transferred",
        "at": now.isoformat(),
        "tenant": "ommen",
        "contact_id": state.cid,
        "from_team": "kcc",
        "team": "burgerzaken",
        "agent": "a1",
        "by": "ommen-kcc",
        "transfers": 1,
        "counted": True,
    }
    assert change.listed_remove == [("kcc", state.cid)]
    assert change.listed_add == [("burgerzaken", state.cid, casework.contact_score(state))]
    assert (change.callbacks, change.timers_add, change.timers_remove) == ({}, {}, [])


def test_a_phone_transfer_at_the_limit_becomes_exactly_this_callback_and_refusal() -> None:
    tenant = with_limit(OMMEN, 0)
    state = routed(contact("phone"), tenant)
    change, result = casework.transfer(
        state, desk(tenant), to_team="burgerzaken", note=None, agent="a1", by="ommen-kcc"
    )
    assert isinstance(result, CaseError)
    cb = result.body.pop("callback_request")
    assert (result.status, result.body) == (
        409,
        {
            "error": "transfer refused: ommen transfers a contact at most 0 time(s) and this one was "
            "transferred 0 time(s); a callback request for team 'burgerzaken' takes its place (the "
            "resident is called back, not transferred again)",
            "transfers": 0,
            "transfer_limit": 0,
        },
    )
    assert (cb["team"], cb["reason"], cb["phone"], cb["origin"]) == (
        "burgerzaken",
        "transfer refused: transfer limit reached",
        "+31612345678",
        "transfer_refused",
    )
    assert change.history[0] == {
        "event": "transfer.refused",
        "at": WED_10.isoformat(),
        "team": "kcc",
        "to_team": "burgerzaken",
        "agent": "a1",
        "by": "ommen-kcc",
        "transfers": 0,
        "limit": 0,
    }
    assert [h["event"] for h in change.history] == ["transfer.refused", "callback.requested"]
    assert (change.history[1]["agent"], change.history[1]["by"]) == ("a1", "ommen-kcc")
    assert (event(change.outbox[-2])["agent"], event(change.outbox[-2])["by"]) == ("a1", "ommen-kcc")
    assert event(change.outbox[-1]) == {
        "event": "transfer.refused",
        "at": WED_10.isoformat(),
        "tenant": "ommen",
        "contact_id": state.cid,
        "team": "kcc",
        "to_team": "burgerzaken",
        "agent": "a1",
        "by": "ommen-kcc",
        "transfers": 0,
        "limit": 0,
        "callback_id": cb["id"],
    }
    assert "team" not in change.fields  # not moved
    # a note becomes the callback's reason; a sender without a number leaves it empty
    state = routed(contact("phone", phone=None), tenant)
    _, result = casework.transfer(state, desk(tenant), to_team="burgerzaken", note="bel terug", agent=None)
    assert isinstance(result, CaseError)
    assert (result.body["callback_request"]["reason"], result.body["callback_request"]["phone"]) == (
        "bel terug",
        None,
    )


def test_a_written_contact_past_the_limit_is_sent_to_coordination_with_exactly_this_answer() -> None:
    tenant = with_limit(OMMEN, 0)
    state = routed(contact())
    state = apply(state, casework.transfer(state, desk(), to_team="belastingen", note=None, agent="a")[0])
    assert (state.team, state.transfers) == ("belastingen", 1)
    change, result = casework.transfer(state, desk(), to_team="vergunningen", note="x", agent="a2")
    assert result == {
        "id": state.cid,
        "team": "kcc",
        "from_team": "belastingen",
        "transfers": 1,
        "transfer_limit": 1,
        "outcome": "sent_to_coordinating_team",
        "intended_team": "vergunningen",
        "message": "sent to the coordinating team 'kcc' (ommen transfers a contact at most 1 time(s) and "
        "this one was transferred 1 time(s)); it gives the contact to the right team",
    }
    assert change.fields["team"] == "kcc" and change.fields["transfers"] == "1"
    assert "assigned_at" not in change.fields
    assert (
        change.history[0]["event"] == "contact.reassigned"
        and change.history[0]["note"] == "x (intended team: vergunningen)"
        and "final" not in change.history[0]
    )
    assert event(change.outbox[1])["counted"] is False
    assert event(change.outbox[-1]) == {
        "event": "transfer.refused",
        "at": WED_10.isoformat(),
        "tenant": "ommen",
        "contact_id": state.cid,
        "team": "belastingen",
        "to_team": "vergunningen",
        "agent": "a2",
        "by": None,
        "transfers": 1,
        "limit": 1,
        "moved_to": "kcc",
    }
    change, _ = casework.transfer(state, desk(), to_team="vergunningen", note=None, agent="a2")
    assert change.history[0]["note"] == "intended team: vergunningen"
    # the coordinating team assigns it once, finally: uncounted, marked
    at_kcc = routed(contact(), tenant)
    later = WED_10 + timedelta(hours=1)
    change, result = casework.transfer(
        at_kcc, desk(tenant, later), to_team="burgerzaken", note="n", agent="a"
    )
    assert result == {
        "id": at_kcc.cid,
        "team": "burgerzaken",
        "from_team": "kcc",
        "transfers": 0,
        "transfer_limit": 0,
        "outcome": "assigned",
        "intended_team": "burgerzaken",
        "message": "assigned to team 'burgerzaken' by the coordinating team; the transfer limit is reached, "
        "so it stays there",
    }
    assert (change.fields["team"], change.fields["transfers"]) == ("burgerzaken", "0")
    assert change.fields["assigned_at"] == later.isoformat()
    assert (change.history[0]["event"], change.history[0]["final"]) == ("contact.reassigned", True)
    moved = event(change.outbox[1])
    assert (moved["counted"], moved["final"]) == (False, True)
    # after which it stays
    final = apply(at_kcc, change)
    e = refusal(lambda: casework.transfer(final, desk(tenant), to_team="kcc", note=None, agent="a"))
    assert (e.status, e.body) == (
        409,
        {
            "error": "transfer refused: ommen transfers a contact at most 0 time(s) and this one was "
            "transferred 0 time(s), and the coordinating team 'kcc' already assigned it to its final "
            "team: it stays with 'burgerzaken'",
            "transfers": 0,
            "transfer_limit": 0,
            "team": "burgerzaken",
        },
    )


@pytest.mark.parametrize("channel", ["counter", "chat"])
def test_the_resident_is_on_the_line_at_a_counter_and_in_a_chat_too(channel: str) -> None:
    tenant = with_limit(OMMEN, 0)
    state = CaseState(routed(contact()).cid, {**routed(contact()).fields, "channel": channel})
    _, result = casework.transfer(state, desk(tenant), to_team="burgerzaken", note=None, agent=None)
    assert isinstance(result, CaseError) and "callback_request" in result.body


# -- callback requests ----------------------------------------------------------------------------


def test_a_callback_request_is_exactly_this_record_item_event_entry_and_timers() -> None:
    state = routed(contact())
    change, cb = casework.request_callback(
        state,
        desk(),
        team="belastingen",
        reason="bellen",
        phone="+31201234567",
        preferred_time="ochtend",
        agent="a1",
        by="ommen-kcc",
    )
    cbid = f"{state.cid}-cb1"
    deadline = OMMEN.deadline("callback", OMMEN.loaded.rules.callback_term(), WED_10)
    record = {
        "id": cbid,
        "contact_id": state.cid,
        "tenant": "ommen",
        "team": "belastingen",
        "reason": "bellen",
        "phone": "+31201234567",
        "preferred_time": "ochtend",
        "status": "open",
        "counted_from": WED_10.isoformat(),
        "created_at": WED_10.isoformat(),
        "created_by": "a1",
        "origin": "agent",
        "term": "3 workdays",
        "due": "2026-05-19T17:00:00+02:00",
        "warning_at": deadline.warning_at.isoformat(),
        "attempts": "0",
    }
    assert change.fields == {"callbacks": "1"}
    assert change.callbacks == {1: record}
    assert cb == casework.public_callback(record)
    assert change.history == [
        {
            "event": "callback.requested",
            "at": WED_10.isoformat(),
            "callback_id": cbid,
            "team": "belastingen",
            "agent": "a1",
            "by": "ommen-kcc",
            "reason": "bellen",
            "due": "2026-05-19T17:00:00+02:00",
            "origin": "agent",
        }
    ]
    item, ev = change.outbox
    assert (item.exchange, item.routing_key, item.headers) == (
        TEAMS,
        "ommen.belastingen",
        {topology.H_CONTACT_ID: state.cid, "x-callback-id": cbid},
    )
    assert json.loads(item.body) == {
        "callback_request": cb,
        "contact": state.contact().model_dump(mode="json"),
    }
    assert event(ev) == {
        "event": "callback.requested",
        "at": WED_10.isoformat(),
        "tenant": "ommen",
        "contact_id": state.cid,
        "callback_id": cbid,
        "team": "belastingen",
        "due": "2026-05-19T17:00:00+02:00",
        "origin": "agent",
        "agent": "a1",
        "by": "ommen-kcc",
    }
    assert change.listed_add == [("belastingen", cbid, epoch_ms(deadline.due))]
    assert change.timers_add == {
        f"{cbid}|callback|warning": epoch_ms(deadline.warning_at),
        f"{cbid}|callback|breach": epoch_ms(deadline.due),
    }
    # the next one is number 2; defaults: the contact's team, the sender's number, empty strings
    state = apply(state, change)
    change, cb = casework.request_callback(
        state, desk(), team=None, reason="r", phone=None, preferred_time=None, agent=None
    )
    assert change.fields == {"callbacks": "2"}
    record2 = change.callbacks[2]
    assert (
        record2["id"],
        record2["team"],
        record2["phone"],
        record2["preferred_time"],
        record2["created_by"],
    ) == (
        f"{state.cid}-cb2",
        "kcc",
        "+31612345678",
        "",
        "",
    )


def test_a_callback_request_is_refused_when_it_cannot_apply() -> None:
    state = routed(contact())
    ask: dict[str, Any] = {"reason": "r", "phone": None, "preferred_time": None, "agent": None}
    closed = CaseState(state.cid, {**state.fields, "status": "closed"})
    e = refusal(lambda: casework.request_callback(closed, desk(), team=None, **ask))
    assert (e.status, e.body) == (409, {"error": "the contact is closed; reopen it by a new contact"})
    e = refusal(lambda: casework.request_callback(state, desk(), team="nope", **ask))
    teams = ", ".join(OMMEN.loaded.rules.team_ids())
    assert (e.status, e.body) == (
        422,
        {
            "error": "team 'nope' is unknown",
            "fields": [{"field": "team", "message": f"team 'nope' is unknown; teams of ommen: {teams}"}],
        },
    )
    bare = without_callback_norm(OMMEN)
    e = refusal(lambda: casework.request_callback(state, desk(bare), team=None, **ask))
    assert (e.status, e.body) == (422, {"error": "tenant 'ommen' has no callback norm in its rules"})


def test_a_callback_attempt_writes_exactly_this_and_reached_closes_it() -> None:
    state = routed(contact())
    change, cb = casework.request_callback(
        state, desk(), team="belastingen", reason="r", phone=None, preferred_time=None, agent="a"
    )
    state = apply(state, change)
    cbid = cb["id"]
    later = WED_10 + timedelta(hours=2)
    change, out = casework.record_attempt(
        state, desk(at=later), cbid, outcome="no_answer", note="n", agent="a2", by="ommen-kcc"
    )
    assert change.callbacks == {
        1: {
            "attempts": "1",
            "failed_attempts": "1",
            "last_outcome": "no_answer",
            "last_attempt_at": later.isoformat(),
        }
    }
    assert change.history == [
        {
            "event": "callback.attempted",
            "at": later.isoformat(),
            "callback_id": cbid,
            "outcome": "no_answer",
            "note": "n",
            "agent": "a2",
            "by": "ommen-kcc",
            "attempt": 1,
        }
    ]
    (ev,) = change.outbox
    assert event(ev) == {
        "event": "callback.attempted",
        "at": later.isoformat(),
        "tenant": "ommen",
        "contact_id": state.cid,
        "callback_id": cbid,
        "outcome": "no_answer",
        "attempt": 1,
        "agent": "a2",
        "by": "ommen-kcc",
        "closed": False,
    }
    assert (change.listed_remove, change.timers_remove) == ([], [])
    assert (out["status"], out["attempts"], out["last_outcome"]) == ("open", 1, "no_answer")
    state = apply(state, change)
    change, out = casework.record_attempt(
        state, desk(at=later), cbid, outcome="reached", note=None, agent="a2"
    )
    assert change.callbacks == {
        1: {
            "attempts": "2",
            "failed_attempts": "1",
            "last_outcome": "reached",
            "last_attempt_at": later.isoformat(),
            "status": "closed",
            "closed_at": later.isoformat(),
            "closed_reason": "reached",
        }
    }
    assert event(change.outbox[0])["closed"] is True
    assert [h["event"] for h in change.history] == ["callback.attempted", "callback.closed"]
    assert change.history[1] == {
        "event": "callback.closed",
        "at": later.isoformat(),
        "callback_id": cbid,
        "reason": "reached",
        "note": None,
        "agent": "a2",
        "by": None,
        "by_policy": False,
        "follow_up": None,
    }
    assert event(change.outbox[1]) == {
        "event": "callback.closed",
        "at": later.isoformat(),
        "tenant": "ommen",
        "contact_id": state.cid,
        "callback_id": cbid,
        "team": "belastingen",
        "reason": "reached",
        "by_policy": False,
        "follow_up": None,
        "agent": "a2",
        "by": None,
    }
    assert change.listed_remove == [("belastingen", cbid)]
    assert change.timers_remove == [f"{cbid}|callback|warning", f"{cbid}|callback|breach"]
    assert (out["status"], out["closed_reason"], out["attempts"]) == ("closed", "reached", 2)
    state = apply(state, change)
    e = refusal(lambda: casework.record_attempt(state, desk(), cbid, outcome="reached", note=None, agent="a"))
    assert (e.status, e.body) == (
        409,
        {
            "error": "the callback request is already closed",
            "callback_request": casework.public_callback(state.callbacks[1]),
        },
    )


def test_a_callback_attempt_for_an_id_that_is_not_this_contacts_is_not_found() -> None:
    state = routed(contact())
    state = apply(
        state,
        casework.request_callback(
            state, desk(), team=None, reason="r", phone=None, preferred_time=None, agent="a"
        )[0],
    )
    for cbid in ["rubbish", f"{state.cid}-cb2", f"{CID_36}-cb1"]:
        e = refusal(
            lambda cbid=cbid: casework.record_attempt(
                state, desk(), cbid, outcome="reached", note=None, agent="a"
            )
        )
        assert (e.status, e.body) == (404, {"error": f"no callback request with id '{cbid}'"})


# -- responses and closing ------------------------------------------------------------------------


@pytest.mark.parametrize(("minutes", "on_time"), [(0, True), (1, False)])
def test_a_response_writes_exactly_this_on_time_up_to_the_due_minute(minutes: int, on_time: bool) -> None:
    state = routed(contact())
    due = next(d["due"] for d in state.deadlines() if d["kind"] == "respond")
    at = datetime.fromisoformat(due) + timedelta(minutes=minutes)
    change, out = casework.record_response(
        state, desk(at=at), kind="respond", note="n", agent="a", by="ommen-kcc"
    )
    assert out == {
        "id": state.cid,
        "kind": "respond",
        "on_time": on_time,
        "due": due,
        "met_at": at.isoformat(),
    }
    assert change.fields == {"met:respond": at.isoformat()}
    assert change.history == [
        {
            "event": "deadline.met" if on_time else "deadline.met_late",
            "at": at.isoformat(),
            "kind": "respond",
            "agent": "a",
            "by": "ommen-kcc",
            "note": "n",
            "due": due,
        }
    ]
    assert event(change.outbox[0]) == {
        "event": "deadline.met",
        "at": at.isoformat(),
        "tenant": "ommen",
        "contact_id": state.cid,
        "kind": "respond",
        "on_time": on_time,
        "due": due,
        "agent": "a",
        "by": "ommen-kcc",
    }
    assert change.timers_remove == [f"{state.cid}|respond|warning", f"{state.cid}|respond|breach"]
    assert change.listed_add == [("kcc", state.cid, NO_DEADLINE_SCORE)]
    # written once: recording it again changes nothing and answers the first moment
    again, out = casework.record_response(
        apply(state, change), desk(at=at + timedelta(days=3)), kind="respond", note=None, agent="b"
    )
    assert again.is_empty()
    assert out == {
        "id": state.cid,
        "kind": "respond",
        "on_time": on_time,
        "due": due,
        "met_at": at.isoformat(),
    }


def test_an_acknowledgement_without_a_deadline_is_on_time_and_keeps_the_list_entry() -> None:
    state = routed(contact("post"))
    assert "respond" not in [d["kind"] for d in state.deadlines()]
    change, out = casework.record_response(state, desk(), kind="respond", note=None, agent="a")
    assert (out["on_time"], out["due"]) == (True, None)
    state = routed(contact())
    change, out = casework.record_response(state, desk(), kind="acknowledge", note=None, agent="a")
    assert change.listed_add == []
    closed = CaseState(state.cid, {**state.fields, "status": "closed"})
    e = refusal(lambda: casework.record_response(closed, desk(), kind="respond", note=None, agent="a"))
    assert (e.status, e.body) == (409, {"error": "the contact is closed"})


def test_closing_writes_exactly_this_and_leaves_closed_callbacks_alone() -> None:
    state = routed(contact())
    for team in ("belastingen", "burgerzaken"):
        state = apply(
            state,
            casework.request_callback(
                state, desk(), team=team, reason="r", phone=None, preferred_time=None, agent="a"
            )[0],
        )
    cb1, cb2 = f"{state.cid}-cb1", f"{state.cid}-cb2"
    state = apply(
        state, casework.record_attempt(state, desk(), cb1, outcome="reached", note=None, agent="a")[0]
    )
    later = WED_10 + timedelta(hours=3)
    change, out = casework.close(state, desk(at=later), resolution="klaar", agent="a3", by="ommen-kcc")
    assert out == {"id": state.cid, "status": "closed", "closed_at": later.isoformat()}
    assert change.fields == {"status": "closed", "closed_at": later.isoformat(), "resolution": "klaar"}
    assert change.history == [
        {
            "event": "contact.closed",
            "at": later.isoformat(),
            "agent": "a3",
            "by": "ommen-kcc",
            "resolution": "klaar",
        }
    ]
    assert event(change.outbox[0]) == {
        "event": "contact.closed",
        "at": later.isoformat(),
        "tenant": "ommen",
        "contact_id": state.cid,
        "team": "kcc",
        "agent": "a3",
        "by": "ommen-kcc",
    }
    assert change.callbacks == {
        2: {"status": "closed", "closed_at": later.isoformat(), "closed_reason": "contact closed"}
    }
    assert change.listed_remove == [("kcc", state.cid), ("burgerzaken", cb2)]
    kinds = [d["kind"] for d in state.deadlines()]
    assert change.timers_remove == [
        *(m for k in kinds for m in casework.timer_members(state.cid, k)),
        *casework.timer_members(cb2, "callback"),
    ]
    closed = apply(state, change)
    e = refusal(lambda: casework.close(closed, desk(), resolution="x", agent=None))
    assert (e.status, e.body) == (409, {"error": "the contact is already closed"})


def test_the_desk_reads_the_tenants_limit_and_teams() -> None:
    d = desk(with_limit(OMMEN, 4))
    assert d.transfer_limit == 4
    assert d.team_ids() == OMMEN.loaded.rules.team_ids()
    assert "kcc" in d.team_ids()


# -- found by scripts/mutation ----------------------------------------------------------------------


def test_a_callback_id_is_split_at_its_last_cb_even_when_the_contact_id_has_one() -> None:
    cid = "0f0e0d0c-cb0a-4908-8706-050403020100"  # a UUID can contain "-cb"
    assert casework.parse_callback_id(casework.callback_id(cid, 2)) == (cid, 2)


def test_every_work_item_of_a_decision_has_a_message_id_of_its_own() -> None:
    state = routed(contact())
    ids = []
    for _ in range(2):
        change, _ = casework.transfer(state, desk(), to_team="burgerzaken", note=None, agent="a")
        ids.append(change.outbox[0].message_id)
        change, _ = casework.request_callback(
            state, desk(), team=None, reason="r", phone=None, preferred_time=None, agent="a"
        )
        ids.append(change.outbox[0].message_id)
    assert len({str(uuid.UUID(i)) for i in ids}) == 4


def test_a_refused_transfer_records_the_agent_on_the_callback_and_on_the_reassignment() -> None:
    tenant = with_limit(OMMEN, 0)
    state = routed(contact("phone"), tenant)
    change, result = casework.transfer(state, desk(tenant), to_team="burgerzaken", note=None, agent="a1")
    assert isinstance(result, CaseError)
    assert change.callbacks[1]["created_by"] == "a1"
    assert result.body["callback_request"]["created_by"] == "a1"
    state = routed(contact(), with_limit(OMMEN, 1))
    state = apply(state, casework.transfer(state, desk(), to_team="belastingen", note=None, agent="a")[0])
    change, _ = casework.transfer(state, desk(), to_team="vergunningen", note=None, agent="a2")
    assert change.history[0]["agent"] == "a2"
    assert change.contact is not None and change.contact.hops[-1].agent == "a2"


def test_a_contact_or_callback_stored_without_its_counters_counts_from_zero() -> None:
    """Contacts and callbacks written before the counters existed have no `callbacks` / `attempts`."""
    state = routed(contact())
    del state.fields["callbacks"]
    change, cb = casework.request_callback(
        state, desk(), team=None, reason="r", phone=None, preferred_time=None, agent="a"
    )
    assert (change.fields, cb["id"]) == ({"callbacks": "1"}, f"{state.cid}-cb1")
    state = apply(state, change)
    del state.callbacks[1]["attempts"]
    change, out = casework.record_attempt(state, desk(), cb["id"], outcome="no_answer", note=None, agent="a")
    assert (change.callbacks[1]["attempts"], out["attempts"]) == ("1", 1)


def test_work_items_carry_the_contact_as_its_json_schema_writes_it() -> None:
    """A UTC time is written "...Z" by the Contact model; the work items of a transfer and of a callback
    request carry the same JSON, not a second serialiser's "+00:00"."""
    c = contact().model_copy(update={"received_at": datetime(2026, 5, 13, 8, 0, tzinfo=UTC)})
    state = routed(c)
    assert state.contact().model_dump(mode="json")["received_at"] == "2026-05-13T08:00:00Z"
    moved, _ = casework.transfer(state, desk(), to_team="burgerzaken", note=None, agent="a")
    assert moved.contact is not None
    assert json.loads(moved.outbox[0].body)["contact"] == moved.contact.model_dump(mode="json")
    asked, _ = casework.request_callback(
        state, desk(), team=None, reason="r", phone=None, preferred_time=None, agent="a"
    )
    assert json.loads(asked.outbox[0].body)["contact"] == state.contact().model_dump(mode="json")


# -- who acted: an agent id and the credential's name (issue 14) -----------------------------------


def test_an_agent_id_is_letters_digits_dots_dashes_and_underscores_up_to_64() -> None:
    for good in ["a", "kcc-017", "A.b_c-9", "7", "x" * 64]:
        assert casework.agent_id(good) == good
    for bad in [None, "", "jan@ommen.nl", "Jan de Vries", "-a", ".a", "_a", "x" * 65, "a\n", "kcc:1", "é"]:
        assert casework.agent_id(bad) is None, bad


def test_an_event_never_carries_an_agent_or_credential_that_is_no_id_nor_a_display_name() -> None:
    state = routed(contact())
    change, _ = casework.close(
        state, desk(), resolution="klaar", agent="jan@ommen.nl", by="Jan de Vries", agent_name="Jan"
    )
    # the contact's own history keeps what it was given (personal data belongs in the record) ...
    assert (change.history[0]["agent"], change.history[0]["by"], change.history[0]["agent_name"]) == (
        "jan@ommen.nl",
        "Jan de Vries",
        "Jan",
    )
    # ... its event names no one
    ev = event(change.outbox[0])
    assert (ev["agent"], ev["by"]) == (None, None) and "agent_name" not in ev
    # without a display name the history has none either
    change, _ = casework.close(state, desk(), resolution="klaar", agent="a1", by="ommen-kcc")
    assert "agent_name" not in change.history[0]
