"""Confirmed publishing for the API and the scheduler: team work items, events, escalations."""

from __future__ import annotations

import asyncio

import aio_pika

from router.amqp import connect as amqp_connect
from router.core.ports import OutMessage


class AmqpOutbound:
    def __init__(self, url: str, *, timeout: float = 10.0, connection_name: str = "outbound"):
        self.url = url
        self.timeout = timeout
        self.connection_name = connection_name
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        self._lock = asyncio.Lock()

    async def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        async with self._lock:
            if self._channel is None or self._channel.is_closed:
                if self._connection is None or self._connection.is_closed:
                    self._connection = await amqp_connect.connect_robust(
                        self.url,
                        client_properties={"connection_name": self.connection_name},
                        timeout=self.timeout,
                    )
                self._channel = await self._connection.channel(publisher_confirms=True)
                self._exchanges.clear()
            ex = self._exchanges.get(name)
            if ex is None:
                ex = await self._channel.get_exchange(name, ensure=True)
                self._exchanges[name] = ex
            return ex

    async def publish(self, msg: OutMessage) -> None:
        try:
            ex = await self._exchange(msg.exchange)
            await ex.publish(
                aio_pika.Message(
                    msg.body.encode(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=msg.message_id,
                    headers=msg.headers,
                ),
                routing_key=msg.routing_key,
                # Team queues are covered by the alternate exchange; events may have no subscriber.
                mandatory=False,
                timeout=self.timeout,
            )
        except Exception:
            self._channel = None
            raise

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
