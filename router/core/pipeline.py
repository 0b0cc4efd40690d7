"""The routing pipeline for a batch, over the ports (state store, broker transaction), any transport.

For a batch of deliveries taken from `router.contacts` in one broker transaction:
parse → find threads → classify → find an open contact of the same resident (router.core.residents)
→ decide each contact (router.core.routing) → claim in the store (dedupe) →
index work lists and timers → publish team items and events, ack → commit the transaction → mark routed.

The team publish and the ack of the input commit atomically in one AMQP transaction, so a router
that dies at any point before the commit leaves the input in the queue and nothing in a team queue;
after the commit the input is gone. Redelivery therefore never routes twice, and the store claim
keeps two copies of one contact (a re-send) from being routed by two routers at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from router import logs
from router.core import residents, routing, topology
from router.core.classify import Decision
from router.core.clock import Clock
from router.core.contact import Contact
from router.core.messages import OutMessage
from router.core.metrics import NO_METRICS, Metrics
from router.core.ports import Delivery, Staged, Store, Tx
from router.core.redact import plain_id
from router.core.routing import Routed
from router.core.tenants import Tenant
from router.core.topology import Names

log = logs.get("router.routing")


@dataclass
class Prepared:
    delivery: Delivery
    routed: Routed

    @property
    def decision(self) -> Decision:
        return self.routed.decision

    @property
    def staged(self) -> Staged:
        return self.routed.staged

    @property
    def messages(self) -> list[OutMessage]:
        return self.routed.messages

    @property
    def summary(self) -> str:
        return self.routed.summary


@dataclass
class Dead:
    delivery: Delivery
    reason: str


@dataclass
class BatchResult:
    # The attempt: the claim token of every contact in the batch, and its commit marker.
    token: str = ""
    routed: list[Prepared] = field(default_factory=list)
    duplicates: list[Prepared] = field(default_factory=list)
    dead: list[Dead] = field(default_factory=list)
    # Deliveries whose contact another attempt is routing right now, or was and did not say how it
    # ended (a 'lapsed' claim, for the repair); retry them later, unacked.
    busy: list[Delivery] = field(default_factory=list)
    lapsed: list[tuple[str, str]] = field(default_factory=list)  # (contact id, the other token)


class RoutingCore:
    def __init__(
        self,
        tenants: Mapping[str, Tenant],
        store: Store,
        names: Names,
        clock: Clock,
        lease_ms: int,
        metrics: Metrics = NO_METRICS,
    ):
        self.tenants = tenants
        self.store = store
        self.names = names
        self.clock = clock
        self.lease_ms = lease_ms
        self.metrics = metrics

    def parse(self, delivery: Delivery) -> tuple[Contact, Tenant] | Dead:
        parsed = routing.parse(delivery, self.tenants, self.clock.now())
        return Dead(delivery, parsed) if isinstance(parsed, str) else parsed

    def prepare(
        self,
        delivery: Delivery,
        contact: Contact,
        tenant: Tenant,
        join: dict[str, str] | None = None,
        token: str = "",
        decision: Decision | None = None,
    ) -> Prepared:
        """Decide everything about one contact: team, deadlines, state, and what to publish."""
        now = self.clock.now()
        if join is not None:
            return Prepared(delivery, routing.follow_up(contact, self.names, now, token, join))
        return Prepared(delivery, routing.route(contact, tenant, self.names, now, token, decision))

    async def handle(self, deliveries: list[Delivery], tx: Tx, token: str) -> BatchResult:
        """Process one batch inside `tx`. Raises StoreUnavailable before anything was published."""
        result = await self.stage(deliveries, token)
        await self.emit(result, tx)
        return result

    async def stage(self, deliveries: list[Delivery], token: str) -> BatchResult:
        """Everything before the broker: parse, classify, claim and index in the store. Publishes
        nothing, so a batch can be staged while the previous one's transaction is still committing.
        `token` names this attempt: one per batch, unique across routers; staging the same batch again
        (after StoreUnavailable) with the same token takes its own claims again."""
        result = BatchResult(token=token)
        parsed: list[tuple[Delivery, Contact, Tenant]] = []
        for d in deliveries:
            item = self.parse(d)
            if isinstance(item, Dead):
                result.dead.append(item)
            else:
                parsed.append((d, *item))
        joins = await self._joins([c for _, c, _ in parsed])
        decisions = self._classify(parsed, joins)
        joins |= await self._resident_links(parsed, decisions)
        prepared = self._prepare_all(parsed, joins, decisions, result, token)
        unique = self._first_copies(prepared, result)
        claims = await self.store.claim_and_index([p.staged for p in unique], self.lease_ms)
        for p, (status, info) in zip(unique, claims, strict=True):
            if status == "ok":
                result.routed.append(p)
            elif status == "dup":
                result.duplicates.append(p)
            else:
                result.busy.append(p.delivery)
                if status == "lapsed":
                    result.lapsed.append((p.staged.cid, info))
        return result

    async def _joins(self, contacts: list[Contact]) -> dict[int, dict[str, str]]:
        """Replies: a quoted reference number or a known Message-ID joins the existing contact."""
        hinted = [(i, c) for i, c in enumerate(contacts) if routing.thread_hints(c) != ([], [])]
        found = await self.store.find_threads([(c.tenant, *routing.thread_hints(c)) for _, c in hinted])
        return {i: info for (i, c), info in zip(hinted, found, strict=True) if info and info["id"] != c.cid}

    @staticmethod
    def _classify(
        parsed: list[tuple[Delivery, Contact, Tenant]], joins: dict[int, dict[str, str]]
    ) -> dict[int, Decision]:
        """The tenant's classification of each contact that is no reply: its category decides whether
        it joins an open contact of the same resident. A classification that fails is left to
        `prepare`, which dead-letters the contact with the reason."""
        decisions: dict[int, Decision] = {}
        for i, (_, contact, tenant) in enumerate(parsed):
            if i not in joins:
                try:
                    decisions[i] = tenant.classifier.classify(contact)
                except Exception:  # prepare classifies it again and dead-letters it with the reason
                    continue
        return decisions

    async def _resident_links(
        self, parsed: list[tuple[Delivery, Contact, Tenant]], decisions: dict[int, Decision]
    ) -> dict[int, dict[str, str]]:
        """One resident across channels: a contact on the same category as an open contact of the same
        resident joins it (router.core.residents). One look-up for the whole batch."""
        asked: list[tuple[int, list[tuple[str, str]]]] = []
        for i, decision in decisions.items():
            _, contact, tenant = parsed[i]
            if residents.may_link(contact, decision.category, tenant.loaded.rules.residents):
                if ids := residents.identity_keys(contact):
                    asked.append((i, ids))
        if not asked:
            return {}
        found = await self.store.resident_contacts(
            [(parsed[i][1].tenant, ids) for i, ids in asked],
            residents.CANDIDATE_FIELDS,
            residents.CANDIDATES_PER_KEY,
        )
        now = self.clock.now()
        links: dict[int, dict[str, str]] = {}
        for (i, _), candidates in zip(asked, found, strict=True):
            _, contact, tenant = parsed[i]
            policy = tenant.loaded.rules.residents
            link = residents.open_link(contact, decisions[i].category, candidates, policy, now)
            if link is not None:
                links[i] = link.join()
        return links

    def _prepare_all(
        self,
        parsed: list[tuple[Delivery, Contact, Tenant]],
        joins: dict[int, dict[str, str]],
        decisions: dict[int, Decision],
        result: BatchResult,
        token: str,
    ) -> list[Prepared]:
        prepared: list[Prepared] = []
        for i, (d, contact, tenant) in enumerate(parsed):
            try:
                prepared.append(self.prepare(d, contact, tenant, joins.get(i), token, decisions.get(i)))
            except Exception as exc:  # a bug must not stall the queue: dead-letter with the reason
                # The traceback's frames and types only (router/logs.py): the message of an exception
                # raised on the way (a ValidationError, a KeyError) may quote the contact.
                log.exception("prepare_failed", message_id=plain_id(d.message_id), contact_id=contact.cid)
                result.dead.append(Dead(d, f"internal error while preparing: {type(exc).__name__}"))
        return prepared

    @staticmethod
    def _first_copies(prepared: list[Prepared], result: BatchResult) -> list[Prepared]:
        """Two copies of one contact in one batch: keep the first, let the store decide the rest later."""
        seen: set[str] = set()
        unique: list[Prepared] = []
        for p in prepared:
            if p.staged.cid in seen:
                result.busy.append(p.delivery)
            else:
                seen.add(p.staged.cid)
                unique.append(p)
        return unique

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
        try:
            self._count(result)
        except Exception:  # a count must never stop the routing
            log.exception("metrics_failed")
        for p in result.routed:
            log.info(
                "contact_" + p.summary,
                contact_id=p.staged.cid,
                batch=result.token,
                tenant=p.staged.tenant,
                team=p.staged.team,
                rule=p.decision.rule,
            )
        for p in result.duplicates:
            log.info("duplicate_dropped", contact_id=p.staged.cid, tenant=p.staged.tenant)
        for dead in result.dead:
            # The reason names fields and fixed texts (routing.parse); a publisher's own message id is
            # left out (router/core/redact.py).
            log.warning(
                "contact_dead_lettered",
                message_id=plain_id(dead.delivery.message_id),
                reason=dead.reason[:200],
            )

    def _count(self, result: BatchResult) -> None:
        """Counted once the broker committed the batch and the store recorded it (a batch recorded after
        a reconnect, in doubt until then, is counted then)."""
        now = self.clock.now()
        metrics = self.metrics
        for p in result.routed:
            contact = p.routed.contact
            seconds = (now - contact.received_at).total_seconds()
            metrics.routed(p.staged.tenant, contact.channel, p.staged.team, p.summary, seconds)
            for m in p.messages:
                metrics.published(m)
        for dead in result.dead:
            metrics.dead_lettered(dead.delivery.routing_key, dead.reason, "router")
