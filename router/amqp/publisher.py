"""The kit's publisher port on AMQP: contacts onto exchange `contacts`, key <tenant>.<channel>.

Persistent messages on a confirm channel; a publish returns only after the broker confirmed it, and
an unroutable publish raises. Each publish gets a fresh message id; the idempotency key
(tenant:adapter:native_id) travels in a header and determines the contact id, so sending the same
contact twice routes it once.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import aio_pika

from adapters.kit.publisher import PublishError
from router import tracing
from router.amqp import connect as amqp_connect
from router.core import topology
from router.core.contact import Contact
from router.core.topology import Names

# Header values travel in every frame of the message; a parser's reason needs no more than this.
MAX_REASON_CHARS = 1000


def routing_key(contact: Contact) -> str:
    return f"{contact.tenant}.{contact.channel}"


def message_for(contact: Contact) -> aio_pika.Message:
    return aio_pika.Message(
        contact.model_dump_json(exclude={"reference"}).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(uuid.uuid4()),
        headers={topology.H_IDEMPOTENCY: contact.idempotency_key, topology.H_CONTACT_ID: contact.cid},
    )


def dead_letter_message(body: bytes, reason: str, routing_key: str) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(uuid.uuid4()),
        # When it died: `dlq list` shows the age, and the retention purge removes it after its term.
        timestamp=datetime.now(UTC),
        headers={
            topology.H_DEAD_REASON: reason[:MAX_REASON_CHARS],
            topology.H_ORIGINAL_KEY: routing_key,
        },
    )


class AmqpContactPublisher:
    def __init__(self, url: str, names: Names, *, timeout: float = 10.0, connection_name: str = "adapters"):
        self.url = url
        self.names = names
        self.timeout = timeout
        self.connection_name = connection_name
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._lock = asyncio.Lock()
        self._dead_exchange: aio_pika.abc.AbstractExchange | None = None
        self._dead_channel: aio_pika.abc.AbstractChannel | None = None

    async def _ensure(self) -> aio_pika.abc.AbstractExchange:
        async with self._lock:
            if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
                return self._exchange
            if self._connection is None or self._connection.is_closed:
                self._connection = await amqp_connect.connect_robust(
                    self.url,
                    client_properties={"connection_name": self.connection_name},
                    timeout=self.timeout,
                )
            self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await self._channel.get_exchange(self.names(topology.CONTACTS), ensure=True)
            return self._exchange

    async def publish(self, contact: Contact) -> None:
        message = message_for(contact)
        attributes = {"contact.id": contact.cid, "tenant": contact.tenant, "channel": contact.channel}
        try:
            exchange = await self._ensure()
            with tracing.publish_span("contact publish", message.headers, **attributes):
                await exchange.publish(message, routing_key=routing_key(contact), timeout=self.timeout)
        except Exception as exc:
            # Drop the channel so the next publish starts clean; the error reaches the sender.
            self._exchange = None
            raise PublishError(f"broker did not confirm the contact: {type(exc).__name__}") from exc

    async def dead_letter(self, body: bytes, reason: str, *, routing_key: str) -> None:
        """Publish `body` unchanged to `router.dead` with `x-dead-reason`; confirmed like a contact."""
        try:
            await self._ensure()
            assert self._channel is not None
            if self._dead_exchange is None or self._dead_channel is not self._channel:
                self._dead_exchange = await self._channel.get_exchange(self.names(topology.DEAD), ensure=True)
                self._dead_channel = self._channel
            await self._dead_exchange.publish(
                dead_letter_message(body, reason, routing_key), routing_key=routing_key, timeout=self.timeout
            )
        except Exception as exc:
            self._exchange = None
            self._dead_exchange = None
            raise PublishError(f"broker did not confirm the dead letter: {type(exc).__name__}") from exc

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
