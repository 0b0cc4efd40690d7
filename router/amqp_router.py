"""The router's consumer on RabbitMQ: batches from `router.contacts` in AMQP transactions.

Deliberately not a robust (auto-reconnecting) channel: a channel restored by the client library would
come back without `tx.select`, and a consumer may silently not come back at all. This loop owns
reconnection instead: on any connection error it drops the batch (the broker requeues every unacked
delivery), reconnects with back-off, and re-attaches the consumer. `ready` tells the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage

from router import logs, topology
from router.routing import Delivery, RoutingCore
from router.store import StoreUnavailable
from router.topology import Names

log = logs.get("router.amqp")

_CONNECTION_ERRORS = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


class AmqpTx:
    def __init__(self, channel: aio_pika.abc.AbstractChannel):
        self.channel = channel
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}

    async def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        ex = self._exchanges.get(name)
        if ex is None:
            ex = await self.channel.get_exchange(name, ensure=False)
            self._exchanges[name] = ex
        return ex

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str, headers: dict[str, Any]
    ) -> None:
        ex = await self._exchange(exchange)
        msg = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            headers=headers,
        )
        # In transaction mode there is no confirm to wait for: the commit is the confirmation.
        # Not mandatory: team queues are covered by the alternate exchange, and events may have no subscriber.
        await ex.publish(msg, routing_key=routing_key, mandatory=False, timeout=10)

    async def ack(self, delivery: Delivery) -> None:
        await delivery.handle.ack()

    async def commit(self) -> None:
        await self.channel.transaction().commit(timeout=30)


class AmqpRouter:
    def __init__(
        self,
        url: str,
        names: Names,
        core: RoutingCore,
        declare: Callable[[aio_pika.abc.AbstractChannel], Awaitable[None]],
        *,
        batch_size: int = 100,
        prefetch: int = 300,
        linger: float = 0.002,
        connection_name: str = "contact-router",
    ):
        self.url = url
        self.names = names
        self.core = core
        self.declare = declare
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.linger = linger
        self.connection_name = connection_name
        self.consumer_attached = False
        self.last_error: str | None = None
        self.routed = 0
        self._stop = asyncio.Event()
        self._connection: aio_pika.abc.AbstractConnection | None = None

    @property
    def ready(self) -> bool:
        return self.consumer_attached and self._connection is not None and not self._connection.is_closed

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                await self._session()
                backoff = 0.2
            except _CONNECTION_ERRORS as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("amqp_session_lost", error=type(exc).__name__, retry_in=round(backoff, 2))
            finally:
                self.consumer_attached = False
            if self._stop.is_set():
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)

    async def _session(self) -> None:
        connection = await aio_pika.connect(
            self.url, client_properties={"connection_name": self.connection_name}
        )
        self._connection = connection
        try:
            channel = await connection.channel(publisher_confirms=False)
            await self.declare(channel)
            await channel.set_qos(prefetch_count=self.prefetch)
            await channel.transaction().select(timeout=10)
            queue = await channel.get_queue(self.names(topology.ROUTER_QUEUE), ensure=False)
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            lost = asyncio.Event()
            channel.close_callbacks.add(lambda *_: lost.set())
            connection.close_callbacks.add(lambda *_: lost.set())
            tag = await queue.consume(inbox.put, no_ack=False)
            self.consumer_attached = True
            self.last_error = None
            log.info("consumer_attached", queue=self.names(topology.ROUTER_QUEUE))
            tx = AmqpTx(channel)
            held: list[tuple[float, Delivery]] = []
            try:
                await self._loop(inbox, lost, tx, held)
            finally:
                self.consumer_attached = False
                if not channel.is_closed:
                    # Stop taking new work; whatever is still unacked goes back to the queue on close.
                    with contextlib.suppress(*_CONNECTION_ERRORS):
                        await queue.cancel(tag, timeout=5)
        finally:
            self._connection = None
            with contextlib.suppress(Exception):
                await connection.close()

    async def _loop(
        self,
        inbox: asyncio.Queue[AbstractIncomingMessage],
        lost: asyncio.Event,
        tx: AmqpTx,
        held: list[tuple[float, Delivery]],
    ) -> None:
        while not self._stop.is_set():
            if lost.is_set():
                raise ConnectionError("channel closed")
            batch = await self._next_batch(inbox, lost, held)
            if not batch:
                continue
            result = None
            while result is None:
                try:
                    result = await self.core.handle(batch, tx)
                except StoreUnavailable as exc:
                    # Keep the deliveries (unacked, so not counted as redeliveries) and wait for the store.
                    self.last_error = f"store unavailable: {exc}"
                    log.warning("store_unavailable_batch_held", size=len(batch))
                    await asyncio.sleep(0.5)
                    if lost.is_set():
                        raise ConnectionError("channel closed while the store was down") from exc
            self.routed += len(result.routed)
            retry_at = time.monotonic() + 0.25
            held.extend((retry_at, d) for d in result.busy)
            while True:
                try:
                    await self.core.after_commit(result)
                    break
                except StoreUnavailable:
                    # The broker has the messages; the store must learn it before we go on.
                    log.warning("store_unavailable_after_commit", size=len(result.routed))
                    await asyncio.sleep(0.5)

    async def _next_batch(
        self,
        inbox: asyncio.Queue[AbstractIncomingMessage],
        lost: asyncio.Event,
        held: list[tuple[float, Delivery]],
    ) -> list[Delivery]:
        batch: list[Delivery] = []
        now = time.monotonic()
        due = [d for t, d in held if t <= now]
        held[:] = [(t, d) for t, d in held if t > now]
        batch.extend(due)
        if not batch:
            try:
                first = await asyncio.wait_for(inbox.get(), timeout=0.2)
            except TimeoutError:
                return []
            batch.append(_delivery(first))
        deadline = time.monotonic() + self.linger
        while len(batch) < self.batch_size:
            try:
                batch.append(_delivery(inbox.get_nowait()))
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(_delivery(await asyncio.wait_for(inbox.get(), timeout=remaining)))
            except TimeoutError:
                break
        return batch


def _delivery(message: AbstractIncomingMessage) -> Delivery:
    return Delivery(
        body=message.body,
        message_id=message.message_id,
        routing_key=message.routing_key or "",
        headers=dict(message.headers or {}),
        redelivered=bool(message.redelivered),
        handle=message,
    )
