"""The routing pipeline, independent of the transport.

For a batch of deliveries taken from `router.contacts` in one broker transaction:
validate → classify → claim in the store (dedupe) → stage state, team index and timers →
publish to the team queue and the events → ack → commit the broker transaction → mark routed.

The team publish and the ack of the input commit atomically in one AMQP transaction, so a router
that dies at any point before the commit leaves the input in the queue and nothing in a team queue;
after the commit the input is gone. Redelivery therefore never routes twice, and the store claim
keeps two copies of one contact (a re-send) from being routed by two routers at once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from router import logs, topology
from router.classify import Decision
from router.clock import Clock, epoch_ms
from router.contact import Contact, Hop, find_reference, summarise_errors
from router.outbound import OutMessage
from router.store import Join, Staged, Store
from router.tenants import Deadline, Tenant
from router.topology import Names

log = logs.get("router.routing")

MAX_BODY_BYTES = 1_000_000
_NO_DEADLINE_SCORE = 32503680000000  # year 3000: items without a deadline sort last


@dataclass
class Delivery:
    """A message taken from `router.contacts`, as the core needs it."""

    body: bytes
    message_id: str | None
    routing_key: str
    headers: Mapping[str, Any]
    redelivered: bool
    handle: Any = None  # the transport's own message object


class Tx(Protocol):
    """One broker transaction: publishes and acks take effect together at commit."""

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str, headers: dict[str, Any]
    ) -> None: ...

    async def ack(self, delivery: Delivery) -> None: ...

    async def commit(self, result: BatchResult) -> None:
        """Commit; `result` lets the transport finish the batch later if the outcome is not heard."""
        ...


@dataclass
class Prepared:
    delivery: Delivery
    contact: Contact
    tenant: Tenant
    decision: Decision
    deadlines: list[Deadline]
    staged: Staged
    # What the broker transaction publishes for this contact (team work item and events).
    messages: list[OutMessage] = field(default_factory=list)
    summary: str = "routed"


@dataclass
class Dead:
    delivery: Delivery
    reason: str


@dataclass
class BatchResult:
    routed: list[Prepared] = field(default_factory=list)
    duplicates: list[Prepared] = field(default_factory=list)
    dead: list[Dead] = field(default_factory=list)
    # Deliveries whose contact another delivery is routing right now; retry them later, unacked.
    busy: list[Delivery] = field(default_factory=list)


def claim_token(delivery: Delivery) -> str:
    """Who holds a contact's claim: the AMQP message id, the same on every redelivery of one message.
    Without one, a digest of the message, so that a redelivery still recognises its own claim."""
    if delivery.message_id:
        return delivery.message_id
    digest = hashlib.sha256(delivery.routing_key.encode() + b"\x00" + delivery.body).hexdigest()
    return f"anon-{digest[:32]}"


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


def dumps(value: Any) -> str:
    """Compact JSON. orjson: every contact is serialised into several documents on the hot path, and
    orjson does it ~10× faster than the standard library (non-ASCII stays UTF-8 instead of \\u escapes)."""
    return orjson.dumps(value).decode()


def event_message(exchange: str, name: str, at: datetime, **fields: Any) -> OutMessage:
    """Events carry ids and routing facts, never personal data. The event id is the message id, as in
    case work, so a subscriber can dedupe on either."""
    event_id = str(uuid.uuid4())
    payload = {"event": name, "event_id": event_id, "at": at.isoformat(), **fields}
    return OutMessage(exchange, name, dumps(payload), event_id)


class RoutingCore:
    def __init__(
        self, tenants: Mapping[str, Tenant], store: Store, names: Names, clock: Clock, lease_ms: int
    ):
        self.tenants = tenants
        self.store = store
        self.names = names
        self.clock = clock
        self.lease_ms = lease_ms

    def parse(self, delivery: Delivery) -> tuple[Contact, Tenant] | Dead:
        if len(delivery.body) > MAX_BODY_BYTES:
            return Dead(delivery, f"body too large: {len(delivery.body)} bytes (limit {MAX_BODY_BYTES})")
        try:
            contact = Contact.model_validate_json(delivery.body)
        except ValidationError as exc:
            kinds = {e["type"] for e in exc.errors()}
            if kinds & {"json_invalid", "json_type"}:
                return Dead(delivery, f"malformed JSON: {exc.errors()[0]['msg']}")
            return Dead(delivery, f"invalid contact: {summarise_errors(exc)}")
        tenant = self.tenants.get(contact.tenant)
        if tenant is None:
            return Dead(delivery, f"unknown tenant '{contact.tenant}'")
        return contact, tenant

    def _event(self, name: str, at: datetime, **fields: Any) -> OutMessage:
        return event_message(self.names(topology.EVENTS), name, at, **fields)

    def _team_item(
        self, tenant: str, team: str, envelope: dict[str, Any], cid: str, rule: str, idempotency_key: str
    ) -> OutMessage:
        headers = {topology.H_CONTACT_ID: cid, topology.H_IDEMPOTENCY: idempotency_key, topology.H_RULE: rule}
        # The contact id as message id: a back-office consumer can dedupe on it.
        return OutMessage(
            self.names(topology.TEAMS),
            f"{tenant}.{team}",
            dumps(envelope),
            cid,
            headers,
        )

    def prepare(
        self, delivery: Delivery, contact: Contact, tenant: Tenant, join: dict[str, str] | None = None
    ) -> Prepared:
        """Decide everything about one contact: team, deadlines, state, and what to publish."""
        now = self.clock.now()
        if join is not None:
            return self._prepare_follow_up(delivery, contact, tenant, join, now)
        rules = tenant.loaded.rules
        decision = tenant.classifier.classify(contact)
        deadlines = tenant.deadlines_for(contact.channel, decision.category, contact.received_at)
        # Once per contact; the event, the state and the team item each carry the same list.
        deadline_dicts = [d.as_dict() for d in deadlines]
        hops = [*contact.hops, Hop(kind="routed", team=decision.team, at=now, note=None)]
        team, transfers, callbacks = decision.team, 0, {}
        status, summary = "routed", "routed"
        history: list[dict[str, Any]] = [
            {
                "event": "contact.routed",
                "at": now.isoformat(),
                "team": decision.team,
                "rule": decision.rule,
                "rule_at": decision.where,
                "reasons": list(decision.reasons),
            }
        ]
        common = {"tenant": contact.tenant, "contact_id": contact.cid, "channel": contact.channel}
        events = [
            self._event("contact.received", now, received_at=contact.received_at.isoformat(), **common),
            self._event(
                "contact.routed",
                now,
                team=decision.team,
                rule=decision.rule,
                category=decision.category,
                deadlines=deadline_dicts,
                **common,
            ),
        ]

        # A phone note says what already happened on the line (see docs: phone outcomes).
        outcome = contact.metadata.get("phone.outcome") if contact.channel == "phone" else None
        agent = contact.metadata.get("phone.agent")
        to_team = contact.metadata.get("phone.to_team")
        if to_team is not None and to_team not in rules.team_ids():
            history.append({"event": "phone.to_team_unknown", "at": now.isoformat(), "to_team": to_team})
            to_team = None
        if outcome == "answered":
            status, summary = "closed", "answered"
            history.append(
                {
                    "event": "contact.closed",
                    "at": now.isoformat(),
                    "agent": agent,
                    "resolution": "answered on the phone",
                }
            )
            events.append(self._event("contact.closed", now, team=team, agent=agent, **common))
        elif outcome == "transferred" and to_team and to_team != team:
            if rules.transfer_limit >= 1:
                hops.append(
                    Hop(
                        kind="transferred",
                        team=to_team,
                        from_team=team,
                        agent=agent,
                        at=now,
                        note=contact.metadata.get("phone.note"),
                    )
                )
                history.append(
                    {
                        "event": "contact.transferred",
                        "at": now.isoformat(),
                        "from_team": team,
                        "team": to_team,
                        "agent": agent,
                        "transfers": 1,
                    }
                )
                events.append(
                    self._event(
                        "contact.transferred",
                        now,
                        from_team=team,
                        team=to_team,
                        agent=agent,
                        transfers=1,
                        counted=True,
                        **common,
                    )
                )
                team, transfers, summary = to_team, 1, "transferred"
            else:
                outcome = "colleague_unavailable"  # no transfer allowed at all: the intended team calls back
        if outcome == "colleague_unavailable":
            target = to_team or team
            term = rules.callback_term()
            if term is not None:
                due = tenant.deadline("callback", term, now)
                cbid = f"{contact.cid}-cb1"
                callbacks[1] = {
                    "id": cbid,
                    "contact_id": contact.cid,
                    "tenant": contact.tenant,
                    "team": target,
                    "reason": contact.metadata.get("phone.note") or contact.subject or "terugbelverzoek",
                    "phone": contact.sender.phone if contact.sender and contact.sender.phone else "",
                    "preferred_time": contact.metadata.get("phone.preferred_time", ""),
                    "status": "open",
                    "created_at": now.isoformat(),
                    "created_by": agent or "",
                    "origin": "phone_note",
                    "term": str(term),
                    "due": due.due.isoformat(),
                    "warning_at": due.warning_at.isoformat(),
                    "attempts": "0",
                }
                history.append(
                    {
                        "event": "callback.requested",
                        "at": now.isoformat(),
                        "callback_id": cbid,
                        "team": target,
                        "agent": agent,
                        "due": due.due.isoformat(),
                        "origin": "phone_note",
                    }
                )
                events.append(
                    self._event(
                        "callback.requested",
                        now,
                        callback_id=cbid,
                        team=target,
                        due=due.due.isoformat(),
                        origin="phone_note",
                        **common,
                    )
                )
                team, summary = target, "callback_requested"

        contact = contact.model_copy(update={"category": decision.category, "hops": hops})
        # An automatic acknowledgement at the edge meets "immediately"; the adapter says when it sent one.
        acknowledged = "acknowledged_at" in contact.metadata
        timed = [
            d
            for d in deadlines
            if str(d.term) != "immediately" and not (d.kind == "acknowledge" and acknowledged)
        ]
        timers = (
            []
            if status == "closed"
            else [
                (m, epoch_ms(at))
                for d in timed
                for m, at in (
                    (f"{contact.cid}|{d.kind}|warning", d.warning_at),
                    (f"{contact.cid}|{d.kind}|breach", d.due),
                )
            ]
        )
        listed: list[tuple[str, str, int]] = []
        for cb in callbacks.values():
            timers += [
                (f"{cb['id']}|callback|warning", epoch_ms(datetime.fromisoformat(cb["warning_at"]))),
                (f"{cb['id']}|callback|breach", epoch_ms(datetime.fromisoformat(cb["due"]))),
            ]
            listed.append((cb["team"], cb["id"], epoch_ms(datetime.fromisoformat(cb["due"]))))
        respond = [d for d in deadlines if d.kind == "respond"]
        score = epoch_ms(min(d.due for d in respond)) if respond else _NO_DEADLINE_SCORE
        contact_json = contact.model_dump_json()
        fields = {
            "contact": contact_json,
            "tenant": contact.tenant,
            "channel": contact.channel,
            "team": team,
            "category": decision.category or "",
            "rule": decision.rule,
            "status": "routing",
            "transfers": str(transfers),
            "version": "1",
            "received_at": contact.received_at.isoformat(),
            "routed_at": now.isoformat(),
            "deadlines": dumps(deadline_dicts),
            "callbacks": str(len(callbacks)),
        }
        if status == "closed":
            fields.update(closed_at=now.isoformat(), resolution="answered on the phone")
        thread_ids = own_thread_ids(contact)
        staged = Staged(
            cid=contact.cid,
            tenant=contact.tenant,
            team=team,
            token=claim_token(delivery),
            fields=fields,
            history=[dumps(h) for h in history],
            reference=contact.reference,
            team_score_ms=None if status == "closed" else score,
            timers=timers,
            callbacks=callbacks,
            listed=listed,
            thread_ids=thread_ids,
            final_status=status,
        )
        messages = events
        if status != "closed":
            routing = {
                "team": team,
                "category": decision.category,
                "rule": decision.rule,
                "rule_at": decision.where,
                "reasons": list(decision.reasons),
                "deadlines": deadline_dicts,
                "transfers": transfers,
                "transfer_limit": rules.transfer_limit,
            }
            # The same dict as model_dump(mode="json"), from the JSON made above: C instead of a second dump.
            envelope: dict[str, Any] = {"contact": orjson.loads(contact_json), "routing": routing}
            if callbacks:
                envelope["callback_request"] = {k: v for k, v in callbacks[1].items() if k != "tenant"}
            messages = [
                self._team_item(
                    contact.tenant, team, envelope, contact.cid, decision.rule, contact.idempotency_key
                ),
                *events,
            ]
        return Prepared(delivery, contact, tenant, decision, deadlines, staged, messages, summary)

    def _prepare_follow_up(
        self, delivery: Delivery, contact: Contact, tenant: Tenant, join: dict[str, str], now: datetime
    ) -> Prepared:
        target, team = join["id"], join["team"]
        decision = Decision(
            team=team,
            category=None,
            rule="follow-up",
            rule_line=0,
            file="(thread)",
            reasons=(f"reply to contact {target}",),
        )
        event = {
            "event": "contact.reply",
            "at": now.isoformat(),
            "reply_id": contact.cid,
            "channel": contact.channel,
            "received_at": contact.received_at.isoformat(),
        }
        contact_json = contact.model_dump_json()
        fields = {
            "contact": contact_json,
            "tenant": contact.tenant,
            "channel": contact.channel,
            "team": team,
            "category": "",
            "rule": "follow-up",
            "status": "routing",
            "transfers": "0",
            "version": "1",
            "received_at": contact.received_at.isoformat(),
            "routed_at": now.isoformat(),
            "deadlines": "[]",
            "callbacks": "0",
            "merged_into": target,
        }
        thread_ids = own_thread_ids(contact)
        staged = Staged(
            cid=contact.cid,
            tenant=contact.tenant,
            team=team,
            token=claim_token(delivery),
            fields=fields,
            history=[dumps({"event": "contact.merged", "at": now.isoformat(), "into": target})],
            reference=contact.reference,
            team_score_ms=None,
            thread_ids=thread_ids,
            thread_target=target,
            final_status="merged",
            join=Join(target, contact.tenant, team, dumps(event), _NO_DEADLINE_SCORE),
        )
        envelope = {
            "contact": orjson.loads(contact_json),
            "routing": {"team": team, "follow_up_of": target, "rule": "follow-up"},
        }
        common = {"tenant": contact.tenant, "contact_id": target, "channel": contact.channel}
        messages = [
            self._team_item(
                contact.tenant, team, envelope, contact.cid, "follow-up", contact.idempotency_key
            ),
            self._event("contact.reply", now, reply_id=contact.cid, team=team, **common),
        ]
        return Prepared(delivery, contact, tenant, decision, [], staged, messages, "joined")

    async def handle(self, deliveries: list[Delivery], tx: Tx) -> BatchResult:
        """Process one batch inside `tx`. Raises StoreUnavailable before anything was published."""
        result = await self.stage(deliveries)
        await self.emit(result, tx)
        return result

    async def stage(self, deliveries: list[Delivery]) -> BatchResult:
        """Everything before the broker: parse, classify, claim and index in the store. Publishes
        nothing, so a batch can be staged while the previous one's transaction is still committing.
        Raises StoreUnavailable; what was claimed then is claimed under the deliveries' own tokens, so
        their next attempt (or redelivery) takes it over."""
        result = BatchResult()
        parsed: list[tuple[Delivery, Contact, Tenant]] = []
        for d in deliveries:
            item = self.parse(d)
            if isinstance(item, Dead):
                result.dead.append(item)
            else:
                parsed.append((d, *item))

        # Replies: a quoted reference number or a known Message-ID joins the existing contact.
        hinted = [(i, c) for i, (_, c, _) in enumerate(parsed) if thread_hints(c) != ([], [])]
        found = await self.store.find_threads([(c.tenant, *thread_hints(c)) for _, c in hinted])
        joins = {i: info for (i, c), info in zip(hinted, found, strict=True) if info and info["id"] != c.cid}

        prepared: list[Prepared] = []
        for i, (d, contact, tenant) in enumerate(parsed):
            try:
                prepared.append(self.prepare(d, contact, tenant, joins.get(i)))
            except Exception as exc:  # a bug must not stall the queue: dead-letter with the reason
                log.exception("prepare_failed", message_id=d.message_id, contact_id=contact.cid)
                result.dead.append(Dead(d, f"internal error while preparing: {type(exc).__name__}"))

        # Two copies of one contact in the same batch: keep the first, let the store decide the rest later.
        seen: set[str] = set()
        unique: list[Prepared] = []
        for p in prepared:
            if p.staged.cid in seen:
                result.busy.append(p.delivery)
            else:
                seen.add(p.staged.cid)
                unique.append(p)

        claims = await self.store.claim_and_stage([p.staged for p in unique], self.lease_ms)
        for p, (status, _info) in zip(unique, claims, strict=True):
            if status == "ok":
                result.routed.append(p)
            elif status == "dup":
                result.duplicates.append(p)
            else:
                result.busy.append(p.delivery)
        await self.store.index([p.staged for p in result.routed])
        return result

    async def emit(self, result: BatchResult, tx: Tx) -> None:
        """Publish and ack a staged batch in `tx`, and commit it."""
        for p in result.routed:
            for m in p.messages:
                await tx.publish(
                    m.exchange, m.routing_key, m.body.encode(), message_id=m.message_id, headers=m.headers
                )
            await tx.ack(p.delivery)
        for p in result.duplicates:
            await tx.ack(p.delivery)
        for dead in result.dead:
            headers = {
                topology.H_DEAD_REASON: dead.reason[:1000],
                topology.H_ORIGINAL_KEY: dead.delivery.routing_key,
            }
            await tx.publish(
                self.names(topology.DEAD),
                dead.delivery.routing_key,
                dead.delivery.body,
                message_id=dead.delivery.message_id or str(uuid.uuid4()),
                headers=headers,
            )
            await tx.ack(dead.delivery)
        await tx.commit(result)

    async def after_commit(self, result: BatchResult) -> None:
        await self.store.commit([p.staged for p in result.routed])
        for p in result.routed:
            log.info(
                "contact_" + p.summary,
                contact_id=p.staged.cid,
                tenant=p.staged.tenant,
                team=p.staged.team,
                rule=p.decision.rule,
            )
        for p in result.duplicates:
            log.info("duplicate_dropped", contact_id=p.staged.cid, tenant=p.staged.tenant)
        for dead in result.dead:
            log.warning(
                "contact_dead_lettered", message_id=dead.delivery.message_id, reason=dead.reason[:200]
            )
