"""The routing decision for one contact: which team, which deadlines, what to store, what to publish.

    route(contact, tenant, names, now, token)
      1. classify            the tenant's rules pick team, category and rule (router.core.classify)
      2. deadlines           the service norms for channel and category, in the tenant's workdays
      3. the routed state    the contact as the store will hold it once routed
      4. phone outcome       what the agent already did on the line, carried out by the same case-work
                             decisions as the agent API (close, transfer, callback request), with the
                             terms counted from the call, not from when the note is read
      5. staged + messages   the store's record, work lists and timers; the team work item and events;
                             a deadline already past on arrival (a note logged long after the call) is
                             escalated at once, in the same transaction

A reply to an earlier contact (a quoted reference or a known Message-ID), or a contact of the same resident
on the same category as an open one (router.core.residents), joins it instead: `follow_up`.
Pure: no store, no broker; `router.core.pipeline` runs it for a batch inside a broker transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from router.core import casework, topology
from router.core.casework import NO_DEADLINE_SCORE, CaseError, CaseState, Change, Desk, parse_callback_id
from router.core.classify import Decision
from router.core.clock import epoch_ms
from router.core.contact import (
    MAX_FUTURE_AT_ROUTER,
    Contact,
    Hop,
    admission_problems,
    find_reference,
    summarise_errors,
)
from router.core.deadlines import breach_messages, score, soonest_open
from router.core.messages import OutMessage, dumps, event_message, once_per_contact, team_item
from router.core.ports import Delivery, Join, Staged
from router.core.tenants import Deadline, Tenant
from router.core.topology import Names

MAX_BODY_BYTES = 1_000_000


@dataclass
class Routed:
    """Everything decided about one contact."""

    contact: Contact
    decision: Decision
    deadlines: list[Deadline]
    staged: Staged
    # What the broker transaction publishes for this contact (team work item and events).
    messages: list[OutMessage]
    summary: str = "routed"


def parse(delivery: Delivery, tenants: Mapping[str, Tenant], now: datetime) -> tuple[Contact, Tenant] | str:
    """The contact and its tenant, or the reason it cannot be routed: field names of the schema and fixed
    texts, never a value or a key of the input (the reason is logged, kept in `x-dead-reason` and shown
    by `dlq list`)."""
    if len(delivery.body) > MAX_BODY_BYTES:
        return f"body too large: {len(delivery.body)} bytes (limit {MAX_BODY_BYTES})"
    try:
        contact = Contact.model_validate_json(delivery.body)
    except ValidationError as exc:
        kinds = {e["type"] for e in exc.errors()}
        if kinds & {"json_invalid", "json_type"}:
            return f"malformed JSON: {exc.errors()[0]['msg']}"
        return f"invalid contact: {summarise_errors(exc)}"
    tenant = tenants.get(contact.tenant)
    if tenant is None:
        # Not the tenant's name: the reason quotes no input, and the routing key says where it came from.
        return "unknown tenant: no rules for the contact's tenant"
    if problems := admission_problems(contact, now, MAX_FUTURE_AT_ROUTER):
        return "invalid contact: " + "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return contact, tenant


def own_thread_ids(contact: Contact) -> list[str]:
    """Message-IDs by which later mail refers to this contact: its own and its acknowledgement's."""
    return [v for k in ("thread.message_id", "thread.ack_message_id") if (v := contact.metadata.get(k))]


def thread_hints(contact: Contact) -> tuple[list[str], list[str]]:
    """(reference numbers, Message-IDs) by which a contact may be a reply to an earlier one."""
    refs = []
    if (
        contact.subject
        and (ref := find_reference(contact.subject))
        and ref.startswith(contact.tenant[:3].upper())
    ):
        refs.append(ref)
    ids = contact.metadata.get("thread.in_reply_to", "").split()
    return refs, ids[:20]


# -- a new contact --------------------------------------------------------------------------------


def route(
    contact: Contact,
    tenant: Tenant,
    names: Names,
    now: datetime,
    token: str,
    decision: Decision | None = None,
) -> Routed:
    """`decision`: the classification when the caller already made it (the pipeline classifies before it
    looks for an open contact of the same resident)."""
    if decision is None:
        decision = tenant.classifier.classify(contact)
    deadlines = tenant.deadlines_for(contact.channel, decision.category, contact.received_at)
    hops = [*contact.hops, Hop(kind="routed", team=decision.team, at=now, note=None)]
    contact = contact.model_copy(update={"category": decision.category, "hops": hops})
    # Once per contact; the event, the state and the team item each carry the same list.
    deadline_dicts = [d.as_dict() for d in deadlines]
    state = routed_state(contact, decision, deadline_dicts, now)
    desk = Desk(tenant, names, now)
    change, summary = phone_outcome(state, desk)
    contact = change.contact or contact
    routed = (
        CaseState(state.cid, {**state.fields, **change.fields}, parsed=contact) if change.fields else state
    )
    events = [
        *first_events(desk, state, decision, deadline_dicts),
        *(m for m in change.outbox if m.exchange != names(topology.TEAMS)),
    ]
    staged = stage(routed, change, decision, deadlines, contact, token)
    late = late_on_arrival(desk, routed, change, contact, staged)
    messages = [*events, *late]
    if staged.final_status != "closed":
        item = routed_item(desk, routed, change, decision, deadline_dicts, contact, escalated(late))
        messages = [item, *messages]
    return Routed(contact, decision, deadlines, staged, messages, summary)


def routed_state(
    contact: Contact, decision: Decision, deadlines: list[dict[str, str]], now: datetime
) -> CaseState:
    """The contact as it stands once routed, before anything happened to it."""
    fields = {
        "contact": contact.model_dump_json(),
        "tenant": contact.tenant,
        "channel": contact.channel,
        "team": decision.team,
        "category": decision.category or "",
        "rule": decision.rule,
        "status": "routed",
        "transfers": "0",
        "version": "1",
        "received_at": contact.received_at.isoformat(),
        "routed_at": now.isoformat(),
        "deadlines": dumps(deadlines),
        "callbacks": "0",
    }
    return CaseState(contact.cid, fields, parsed=contact)


_NOTHING = Change()  # shared, never changed: what happened to a contact that is not a phone note


def phone_outcome(state: CaseState, desk: Desk) -> tuple[Change, str]:
    """A phone note says what already happened on the line; carry it out as case work would."""
    if state.fields["channel"] != "phone":
        return _NOTHING, "routed"
    change = Change()
    contact = state.contact()
    meta = contact.metadata
    outcome, agent, to_team = meta.get("phone.outcome"), meta.get("phone.agent"), meta.get("phone.to_team")
    if to_team is not None and to_team not in desk.team_ids():
        change.history.append(
            {"event": "phone.to_team_unknown", "at": desk.now.isoformat(), "to_team": to_team}
        )
        to_team = None
    note = meta.get("phone.note")
    # The promises of the call (a callback within the term) count from the call, whenever the note is
    # read: the contact's received_at is the call's time.
    call = contact.received_at
    if outcome == "answered":
        closed, _ = casework.close(state, desk, resolution="answered on the phone", agent=agent)
        return change.merge(closed), "answered"
    if outcome == "transferred" and to_team and to_team != state.team:
        try:
            moved, result = casework.transfer(
                state, desk, to_team=to_team, note=note, agent=agent, since=call
            )
        except CaseError:  # refused at the limit and the tenant has no callback norm: routed as it is
            return change, "routed"
        return change.merge(moved), "callback_requested" if isinstance(result, CaseError) else "transferred"
    if outcome == "colleague_unavailable":
        try:
            asked, _ = casework.request_callback(
                state,
                desk,
                team=to_team or state.team,
                reason=note or contact.subject or "terugbelverzoek",
                phone=None,
                preferred_time=meta.get("phone.preferred_time"),
                agent=agent,
                origin="phone_note",
                since=call,
            )
        except CaseError:  # the tenant has no callback norm: the note is routed as it is
            return change, "routed"
        return change.merge(asked), "callback_requested"
    return change, "routed"


def first_events(
    desk: Desk, state: CaseState, decision: Decision, deadlines: list[dict[str, str]]
) -> list[OutMessage]:
    exchange = desk.names(topology.EVENTS)
    common = {"tenant": state.tenant, "contact_id": state.cid, "channel": state.channel}
    return [
        event_message(
            exchange,
            "contact.received",
            desk.now,
            event_id=once_per_contact(state.cid, "contact.received"),
            received_at=state.fields["received_at"],
            **common,
        ),
        event_message(
            exchange,
            "contact.routed",
            desk.now,
            event_id=once_per_contact(state.cid, "contact.routed"),
            team=decision.team,
            rule=decision.rule,
            category=decision.category,
            deadlines=deadlines,
            **common,
        ),
    ]


def stage(
    routed: CaseState,
    change: Change,
    decision: Decision,
    deadlines: list[Deadline],
    contact: Contact,
    token: str,
) -> Staged:
    """The store's record of a routed contact: fields, history, work lists, timers, callbacks."""
    final_status = routed.status
    history: list[dict[str, Any]] = [
        {
            "event": "contact.routed",
            "at": routed.fields["routed_at"],
            "team": decision.team,
            "rule": decision.rule,
            "rule_at": decision.where,
            "reasons": list(decision.reasons),
        },
        *change.history,
    ]
    timers = [] if final_status == "closed" else deadline_timers(contact, deadlines)
    timers += list(change.timers_add.items())
    # The work list's order: the soonest open deadline of any kind ("immediately" and an acknowledgement
    # the adapter sent are not open).
    first = soonest_open((d.as_dict() for d in deadlines), {}, "acknowledged_at" in contact.metadata)
    return Staged(
        cid=routed.cid,
        tenant=routed.tenant,
        team=routed.team,
        token=token,
        # The status becomes final when the broker has the team item (Store.commit). The fields are
        # this routing's own dict, no longer read by any decision: changed in place.
        fields=_routing(routed.fields),
        history=[dumps(h) for h in history],
        reference=contact.reference,
        team_score_ms=None if final_status == "closed" else score(first),
        timers=timers,
        callbacks=dict(change.callbacks),  # not the shared empty change's own dict
        listed=[entry for entry in change.listed_add if entry[1] != routed.cid],
        thread_ids=own_thread_ids(contact),
        final_status=final_status,
    )


def _routing(fields: dict[str, str]) -> dict[str, str]:
    fields["status"] = "routing"
    return fields


def deadline_timers(contact: Contact, deadlines: list[Deadline]) -> list[tuple[str, int]]:
    """A warning and a breach timer per deadline; none for "immediately", nor for an acknowledgement
    the adapter already sent (it says when, in the metadata)."""
    acknowledged = "acknowledged_at" in contact.metadata
    return [
        (member, epoch_ms(at))
        for d in deadlines
        if str(d.term) != "immediately" and not (d.kind == "acknowledge" and acknowledged)
        for member, at in (
            (f"{contact.cid}|{d.kind}|warning", d.warning_at),
            (f"{contact.cid}|{d.kind}|breach", d.due),
        )
    ]


def late_on_arrival(
    desk: Desk, routed: CaseState, change: Change, contact: Contact, staged: Staged
) -> list[OutMessage]:
    """The deadlines already past when the contact is routed (a phone note logged days after the call):
    escalated now, in the routing transaction, as the scheduler would have done at their due time; their
    timers are dropped (the warning is moot too). Changes `staged`: timers and history."""
    now_ms = epoch_ms(desk.now)
    late = [(member, due) for member, due in staged.timers if member.endswith("|breach") and due <= now_ms]
    if not late:
        return []
    messages: list[OutMessage] = []
    gone: set[str] = set()
    for member, due_ms in late:
        subject, kind, _ = member.split("|")
        parsed = parse_callback_id(subject)
        team = change.callbacks[parsed[1]]["team"] if parsed else routed.team
        due = datetime.fromtimestamp(due_ms / 1000, tz=desk.now.tzinfo)
        messages += breach_messages(
            desk.names,
            desk.now,
            tenant=routed.tenant,
            contact_id=routed.cid,
            callback_id=subject if parsed else None,
            kind=kind,
            team=team,
            due=due,
            reference=contact.reference,
            on_arrival=True,
        )
        staged.history.append(
            dumps(
                {
                    "event": "deadline.breached",
                    "at": desk.now.isoformat(),
                    "kind": kind,
                    "callback_id": subject if parsed else None,
                    "due": due.astimezone(UTC).isoformat(),
                    "on_arrival": True,
                }
            )
        )
        gone |= {f"{subject}|{kind}|warning", member}
    staged.timers = [t for t in staged.timers if t[0] not in gone]
    return messages


def escalated(messages: list[OutMessage]) -> list[str]:
    """The kinds of deadline escalated on arrival, for the team item."""
    return [orjson.loads(m.body)["kind"] for m in messages if m.message_id.startswith("escalation:")]


def routed_item(
    desk: Desk,
    routed: CaseState,
    change: Change,
    decision: Decision,
    deadlines: list[dict[str, str]],
    contact: Contact,
    escalated_kinds: list[str] | None = None,
) -> OutMessage:
    """The team work item: the contact, and why it went where it went (one item, whatever happened on
    the line; a callback request created with it travels in the same item). `escalated_kinds`: the kinds
    of deadline that were already past when it arrived."""
    routing = {
        "team": routed.team,
        "category": decision.category,
        "rule": decision.rule,
        "rule_at": decision.where,
        "reasons": list(decision.reasons),
        "deadlines": deadlines,
        "transfers": routed.transfers,
        "transfer_limit": desk.transfer_limit,
    }
    # The same dict as model_dump(mode="json"), from the stored JSON: C instead of a second dump.
    if escalated_kinds:
        routing["escalated"] = escalated_kinds
    envelope: dict[str, Any] = {"contact": orjson.loads(routed.fields["contact"]), "routing": routing}
    if change.callbacks:
        first = change.callbacks[min(change.callbacks)]
        envelope["callback_request"] = {k: v for k, v in first.items() if k != "tenant"}
    return _team_item(desk.names, routed.tenant, routed.team, envelope, contact, decision.rule)


def _team_item(
    names: Names, tenant: str, team: str, envelope: dict[str, Any], contact: Contact, rule: str
) -> OutMessage:
    headers = {
        topology.H_CONTACT_ID: contact.cid,
        topology.H_IDEMPOTENCY: contact.idempotency_key,
        topology.H_RULE: rule,
    }
    # The contact id as message id: a back-office consumer can dedupe on it.
    return team_item(names, tenant, team, envelope, contact.cid, headers)


# -- a reply to an earlier contact ----------------------------------------------------------------


def _join_decision(join: dict[str, str]) -> Decision:
    """Why a contact joins another: a reply (thread or reference), or the same resident's open contact
    on the same category. Ids and codes only: the explanation is shown and logged, the address never."""
    target, team = join["id"], join["team"]
    rule = join.get("rule", "follow-up")
    category = join.get("category") or None
    if rule == "follow-up":
        reasons: tuple[str, ...] = (f"reply to contact {target}",)
        where = "(thread)"
    else:
        reasons = (
            f"same resident as open contact {target}",
            f"same category: {category}",
            "joined as a follow-up: the open contact's team and deadlines",
        )
        where = "(resident)"
    return Decision(team=team, category=category, rule=rule, rule_line=0, file=where, reasons=reasons)


def _reply_entry(contact: Contact, now: datetime, decision: Decision) -> dict[str, Any]:
    """The `contact.reply` entry of the target's history."""
    event: dict[str, Any] = {
        "event": "contact.reply",
        "at": now.isoformat(),
        "reply_id": contact.cid,
        "channel": contact.channel,
        "received_at": contact.received_at.isoformat(),
    }
    if decision.rule != "follow-up":
        event |= {"rule": decision.rule, "category": decision.category, "reasons": list(decision.reasons)}
    if contact.channel == "phone" and (outcome := contact.metadata.get("phone.outcome")):
        # What the KCC already did on the line travels with the note: an answer given there is in the
        # open contact's history, and the team decides whether that settles it.
        event["phone_outcome"] = outcome
    return event


def follow_up(contact: Contact, names: Names, now: datetime, token: str, join: dict[str, str]) -> Routed:
    """A reply joins the contact it answers: the target's team gets it, the target's history notes it.

    `join` names the target (`id`, `team`) and, for a contact of the same resident on the same category
    (router.core.residents), `rule` "same-resident" and the `category`; without them it is a reply found
    by thread or reference (rule "follow-up")."""
    target, team = join["id"], join["team"]
    decision = _join_decision(join)
    rule, category, reasons, where = decision.rule, decision.category, decision.reasons, decision.file
    event = _reply_entry(contact, now, decision)
    contact_json = contact.model_dump_json()
    fields = {
        "contact": contact_json,
        "tenant": contact.tenant,
        "channel": contact.channel,
        "team": team,
        "category": category or "",
        "rule": rule,
        "status": "routing",
        "transfers": "0",
        "version": "1",
        "received_at": contact.received_at.isoformat(),
        "routed_at": now.isoformat(),
        "deadlines": "[]",
        "callbacks": "0",
        "merged_into": target,
    }
    history = [dumps({"event": "contact.merged", "at": now.isoformat(), "into": target})]
    if rule != "follow-up":  # why it was linked, in its own history as every routing decision
        routed = {"event": "contact.routed", "at": now.isoformat(), "team": team, "rule": rule}
        history.insert(0, dumps(routed | {"rule_at": where, "reasons": list(reasons)}))
    staged = Staged(
        cid=contact.cid,
        tenant=contact.tenant,
        team=team,
        token=token,
        fields=fields,
        history=history,
        reference=contact.reference,
        team_score_ms=None,
        thread_ids=own_thread_ids(contact),
        thread_target=target,
        final_status="merged",
        join=Join(target, contact.tenant, team, dumps(event), NO_DEADLINE_SCORE),
    )
    routing_info: dict[str, Any] = {"team": team, "follow_up_of": target, "rule": rule}
    if rule != "follow-up":
        routing_info |= {"category": category, "reasons": list(reasons)}
    envelope = {"contact": orjson.loads(contact_json), "routing": routing_info}
    common = {"tenant": contact.tenant, "contact_id": target, "channel": contact.channel}
    extra = {"rule": rule} if rule != "follow-up" else {}
    messages = [
        _team_item(names, contact.tenant, team, envelope, contact, rule),
        event_message(
            names(topology.EVENTS),
            "contact.reply",
            now,
            event_id=once_per_contact(contact.cid, "contact.reply"),
            reply_id=contact.cid,
            team=team,
            **common,
            **extra,
        ),
    ]
    return Routed(contact, decision, [], staged, messages, "joined")
