"""`contact-router dlq list | show ID | replay [ID…] [--all]`: inspect and replay dead-lettered contacts.

Dead letters sit in the quorum queue `router.dead`: contacts the router could not process (header
`x-dead-reason`, and `x-original-routing-key`), contacts an adapter could not turn into a contact, and
messages the broker gave up on after `x-delivery-limit` deliveries (header `x-death`). Bodies are
unchanged, so after a fix (a rules file for a new tenant, a repaired adapter) an operator replays them
to exchange `contacts` with their original routing key.

Replaying is idempotent: the contact id derives from (tenant, source.adapter, source.native_id), so the
router's dedupe routes a replayed contact at most once, however often it is replayed. A dead letter is
removed from `router.dead` only after the broker confirmed its replay; a crash in between leaves it
there, and replaying it again is harmless. The original message id travels along, so a contact the
broker dead-lettered mid-routing resumes its own claim in the store.

Browsing takes the messages without acknowledging them and returns them when done: the broker marks
them redelivered, nothing else changes. `list` never prints bodies (they hold personal data); `show`
does, because an operator asked for exactly that message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage

from router.amqp import connect as amqp_connect
from router.core import topology
from router.core.redact import dead_letter_id
from router.core.topology import Names

# Headers that describe the dead-lettering itself; a replayed message leaves them behind.
_DEATH_HEADERS = (
    topology.H_DEAD_REASON,
    topology.H_ORIGINAL_KEY,
    "x-death",
    "x-delivery-count",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)
H_REPLAYED_AT = "x-replayed-at"


class DlqError(Exception):
    """The broker is unreachable or the queue is missing; the message says which."""


@dataclass
class DeadLetter:
    id: str
    reason: str
    routing_key: str
    size: int
    dead_at: datetime | None
    message_id: str | None
    content_type: str | None
    headers: dict[str, Any] = field(repr=False)
    body: bytes = field(repr=False)

    def age(self, now: datetime) -> str:
        if self.dead_at is None:
            return "?"
        seconds = max(0, int((now - self.dead_at).total_seconds()))
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"

    def summary(self, now: datetime) -> dict[str, Any]:
        """Everything but the body: safe to print and to log."""
        return {
            "id": self.id,
            "reason": self.reason,
            "routing_key": self.routing_key,
            "size": self.size,
            "age": self.age(now),
            "dead_at": self.dead_at.isoformat() if self.dead_at else None,
        }


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _first_death(headers: dict[str, Any]) -> dict[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}


def parse(message: AbstractIncomingMessage) -> DeadLetter:
    headers = dict(message.headers or {})
    death = _first_death(headers)
    reason = headers.get(topology.H_DEAD_REASON)
    if reason is None and death:
        count = death.get("count")
        reason = f"broker: {_text(death.get('reason', '?'))} in {_text(death.get('queue', '?'))}" + (
            f" after {count} deaths" if count else ""
        )
    key = headers.get(topology.H_ORIGINAL_KEY)
    if key is None and death.get("routing-keys"):
        key = death["routing-keys"][0]
    dead_at = message.timestamp
    if dead_at is None and isinstance(death.get("time"), datetime):
        dead_at = death["time"]
    if dead_at is not None and dead_at.tzinfo is None:
        dead_at = dead_at.replace(tzinfo=UTC)
    body = message.body
    # A publisher's own message id may be anything (an address): only a UUID is shown as it is.
    ident = dead_letter_id(message.message_id, body)
    return DeadLetter(
        id=ident,
        reason=_text(reason) if reason is not None else "(no reason given)",
        routing_key=_text(key) if key is not None else (message.routing_key or ""),
        size=len(body),
        dead_at=dead_at,
        message_id=message.message_id,
        content_type=message.content_type,
        headers=headers,
        body=body,
    )


class DeadLetterQueue:
    """Browse and replay a dead-letter queue over one connection: `router.dead` (replayed to exchange
    `contacts`) or another of `topology.DEAD_LETTER_QUEUES` (the Open Klant export's `openklant.dead`,
    replayed to `openklant.replay`)."""

    def __init__(self, url: str, names: Names, queue: str = topology.DEAD):
        if queue not in topology.DEAD_LETTER_QUEUES:
            raise DlqError(f"{queue} is not a dead-letter queue ({', '.join(topology.DEAD_LETTER_QUEUES)})")
        self.url = url
        self.names = names
        self.queue = queue
        self.replay_exchange = topology.DEAD_LETTER_QUEUES[queue]
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def __aenter__(self) -> DeadLetterQueue:
        try:
            self._connection = await amqp_connect.connect(
                self.url, client_properties={"connection_name": "contact-router dlq"}, timeout=10
            )
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
            raise DlqError(f"cannot reach the broker: {type(exc).__name__}: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _take(
        self, channel: aio_pika.abc.AbstractChannel, limit: int | None
    ) -> list[tuple[DeadLetter, AbstractIncomingMessage]]:
        """Take up to `limit` dead letters (at most as many as are there now), unacknowledged."""
        name = self.names(self.queue)
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise DlqError(f"queue {name} does not exist (run `contact-router topology declare`)") from exc
        count = int(queue.declaration_result.message_count or 0)
        if limit is not None:
            count = min(count, limit)
        out = []
        # Only what is there now: a replayed contact that fails again comes back and must not be
        # taken a second time in the same run.
        for _ in range(count):
            message = await queue.get(no_ack=False, fail=False, timeout=10)
            if message is None:
                break
            out.append((parse(message), message))
        return out

    async def browse(self, limit: int | None = None) -> list[DeadLetter]:
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            return [d for d, _ in await self._take(channel, limit)]
        finally:
            await channel.close()  # everything taken goes back to the queue

    async def replay(self, ids: Sequence[str] | None) -> tuple[list[DeadLetter], list[str]]:
        """Replay the dead letters with these ids (None: all). Returns (replayed, ids not found);
        when an id is not found nothing is replayed."""
        assert self._connection is not None
        channel = await self._connection.channel()
        out = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            taken = await self._take(channel, None)
            wanted = [(d, m) for d, m in taken if ids is None or d.id in ids]
            missing = (
                [] if ids is None else [i for i in dict.fromkeys(ids) if i not in {d.id for d, _ in taken}]
            )
            if missing:
                return [], missing
            contacts = await out.get_exchange(self.names(self.replay_exchange), ensure=True)
            replayed = []
            for dead, message in wanted:
                headers = {k: v for k, v in dead.headers.items() if k not in _DEATH_HEADERS}
                headers[H_REPLAYED_AT] = datetime.now(UTC).isoformat()
                await contacts.publish(
                    aio_pika.Message(
                        dead.body,
                        content_type=dead.content_type or "application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=dead.message_id,
                        headers=headers,
                        timestamp=datetime.now(UTC),
                    ),
                    routing_key=dead.routing_key,
                    mandatory=True,
                    timeout=10,
                )
                # Confirmed by the broker: only now may the dead letter go.
                await message.ack()
                replayed.append(dead)
            return replayed, []
        finally:
            await out.close()
            await channel.close()
