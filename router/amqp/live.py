"""The workspace's live feed on RabbitMQ: one consumer per process on an exclusive, auto-delete queue
bound to the `events` exchange for each tenant (`<tenant>.#`). The queue lives as long as the process's
connection: a process that stops leaves nothing behind, and one that reconnects (connect_robust)
declares it again. Events missed meanwhile are not replayed; the pages fetch their lists afresh when
their stream is back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

import aio_pika

from router import logs
from router.amqp import connect as amqp_connect
from router.core import topology
from router.core.topology import Names

log = logs.get("router.amqp.live")


class LiveEvents:
    def __init__(self, url: str, names: Names, tenants: Iterable[str], deliver: Callable[[bytes], None]):
        self.url = url
        self.names = names
        self.tenants = sorted(tenants)
        self.deliver = deliver
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self.connection = await amqp_connect.connect_robust(
            self.url, client_properties={"connection_name": "workspace-live"}
        )
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=1000)
        events = await channel.declare_exchange(
            self.names(topology.EVENTS), aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for tenant in self.tenants:
            await queue.bind(events, routing_key=f"{tenant}.#")
        await queue.consume(self._on_message, no_ack=True)
        self.ready.set()
        log.info("live_events_consuming", tenants=len(self.tenants))

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            self.deliver(message.body)
        except Exception as exc:  # one bad event must not stop the feed
            log.warning("live_event_failed", error=type(exc).__name__)

    async def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
