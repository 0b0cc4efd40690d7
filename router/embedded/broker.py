"""Embedded mode: an in-process transport for a first look without RabbitMQ or Redis.

Nothing survives a restart and nothing is shared between processes. It exists so that a first-time
user can watch contacts being routed; production uses RabbitMQ and Redis (docker compose).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from router import logs
from router.core import topology
from router.core.contact import Contact
from router.core.pipeline import BatchResult, RoutingCore
from router.core.ports import Delivery, OutMessage
from router.core.topology import Names

log = logs.get("router.embedded.broker")

BANNER = (
    "EMBEDDED MODE: no RabbitMQ/Redis reachable — using an in-process queue and an in-memory store. "
    "Nothing is durable. Start RabbitMQ and Redis (or `docker compose up`) for real use."
)


@dataclass
class Published:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, Any]


@dataclass
class MemoryBroker:
    """Exchanges reduced to lists of what was published to them, keyed by exchange name."""

    published: dict[str, list[Published]] = field(default_factory=lambda: defaultdict(list))
    inbox: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)
    # Called with each message as it is published (the workspace's live updates).
    listeners: list[Callable[[Published], None]] = field(default_factory=list)

    def record(self, message: Published) -> None:
        self.published[message.exchange].append(message)
        for listener in self.listeners:
            listener(message)


class MemoryTx:
    def __init__(self, broker: MemoryBroker):
        self.broker = broker
        self._pending: list[Published] = []

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str, headers: dict[str, Any]
    ) -> None:
        self._pending.append(Published(exchange, routing_key, body, message_id, headers))

    async def ack(self, delivery: Delivery) -> None:
        return None

    async def commit(self, result: BatchResult) -> None:
        for p in self._pending:
            self.broker.record(p)
        self._pending.clear()


class MemoryContactPublisher:
    def __init__(self, broker: MemoryBroker, names: Names):
        self.broker = broker
        self.names = names

    async def publish(self, contact: Contact) -> None:
        # As router.amqp.publisher sends it: a fresh message id per publish (the router's claim token,
        # so a copy sent again is another message, as on RabbitMQ) and the idempotency key in a header.
        body = contact.model_dump_json(exclude={"reference"}).encode()
        headers = {topology.H_IDEMPOTENCY: contact.idempotency_key, topology.H_CONTACT_ID: contact.cid}
        key = f"{contact.tenant}.{contact.channel}"
        await self.broker.inbox.put(Delivery(body, str(uuid.uuid4()), key, headers, False))

    async def close(self) -> None:
        return None


class MemoryRouter:
    def __init__(self, broker: MemoryBroker, core: RoutingCore):
        self.broker = broker
        self.core = core
        self.ready = True
        self.routed = 0
        self.batches = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        log.warning("embedded_mode", message=BANNER)
        try:
            while not self._stop.is_set():
                try:
                    first = await asyncio.wait_for(self.broker.inbox.get(), 0.2)
                except TimeoutError:
                    continue
                batch = [first]
                while not self.broker.inbox.empty() and len(batch) < 100:
                    batch.append(self.broker.inbox.get_nowait())
                await self._route(batch)
        finally:
            self.ready = False

    async def _route(self, batch: list[Delivery]) -> None:
        self.batches += 1
        token = f"embedded.{self.batches}"
        while True:
            tx = MemoryTx(self.broker)
            try:
                result = await self.core.handle(batch, tx, token)
                break
            except Exception as exc:
                # As the AMQP router holds a batch while the store is down: nothing of it was published
                # (MemoryTx publishes at commit), so the same batch is tried again under the same token,
                # which takes back the claims it made; the router goes on instead of dying while the
                # process still says it is ready.
                log.error("router_batch_failed", error=type(exc).__name__, size=len(batch), exc_info=exc)
                batch = [replace(d, redelivered=True) for d in batch]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.2)
                if self._stop.is_set():
                    for d in batch:  # back where they came from, for nobody: nothing is durable here
                        await self.broker.inbox.put(d)
                    return
        try:
            await self.core.after_commit(result)
        except Exception as exc:
            # Published already: not routed again (the real router, too, goes on after a committed batch).
            log.error("router_record_failed", error=type(exc).__name__, size=len(result.routed), exc_info=exc)
        self.routed += len(result.routed)
        for d in result.busy:
            await self.broker.inbox.put(d)

    def team_messages(self, names: Names) -> list[Published]:
        return list(self.broker.published[names(topology.TEAMS)])


class MemoryOutbound:
    def __init__(self, broker: MemoryBroker):
        self.broker = broker

    async def publish(self, msg: OutMessage) -> None:
        body = msg.body.encode()
        self.broker.record(Published(msg.exchange, msg.routing_key, body, msg.message_id, msg.headers))

    async def close(self) -> None:
        return None
