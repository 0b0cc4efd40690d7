"""The export's consumer of exchange `events`: a durable quorum queue per exported tenant,
`openklant.events.<tenant>`, bound with `<tenant>.<event>` for each exported event
(router.core.openklant.EXPORTED_EVENTS) and to exchange `openklant.replay` with `<tenant>.#` (where
`contact-router dlq replay --queue openklant.dead` sends dead letters back). A queue per tenant, each on
its own channel with its own prefetch: one municipality's Open Klant down for an hour holds only that
tenant's events, never another's.

    deliveries (up to `prefetch` in hand per tenant) → a task each → ContactSync.handle
      → synced, or nothing to do      ack
      → Open Klant refused (4xx)       publish to `openklant.dead` with the reason (confirmed), then ack
      → Open Klant or Redis away       the client retries with backoff; Redis: again after `retry`
      → stopping                       not acked: the broker delivers it again

The queues have `x-single-active-consumer`: a second exporter waits as a standby instead of syncing the
same contacts at the same time. They have a delivery limit and dead-letter to `openklant.dead` too, so
an event that crashes the exporter every time ends there (header x-death) instead of looping. A killed
exporter leaves its unacked deliveries to the broker; syncing is idempotent
(router.export.openklant.sync), so a redelivered event changes nothing that was done. The queue of a
tenant that is no longer exported loses its bindings at the next start (its leftovers stay until an
operator deletes it).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
import aio_pika.abc
import orjson

from router import logs
from router.amqp import connect as amqp_connect
from router.amqp.declare import quorum_args
from router.amqp.publisher import dead_letter_message
from router.amqp.reconnect import reconnecting
from router.core import topology
from router.core.openklant import EXPORTED_EVENTS
from router.core.ports import StoreUnavailable
from router.core.topology import Names
from router.export.openklant.client import Refused, Stopped
from router.export.openklant.sync import ContactSync

log = logs.get("router.export.openklant")

DELIVERY_LIMIT = 50


async def declare_export_queues(
    channel: aio_pika.abc.AbstractChannel, names: Names, tenants: list[str]
) -> dict[str, aio_pika.abc.AbstractQueue]:
    """The tenants' queues, their dead letters and bindings (idempotent)."""
    topic = aio_pika.ExchangeType.TOPIC
    events = await channel.declare_exchange(names(topology.EVENTS), topic, durable=True)
    replay = await channel.declare_exchange(names(topology.OPENKLANT_REPLAY), topic, durable=True)
    dead_x = await channel.declare_exchange(
        names(topology.OPENKLANT_DEAD), aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_q = await channel.declare_queue(
        names(topology.OPENKLANT_DEAD), durable=True, arguments=quorum_args()
    )
    await dead_q.bind(dead_x)
    arguments = quorum_args(
        dead_letter_exchange=names(topology.OPENKLANT_DEAD), delivery_limit=DELIVERY_LIMIT
    )
    arguments["x-single-active-consumer"] = True
    queues = {}
    for tenant in tenants:
        queue = await channel.declare_queue(names.openklant_queue(tenant), durable=True, arguments=arguments)
        for event in EXPORTED_EVENTS:
            await queue.bind(events, routing_key=f"{tenant}.{event}")
        await queue.bind(replay, routing_key=f"{tenant}.#")
        queues[tenant] = queue
    return queues


async def unbind_tenants(conn: aio_pika.abc.AbstractConnection, names: Names, tenants: list[str]) -> None:
    """Tenants no longer exported: their queues (where they exist) get no more events."""
    for tenant in tenants:
        channel = await conn.channel()
        try:
            queue = await channel.declare_queue(names.openklant_queue(tenant), passive=True)
        except aio_pika.exceptions.ChannelClosed:
            continue  # never exported: nothing to unbind
        for event in EXPORTED_EVENTS:
            await queue.unbind(names(topology.EVENTS), routing_key=f"{tenant}.{event}")
        await queue.unbind(names(topology.OPENKLANT_REPLAY), routing_key=f"{tenant}.#")
        log.info("openklant_tenant_unbound", tenant=tenant)
        await channel.close()


class ExportConsumer:
    def __init__(
        self,
        url: str,
        names: Names,
        sync: ContactSync,
        tenants: list[str],
        others: list[str],
        stop: asyncio.Event,
        *,
        prefetch: int = 100,
        retry: float = 1.0,
        connection_name: str = "export-openklant",
    ):
        self.url = url
        self.names = names
        self.sync = sync
        self.tenants = tenants
        self.others = others
        self.prefetch = prefetch
        self.retry = retry
        self.connection_name = connection_name
        self.ready = False
        self.outcomes: dict[str, int] = {}
        self.dead_lettered = 0
        self._stop = stop
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Consume until stopped; reconnect (after `retry` seconds) whenever the broker is away."""
        await reconnecting(
            self._session,
            self._stop,
            self.retry,
            lost_event="openklant_consumer_disconnected",
            on_lost=self._lost,
        )

    def _lost(self) -> None:
        self.ready = False

    async def _session(self) -> None:
        conn = await amqp_connect.connect(
            self.url, client_properties={"connection_name": self.connection_name}
        )
        try:
            setup = await conn.channel()
            await declare_export_queues(setup, self.names, self.tenants)
            await unbind_tenants(conn, self.names, self.others)
            # Dead letters on a confirm channel: an event is acked only after the broker has its letter.
            dead_channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
            dead = await dead_channel.get_exchange(self.names(topology.OPENKLANT_DEAD), ensure=True)

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                task = asyncio.create_task(self._handle(message, dead))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

            channels, consuming = [], []
            for tenant in self.tenants:
                channel = await conn.channel()
                await channel.set_qos(prefetch_count=self.prefetch)
                queue = await channel.get_queue(self.names.openklant_queue(tenant), ensure=False)
                consuming.append((queue, await queue.consume(on_message)))
                channels.append(channel)
            self.ready = True
            log.info("openklant_consumer_ready", tenants=self.tenants)
            try:
                while not self._stop.is_set() and not any(c.is_closed for c in channels):
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 0.5)
            finally:
                self.ready = False
                for queue, tag in consuming:
                    with contextlib.suppress(Exception):
                        await queue.cancel(tag)
                # In-flight work ends at its next request (Stopped) and stays unacked.
                if self._tasks:
                    await asyncio.wait(list(self._tasks), timeout=10)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _handle(
        self, message: aio_pika.abc.AbstractIncomingMessage, dead: aio_pika.abc.AbstractExchange
    ) -> None:
        try:
            await self._process(message, dead)
        except (aio_pika.exceptions.AMQPError, ConnectionError, OSError) as exc:
            # The channel went away under us: whatever was not acked is delivered again.
            log.warning("openklant_ack_failed", error=type(exc).__name__)

    async def _process(
        self, message: aio_pika.abc.AbstractIncomingMessage, dead: aio_pika.abc.AbstractExchange
    ) -> None:
        key = message.routing_key or ""
        try:
            event: Any = orjson.loads(message.body)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            log.warning("openklant_event_skipped", reason="not a JSON object", routing_key=key[:100])
            await message.ack()
            return
        while True:
            try:
                outcome = await self.sync.handle(event)
            except Refused as exc:
                await dead.publish(
                    dead_letter_message(message.body, exc.reason, key), routing_key=key, timeout=10
                )
                await message.ack()
                self.dead_lettered += 1
                log.warning(
                    "openklant_dead_lettered",
                    reason=exc.reason,
                    event_name=event.get("event"),
                    event_id=event.get("event_id"),
                    contact_id=event.get("contact_id"),
                )
                return
            except Stopped:
                return  # not acked: the broker delivers it again
            except StoreUnavailable:
                log.warning("openklant_store_unavailable", contact_id=event.get("contact_id"))
                if self._stop.is_set():
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.retry)
                continue
            except Exception as exc:  # a bug or an answer we do not understand: back to the queue
                log.error(
                    "openklant_sync_failed",
                    error=type(exc).__name__,
                    event_name=event.get("event"),
                    contact_id=event.get("contact_id"),
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.retry)
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
                return
            break
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        await message.ack()
