"""The case-work rules residents are promised, tested as plain functions: no Redis, no RabbitMQ.

A decision takes a contact's state and returns a Change; `apply` below stands in for the store (the
same merge the Lua script does: fields set, version up, callback hashes merged), so sequences of actions
can be played out in memory, by hand and by hypothesis.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.core import casework, topology
from router.core.casework import CaseError, CaseState, Change, Desk
from router.core.contact import Contact, Sender, Source
from router.core.routing import route
from router.core.tenants import Tenant, load
from router.core.topology import Names

ROOT = Path(__file__).resolve().parents[2]
TENANTS = load(ROOT / "rules")
AMS = ZoneInfo("Europe/Amsterdam")
WED_10 = datetime(2026, 5, 13, 10, 0, tzinfo=AMS)  # Hemelvaartsdag is Thu 14 May 2026
NAMES = Names("t.")


def with_limit(tenant: Tenant, limit: int) -> Tenant:
    rules = tenant.loaded.rules.model_copy(update={"transfer_limit": limit})
    return dataclasses.replace(tenant, loaded=dataclasses.replace(tenant.loaded, rules=rules))


def contact(tenant: str = "ommen", channel: str = "phone", **metadata: str) -> Contact:
    return Contact(
        tenant=tenant,
        channel=channel,
        received_at=WED_10,
        source=Source(adapter="test", native_id=f"{channel}-{sorted(metadata.items())}"),
        sender=Sender(name="Inwoner", phone="+31612345678"),
        subject="Algemene vraag",
        body="Tekst",
        metadata=metadata,
    )


def routed(tenant: Tenant, c: Contact, at: datetime = WED_10) -> CaseState:
    """A contact as the router leaves it: route() and the store's commit (status becomes final)."""
    staged = route(c, tenant, NAMES, at, "token").staged
    return CaseState(staged.cid, {**staged.fields, "status": staged.final_status}, dict(staged.callbacks))


def apply(state: CaseState, change: Change) -> CaseState:
    callbacks = {n: dict(cb) for n, cb in state.callbacks.items()}
    for n, values in change.callbacks.items():
        callbacks[n] = {**callbacks.get(n, {}), **values}
    fields = {**state.fields, **change.fields, "version": str(int(state.version) + 1)}
    return CaseState(state.cid, fields, callbacks)


def desk(tenant: Tenant, at: datetime = WED_10) -> Desk:
    return Desk(tenant, NAMES, at)


def events(change: Change) -> list[str]:
    """The names of the events the change publishes, each keyed `<tenant>.<event>`."""
    names = []
    for m in change.outbox:
        if m.exchange == NAMES(topology.EVENTS):
            body = json.loads(m.body)
            assert m.routing_key == f"{body['tenant']}.{body['event']}"
            names.append(body["event"])
    return names


# -- transfers ----------------------------------------------------------------------------------


def test_a_transfer_within_the_limit_moves_the_contact_and_counts() -> None:
    ommen = TENANTS["ommen"]
    state = routed(ommen, contact(channel="mail"))
    change, result = casework.transfer(state, desk(ommen), to_team="burgerzaken", note="paspoort", agent="a1")
    assert not isinstance(result, CaseError)
    after = apply(state, change)
    assert (after.team, after.transfers, result["transfers"]) == ("burgerzaken", 1, 1)
    assert events(change) == ["contact.transferred"]
    assert change.listed_remove == [(state.team, state.cid)]
    assert [(team, member) for team, member, _ in change.listed_add] == [("burgerzaken", state.cid)]
    hop = after.contact().hops[-1]
    assert (hop.kind, hop.from_team, hop.team, hop.note) == (
        "transferred",
        state.team,
        "burgerzaken",
        "paspoort",
    )


def test_ommen_second_transfer_on_the_phone_becomes_a_callback_due_in_three_workdays() -> None:
    ommen = TENANTS["ommen"]
    state = routed(ommen, contact())
    change, _ = casework.transfer(state, desk(ommen), to_team="burgerzaken", note=None, agent="a1")
    state = apply(state, change)
    change, result = casework.transfer(state, desk(ommen), to_team="vergunningen", note=None, agent="a1")
    assert isinstance(result, CaseError) and result.status == 409
    after = apply(state, change)
    assert (after.team, after.transfers) == ("burgerzaken", 1)  # not moved, not counted
    cb = result.body["callback_request"]
    # Wed 13 May 10:00 + 3 workdays, Hemelvaartsdag skipped -> Tue 19 May 17:00.
    assert (cb["team"], cb["due"], cb["origin"]) == (
        "vergunningen",
        "2026-05-19T17:00:00+02:00",
        "transfer_refused",
    )
    assert events(change) == ["callback.requested", "transfer.refused"]
    assert after.callbacks[1]["phone"] == "+31612345678"


def test_the_callback_deadline_counts_from_the_refusal_not_from_the_contacts_arrival() -> None:
    ommen = with_limit(TENANTS["ommen"], 0)
    state = routed(ommen, contact())
    later = WED_10 + timedelta(days=6)  # Tue 19 May 10:00
    _, result = casework.transfer(state, desk(ommen, later), to_team="burgerzaken", note=None, agent="a1")
    assert isinstance(result, CaseError)
    # Tue 19 May 10:00 + 3 workdays -> Fri 22 May 17:00 (from the arrival it would be Tue 19 May).
    assert result.body["callback_request"]["due"] == "2026-05-22T17:00:00+02:00"


def test_a_written_contact_past_the_limit_goes_to_the_coordinating_team_which_assigns_it_once() -> None:
    """ "Internally we make sure your question reaches the right colleague": past the limit a written
    contact is sent to the coordinating team (a success, uncounted), which gives it its final place."""
    ommen = TENANTS["ommen"]
    state = routed(ommen, contact(channel="mail"))
    state = apply(
        state, casework.transfer(state, desk(ommen), to_team="belastingen", note=None, agent="a")[0]
    )
    change, result = casework.transfer(state, desk(ommen), to_team="vergunningen", note="x", agent="a")
    assert not isinstance(result, CaseError)
    assert (result["outcome"], result["team"], result["intended_team"]) == (
        "sent_to_coordinating_team",
        "kcc",
        "vergunningen",
    )
    after = apply(state, change)
    assert (after.team, after.transfers) == ("kcc", 1)
    assert after.contact().hops[-1].kind == "reassigned"
    change, result = casework.transfer(after, desk(ommen), to_team="vergunningen", note=None, agent="k")
    assert not isinstance(result, CaseError) and result["outcome"] == "assigned"
    placed = apply(after, change)
    assert (placed.team, placed.transfers) == ("vergunningen", 1)
    for to_team in ("burgerzaken", "kcc"):
        with pytest.raises(CaseError) as stays:
            casework.transfer(placed, desk(ommen), to_team=to_team, note=None, agent="a")
        assert stays.value.status == 409 and "it stays with 'vergunningen'" in stays.value.body["error"]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"to_team": "nope"}, 422),
        ({"to_team": "kcc"}, 409),  # already there: a conflict with its state
        ({"to_team": "burgerzaken", "from_team": "belastingen"}, 409),
        ({"to_team": "burgerzaken", "if_match": '"7"'}, 412),
    ],
)
def test_a_transfer_is_refused_outright_when_it_cannot_apply(kwargs: dict[str, str], status: int) -> None:
    ommen = TENANTS["ommen"]
    state = routed(ommen, contact(channel="mail"))
    assert state.team == "kcc"
    with pytest.raises(CaseError) as refused:
        casework.transfer(state, desk(ommen), note=None, agent="a", **kwargs)  # type: ignore[arg-type]
    assert refused.value.status == status


# -- phone notes take the same decisions ----------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 1, 2])
def test_a_phone_note_transfer_and_an_agent_transfer_agree(limit: int) -> None:
    """The router carries out "transferred" on a phone note with the agent API's own decision: same team,
    same count, same refusal and callback at the limit."""
    tenant = with_limit(TENANTS["coevorden"], limit)
    note = contact("coevorden", "phone", **{"phone.outcome": "transferred", "phone.to_team": "burgerzaken"})
    by_router = routed(tenant, note)

    plain = routed(tenant, contact("coevorden", "phone"))
    change, result = casework.transfer(plain, desk(tenant), to_team="burgerzaken", note=None, agent=None)
    by_agent = apply(plain, change)

    assert (by_router.team, by_router.transfers) == (by_agent.team, by_agent.transfers)
    assert by_router.transfers <= limit
    assert [cb["team"] for cb in by_router.callbacks.values()] == [
        cb["team"] for cb in by_agent.callbacks.values()
    ]
    assert [cb["due"] for cb in by_router.callbacks.values()] == [
        cb["due"] for cb in by_agent.callbacks.values()
    ]
    assert isinstance(result, CaseError) == (limit == 0)
    if limit == 0:
        assert by_router.team == "kcc" and by_router.callbacks[1]["team"] == "burgerzaken"


def test_a_phone_note_answered_is_closed_with_no_timers() -> None:
    ommen = TENANTS["ommen"]
    staged = route(contact(**{"phone.outcome": "answered"}), ommen, NAMES, WED_10, "t").staged
    assert staged.final_status == "closed" and staged.team_score_ms is None
    assert staged.timers == []
    assert [json.loads(h)["event"] for h in staged.history] == ["contact.routed", "contact.closed"]


def test_a_phone_note_colleague_unavailable_asks_the_intended_team_to_call_back() -> None:
    ommen = TENANTS["ommen"]
    note = contact(**{"phone.outcome": "colleague_unavailable", "phone.to_team": "sociaal_domein"})
    decided = route(note, ommen, NAMES, WED_10, "t")
    cb = decided.staged.callbacks[1]
    assert (cb["team"], cb["due"], cb["origin"]) == (
        "sociaal_domein",
        "2026-05-19T17:00:00+02:00",
        "phone_note",
    )
    assert decided.staged.listed == [("sociaal_domein", cb["id"], decided.staged.listed[0][2])]
    assert {m for m, _ in decided.staged.timers} >= {
        f"{cb['id']}|callback|warning",
        f"{cb['id']}|callback|breach",
    }
    team_items = [m for m in decided.messages if m.exchange == NAMES(topology.TEAMS)]
    assert len(team_items) == 1 and json.loads(team_items[0].body)["callback_request"]["id"] == cb["id"]


# -- callbacks, responses, closing ----------------------------------------------------------------


def test_a_callback_closes_when_the_resident_is_reached_and_not_before() -> None:
    ommen = TENANTS["ommen"]
    state = routed(ommen, contact(channel="mail"))
    change, cb = casework.request_callback(
        state, desk(ommen), team=None, reason="bellen", phone=None, preferred_time=None, agent="a"
    )
    state = apply(state, change)
    cbid = cb["id"]
    change, out = casework.record_attempt(state, desk(ommen), cbid, outcome="no_answer", note=None, agent="a")
    state = apply(state, change)
    assert not isinstance(out, CaseError) and out["status"] == "open" and change.timers_remove == []
    change, out = casework.record_attempt(state, desk(ommen), cbid, outcome="reached", note=None, agent="a")
    state = apply(state, change)
    assert not isinstance(out, CaseError) and (out["status"], out["attempts"]) == ("closed", 2)
    assert change.timers_remove == casework.timer_members(cbid, "callback")
    with pytest.raises(CaseError) as again:
        casework.record_attempt(state, desk(ommen), cbid, outcome="reached", note=None, agent="a")
    assert again.value.status == 409


def test_closing_ends_the_timers_the_list_entry_and_the_open_callbacks() -> None:
    ommen = TENANTS["ommen"]
    state = routed(ommen, contact(channel="mail"))
    change, cb = casework.request_callback(
        state, desk(ommen), team="belastingen", reason="r", phone=None, preferred_time=None, agent="a"
    )
    state = apply(state, change)
    change, _ = casework.close(state, desk(ommen), resolution="klaar", agent="a")
    kinds = [d["kind"] for d in state.deadlines()]
    assert kinds and set(change.timers_remove) == {
        *(m for k in kinds for m in casework.timer_members(state.cid, k)),
        *casework.timer_members(cb["id"], "callback"),
    }
    assert set(change.listed_remove) == {("kcc", state.cid), ("belastingen", cb["id"])}
    assert apply(state, change).callbacks[1]["status"] == "closed"


def test_a_late_response_is_recorded_as_late() -> None:
    ommen = TENANTS["ommen"]
    state = routed(ommen, contact(channel="mail"))
    respond = next(d for d in state.deadlines() if d["kind"] == "respond")
    late = datetime.fromisoformat(respond["due"]) + timedelta(minutes=1)
    change, out = casework.record_response(state, desk(ommen, late), kind="respond", note=None, agent="a")
    assert not isinstance(out, CaseError) and out["on_time"] is False
    assert change.history[0]["event"] == "deadline.met_late"


# -- properties -----------------------------------------------------------------------------------

TEAMS = TENANTS["coevorden"].loaded.rules.team_ids()
action = st.one_of(
    st.tuples(st.just("transfer"), st.sampled_from(TEAMS)),
    st.tuples(st.just("callback"), st.sampled_from(TEAMS)),
    st.tuples(st.just("respond"), st.sampled_from(["acknowledge", "respond"])),
    st.tuples(st.just("close"), st.just("")),
)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=0, max_value=3),
    channel=st.sampled_from(["phone", "mail", "counter", "webform"]),
    actions=st.lists(action, max_size=12),
)
def test_the_transfer_count_never_exceeds_the_limit(
    limit: int, channel: str, actions: list[tuple[str, str]]
) -> None:
    tenant = with_limit(TENANTS["coevorden"], limit)
    state = routed(tenant, contact("coevorden", channel))
    refused = 0
    for kind, arg in actions:
        try:
            if kind == "transfer":
                change, result = casework.transfer(state, desk(tenant), to_team=arg, note=None, agent="a")
                refused += isinstance(result, CaseError)
            elif kind == "callback":
                change, _ = casework.request_callback(
                    state, desk(tenant), team=arg, reason="r", phone=None, preferred_time=None, agent="a"
                )
            elif kind == "respond":
                change, _ = casework.record_response(state, desk(tenant), kind=arg, note=None, agent="a")
            else:
                change, _ = casework.close(state, desk(tenant), resolution="r", agent="a")
        except CaseError:
            continue  # refused outright: nothing changes
        state = apply(state, change)
        assert state.transfers <= limit
        hops = state.contact().hops
        assert sum(h.kind == "transferred" for h in hops) == state.transfers
        # at most one open callback request per team, however often a transfer to it was refused
        open_teams = [cb["team"] for cb in state.callbacks.values() if cb["status"] == "open"]
        assert len(open_teams) == len(set(open_teams))
    if refused and channel in casework.SYNCHRONOUS_CHANNELS:
        origins = [cb["origin"] for cb in state.callbacks.values()]
        assert origins.count("transfer_refused") <= refused  # a team's open request is reused


def without_callback_norm(tenant: Tenant) -> Tenant:
    rules = tenant.loaded.rules
    norms = type(rules.norms)(tuple(n for n in rules.norms.root if n.kind.value != "callback"))
    rules = rules.model_copy(update={"norms": norms})
    return dataclasses.replace(tenant, loaded=dataclasses.replace(tenant.loaded, rules=rules))


@pytest.mark.parametrize("outcome", ["transferred", "colleague_unavailable"])
def test_a_phone_note_for_a_tenant_without_a_callback_norm_is_routed_as_it_is(outcome: str) -> None:
    tenant = without_callback_norm(with_limit(TENANTS["ommen"], 0))
    assert tenant.loaded.rules.callback_term() is None
    note = contact(**{"phone.outcome": outcome, "phone.to_team": "burgerzaken"})
    decided = route(note, tenant, NAMES, WED_10, "t")
    assert (decided.summary, decided.staged.team, decided.staged.callbacks) == ("routed", "kcc", {})
