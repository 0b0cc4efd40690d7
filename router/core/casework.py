"""The rules of case work, as decisions over plain data: transfer, callback request, callback attempt,
closing a callback request, response, extension, close.

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
from router.core.calendar.terms import Term
from router.core.clock import epoch_ms
from router.core.contact import Contact, Hop
from router.core.deadlines import NO_DEADLINE_SCORE as NO_DEADLINE_SCORE  # re-exported
from router.core.deadlines import OpenDeadline, score, soonest_open
from router.core.messages import OutMessage, dumps, event_message, team_item
from router.core.notices import Notice, NoticeChannel, extension_text, unreachable_text
from router.core.phones import e164_or_as_is
from router.core.tenants import Tenant
from router.core.topology import Names

# Channels where the resident is on the line: past the transfer limit they get a callback instead.
SYNCHRONOUS_CHANNELS = frozenset({"phone", "counter", "chat"})
CALLBACK_OUTCOMES = ("reached", "no_answer", "wrong_number")
# Why a callback request ends: the resident was reached, the number is wrong, they could not be reached
# (by hand, or the tenant's policy after its number of attempts), or the question was settled otherwise.
CALLBACK_CLOSE_REASONS = ("reached", "wrong_number", "unreachable", "resolved_otherwise")
RESPONSE_KINDS = ("acknowledge", "respond")
# What a transfer did: moved as asked; past the limit, sent to the coordinating team (written channels);
# the coordinating team's one final assignment to the right desk.
TRANSFER_OUTCOMES = ("transferred", "sent_to_coordinating_team", "assigned")
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

    @property
    def acknowledged(self) -> bool:
        """The adapter sent the acknowledgement of receipt itself (metadata `acknowledged_at`)."""
        if self.parsed is None and "contact" not in self.fields:
            return False
        return "acknowledged_at" in self.contact().metadata


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
    # E-mails to the resident the service sends itself once the change is committed (not stored).
    notices: list[Notice] = field(default_factory=list, compare=False, repr=False)

    def is_empty(self) -> bool:
        """Nothing to write: the decision found the work already done (a deadline met once)."""
        return not (
            self.fields
            or self.history
            or self.outbox
            or self.callbacks
            or self.listed_add
            or self.listed_remove
            or self.timers_add
            or self.timers_remove
        )

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
            notices=[*self.notices, *other.notices],
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
    # The service mails residents of this tenant itself (an acknowledgement sender is configured); when
    # False a notice to a resident becomes a work item for the team.
    mails: bool = False

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


def open_deadline(state: CaseState, deadlines: list[dict[str, str]] | None = None) -> OpenDeadline | None:
    """The contact's soonest open deadline of any kind (router.core.deadlines)."""
    return soonest_open(
        state.deadlines() if deadlines is None else deadlines, state.fields, state.acknowledged
    )


def contact_score(state: CaseState, deadlines: list[dict[str, str]] | None = None) -> int:
    """A contact's place in its team's work list: its soonest open deadline (epoch ms), or last."""
    return score(open_deadline(state, deadlines))


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
        "counted_from": cb.get("counted_from") or cb.get("created_at"),
        "created_at": cb.get("created_at"),
        "created_by": cb.get("created_by"),
        "origin": cb.get("origin"),
        "attempts": int(cb.get("attempts", "0")),
        "last_outcome": cb.get("last_outcome"),
        "closed_at": cb.get("closed_at") or None,
        "closed_reason": cb.get("closed_reason"),
    }


def _unknown_team(field_name: str, team: str, tenant: str, teams: list[str]) -> CaseError:
    return CaseError(
        422,
        f"team '{team}' is unknown",
        fields=[{"field": field_name, "message": unknown_team_message(team, tenant, teams)}],
    )


def unknown_team_message(team: str, tenant: str, teams: list[str]) -> str:
    """ "team 'Burgerzaken' is unknown; teams of ommen: kcc, burgerzaken, …" """
    return f"team '{team}' is unknown; teams of {tenant}: {', '.join(teams)}"


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
        raise _unknown_team("to_team", to_team, state.tenant, desk.team_ids())
    if to_team == state.team:
        # 409, not 422: the request is valid; the contact's current state is what it conflicts with.
        raise CaseError(
            409,
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
    since: datetime | None = None,
) -> Decision:
    """A warm transfer, counted. Past the tenant's limit: on a channel where the resident is on the line
    the transfer is refused and the intended team gets a callback request (due in the callback term from
    `since`, default now); a written contact goes to the coordinating team, whose one final assignment to
    the right desk is then where it stays."""
    check_transfer(state, desk, to_team=to_team, from_team=from_team, if_match=if_match)
    actor = Actor(agent, by, agent_name)
    if state.transfers < desk.transfer_limit:
        return move(state, desk, to_team, note, actor, kind="transferred")
    if state.channel in SYNCHRONOUS_CHANNELS:
        return _refuse_with_callback(state, desk, to_team, note, actor, since)
    return _past_the_limit(state, desk, to_team, note, actor)


def move(
    state: CaseState,
    desk: Desk,
    to_team: str,
    note: str | None,
    actor: Actor,
    *,
    kind: str,
    final: bool = False,
) -> tuple[Change, dict[str, Any]]:
    """Hand the contact to `to_team`; only a `transferred` hop counts against the limit. `final`: the
    coordinating team's last assignment (the contact stays there)."""
    counted = kind == "transferred"
    transfers = state.transfers + (1 if counted else 0)
    hop = Hop(kind=kind, team=to_team, from_team=state.team, agent=actor.agent, at=desk.now, note=note)  # type: ignore[arg-type]
    contact = state.contact()
    contact = contact.model_copy(update={"hops": [*contact.hops, hop]})
    change = Change(contact=contact)
    change.fields = {"contact": contact.model_dump_json(), "team": to_team, "transfers": str(transfers)}
    # The new team's agents take it afresh: whoever had it at the old desk no longer does.
    change.fields |= {"owner": "", "owner_name": "", "taken_at": ""}
    marks: dict[str, Any] = {"final": True} if final else {}
    change.history.append(
        {
            "event": f"contact.{kind}",
            "at": desk.now.isoformat(),
            "from_team": state.team,
            "team": to_team,
            **actor.history(),
            "note": note,
            "transfers": transfers,
            **marks,
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
            **marks,
        )
    )
    change.listed_remove.append((state.team, state.cid))
    change.listed_add.append((to_team, state.cid, contact_score(state)))
    result: dict[str, Any] = {
        "id": state.cid,
        "team": to_team,
        "from_team": state.team,
        "transfers": transfers,
        "transfer_limit": desk.transfer_limit,
        "outcome": "transferred",
        "intended_team": to_team,
        "message": f"transferred to team '{to_team}'",
    }
    return change, result


def _limit_message(state: CaseState, limit: int) -> str:
    return (
        f"{state.tenant} transfers a contact at most {limit} time(s) and this one was transferred "
        f"{state.transfers} time(s)"
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
    state: CaseState, desk: Desk, to_team: str, note: str | None, actor: Actor, since: datetime | None
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
        since=since,
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
        f"transfer refused: {_limit_message(state, limit)}; a callback request for team '{to_team}' "
        "takes its place (the resident is called back, not transferred again)",
        transfers=state.transfers,
        transfer_limit=limit,
        callback_request=cb,
    )


def _past_the_limit(state: CaseState, desk: Desk, to_team: str, note: str | None, actor: Actor) -> Decision:
    """A written contact past the limit: to the coordinating team, which assigns it once more, finally."""
    limit = desk.transfer_limit
    coordinating = desk.tenant.loaded.rules.coordinating_team
    if state.fields.get("assigned_at"):
        raise CaseError(
            409,
            f"transfer refused: {_limit_message(state, limit)}, and the coordinating team "
            f"'{coordinating}' already assigned it to its final team: it stays with '{state.team}'",
            transfers=state.transfers,
            transfer_limit=limit,
            team=state.team,
        )
    if state.team == coordinating:
        change, result = move(state, desk, to_team, note, actor, kind="reassigned", final=True)
        change.fields["assigned_at"] = desk.now.isoformat()
        result.update(
            outcome="assigned",
            message=f"assigned to team '{to_team}' by the coordinating team; the transfer limit is "
            f"reached, so it stays there",
        )
        return change, result
    hint = f"{note} (intended team: {to_team})" if note else f"intended team: {to_team}"
    change, result = move(state, desk, coordinating, hint, actor, kind="reassigned")
    change.outbox.append(_refused_event(state, desk, to_team, actor, moved_to=coordinating))
    result.update(
        outcome="sent_to_coordinating_team",
        intended_team=to_team,
        message=f"sent to the coordinating team '{coordinating}' ({_limit_message(state, limit)}); "
        f"it gives the contact to the right team",
    )
    return change, result


# -- callback requests ----------------------------------------------------------------------------


def _sender_phone(contact: Contact) -> str | None:
    return contact.sender.phone if contact.sender and contact.sender.phone else None


def open_callback(state: CaseState, team: str) -> dict[str, str] | None:
    """The contact's open callback request for `team`, if it has one."""
    for _, cb in sorted(state.callbacks.items()):
        if cb.get("status") == "open" and cb.get("team") == team:
            return cb
    return None


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
    since: datetime | None = None,
) -> tuple[Change, dict[str, Any]]:
    """A callback request for `team`, due in the tenant's callback term counted from `since` (the moment
    the promise was made: the call of a phone note; default now). A contact has at most one open request
    per team: asked again (three agents refusing one transfer at once), the open one is the answer and
    the history notes the new ask."""
    term = desk.tenant.loaded.rules.callback_term()
    if term is None:
        raise CaseError(422, f"tenant '{state.tenant}' has no callback norm in its rules")
    existing = open_callback(state, team)
    if existing is not None:
        return _asked_again(desk, existing, team, reason, actor, origin), public_callback(existing)
    n = int(state.fields.get("callbacks", "0")) + 1
    cbid = callback_id(state.cid, n)
    start = since or desk.now
    deadline = desk.tenant.deadline("callback", term, start)
    cb = {
        "id": cbid,
        "contact_id": state.cid,
        "tenant": state.tenant,
        "team": team,
        "reason": reason,
        "phone": e164_or_as_is(phone) if phone else "",
        "preferred_time": preferred_time or "",
        "status": "open",
        "counted_from": start.isoformat(),
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


def _asked_again(
    desk: Desk, existing: dict[str, str], team: str, reason: str, actor: Actor, origin: str
) -> Change:
    """A callback asked of a team that has one open: only the history notes it."""
    change = Change()
    change.history.append(
        {
            "event": "callback.requested_again",
            "at": desk.now.isoformat(),
            "callback_id": existing["id"],
            "team": team,
            **actor.history(),
            "reason": reason,
            "origin": origin,
        }
    )
    return change


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
    since: datetime | None = None,
) -> Decision:
    """An agent asks `team` (default: the contact's team) to call the resident back; the answer is the
    open request of that team when there is one."""
    if state.status == "closed":
        raise CaseError(409, "the contact is closed; reopen it by a new contact")
    target = team or state.team
    if target not in desk.team_ids():
        raise _unknown_team("team", target, state.tenant, desk.team_ids())
    return callback_change(
        state,
        desk,
        team=target,
        reason=reason,
        phone=phone or _sender_phone(state.contact()),
        preferred_time=preferred_time,
        actor=Actor(agent, by, agent_name),
        origin=origin,
        since=since,
    )


def _callback_of(state: CaseState, cbid: str) -> tuple[int, dict[str, str]]:
    parsed = parse_callback_id(cbid)
    cb = state.callbacks.get(parsed[1]) if parsed and parsed[0] == state.cid else None
    if parsed is None or cb is None:
        raise CaseError(404, f"no callback request with id '{cbid}'")
    if cb["status"] != "open":
        raise CaseError(409, "the callback request is already closed", callback_request=public_callback(cb))
    return parsed[1], cb


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
    """One attempt to call back; `reached` closes the request. A tenant with a callback policy closes it
    as `unreachable` after its number of attempts that did not reach the resident, and follows up."""
    n, cb = _callback_of(state, cbid)
    now = desk.now.isoformat()
    attempts = int(cb.get("attempts", "0")) + 1
    closes = outcome == "reached"
    failed = int(cb.get("failed_attempts", "0")) + (0 if closes else 1)
    updated = {
        "attempts": str(attempts),
        "failed_attempts": str(failed),
        "last_outcome": outcome,
        "last_attempt_at": now,
    }
    actor = Actor(agent, by, agent_name)
    change = Change(callbacks={n: updated})
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
    policy = desk.tenant.loaded.rules.callback_policy
    gives_up = not closes and policy is not None and failed >= policy.attempts
    change.outbox.append(
        desk.event(
            "callback.attempted",
            state,
            callback_id=cbid,
            outcome=outcome,
            attempt=attempts,
            **actor.event(),
            closed=closes or gives_up,
        )
    )
    if closes or gives_up:
        after = {**cb, **updated}
        ending = _end_callback(
            state,
            desk,
            n,
            after,
            reason="reached" if closes else "unreachable",
            actor=actor,
            by_policy=gives_up,
        )
        change = change.merge(ending)
        updated = {**updated, **ending.callbacks[n]}
    return change, public_callback({**cb, **updated})


def close_callback(
    state: CaseState,
    desk: Desk,
    cbid: str,
    *,
    reason: str,
    note: str | None,
    agent: str,
    by: str | None = None,
    agent_name: str | None = None,
) -> Decision:
    """The team closes a callback request with a reason (CALLBACK_CLOSE_REASONS); `unreachable` follows
    the tenant's callback policy (a letter or e-mail to the resident)."""
    n, cb = _callback_of(state, cbid)
    actor = Actor(agent, by, agent_name)
    change = _end_callback(state, desk, n, cb, reason=reason, actor=actor, note=note)
    return change, public_callback({**cb, **change.callbacks[n]})


def _end_callback(
    state: CaseState,
    desk: Desk,
    n: int,
    cb: dict[str, str],
    *,
    reason: str,
    actor: Actor,
    note: str | None = None,
    by_policy: bool = False,
) -> Change:
    """Close callback request `n`: its work-list entry and timers go; an `unreachable` one gets the
    policy's follow-up."""
    cbid = cb["id"]
    now = desk.now.isoformat()
    closed = {"status": "closed", "closed_at": now, "closed_reason": reason}
    change = Change(callbacks={n: closed})
    policy = desk.tenant.loaded.rules.callback_policy
    follow_up: dict[str, Any] | None = None
    if reason == "unreachable" and policy is not None and policy.then != "close":
        follow_up = _unreachable_notice(state, desk, change, cb, policy.then)
    change.history.append(
        {
            "event": "callback.closed",
            "at": now,
            "callback_id": cbid,
            "reason": reason,
            "note": note,
            **actor.history(),
            "by_policy": by_policy,
            "follow_up": follow_up["channel"] if follow_up else None,
        }
    )
    change.outbox.append(
        desk.event(
            "callback.closed",
            state,
            callback_id=cbid,
            team=cb["team"],
            reason=reason,
            by_policy=by_policy,
            follow_up=follow_up["channel"] if follow_up else None,
            **actor.event(),
        )
    )
    change.listed_remove.append((cb["team"], cbid))
    change.timers_remove = timer_members(cbid, "callback")
    return change


def _notice_channel(contact: Contact, wanted: NoticeChannel) -> tuple[NoticeChannel, str | None]:
    email = contact.sender.email if contact.sender and contact.sender.email else None
    return ("email", email) if wanted == "email" and email else ("letter", None)


def deliver_notice(state: CaseState, desk: Desk, change: Change, notice: Notice, team: str) -> dict[str, Any]:
    """An e-mail the service can send goes into `change.notices`; anything else becomes a work item for
    `team`, which tells the resident. Returns the notice as the API shows it."""
    sent = notice.channel == "email" and desk.mails
    if sent:
        change.notices.append(notice)
    else:
        item = {"notice": notice.public(sent=False), "contact": state.contact().model_dump(mode="json")}
        headers = {topology.H_CONTACT_ID: state.cid, "x-notice": notice.kind}
        change.outbox.append(team_item(desk.names, state.tenant, team, item, str(uuid.uuid4()), headers))
    return notice.public(sent=sent)


def _unreachable_notice(
    state: CaseState, desk: Desk, change: Change, cb: dict[str, str], wanted: NoticeChannel
) -> dict[str, Any]:
    contact = state.contact()
    rules = desk.tenant.loaded.rules
    subject, text = unreachable_text(
        tenant_name=rules.name,
        reference=contact.reference,
        attempts=int(cb.get("attempts", "0")),
        phone=rules.contact_details.phone,
    )
    channel, to = _notice_channel(contact, wanted)
    notice = Notice(
        "callback_unreachable", state.tenant, state.cid, contact.reference, channel, subject, text, to
    )
    return deliver_notice(state, desk, change, notice, cb["team"])


# -- responses, extensions and closing ------------------------------------------------------------


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
    """The resident got an acknowledgement or a reaction: that deadline is met (on time or late). The
    moment is written once: recording it again changes nothing and answers the first one."""
    if state.status == "closed":
        raise CaseError(409, "the contact is closed")
    deadline = next((d for d in state.deadlines() if d["kind"] == kind), None)
    due = deadline["due"] if deadline else None
    met_at = state.fields.get(f"met:{kind}")
    if met_at:
        on_time = due is None or datetime.fromisoformat(met_at) <= datetime.fromisoformat(due)
        return Change(), {"id": state.cid, "kind": kind, "on_time": on_time, "due": due, "met_at": met_at}
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
    # The work list follows the soonest deadline still open (the next one once this one is met).
    after = CaseState(state.cid, {**state.fields, **change.fields}, parsed=state.parsed)
    if state.status == "routed" and contact_score(after) != contact_score(state):
        change.listed_add.append((state.team, state.cid, contact_score(after)))
    return change, {"id": state.cid, "kind": kind, "on_time": met, "due": due, "met_at": desk.now.isoformat()}


def _extensible(state: CaseState, desk: Desk, deadlines: list[dict[str, str]], kind: str) -> tuple[int, Term]:
    """Where the `kind` deadline is and its term, or the CaseError that refuses to extend it."""
    if state.status == "closed":
        raise CaseError(409, "the contact is closed")
    index = next((i for i, d in enumerate(deadlines) if d["kind"] == kind), None)
    if index is None:
        kinds = ", ".join(d["kind"] for d in deadlines) or "none"
        # 409, not 422: the request is well formed; this contact's deadlines do not allow it.
        raise CaseError(
            409,
            f"the contact has no '{kind}' deadline",
            fields=[{"field": "kind", "message": f"the deadlines of this contact: {kinds}"}],
        )
    d = deadlines[index]
    term = Term.parse(d["term"])
    if term.extension is None:
        raise CaseError(
            409,
            f"the norm of the '{kind}' deadline ({term}) has no extension term",
            fields=[
                {
                    "field": "kind",
                    "message": "only a norm with an extension (e.g. '12 weeks + 6 weeks') extends",
                }
            ],
        )
    if state.fields.get(f"met:{kind}"):
        raise CaseError(409, f"the '{kind}' deadline is already met")
    if "original_due" in d:
        raise CaseError(
            409, f"the '{kind}' deadline was already extended (to {d['due']}); a term extends once"
        )
    if desk.now > datetime.fromisoformat(d["due"]):
        raise CaseError(
            409, f"the '{kind}' deadline passed at {d['due']}; a term can only be extended before it ends"
        )
    return index, term


def _extension_notice(
    state: CaseState, desk: Desk, change: Change, term: Term, due: datetime
) -> dict[str, Any]:
    """Tell the resident of the new date: an e-mail where there is an address, else a letter."""
    assert term.extension is not None
    contact = state.contact()
    rules = desk.tenant.loaded.rules
    subject, text = extension_text(
        tenant_name=rules.name,
        reference=contact.reference,
        category=state.fields.get("category") or None,
        extension=term.extension,
        due=due,
        term=term,
        zone=rules.calendar.timezone,
        phone=rules.contact_details.phone,
    )
    channel, to = _notice_channel(contact, "email")
    return deliver_notice(
        state,
        desk,
        change,
        Notice("deadline_extended", state.tenant, state.cid, contact.reference, channel, subject, text, to),
        state.team,
    )


def extend(
    state: CaseState,
    desk: Desk,
    *,
    kind: str,
    reason: str,
    agent: str,
    by: str | None = None,
    agent_name: str | None = None,
) -> Decision:
    """Extend the `kind` deadline by its norm's extension term ("12 weeks + 6 weeks": to 18 weeks from
    receipt), once, before it ends. The new deadline is recorded with its reason, and the resident is
    told: by e-mail from the service where it can, otherwise through a work item for the team."""
    deadlines = state.deadlines()
    index, term = _extensible(state, desk, deadlines, kind)
    d = deadlines[index]
    assert term.extension is not None
    received = datetime.fromisoformat(state.fields["received_at"])
    calendar = desk.tenant.calendar
    due = calendar.deadline(received, term.extended())
    warning_at = calendar.warning_point(received, term.extended())
    extension = str(term.extension)
    new = {
        **d,
        "due": due.isoformat(),
        "warning_at": warning_at.isoformat(),
        "original_due": d["due"],
        "extension": extension,
        "extended_at": desk.now.isoformat(),
    }
    deadlines[index] = new
    actor = Actor(agent, by, agent_name)
    change = Change(fields={"deadlines": dumps(deadlines)})
    change.timers_remove = timer_members(state.cid, kind)
    change.timers_add = {
        f"{state.cid}|{kind}|warning": epoch_ms(warning_at),
        f"{state.cid}|{kind}|breach": epoch_ms(due),
    }
    if state.status == "routed":
        change.listed_add.append((state.team, state.cid, contact_score(state, deadlines)))
    notice = _extension_notice(state, desk, change, term, due)
    change.history.append(
        {
            "event": "deadline.extended",
            "at": desk.now.isoformat(),
            "kind": kind,
            "due": new["due"],
            "original_due": d["due"],
            "extension": extension,
            **actor.history(),
            "reason": reason,
            "notice": notice["channel"],
        }
    )
    change.outbox.append(
        desk.event(
            "deadline.extended",
            state,
            kind=kind,
            due=new["due"],
            original_due=d["due"],
            extension=extension,
            notice=notice["channel"],
            notice_sent=notice["sent_by_service"],
            **actor.event(),
        )
    )
    result = {
        "id": state.cid,
        "kind": kind,
        "term": d["term"],
        "extension": extension,
        "original_due": d["due"],
        "due": new["due"],
        "warning_at": new["warning_at"],
        "notice": notice,
    }
    return change, result


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


def take(
    state: CaseState,
    desk: Desk,
    *,
    agent: str,
    by: str | None = None,
    agent_name: str | None = None,
) -> Decision:
    """An agent takes the contact ("ik pak dit op"), so two agents do not work one item. A contact
    another agent has taken is refused (409 naming that agent's id); taking it again is answered as is.
    A transfer hands the contact over untaken."""
    if state.status != "routed":
        raise CaseError(409, f"the contact is {state.status}; it cannot be taken")
    owner = state.fields.get("owner") or None
    answer = {"id": state.cid, "team": state.team, "owner": agent, "taken_at": state.fields.get("taken_at")}
    if owner == agent:
        return Change(), answer
    if owner is not None:
        raise CaseError(409, f"agent '{owner}' has taken this contact", owner=owner)
    now = desk.now.isoformat()
    actor = Actor(agent, by, agent_name)
    change = Change(fields={"owner": agent, "owner_name": agent_name or "", "taken_at": now})
    change.history.append({"event": "contact.taken", "at": now, "team": state.team, **actor.history()})
    change.outbox.append(desk.event("contact.taken", state, team=state.team, **actor.event()))
    return change, {**answer, "taken_at": now}
