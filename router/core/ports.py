"""The ports: what the core needs from the world, as Protocols, and the plain data that crosses them.

Implementations live beside the core, each the only place that touches its client library:
`router.redis` (state store, case store), `router.amqp` (transactions, confirmed publishing),
`router.embedded` (in-process broker; the store is the Redis code on an in-memory Redis).
The same behaviour tests run against the embedded and the real implementations.

`PersonalData` is the port of retention and erasure (`router.core.erasure`): every store that keeps
something of a resident implements it (`router.redis.privacy`, `router.amqp.scrub`), and a store added
later (a PostgreSQL history) joins the purge and the erasure by implementing it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from router.core.casework import CaseState, Change
from router.core.clock import Clock
from router.core.messages import OutMessage
from router.core.notices import Notice
from router.core.retention import RetentionPolicy
from router.core.worklist import ItemHead

__all__ = [
    "CaseStore",
    "ClaimStatus",
    "Clock",
    "ContactRecord",
    "Delivery",
    "Join",
    "Notifier",
    "OutMessage",
    "Outbound",
    "PersonalData",
    "Removal",
    "Repair",
    "RunLock",
    "Staged",
    "Store",
    "StoreUnavailable",
    "Subject",
    "Tx",
]

ClaimStatus = Literal["ok", "dup", "busy", "lapsed"]


class StoreUnavailable(Exception):
    """The store cannot be reached; the caller keeps its work and retries."""


@dataclass
class Delivery:
    """A message taken from `router.contacts`, as the core needs it."""

    body: bytes
    message_id: str | None
    routing_key: str
    headers: Mapping[str, Any]
    redelivered: bool
    handle: Any = None  # the transport's own message object


@dataclass
class Join:
    """A follow-up (a reply) that joins an existing contact instead of opening a new one."""

    target: str
    tenant: str
    team: str
    event: str  # history event for the target
    score_ms: int


@dataclass
class Staged:
    """One contact about to be routed, as the store sees it."""

    cid: str
    tenant: str
    team: str
    # Claim token: the attempt (router and batch) that routes it; never a message id, which copies share.
    token: str
    fields: dict[str, str]
    history: list[str]
    reference: str
    # Score in the team's work list; None: not listed (closed at once, or merged into another contact).
    team_score_ms: int | None
    timers: list[tuple[str, int]] = field(default_factory=list)
    # Callback requests created with the contact (phone notes), by number: written with the claim.
    callbacks: dict[int, dict[str, str]] = field(default_factory=dict)
    # Further work-list entries: (team, member, score).
    listed: list[tuple[str, str, int]] = field(default_factory=list)
    # Mail Message-IDs that must thread to `thread_target` (default: this contact).
    thread_ids: list[str] = field(default_factory=list)
    thread_target: str | None = None
    final_status: str = "routed"
    join: Join | None = None


@dataclass
class ContactRecord:
    fields: dict[str, str]
    history: list[dict[str, Any]]


class Store(Protocol):
    """The routing state: claims (dedupe), contact records, team work lists, timers, threads."""

    async def ping(self) -> None: ...

    async def claim_and_index(self, items: list[Staged], lease_ms: int) -> list[tuple[ClaimStatus, str]]:
        """Per item: 'ok' (claimed, fields written, and its team lists, timers, reference and threads
        indexed), 'dup' (already routed; info = team), 'busy' (another attempt holds a live claim; info =
        its token) or 'lapsed' (another attempt's claim lapsed and its fate is not known yet; info = its
        token). Only an item claimed is indexed; doing it again for the same token is harmless."""
        ...

    async def commit(self, items: list[Staged]) -> None:
        """Mark routed once the broker has taken the team message; idempotent."""
        ...

    async def get(self, cid: str) -> ContactRecord | None: ...

    async def find_threads(
        self, queries: list[tuple[str, list[str], list[str]]]
    ) -> list[dict[str, str] | None]:
        """Per (tenant, references, message ids): the existing contact they point to (its fields), if any."""
        ...

    async def resolve_reference(self, reference: str) -> str | None: ...

    async def resident_contacts(
        self, queries: list[tuple[str, list[tuple[str, str]]]], fields: tuple[str, ...], per_key: int
    ) -> list[list[tuple[str, dict[str, str]]]]:
        """Per (tenant, identity keys (kind, normalised value)): the contacts indexed under any of those
        keys in that tenant, at most `per_key` ids per key, each with the named fields of its record
        (contacts whose record is gone are left out). One round trip for the ids, one for the fields,
        for all queries together (router.core.residents decides what they mean)."""
        ...

    async def close(self) -> None: ...


class Repair(Protocol):
    """What the in-doubt repair needs: claims whose attempt never said how it ended, who is alive, and
    what a router that is gone had committed (router.amqp.consumer.AmqpRouter.reconcile)."""

    async def lapsed_claims(self, older_than_ms: int, limit: int = 500) -> list[tuple[str, str]]:
        """(contact id, token) of claims older than `older_than_ms` not recorded as routed."""
        ...

    async def commit_claimed(self, cids: list[str]) -> None:
        """Mark routed from what the claims staged (the broker committed their batch)."""
        ...

    async def commit_claims(self, claims: list[tuple[str, str]]) -> None:
        """Mark routed the contacts (contact id, token) whose claim that attempt still holds (the broker
        committed its batch); others are left alone."""
        ...

    async def release(self, claims: list[tuple[str, str]]) -> None:
        """Give up claims (contact id, token) whose batch the broker did not commit."""
        ...

    async def heartbeat(self, router_id: str, ttl_ms: int) -> bool:
        """Renew a router's heartbeat; False (and not renewed) once a repair has begun to settle it as
        gone: that router id is finished for good."""
        ...

    async def forget_router(self, router_id: str) -> None: ...

    async def register_router(self, router_id: str) -> None:
        """Known from its first heartbeat on: a router that dies is settled from its marker queue even
        if the store lost its list of pending claims."""
        ...

    async def known_routers(self) -> set[str]: ...

    async def unregister_router(self, router_id: str) -> None: ...

    async def alive(self, router_ids: list[str]) -> set[str]: ...

    async def committed_batches(self, router_id: str) -> set[str] | None:
        """The batches a router that is gone committed, once recorded; None until then."""
        ...

    async def record_committed_batches(self, router_id: str, batches: set[str]) -> None: ...

    async def lock_resolution(self, router_id: str, ttl_ms: int) -> bool:
        """Take the lock to settle a router as gone: only when its heartbeat has expired and no other
        router holds the lock."""
        ...


class Tx(Protocol):
    """One broker transaction: publishes and acks take effect together at commit."""

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str, headers: dict[str, Any]
    ) -> None: ...

    async def ack(self, delivery: Delivery) -> None: ...

    async def commit(self, result: Any) -> None:
        """Commit; `result` (the batch) lets the transport finish it later if the outcome is not heard."""
        ...


class Outbound(Protocol):
    """Confirmed publishing outside a routing transaction (case work, scheduler)."""

    async def publish(self, msg: OutMessage) -> None:
        """Returns once the broker confirmed the message; raises otherwise."""
        ...

    async def close(self) -> None: ...


class CaseStore(Protocol):
    """The contacts as case work sees them: load, apply a change atomically, the outbox, work lists."""

    async def load(self, cid: str) -> CaseState | None: ...

    async def history(self, cid: str) -> list[dict[str, Any]]: ...

    async def commit(self, state: CaseState, change: Change) -> bool:
        """Apply `change` if the contact is still at `state.version` (and put its messages in the
        contact's outbox in the same step); False when it changed meanwhile."""
        ...

    async def outbox(self, cid: str) -> list[tuple[bytes, OutMessage]]:
        """The contact's unpublished messages, oldest first, each with its stored form."""
        ...

    async def outbox_sent(self, cid: str, raw: bytes) -> None:
        """One outbox entry was confirmed by the broker: remove it."""
        ...

    async def team_items(
        self, tenant: str, team: str, *, offset: int, limit: int
    ) -> list[tuple[str, float, dict[str, str], dict[str, str]]]:
        """A team's work list in order: (member, score, fields of the contact or callback request, fields
        of the contact it belongs to — the same dict for a contact)."""
        ...

    async def team_item_heads(self, tenant: str, team: str) -> list[ItemHead]:
        """The whole work list in order, each item lightly (router/core/worklist.py)."""
        ...

    async def items_of(
        self, members: list[tuple[str, float]]
    ) -> list[tuple[str, float, dict[str, str], dict[str, str]]]:
        """The given (member, score) pairs as `team_items` gives them; members gone are left out."""
        ...


class Notifier(Protocol):
    """Mails a resident a notice (an extended term, a callback that could not reach them): the kit's
    acknowledgement sender, in the background with retries, best effort like the acknowledgements."""

    def can_mail(self, tenant: str) -> bool:
        """Whether this deployment sends mail for `tenant` (an acknowledgement sender is configured)."""
        ...

    def send(self, notice: Notice) -> None:
        """Send `notice` to `notice.to`; returns at once."""
        ...


# -- retention and erasure ------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """Whose data an erasure removes: contacts of one tenant named by any of these. E-mail addresses are
    lower-cased and phone numbers E.164 (`router.core.erasure.subject` normalises them); `contact_ids`
    grows as the stores find the contacts (`PersonalData.find`)."""

    tenant: str
    references: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    contact_ids: frozenset[str] = frozenset()

    def is_empty(self) -> bool:
        return not (self.references or self.emails or self.phones or self.contact_ids)


@dataclass
class Removal:
    """What one store removed (or, in a dry run, would remove): ids and counts, never personal data."""

    store: str
    # Contacts whose data this store removed.
    contact_ids: set[str] = field(default_factory=set)
    # What was removed, how many: e.g. {"contacts": 2, "keys": 11} or {"team messages": 1}.
    counts: dict[str, int] = field(default_factory=dict)
    # Ids of removed messages that name no contact (dead letters), as `contact-router dlq list` shows.
    message_ids: list[str] = field(default_factory=list)
    dry_run: bool = False

    def add(self, what: str, n: int = 1) -> None:
        if n:
            self.counts[what] = self.counts.get(what, 0) + n


class PersonalData(Protocol):
    """A store that keeps residents' data. It joins the purge (what is past the tenant's retention) and
    the erasure (one resident, AVG art. 17) by implementing this; `router.core.erasure.Privacy` runs
    every store in turn."""

    name: str

    async def find(self, subject: Subject) -> set[str]:
        """Ids of the subject's contacts this store can name (an index by reference, address, number)."""
        ...

    async def erase(self, subject: Subject) -> Removal:
        """Remove everything of the subject's contacts (`subject.contact_ids`, as every store found them)
        and whatever else matches the subject's identifiers."""
        ...

    async def purge(self, policy: RetentionPolicy, now: datetime, *, dry_run: bool) -> Removal:
        """Remove what is past its tenant's term at `now`; with `dry_run`, only say what that would be."""
        ...


class RunLock(Protocol):
    """One holder at a time across processes (the periodic purge of several routers)."""

    async def acquire(self, ttl_ms: int) -> str | None:
        """A token when this caller holds the lock now (until released or `ttl_ms` passed); else None."""
        ...

    async def release(self, token: str) -> None: ...
