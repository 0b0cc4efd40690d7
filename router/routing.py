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

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from router import logs, topology
from router.classify import Decision
from router.clock import Clock, epoch_ms
from router.contact import Contact, Hop, summarise_errors
from router.store import Staged, Store
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

    async def commit(self) -> None: ...


@dataclass
class Prepared:
    delivery: Delivery
    contact: Contact
    tenant: Tenant
    decision: Decision
    deadlines: list[Deadline]
    staged: Staged


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


def event_body(name: str, at: datetime, **fields: Any) -> bytes:
    """Events carry ids and routing facts, never personal data."""
    payload = {"event": name, "event_id": str(uuid.uuid4()), "at": at.isoformat(), **fields}
    return json.dumps(payload, separators=(",", ":")).encode()


class RoutingCore:
    def __init__(
        self, tenants: Mapping[str, Tenant], store: Store, names: Names, clock: Clock, lease_ms: int
    ):
        self.tenants = tenants
        self.store = store
        self.names = names
        self.clock = clock
        self.lease_ms = lease_ms

    def prepare(self, delivery: Delivery) -> Prepared | Dead:
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
        decision = tenant.classifier.classify(contact)
        deadlines = tenant.deadlines_for(contact.channel, decision.category, contact.received_at)
        now = self.clock.now()
        routed_hop = Hop(kind="routed", team=decision.team, at=now, note=None)
        contact = contact.model_copy(
            update={"category": decision.category, "hops": [*contact.hops, routed_hop]}
        )
        respond = [d for d in deadlines if d.kind == "respond"]
        score = epoch_ms(min(d.due for d in respond)) if respond else _NO_DEADLINE_SCORE
        timers = []
        for d in deadlines:
            timers.append((f"{contact.cid}|{d.kind}|warning", epoch_ms(d.warning_at)))
            timers.append((f"{contact.cid}|{d.kind}|breach", epoch_ms(d.due)))
        staged = Staged(
            cid=contact.cid,
            tenant=contact.tenant,
            team=decision.team,
            token=delivery.message_id or f"anon-{uuid.uuid4()}",
            fields={
                "contact": contact.model_dump_json(),
                "tenant": contact.tenant,
                "channel": contact.channel,
                "team": decision.team,
                "category": decision.category or "",
                "rule": decision.rule,
                "status": "routing",
                "transfers": "0",
                "received_at": contact.received_at.isoformat(),
                "routed_at": now.isoformat(),
                "deadlines": json.dumps([d.as_dict() for d in deadlines]),
            },
            history_event=json.dumps(
                {
                    "event": "contact.routed",
                    "at": now.isoformat(),
                    "team": decision.team,
                    "rule": decision.rule,
                    "rule_at": decision.where,
                    "reasons": list(decision.reasons),
                }
            ),
            reference=contact.reference,
            team_score_ms=score,
            timers=timers,
        )
        return Prepared(delivery, contact, tenant, decision, deadlines, staged)

    def team_message(self, p: Prepared) -> bytes:
        envelope = {
            "contact": p.contact.model_dump(mode="json"),
            "routing": {
                "team": p.decision.team,
                "category": p.decision.category,
                "rule": p.decision.rule,
                "rule_at": p.decision.where,
                "reasons": list(p.decision.reasons),
                "deadlines": [d.as_dict() for d in p.deadlines],
                "transfer_limit": p.tenant.loaded.rules.transfer_limit,
            },
        }
        return json.dumps(envelope, separators=(",", ":")).encode()

    async def handle(self, deliveries: list[Delivery], tx: Tx) -> BatchResult:
        """Process one batch inside `tx`. Raises StoreUnavailable before anything was published."""
        result = BatchResult()
        prepared: list[Prepared] = []
        for d in deliveries:
            try:
                item = self.prepare(d)
            except Exception as exc:  # a bug must not stall the queue: dead-letter with the reason
                log.exception("prepare_failed", message_id=d.message_id)
                item = Dead(d, f"internal error while preparing: {type(exc).__name__}")
            if isinstance(item, Dead):
                result.dead.append(item)
            else:
                prepared.append(item)

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

        now = self.clock.now()
        for p in result.routed:
            c, dec = p.contact, p.decision
            headers = {
                topology.H_CONTACT_ID: c.cid,
                topology.H_IDEMPOTENCY: c.idempotency_key,
                topology.H_RULE: dec.rule,
            }
            await tx.publish(
                self.names(topology.TEAMS),
                f"{c.tenant}.{dec.team}",
                self.team_message(p),
                message_id=c.cid,
                headers=headers,
            )
            common = {"tenant": c.tenant, "contact_id": c.cid, "channel": c.channel}
            await tx.publish(
                self.names(topology.EVENTS),
                "contact.received",
                event_body("contact.received", now, received_at=c.received_at.isoformat(), **common),
                message_id=str(uuid.uuid4()),
                headers={},
            )
            await tx.publish(
                self.names(topology.EVENTS),
                "contact.routed",
                event_body(
                    "contact.routed",
                    now,
                    team=dec.team,
                    rule=dec.rule,
                    category=dec.category,
                    deadlines=[d.as_dict() for d in p.deadlines],
                    **common,
                ),
                message_id=str(uuid.uuid4()),
                headers={},
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
        await tx.commit()
        return result

    async def after_commit(self, result: BatchResult) -> None:
        await self.store.commit([p.staged for p in result.routed])
        for p in result.routed:
            log.info(
                "contact_routed",
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


Outcome = Literal["routed", "duplicate", "dead", "busy"]
