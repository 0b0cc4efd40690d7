"""What agents and back-office systems do with a routed contact: transfer it, ask for a callback,
record callback attempts and responses, close it; and the team work lists.

Every change is an optimistic, atomic update of one contact in Redis (a Lua script that checks the
contact's version): two agents acting on one contact at once cannot both win. The script also writes
the messages the change must publish into the contact's outbox, in the same step; they are then
published with confirms and removed. A crash in between leaves them in the outbox, and the scheduler's
relay publishes them later, so nothing is lost (consumers may see a message twice: dedupe on message_id).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router import logs, topology
from router.clock import Clock, epoch_ms
from router.contact import Contact, Hop
from router.keys import Keys
from router.outbound import Outbound, OutMessage
from router.routing import event_message
from router.store import StoreUnavailable
from router.tenants import Tenant
from router.topology import Names

log = logs.get("router.casework")

# Channels where the resident is on the line: past the transfer limit they get a callback instead.
SYNCHRONOUS_CHANNELS = frozenset({"phone", "counter", "chat"})
CALLBACK_OUTCOMES = ("reached", "no_answer", "wrong_number")
RESPONSE_KINDS = ("acknowledge", "respond")
_NO_DEADLINE_SCORE = 32503680000000

# KEYS[1] contact hash, KEYS[2] history, KEYS[3] outbox, KEYS[4..] callback hashes (same slot).
# ARGV: expected version, then counted groups: contact fields, history entries, outbox entries, and one
# field group per extra key. Returns the new version, or -1 when the contact changed meanwhile.
APPLY = """
local version = redis.call('HGET', KEYS[1], 'version')
if version ~= ARGV[1] then return -1 end
local i = 2
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('RPUSH', KEYS[2], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('RPUSH', KEYS[3], ARGV[i]); i = i + 1 end
for k = 4, #KEYS do
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do redis.call('HSET', KEYS[k], ARGV[i], ARGV[i + 1]); i = i + 2 end
end
local new = tonumber(version) + 1
redis.call('HSET', KEYS[1], 'version', new)
return new
"""

_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class CaseError(Exception):
    """A refusal with an HTTP status and a JSON body for the caller."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


@dataclass
class CaseState:
    cid: str
    fields: dict[str, str]
    callbacks: dict[int, dict[str, str]]

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

    def contact(self) -> Contact:
        return Contact.model_validate_json(self.fields["contact"])

    def deadlines(self) -> list[dict[str, str]]:
        result: list[dict[str, str]] = json.loads(self.fields.get("deadlines", "[]"))
        return result


@dataclass
class Change:
    """One atomic change of a contact: fields, history, outbox, callback hashes, then index work."""

    fields: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[OutMessage] = field(default_factory=list)
    callbacks: dict[int, dict[str, str]] = field(default_factory=dict)
    index_add: list[tuple[str, str, int]] = field(default_factory=list)  # (index key, member, score)
    index_remove: list[tuple[str, str]] = field(default_factory=list)
    timers_add: dict[str, int] = field(default_factory=dict)
    timers_remove: list[str] = field(default_factory=list)


def callback_id(cid: str, n: int) -> str:
    return f"{cid}-cb{n}"


def parse_callback_id(cbid: str) -> tuple[str, int] | None:
    cid, sep, n = cbid.rpartition("-cb")
    if not sep or not n.isdigit() or len(cid) != 36:
        return None
    return cid, int(n)


def timer_members(subject: str, kind: str) -> list[str]:
    return [f"{subject}|{kind}|warning", f"{subject}|{kind}|breach"]


class Casework:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        names: Names,
        tenants: dict[str, Tenant],
        clock: Clock,
        outbound: Outbound,
    ):
        self.r = client
        self.keys = keys
        self.names = names
        self.tenants = tenants
        self.clock = clock
        self.outbound = outbound
        self._apply = self.r.register_script(APPLY)

    # -- reading -------------------------------------------------------------------------------

    async def load(self, cid: str) -> CaseState | None:
        try:
            raw: dict[bytes, bytes] = await self.r.hgetall(self.keys.contact(cid))  # type: ignore[assignment]
            if not raw:
                return None
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            callbacks: dict[int, dict[str, str]] = {}
            count = int(fields.get("callbacks", "0"))
            if count:
                async with self.r.pipeline(transaction=False) as pipe:
                    for n in range(1, count + 1):
                        pipe.hgetall(self.keys.callback(cid, n))
                    rows = await pipe.execute()
                for n, row in enumerate(rows, start=1):
                    if row:
                        callbacks[n] = {k.decode(): v.decode() for k, v in row.items()}
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return CaseState(cid, fields, callbacks)

    async def history(self, cid: str) -> list[dict[str, Any]]:
        try:
            rows = await self.r.lrange(self.keys.history(cid), 0, -1)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [json.loads(r) for r in rows]

    async def open_case(self, cid: str, allowed: Any) -> CaseState:
        """The contact if it exists and the caller may see its tenant; 404 otherwise (never 403)."""
        state = await self.load(cid)
        if state is None or "tenant" not in state.fields or not allowed(state.tenant):
            raise CaseError(404, f"no contact with id '{cid}'")
        if state.status == "routing":
            raise CaseError(409, "the contact is still being routed; try again in a moment")
        return state

    # -- writing -------------------------------------------------------------------------------

    async def _commit(self, state: CaseState, change: Change) -> bool:
        keys = [self.keys.contact(state.cid), self.keys.history(state.cid), self.keys.outbox(state.cid)]
        args: list[Any] = [state.version, len(change.fields)]
        for k, v in change.fields.items():
            args += [k, v]
        args.append(len(change.history))
        args += [json.dumps(h, separators=(",", ":")) for h in change.history]
        args.append(len(change.outbox))
        args += [m.to_json() for m in change.outbox]
        for n, cb_fields in change.callbacks.items():
            keys.append(self.keys.callback(state.cid, n))
            args.append(len(cb_fields))
            for k, v in cb_fields.items():
                args += [k, v]
        try:
            async with self.r.pipeline(transaction=False) as pipe:
                await self._apply(keys=keys, args=args, client=pipe)
                if change.outbox:
                    pipe.zadd(self.keys.outbox_pending(), {state.cid: int(time.time() * 1000)})
                result = (await pipe.execute())[0]
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        if int(result) < 0:
            return False
        try:
            async with self.r.pipeline(transaction=False) as pipe:
                for key, member in change.index_remove:
                    pipe.zrem(key, member)
                for key, member, score in change.index_add:
                    pipe.zadd(key, {member: score})
                if change.timers_remove:
                    pipe.zrem(self.keys.timers(), *change.timers_remove)
                if change.timers_add:
                    pipe.zadd(self.keys.timers(), change.timers_add)
                await pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        await self.flush_outbox(state.cid)
        return True

    async def flush_outbox(self, cid: str) -> int:
        """Publish what a change left in the contact's outbox; keep what the broker did not confirm."""
        try:
            entries = await self.r.lrange(self.keys.outbox(cid), 0, -1)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        sent = 0
        for raw in entries:
            try:
                await self.outbound.publish(OutMessage.from_json(raw))
            except Exception as exc:
                log.warning("outbox_publish_failed", contact_id=cid, error=type(exc).__name__)
                return sent
            await self.r.lrem(self.keys.outbox(cid), 1, raw)  # type: ignore[arg-type]
            sent += 1
        if await self.r.llen(self.keys.outbox(cid)) == 0:
            await self.r.zrem(self.keys.outbox_pending(), cid)
        return sent

    async def _retrying(self, cid: str, allowed: Any, build: Any) -> dict[str, Any]:
        """Load, build a change, commit if nobody changed the contact meanwhile; re-evaluate otherwise."""
        for _ in range(10):
            state = await self.open_case(cid, allowed)
            change, result = build(state)
            if await self._commit(state, change):
                if isinstance(result, CaseError):
                    raise result
                out: dict[str, Any] = result
                return out
        raise CaseError(409, "the contact keeps changing; try again")

    # -- messages --------------------------------------------------------------------------------

    def _event(self, name: str, state: CaseState, now: datetime, **fields: Any) -> OutMessage:
        return event_message(
            self.names(topology.EVENTS), name, now, tenant=state.tenant, contact_id=state.cid, **fields
        )

    def _team_item(self, state: CaseState, contact: Contact, team: str, **routing: Any) -> OutMessage:
        envelope = {
            "contact": contact.model_dump(mode="json"),
            "routing": {
                "team": team,
                "deadlines": state.deadlines(),
                "transfers": routing.pop("transfers"),
                **routing,
            },
        }
        return OutMessage(
            self.names(topology.TEAMS),
            f"{state.tenant}.{team}",
            json.dumps(envelope, separators=(",", ":")),
            str(uuid.uuid4()),
            {topology.H_CONTACT_ID: state.cid},
        )

    def _contact_score(self, state: CaseState) -> int:
        due = [
            d["due"]
            for d in state.deadlines()
            if d["kind"] == "respond" and not state.fields.get("met:respond")
        ]
        return epoch_ms(datetime.fromisoformat(min(due))) if due else _NO_DEADLINE_SCORE

    # -- transfers -------------------------------------------------------------------------------

    async def transfer(
        self,
        cid: str,
        *,
        to_team: str,
        note: str | None,
        agent: str,
        from_team: str | None,
        if_match: str | None,
        allowed: Any,
    ) -> dict[str, Any]:
        if from_team is None and if_match is None:
            raise CaseError(
                428,
                "say which state you transfer from: body field 'from_team' or header If-Match with the "
                "contact's version, so two agents cannot both move the same contact",
            )

        def build(state: CaseState) -> tuple[Change, dict[str, Any] | CaseError]:
            tenant = self.tenants[state.tenant]
            rules = tenant.loaded.rules
            if state.status != "routed":
                raise CaseError(409, f"the contact is {state.status}; it cannot be transferred")
            if if_match is not None and if_match.strip('"') != state.version:
                raise CaseError(
                    412,
                    "the contact changed since you read it (If-Match does not match)",
                    version=state.version,
                )
            if from_team is not None and from_team != state.team:
                raise CaseError(
                    409,
                    f"the contact is no longer with team '{from_team}' (now '{state.team}')",
                    team=state.team,
                )
            if to_team not in rules.team_ids():
                raise CaseError(
                    422,
                    "unknown team",
                    fields=[{"field": "to_team", "message": f"'{to_team}' is not a team of {state.tenant}"}],
                )
            if to_team == state.team:
                raise CaseError(
                    422,
                    "the contact is already with that team",
                    fields=[{"field": "to_team", "message": f"the contact is already with '{to_team}'"}],
                )
            now = self.clock.now()
            contact = state.contact()
            limit = rules.transfer_limit
            if state.transfers < limit:
                return self._move(state, contact, now, to_team, note, agent, kind="transferred")
            if state.fields.get("channel") in SYNCHRONOUS_CHANNELS:
                return self._refuse_with_callback(state, contact, now, to_team, note, agent, limit)
            return self._refuse_to_coordination(state, contact, now, to_team, note, agent, limit)

        return await self._retrying(cid, allowed, build)

    def _move(
        self,
        state: CaseState,
        contact: Contact,
        now: datetime,
        to_team: str,
        note: str | None,
        agent: str,
        *,
        kind: str,
        refused: CaseError | None = None,
    ) -> tuple[Change, dict[str, Any] | CaseError]:
        counted = kind == "transferred"
        transfers = state.transfers + (1 if counted else 0)
        hop = Hop(kind=kind, team=to_team, from_team=state.team, agent=agent, at=now, note=note)  # type: ignore[arg-type]
        contact = contact.model_copy(update={"hops": [*contact.hops, hop]})
        change = Change()
        change.fields = {"contact": contact.model_dump_json(), "team": to_team, "transfers": str(transfers)}
        change.history.append(
            {
                "event": f"contact.{kind}",
                "at": now.isoformat(),
                "from_team": state.team,
                "team": to_team,
                "agent": agent,
                "note": note,
                "transfers": transfers,
            }
        )
        change.outbox.append(self._team_item(state, contact, to_team, transfers=transfers, hop=kind))
        change.outbox.append(
            self._event(
                "contact.transferred",
                state,
                now,
                from_team=state.team,
                team=to_team,
                agent=agent,
                transfers=transfers,
                counted=counted,
            )
        )
        change.index_remove.append((self.keys.team_items(state.tenant, state.team), state.cid))
        change.index_add.append(
            (self.keys.team_items(state.tenant, to_team), state.cid, self._contact_score(state))
        )
        log.info(
            "contact_transferred",
            contact_id=state.cid,
            tenant=state.tenant,
            from_team=state.team,
            team=to_team,
            transfers=transfers,
            counted=counted,
        )
        result: dict[str, Any] | CaseError = refused or {
            "id": state.cid,
            "team": to_team,
            "from_team": state.team,
            "transfers": transfers,
            "transfer_limit": self.tenants[state.tenant].loaded.rules.transfer_limit,
        }
        return change, result

    def _refused_event(
        self, state: CaseState, now: datetime, to_team: str, agent: str, limit: int, **extra: Any
    ) -> OutMessage:
        return self._event(
            "transfer.refused",
            state,
            now,
            team=state.team,
            to_team=to_team,
            agent=agent,
            transfers=state.transfers,
            limit=limit,
            **extra,
        )

    def _refuse_with_callback(
        self,
        state: CaseState,
        contact: Contact,
        now: datetime,
        to_team: str,
        note: str | None,
        agent: str,
        limit: int,
    ) -> tuple[Change, dict[str, Any] | CaseError]:
        phone = contact.sender.phone if contact.sender else None
        change, cb = self._callback_change(
            state,
            contact,
            now,
            team=to_team,
            reason=note or "transfer refused: transfer limit reached",
            phone=phone,
            preferred_time=None,
            agent=agent,
            origin="transfer_refused",
        )
        change.history.insert(
            0,
            {
                "event": "transfer.refused",
                "at": now.isoformat(),
                "team": state.team,
                "to_team": to_team,
                "agent": agent,
                "transfers": state.transfers,
                "limit": limit,
            },
        )
        change.outbox.append(self._refused_event(state, now, to_team, agent, limit, callback_id=cb["id"]))
        log.info(
            "transfer_refused",
            contact_id=state.cid,
            tenant=state.tenant,
            to_team=to_team,
            transfers=state.transfers,
            limit=limit,
            callback_id=cb["id"],
        )
        return change, CaseError(
            409,
            f"{_limit_message(state, limit)}; a callback request for team '{to_team}' was created instead",
            transfers=state.transfers,
            transfer_limit=limit,
            callback_request=cb,
        )

    def _refuse_to_coordination(
        self,
        state: CaseState,
        contact: Contact,
        now: datetime,
        to_team: str,
        note: str | None,
        agent: str,
        limit: int,
    ) -> tuple[Change, dict[str, Any] | CaseError]:
        coordinating = self.tenants[state.tenant].loaded.rules.coordinating_team
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
        change, _ = self._move(
            state, contact, now, coordinating, hint, agent, kind="reassigned", refused=refused
        )
        change.outbox.append(self._refused_event(state, now, to_team, agent, limit, moved_to=coordinating))
        return change, refused

    # -- callback requests ------------------------------------------------------------------------

    def _callback_change(
        self,
        state: CaseState,
        contact: Contact,
        now: datetime,
        *,
        team: str,
        reason: str,
        phone: str | None,
        preferred_time: str | None,
        agent: str,
        origin: str,
    ) -> tuple[Change, dict[str, Any]]:
        tenant = self.tenants[state.tenant]
        term = tenant.loaded.rules.callback_term()
        if term is None:
            raise CaseError(422, f"tenant '{state.tenant}' has no callback norm in its rules")
        n = int(state.fields.get("callbacks", "0")) + 1
        cbid = callback_id(state.cid, n)
        deadline = tenant.deadline("callback", term, now)
        cb = {
            "id": cbid,
            "contact_id": state.cid,
            "tenant": state.tenant,
            "team": team,
            "reason": reason,
            "phone": phone or "",
            "preferred_time": preferred_time or "",
            "status": "open",
            "created_at": now.isoformat(),
            "created_by": agent,
            "origin": origin,
            "term": str(term),
            "due": deadline.due.isoformat(),
            "warning_at": deadline.warning_at.isoformat(),
            "attempts": "0",
        }
        change = Change()
        change.fields = {"callbacks": str(n)}
        change.callbacks[n] = cb
        change.history.append(
            {
                "event": "callback.requested",
                "at": now.isoformat(),
                "callback_id": cbid,
                "team": team,
                "agent": agent,
                "reason": reason,
                "due": cb["due"],
                "origin": origin,
            }
        )
        item = {"callback_request": public_callback(cb), "contact": contact.model_dump(mode="json")}
        change.outbox.append(
            OutMessage(
                self.names(topology.TEAMS),
                f"{state.tenant}.{team}",
                json.dumps(item, separators=(",", ":")),
                str(uuid.uuid4()),
                {topology.H_CONTACT_ID: state.cid, "x-callback-id": cbid},
            )
        )
        change.outbox.append(
            self._event(
                "callback.requested", state, now, callback_id=cbid, team=team, due=cb["due"], origin=origin
            )
        )
        change.index_add.append((self.keys.team_items(state.tenant, team), cbid, epoch_ms(deadline.due)))
        change.timers_add = {
            f"{cbid}|callback|warning": epoch_ms(deadline.warning_at),
            f"{cbid}|callback|breach": epoch_ms(deadline.due),
        }
        log.info("callback_requested", contact_id=state.cid, callback_id=cbid, tenant=state.tenant, team=team)
        return change, public_callback(cb)

    async def request_callback(
        self,
        cid: str,
        *,
        team: str | None,
        reason: str,
        phone: str | None,
        preferred_time: str | None,
        agent: str,
        allowed: Any,
    ) -> dict[str, Any]:
        def build(state: CaseState) -> tuple[Change, dict[str, Any] | CaseError]:
            if state.status == "closed":
                raise CaseError(409, "the contact is closed; reopen it by a new contact")
            rules = self.tenants[state.tenant].loaded.rules
            target = team or state.team
            if target not in rules.team_ids():
                raise CaseError(
                    422,
                    "unknown team",
                    fields=[{"field": "team", "message": f"'{target}' is not a team of {state.tenant}"}],
                )
            contact = state.contact()
            number = phone or (contact.sender.phone if contact.sender else None)
            return self._callback_change(
                state,
                contact,
                self.clock.now(),
                team=target,
                reason=reason,
                phone=number,
                preferred_time=preferred_time,
                agent=agent,
                origin="agent",
            )

        return await self._retrying(cid, allowed, build)

    async def record_attempt(
        self, cbid: str, *, outcome: str, note: str | None, agent: str, allowed: Any
    ) -> dict[str, Any]:
        parsed = parse_callback_id(cbid)
        if parsed is None:
            raise CaseError(404, f"no callback request with id '{cbid}'")
        cid, n = parsed

        def build(state: CaseState) -> tuple[Change, dict[str, Any] | CaseError]:
            cb = state.callbacks.get(n)
            if cb is None:
                raise CaseError(404, f"no callback request with id '{cbid}'")
            if cb["status"] != "open":
                raise CaseError(
                    409, "the callback request is already closed", callback_request=public_callback(cb)
                )
            now = self.clock.now()
            attempts = int(cb.get("attempts", "0")) + 1
            closes = outcome == "reached"
            updated = {"attempts": str(attempts), "last_outcome": outcome, "last_attempt_at": now.isoformat()}
            if closes:
                updated.update(status="closed", closed_at=now.isoformat(), closed_reason="reached")
            change = Change()
            change.callbacks[n] = updated
            change.history.append(
                {
                    "event": "callback.attempted",
                    "at": now.isoformat(),
                    "callback_id": cbid,
                    "outcome": outcome,
                    "note": note,
                    "agent": agent,
                    "attempt": attempts,
                }
            )
            change.outbox.append(
                self._event(
                    "callback.attempted",
                    state,
                    now,
                    callback_id=cbid,
                    outcome=outcome,
                    attempt=attempts,
                    agent=agent,
                    closed=closes,
                )
            )
            if closes:
                change.index_remove.append((self.keys.team_items(state.tenant, cb["team"]), cbid))
                change.timers_remove = timer_members(cbid, "callback")
            log.info(
                "callback_attempted", contact_id=cid, callback_id=cbid, outcome=outcome, attempt=attempts
            )
            return change, public_callback({**cb, **updated})

        return await self._retrying(cid, allowed, build)

    # -- responses and closing --------------------------------------------------------------------

    async def record_response(
        self, cid: str, *, kind: str, note: str | None, agent: str, allowed: Any
    ) -> dict[str, Any]:
        def build(state: CaseState) -> tuple[Change, dict[str, Any] | CaseError]:
            if state.status == "closed":
                raise CaseError(409, "the contact is closed")
            now = self.clock.now()
            deadline = next((d for d in state.deadlines() if d["kind"] == kind), None)
            change = Change()
            change.fields = {f"met:{kind}": now.isoformat()}
            met = deadline is None or now <= datetime.fromisoformat(deadline["due"])
            change.history.append(
                {
                    "event": "deadline.met" if met else "deadline.met_late",
                    "at": now.isoformat(),
                    "kind": kind,
                    "agent": agent,
                    "note": note,
                    "due": deadline["due"] if deadline else None,
                }
            )
            change.outbox.append(
                self._event(
                    "deadline.met",
                    state,
                    now,
                    kind=kind,
                    on_time=met,
                    due=deadline["due"] if deadline else None,
                )
            )
            change.timers_remove = timer_members(cid, kind)
            if kind == "respond":
                change.index_add.append(
                    (self.keys.team_items(state.tenant, state.team), cid, _NO_DEADLINE_SCORE)
                )
            return change, {
                "id": cid,
                "kind": kind,
                "on_time": met,
                "due": deadline["due"] if deadline else None,
            }

        return await self._retrying(cid, allowed, build)

    async def close(self, cid: str, *, resolution: str, agent: str, allowed: Any) -> dict[str, Any]:
        def build(state: CaseState) -> tuple[Change, dict[str, Any] | CaseError]:
            if state.status == "closed":
                raise CaseError(409, "the contact is already closed")
            now = self.clock.now()
            change = Change()
            change.fields = {"status": "closed", "closed_at": now.isoformat(), "resolution": resolution}
            change.history.append(
                {"event": "contact.closed", "at": now.isoformat(), "agent": agent, "resolution": resolution}
            )
            change.outbox.append(self._event("contact.closed", state, now, team=state.team, agent=agent))
            change.index_remove.append((self.keys.team_items(state.tenant, state.team), cid))
            for d in state.deadlines():
                change.timers_remove += timer_members(cid, d["kind"])
            for n, cb in state.callbacks.items():
                if cb.get("status") == "open":
                    cbid = callback_id(cid, n)
                    change.callbacks[n] = {
                        "status": "closed",
                        "closed_at": now.isoformat(),
                        "closed_reason": "contact closed",
                    }
                    change.index_remove.append((self.keys.team_items(state.tenant, cb["team"]), cbid))
                    change.timers_remove += timer_members(cbid, "callback")
            log.info("contact_closed", contact_id=cid, tenant=state.tenant, team=state.team)
            return change, {"id": cid, "status": "closed", "closed_at": now.isoformat()}

        return await self._retrying(cid, allowed, build)

    # -- work lists -------------------------------------------------------------------------------

    async def items(
        self, tenant: str, team: str, *, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        calendar = self.tenants[tenant].calendar
        now = self.clock.now()
        try:
            members: list[tuple[bytes, float]] = await self.r.zrange(  # type: ignore[assignment]
                self.keys.team_items(tenant, team), offset, offset + limit - 1, withscores=True
            )
            async with self.r.pipeline(transaction=False) as pipe:
                for member, _score in members:
                    m = member.decode()
                    parsed = parse_callback_id(m)
                    pipe.hgetall(self.keys.callback(*parsed) if parsed else self.keys.contact(m))
                rows = await pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        out = []
        for (member, score), row in zip(members, rows, strict=True):
            if not row:
                continue
            f = {k.decode(): v.decode() for k, v in row.items()}
            m = member.decode()
            due = datetime.fromtimestamp(score / 1000, tz=now.tzinfo) if score < _NO_DEADLINE_SCORE else None
            left = calendar.working_time_left(now, due) if due is not None else None
            item: dict[str, Any] = {
                "due": due.astimezone(calendar.zone).isoformat() if due else None,
                "working_time_left_seconds": int(left.total_seconds()) if left is not None else None,
                "overdue": bool(due and now > due),
            }
            if parse_callback_id(m):
                item.update(
                    kind="callback_request",
                    id=m,
                    contact_id=f["contact_id"],
                    deadline_kind="callback",
                    reason=f.get("reason"),
                    attempts=int(f.get("attempts", "0")),
                    preferred_time=f.get("preferred_time") or None,
                )
            else:
                contact = json.loads(f["contact"]) if "contact" in f else {}
                item.update(
                    kind="contact",
                    id=m,
                    deadline_kind="respond" if due else None,
                    reference=contact.get("reference"),
                    channel=f.get("channel"),
                    category=f.get("category") or None,
                    subject=contact.get("subject"),
                    transfers=int(f.get("transfers", "0")),
                    status=f.get("status"),
                )
            out.append(item)
        return out


def _limit_message(state: CaseState, limit: int) -> str:
    return (
        f"transfer refused: {state.tenant} transfers a contact at most {limit} time(s) and this one was "
        f"transferred {state.transfers} time(s)"
    )


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
