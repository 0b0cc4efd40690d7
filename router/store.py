"""The state-store port: what the router and the API need from Redis, as a Protocol.

`router.redis_store` implements it on Redis; `router.memory_store` in memory for the embedded mode
and fast tests. Both must pass the same behaviour tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ClaimStatus = Literal["ok", "dup", "busy"]


class StoreUnavailable(Exception):
    """The store cannot be reached; the caller keeps its work and retries."""


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
    # Claim token: the delivery's message id. A redelivery of the same message may take over its own claim.
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
    async def ping(self) -> None: ...

    async def claim_and_stage(self, items: list[Staged], lease_ms: int) -> list[tuple[ClaimStatus, str]]:
        """Per item: 'ok' (claimed, fields written), 'dup' (already routed; info = team) or
        'busy' (another delivery holds a live claim; info = its token)."""
        ...

    async def index(self, items: list[Staged]) -> None:
        """Team item lists, timers and reference look-up; idempotent."""
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

    async def close(self) -> None: ...
