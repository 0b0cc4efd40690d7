"""Retention and erasure in RabbitMQ: removing some messages from a queue and keeping the others.

A queue has no "delete this message". `scrub` takes the messages that are in the queue now, one at a
time, unacknowledged; a message to remove is acknowledged (gone); a message to keep is published again
to the same queue (default exchange, routing key = the queue: to that queue only), confirmed by the
broker, and only then acknowledged. So nothing is lost: a scrub that stops half-way leaves the original
(it returns to the queue) or, stopped between the confirm and the ack, both the copy and the original (a
consumer sees that message twice; they dedupe on `message_id`). What that changes for the messages
kept, and what the operator must know:

- their order: each kept message goes to the back of the queue, in the order they were found;
- their routing key reads the queue's name and `exchange` the default one; the original routing key
  is kept in the header `x-original-routing-key` (where `contact-router dlq replay` finds a dead
  letter's), unless the message had one or an `x-death`;
- body, message id, headers, timestamp and the other properties stay as they were;
- a message a consumer holds unacknowledged at that moment (prefetched by a back-office system, or by
  a router for `router.contacts`) cannot be reached: run an erasure when the team's consumers are idle,
  or again afterwards.

`QueuePersonalData` is the `PersonalData` port (router/core/ports.py) for the queues: an erasure scrubs
the tenant's team queues, its escalation queue, `router.dead`, `router.unroutable` and
`router.contacts`; the purge removes dead letters older than their tenant's `dead_letters` term.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Literal

import aio_pika
import aiormq
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from router.amqp import connect as amqp_connect
from router.amqp import dlq
from router.core import topology
from router.core.erasure import matches
from router.core.history import HISTORY_QUEUE
from router.core.ports import Removal, Subject
from router.core.retention import RetentionPolicy
from router.core.topology import Names

Verdict = Literal["remove", "keep", "stamp"]  # stamp: keep, with the time it was first seen
# Headers the broker sets on delivery; a copy starts without them.
_DELIVERY_HEADERS = ("x-delivery-count",)


class ScrubError(Exception):
    """The broker is unreachable."""


def copy_of(message: AbstractIncomingMessage, *, stamp: datetime | None = None) -> aio_pika.Message:
    """The same message, to be published again (a dead letter keeps its original routing key)."""
    headers = {k: v for k, v in (message.headers or {}).items() if k not in _DELIVERY_HEADERS}
    if message.routing_key and topology.H_ORIGINAL_KEY not in headers and "x-death" not in headers:
        headers[topology.H_ORIGINAL_KEY] = message.routing_key
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=message.delivery_mode or aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        expiration=message.expiration,
        message_id=message.message_id,
        timestamp=message.timestamp or stamp,
        type=message.type,
        app_id=message.app_id,
        # user_id is left out: the broker refuses one that is not the publishing connection's user.
    )


class QueueScrubber:
    """Scrub queues over one connection."""

    def __init__(self, url: str, *, timeout: float = 10.0):
        self.url = url
        self.timeout = timeout
        self._connection: AbstractConnection | None = None

    async def __aenter__(self) -> QueueScrubber:
        try:
            self._connection = await amqp_connect.connect(
                self.url,
                client_properties={"connection_name": "contact-router privacy"},
                timeout=self.timeout,
            )
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
            raise ScrubError(f"cannot reach the broker: {type(exc).__name__}: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def scrub(
        self,
        queue: str,
        decide: Callable[[AbstractIncomingMessage], Verdict],
        *,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> list[AbstractIncomingMessage] | None:
        """Remove the messages of `queue` that `decide` says to; return them (None: no such queue).
        A dry run takes them all and gives them all back (the broker counts a delivery for each: only
        for queues without a delivery limit)."""
        assert self._connection is not None, "use `async with QueueScrubber(...)`"
        channel = await self._connection.channel()
        out: AbstractChannel | None = None
        try:
            try:
                q = await channel.declare_queue(queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return None
            count = int(q.declaration_result.message_count or 0)
            if not dry_run:
                out = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            removed = []
            # Only what is there now: copies put back go behind it and are not taken again.
            for _ in range(count):
                message = await q.get(no_ack=False, fail=False, timeout=self.timeout)
                if message is None:
                    break
                verdict = decide(message)
                if verdict == "remove":
                    removed.append(message)
                if dry_run:
                    continue
                assert out is not None
                if verdict != "remove":
                    stamp = (now or datetime.now(UTC)) if verdict == "stamp" else None
                    await out.default_exchange.publish(
                        copy_of(message, stamp=stamp), routing_key=queue, mandatory=True, timeout=self.timeout
                    )
                await message.ack()  # removed, or its copy confirmed
            return removed
        finally:
            if out is not None:
                await out.close()
            if not channel.is_closed:
                await channel.close()  # a dry run's messages (and any not acked) go back


def dead_letter_tenant(dead: dlq.DeadLetter) -> str | None:
    """The tenant a dead letter was for: the body's `tenant`, else the first part of its original
    routing key (`<tenant>.<channel>`); None when neither says (retention then takes the shortest term)."""
    try:
        doc = orjson.loads(dead.body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("tenant"), str):
        return str(doc["tenant"])
    head, dot, _ = dead.routing_key.partition(".")
    return head if dot and head else None


def _contact_of(message: AbstractIncomingMessage) -> str | None:
    value = (message.headers or {}).get(topology.H_CONTACT_ID)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value if isinstance(value, str) else None


class QueuePersonalData:
    """The `PersonalData` port on RabbitMQ's queues."""

    name = "queues"

    def __init__(self, url: str, names: Names, teams: Mapping[str, list[str]], *, timeout: float = 10.0):
        self.url = url
        self.names = names
        self.teams = {t: list(ids) for t, ids in teams.items()}
        self.timeout = timeout

    def queues_for(self, tenant: str) -> list[tuple[str, str]]:
        """(what, queue) an erasure looks at for a tenant's residents."""
        n = self.names
        return [
            # First: a contact still waiting here would otherwise be routed while the others are
            # scrubbed, and leave a team message behind them.
            ("router queue", n(topology.ROUTER_QUEUE)),
            *(("team messages", n.team_queue(tenant, team)) for team in self.teams.get(tenant, [])),
            ("escalations", n.escalation_queue(tenant)),
            ("dead letters", n(topology.DEAD)),
            ("unroutable", n(topology.UNROUTABLE)),
            # Events the history has not stored yet: they would bring the erased rows back.
            ("history events", n(HISTORY_QUEUE)),
        ]

    async def find(self, who: Subject) -> set[str]:
        return set()  # queues have no index: `erase` matches each message

    async def erase(self, who: Subject) -> Removal:
        removal = Removal(self.name)

        def decide(message: AbstractIncomingMessage) -> Verdict:
            key = dlq.parse(message).routing_key  # a dead letter's original routing key
            return "remove" if matches(who, message.body, message.headers, key) else "keep"

        async with QueueScrubber(self.url, timeout=self.timeout) as scrubber:
            for what, queue in self.queues_for(who.tenant):
                removed = await scrubber.scrub(queue, decide)
                for message in removed or []:
                    removal.add(what)
                    cid = _contact_of(message)
                    if cid:
                        removal.contact_ids.add(cid)
                    else:
                        removal.message_ids.append(dlq.parse(message).id)
        return removal

    async def purge(self, policy: RetentionPolicy, now: datetime, *, dry_run: bool) -> Removal:
        """Dead letters older than their tenant's `dead_letters` term (the shortest of all tenants when
        the tenant cannot be read). One without a time (published by hand, or by an adapter before its
        dead letters carried one) is given the time the purge first saw it, and goes a term later."""
        removal = Removal(self.name, dry_run=dry_run)
        undated = 0

        def decide(message: AbstractIncomingMessage) -> Verdict:
            nonlocal undated
            dead = dlq.parse(message)
            tenant = dead_letter_tenant(dead)
            term = policy.dead_letters(tenant if tenant in policy.by_tenant else None)
            if dead.dead_at is None:
                undated += 1
                return "stamp"
            return "remove" if term.past(dead.dead_at, now) else "keep"

        async with QueueScrubber(self.url, timeout=self.timeout) as scrubber:
            removed = await scrubber.scrub(self.names(topology.DEAD), decide, dry_run=dry_run, now=now)
        for message in removed or []:
            removal.add("dead letters")
            removal.message_ids.append(dlq.parse(message).id)
        removal.add("dead letters dated now", undated)
        return removal
