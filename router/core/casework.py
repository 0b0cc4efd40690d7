"""The rules of case work, as decisions over plain data: transfer, callback request, callback attempt,
response, close.

Each decision takes the contact's current state (`CaseState`) and the facts of the moment (`Desk`:
tenant, names, now) and returns the `Change` to apply — fields, history, messages to publish,
callback requests, work-list and timer updates — with the answer for the caller, or raises `CaseError`.
Nothing here reads or writes a store: `router.core.casework_service` loads the state, asks for the
decision and commits the change atomically (retrying when another agent changed the contact meanwhile);
the routing of a phone note takes the same decisions for what happened on the line. So "a transfer is
counted and limited" and "a callback is due in the tenant's term from the moment it was asked" are
written once, and tested without a server.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from router.core import topology
from router.core.clock import epoch_ms
from router.core.contact import Contact, Hop
from router.core.messages import OutMessage, event_message, team_item
from router.core.tenants import Tenant
from router.core.topology import Names

# Channels where the resident is on the line: past the transfer limit they get a callback instead.
SYNCHRONOUS_CHANNELS = frozenset({"phone", "counter", "chat"})
CALLBACK_OUTCOMES = ("reached", "no_answer", "wrong_number")
RESPONSE_KINDS = ("acknowledge", "respond")
NO_DEADLINE_SCORE = 32503680000000  # year 3000: items without a deadline sort last
# An agent as histories and events name it: an id, never an e-mail address or a person's name (events
# are shared with other systems). The API and the phone notes refuse anything else.
AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_AGENT_ID = re.compile(AGENT_ID_PATTERN)


def agent_id(value: str | None) -> str | None:
    """`value` when it is an id as AGENT_ID_PATTERN says, else None: what an event may carry. (A contact
    published to `contacts` directly can name its phone agent in free text; its events then name none.)"""
    return value if value is not None and _AGENT_ID.fullmatch(value) else None


class CaseError(Exception):
    """A refusal with an HTTP status and a JSON body for the caller."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


@dataclass
class CaseState:
    """A contact as the store holds it: its fields and its callback requests by number."""

    cid: str
    fields: dict[str, str]
    callbacks: dict[int, dict[str, str]] = field(default_factory=dict)
    # The parsed contact, when the caller has it already (routing): parsing its JSON again is the
    # costliest step of a decision.
    parsed: Contact | None = field(default=None, compare=False, repr=False)

    @property
    def version(self) -> str:
        return self.fields.get("version", "")

    @property
    def tenant(self) -> str:
        return self.fields["tenant"]

    @property
    def team(self) -> str:
        return self.fields["team"]

    @property
    def status(self) -> str:
        return self.fields.get("status", "")

    @property
    def transfers(self) -> int:
        return int(self.fields.get("transfers", "0"))

    @property
    def channel(self) -> str:
        return self.fields.get("channel", "")

    def contact(self) -> Contact:
        if self.parsed is None:
            self.parsed = Contact.model_validate_json(self.fields["contact"])
        return self.parsed

    def deadlines(self) -> list[dict[str, str]]:
        result: list[dict[str, str]] = json.loads(self.fields.get("deadlines", "[]"))
        return result


@dataclass
class Change:
    """One atomic change of a contact. Work-list entries are (team, member[, score]) in the contact's
    tenant; timers are members '<subject>|<kind>|<phase>' with their due time in epoch ms."""

    fields: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[OutMessage] = field(default_factory=list)
    callbacks: dict[int, dict[str, str]] = field(default_factory=dict)
    listed_add: list[tuple[str, str, int]] = field(default_factory=list)
    listed_remove: list[tuple[str, str]] = field(default_factory=list)
    timers_add: dict[str, int] = field(default_factory=dict)
    timers_remove: list[str] = field(default_factory=list)
    # The contact as the change leaves it, when the change rewrites it (its JSON is in `fields`).
    contact: Contact | None = field(default=None, compare=False, repr=False)

    def merge(self, other: Change) -> Change:
        """This change followed by `other` (decisions taken one after another on one contact)."""
        callbacks = dict(self.callbacks)
        for n, values in other.callbacks.items():
            callbacks[n] = {**callbacks.get(n, {}), **values}
        return Change(
            fields={**self.fields, **other.fields},
            history=[*self.history, *other.history],
            outbox=[*self.outbox, *other.outbox],
            callbacks=callbacks,
            listed_add=[*self.listed_add, *other.listed_add],
            listed_remove=[*self.listed_remove, *other.listed_remove],
            timers_add={**self.timers_add, **other.timers_add},
            timers_remove=[*self.timers_remove, *other.timers_remove],
            contact=other.contact or self.contact,
        )


@dataclass(frozen=True, slots=True)
class Actor:
    """Who takes a decision: the agent's id, the name of the credential that vouches for it (`by`; None
    when the router carries out what a phone note says), and the agent's display name if one was given.
    Histories record all three; events carry the two ids, never the display name."""

    agent: str | None
    by: str | None = None
    name: str | None = None

    def history(self) -> dict[str, Any]:
        out: dict[str, Any] = {"agent": self.agent, "by": self.by}
        if self.name:
            out["agent_name"] = self.name
        return out

    def event(self) -> dict[str, Any]:
        return {"agent": self.agent, "by": self.by}


@dataclass(frozen=True, slots=True)
class Desk:
    """The facts a decision is taken with: whose rules, which names, and when."""

    tenant: Tenant
    names: Names
    now: datetime

    @property
    def transfer_limit(self) -> int:
        return self.tenant.loaded.rules.transfer_limit

    def team_ids(self) -> list[str]:
        return self.tenant.loaded.rules.team_ids()

    def event(self, name: str, state: CaseState, **fields: Any) -> OutMessage:
        """An event about the contact; an `agent` or `by` that is no id goes out as None (no free text)."""
        for key in ("agent", "by"):
            if key in fields:
                fields[key] = agent_id(fields[key])
        return event_message(
            self.names(topology.EVENTS), name, self.now, tenant=state.tenant, contact_id=state.cid, **fields
        )


# A decision: the change to apply, and the answer (a dict) or the refusal to give once it is applied.
Decision = tuple[Change, dict[str, Any] | CaseError]


def callback_id(cid: str, n: int) -> str:
    return f"{cid}-cb{n}"


def parse_callback_id(cbid: str) -> tuple[str, int] | None:
    cid, sep, n = cbid.rpartition("-cb")
    if not sep or not n.isdigit() or len(cid) != 36:
        return None
    return cid, int(n)


def timer_members(subject: str, kind: str) -> list[str]:
    return [f"{subject}|{kind}|warning", f"{subject}|{kind}|breach"]


def contact_score(state: CaseState) -> int:
    """A contact's place in its team's work list: its unmet `respond` deadline (epoch ms)."""
    due = [
        d["due"] for d in state.deadlines() if d["kind"] == "respond" and not state.fields.get("met:respond")
    ]
    return epoch_ms(datetime.fromisoformat(min(due))) if due else NO_DEADLINE_SCORE


def public_callback(cb: dict[str, str]) -> dict[str, Any]:
    return {
        "id": cb["id"],
        "contact_id": cb["contact_id"],
        "team": cb["team"],
        "reason": cb.get("reason"),
        "phone": cb.get("phone") or None,
        "preferred_time": cb.get("preferred_time") or None,
        "status": cb["status"],
        "due": cb["due"],
        "term": cb.get("term"),
        "created_at": cb.get("created_at"),
        "created_by": cb.get("created_by"),
        "origin": cb.get("origin"),
        "attempts": int(cb.get("attempts", "0")),
        "last_outcome": cb.get("last_outcome"),
        "closed_reason": cb.get("closed_reason"),
    }


def _unknown_team(field_name: str, team: str, tenant: str) -> CaseError:
    return CaseError(
        422, "unknown team", fields=[{"field": field_name, "message": f"'{team}' is not a team of {tenant}"}]
    )


# -- transfers -----------------------------------------------------------------------------------


def check_transfer(
    state: CaseState, desk: Desk, *, to_team: str, from_team: str | None, if_match: str | None
) -> None:
    """Raise the CaseError that refuses this transfer outright (wrong state, stale view, bad team)."""
    if state.status != "routed":
        raise CaseError(409, f"the contact is {state.status}; it cannot be transferred")
    if if_match is not None and if_match.strip('"') != state.version:
        raise CaseError(
            412, "the contact changed since you read it (If-Match does not match)", version=state.version
        )
    if from_team is not None and from_team != state.team:
        raise CaseError(
            409, f"the contact is no longer with team '{from_team}' (now '{state.team}')", team=state.team
        )
    if to_team not in desk.team_ids():
        raise _unknown_team("to_team", to_team, state.tenant)
    if to_team == state.team:
        raise CaseError(
            422,
            "the contact is already with that team",
            fields=[{"field": "to_team", "message": f"the contact is already with '{to_team}'"}],
        )


def transfer(
    state: CaseState,
    desk: Desk,
    *,
    to_team: str,
    note: str | None,
    agent: str | None,
    from_team: str | None = None,
    if_match: str | None = None,
    by: str | None = None,
    agent_name: str | None = None,
) -> Decision:
    """A warm transfer, counted. Past the tenant's limit it is refused: on a channel where the resident
    is on the line the intended team gets a callback request; a written contact goes to the coordinating
    team instead."""
    check_transfer(state, desk, to_team=to_team, from_team=from_team, if_match=if_match)
    actor = Actor(agent, by, agent_name)
    if state.transfers < desk.transfer_limit:
        return move(state, desk, to_team, note, actor, kind="transferred")
    if state.channel in SYNCHRONOUS_CHANNELS:
        return _refuse_with_callback(state, desk, to_team, note, actor)
    return _refuse_to_coordination(state, desk, to_team, note, actor)


def move(
    state: CaseState,
    desk: Desk,
    to_team: str,
    note: str | None,
    actor: Actor,
    *,
    kind: str,
    refused: CaseError | None = None,
) -> Decision:
    """Hand the contact to `to_team`; only a `transferred` hop counts against the limit."""
    counted = kind == "transferred"
    transfers = state.transfers + (1 if counted else 0)
    hop = Hop(kind=kind, team=to_team, from_team=state.team, agent=actor.agent, at=desk.now, note=note)  # type: ignore[arg-type]
    contact = state.contact()
    contact = contact.model_copy(update={"hops": [*contact.hops, hop]})
    change = Change(contact=contact)
    change.fields = {"contact": contact.model_dump_json(), "team": to_team, "transfers": str(transfers)}
    change.history.append(
        {
            "event": f"contact.{kind}",
            "at": desk.now.isoformat(),
            "from_team": state.team,
            "team": to_team,
            **actor.history(),
            "note": note,
            "transfers": transfers,
        }
    )
    envelope = {
        "contact": contact.model_dump(mode="json"),
        "routing": {"team": to_team, "deadlines": state.deadlines(), "transfers": transfers, "hop": kind},
    }
    change.outbox.append(
        team_item(
            desk.names,
            state.tenant,
            to_team,
            envelope,
            str(uuid.uuid4()),
            {topology.H_CONTACT_ID: state.cid},
        )
    )
    change.outbox.append(
        desk.event(
            "contact.transferred",
            state,
            from_team=state.team,
            team=to_team,
            **actor.event(),
            transfers=transfers,
            counted=counted,
        )
    )
    change.listed_remove.append((state.team, state.cid))
    change.listed_add.append((to_team, state.cid, contact_score(state)))
    result: dict[str, Any] | CaseError = refused or {
        "id": state.cid,
        "team": to_team,
        "from_team": state.team,
        "transfers": transfers,
        "transfer_limit": desk.transfer_limit,
    }
    return change, result


def _limit_message(state: CaseState, limit: int) -> str:
    return (
        f"transfer refused: {state.tenant} transfers a contact at most {limit} time(s) and this one was "
        f"transferred {state.transfers} time(s)"
    )


def _refused_event(state: CaseState, desk: Desk, to_team: str, actor: Actor, **extra: Any) -> OutMessage:
    return desk.event(
        "transfer.refused",
        state,
        team=state.team,
        to_team=to_team,
        **actor.event(),
        transfers=state.transfers,
        limit=desk.transfer_limit,
        **extra,
    )


def _refuse_with_callback(
    state: CaseState, desk: Desk, to_team: str, note: str | None, actor: Actor
) -> Decision:
    limit = desk.transfer_limit
    phone = _sender_phone(state.contact())
    change, cb = callback_change(
        state,
        desk,
        team=to_team,
        reason=note or "transfer refused: transfer limit reached",
        phone=phone,
        preferred_time=None,
        actor=actor,
        origin="transfer_refused",
    )
    change.history.insert(
        0,
        {
            "event": "transfer.refused",
            "at": desk.now.isoformat(),
            "team": state.team,
            "to_team": to_team,
            **actor.history(),
            "transfers": state.transfers,
            "limit": limit,
        },
    )
    change.outbox.append(_refused_event(state, desk, to_team, actor, callback_id=cb["id"]))
    return change, CaseError(
        409,
        f"{_limit_message(state, limit)}; a callback request for team '{to_team}' was created instead",
        transfers=state.transfers,
        transfer_limit=limit,
        callback_request=cb,
    )


def _refuse_to_coordination(
    state: CaseState, desk: Desk, to_team: str, note: str | None, actor: Actor
) -> Decision:
    limit = desk.transfer_limit
    coordinating = desk.tenant.loaded.rules.coordinating_team
    message = _limit_message(state, limit)
    if state.team == coordinating:
        raise CaseError(
            409,
            f"{message}; it stays with the coordinating team '{coordinating}'",
            transfers=state.transfers,
            transfer_limit=limit,
            team=state.team,
        )
    hint = f"{note} (intended team: {to_team})" if note else f"intended team: {to_team}"
    refused = CaseError(
        409,
        f"{message}; it went to the coordinating team '{coordinating}' instead",
        transfers=state.transfers,
        transfer_limit=limit,
        team=coordinating,
        intended_team=to_team,
    )
    change, _ = move(state, desk, coordinating, hint, actor, kind="reassigned", refused=refused)
    change.outbox.append(_refused_event(state, desk, to_team, actor, moved_to=coordinating))
    return change, refused


# -- callback requests ----------------------------------------------------------------------------


def _sender_phone(contact: Contact) -> str | None:
    return contact.sender.phone if contact.sender and contact.sender.phone else None


def callback_change(
    state: CaseState,
    desk: Desk,
    *,
    team: str,
    reason: str,
    phone: str | None,
    preferred_time: str | None,
    actor: Actor,
    origin: str,
) -> tuple[Change, dict[str, Any]]:
    """A new callback request for `team`, due in the tenant's callback term counted from `desk.now`."""
    term = desk.tenant.loaded.rules.callback_term()
    if term is None:
        raise CaseError(422, f"tenant '{state.tenant}' has no callback norm in its rules")
    n = int(state.fields.get("callbacks", "0")) + 1
    cbid = callback_id(state.cid, n)
    deadline = desk.tenant.deadline("callback", term, desk.now)
    cb = {
        "id": cbid,
        "contact_id": state.cid,
        "tenant": state.tenant,
        "team": team,
        "reason": reason,
        "phone": phone or "",
        "preferred_time": preferred_time or "",
        "status": "open",
        "created_at": desk.now.isoformat(),
        "created_by": actor.agent or "",
        "origin": origin,
        "term": str(term),
        "due": deadline.due.isoformat(),
        "warning_at": deadline.warning_at.isoformat(),
        "attempts": "0",
    }
    change = Change(fields={"callbacks": str(n)}, callbacks={n: cb})
    change.history.append(
        {
            "event": "callback.requested",
            "at": desk.now.isoformat(),
            "callback_id": cbid,
            "team": team,
            **actor.history(),
            "reason": reason,
            "due": cb["due"],
            "origin": origin,
        }
    )
    item = {"callback_request": public_callback(cb), "contact": state.contact().model_dump(mode="json")}
    headers = {topology.H_CONTACT_ID: state.cid, "x-callback-id": cbid}
    change.outbox.append(team_item(desk.names, state.tenant, team, item, str(uuid.uuid4()), headers))
    change.outbox.append(
        desk.event(
            "callback.requested",
            state,
            callback_id=cbid,
            team=team,
            due=cb["due"],
            origin=origin,
            **actor.event(),
        )
    )
    change.listed_add.append((team, cbid, epoch_ms(deadline.due)))
    change.timers_add = {
        f"{cbid}|callback|warning": epoch_ms(deadline.warning_at),
        f"{cbid}|callback|breach": epoch_ms(deadline.due),
    }
    return change, public_callback(cb)


def request_callback(
    state: CaseState,
    desk: Desk,
    *,
    team: str | None,
    reason: str,
    phone: str | None,
    preferred_time: str | None,
    agent: str | None,
    origin: str = "agent",
    by: str | None = None,
    agent_name: str | None = None,
) -> Decision:
    """An agent asks `team` (default: the contact's team) to call the resident back."""
    if state.status == "closed":
        raise CaseError(409, "the contact is closed; reopen it by a new contact")
    target = team or state.team
    if target not in desk.team_ids():
        raise _unknown_team("team", target, state.tenant)
    return callback_change(
        state,
        desk,
        team=target,
        reason=reason,
        phone=phone or _sender_phone(state.contact()),
        preferred_time=preferred_time,
        actor=Actor(agent, by, agent_name),
        origin=origin,
    )


def record_attempt(
    state: CaseState,
    desk: Desk,
    cbid: str,
    *,
    outcome: str,
    note: str | None,
    agent: str,
    by: str | None = None,
    agent_name: str | None = None,
) -> Decision:
    """One attempt to call back; `reached` closes the request, its timers and its work-list entry."""
    parsed = parse_callback_id(cbid)
    cb = state.callbacks.get(parsed[1]) if parsed and parsed[0] == state.cid else None
    if parsed is None or cb is None:
        raise CaseError(404, f"no callback request with id '{cbid}'")
    if cb["status"] != "open":
        raise CaseError(409, "the callback request is already closed", callback_request=public_callback(cb))
    now = desk.now.isoformat()
    attempts = int(cb.get("attempts", "0")) + 1
    closes = outcome == "reached"
    updated = {"attempts": str(attempts), "last_outcome": outcome, "last_attempt_at": now}
    if closes:
        updated.update(status="closed", closed_at=now, closed_reason="reached")
    actor = Actor(agent, by, agent_name)
    change = Change(callbacks={parsed[1]: updated})
    change.history.append(
        {
            "event": "callback.attempted",
            "at": now,
            "callback_id": cbid,
            "outcome": outcome,
            "note": note,
            **actor.history(),
            "attempt": attempts,
        }
    )
    change.outbox.append(
        desk.event(
            "callback.attempted",
            state,
            callback_id=cbid,
            outcome=outcome,
            attempt=attempts,
            **actor.event(),
            closed=closes,
        )
    )
    if closes:
        change.listed_remove.append((cb["team"], cbid))
        change.timers_remove = timer_members(cbid, "callback")
    return change, public_callback({**cb, **updated})


# -- responses and closing ------------------------------------------------------------------------


def record_response(
    state: CaseState,
    desk: Desk,
    *,
    kind: str,
    note: str | None,
    agent: str,
    by: str | None = None,
    agent_name: str | None = None,
) -> Decision:
    """The resident got an acknowledgement or a reaction: that deadline is met (on time or late)."""
    if state.status == "closed":
        raise CaseError(409, "the contact is closed")
    deadline = next((d for d in state.deadlines() if d["kind"] == kind), None)
    due = deadline["due"] if deadline else None
    met = deadline is None or desk.now <= datetime.fromisoformat(deadline["due"])
    actor = Actor(agent, by, agent_name)
    change = Change(fields={f"met:{kind}": desk.now.isoformat()})
    change.history.append(
        {
            "event": "deadline.met" if met else "deadline.met_late",
            "at": desk.now.isoformat(),
            "kind": kind,
            **actor.history(),
            "note": note,
            "due": due,
        }
    )
    change.outbox.append(desk.event("deadline.met", state, kind=kind, on_time=met, due=due, **actor.event()))
    change.timers_remove = timer_members(state.cid, kind)
    if kind == "respond":
        change.listed_add.append((state.team, state.cid, NO_DEADLINE_SCORE))
    return change, {"id": state.cid, "kind": kind, "on_time": met, "due": due}


def close(
    state: CaseState,
    desk: Desk,
    *,
    resolution: str,
    agent: str | None,
    by: str | None = None,
    agent_name: str | None = None,
) -> Decision:
    """Close the contact: its timers, its work-list entry and its open callback requests end with it."""
    if state.status == "closed":
        raise CaseError(409, "the contact is already closed")
    now = desk.now.isoformat()
    actor = Actor(agent, by, agent_name)
    change = Change(fields={"status": "closed", "closed_at": now, "resolution": resolution})
    change.history.append({"event": "contact.closed", "at": now, **actor.history(), "resolution": resolution})
    change.outbox.append(desk.event("contact.closed", state, team=state.team, **actor.event()))
    change.listed_remove.append((state.team, state.cid))
    for d in state.deadlines():
        change.timers_remove += timer_members(state.cid, d["kind"])
    for n, cb in state.callbacks.items():
        if cb.get("status") == "open":
            cbid = callback_id(state.cid, n)
            change.callbacks[n] = {"status": "closed", "closed_at": now, "closed_reason": "contact closed"}
            change.listed_remove.append((cb["team"], cbid))
            change.timers_remove += timer_members(cbid, "callback")
    return change, {"id": state.cid, "status": "closed", "closed_at": now}
