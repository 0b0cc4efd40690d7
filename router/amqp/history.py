"""The history's consumer of exchange `events`: its own durable quorum queue `history.events`, bound
with "#", read in batches; a batch is acked only after the store committed it.

    take up to `batch` deliveries (waiting `linger` seconds for more once there is one)
      → parse each (router.core.history.parse_event; a malformed one is logged and acked: it has no row)
      → sink(rows): one transaction, idempotent on event_id
      → ack the batch (one `multiple` ack of its last delivery)

A consumer killed anywhere leaves its unacked deliveries to the broker, which delivers them again (to
this consumer when it is back, or to another): the store skips the events it already has, so every
event is stored once. The consumer keeps its own reconnect loop rather than a robust connection: after
a reconnect the old channel's delivery tags are void, so whatever was in hand is dropped and comes back
from the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import aio_pika
import aio_pika.abc

from router import logs
from router.amqp import connect as amqp_connect
from router.amqp.declare import quorum_args
from router.amqp.reconnect import reconnecting
from router.core import topology
from router.core.history import HISTORY_QUEUE, EventRow, parse_event
from router.core.topology import Names

log = logs.get("router.amqp.history")

Sink = Callable[[Sequence[EventRow]], Awaitable[int]]


async def declare_history_queue(
    channel: aio_pika.abc.AbstractChannel, names: Names
) -> aio_pika.abc.AbstractQueue:
    """The queue and its binding (idempotent); the exchange as `router.amqp.declare` declares it."""
    events = await channel.declare_exchange(names(topology.EVENTS), aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(names(HISTORY_QUEUE), durable=True, arguments=quorum_args())
    await queue.bind(events, routing_key="#")
    return queue


async def consumers_of_history_queue(url: str, names: Names) -> int:
    """How many consumers the history queue has now (for a health check); raises if it does not exist."""
    conn = await amqp_connect.connect(
        url, timeout=10.0, client_properties={"connection_name": "history-check"}
    )
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue(names(HISTORY_QUEUE), passive=True)
        result = queue.declaration_result
        return int(result.consumer_count or 0)
    finally:
        await conn.close()


class HistoryConsumer:
    def __init__(
        self,
        url: str,
        names: Names,
        sink: Sink,
        *,
        batch: int = 500,
        linger: float = 0.05,
        retry: float = 1.0,
        connection_name: str = "history",
    ):
        self.url = url
        self.names = names
        self.sink = sink
        self.batch = batch
        self.linger = linger
        self.retry = retry
        self.connection_name = connection_name
        self.stored = 0
        self.seen = 0
        self.ready = False
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Consume until stopped; reconnect (after `retry` seconds) whenever the broker is away."""
        await reconnecting(
            self._session,
            self._stop,
            self.retry,
            lost_event="history_consumer_disconnected",
            on_lost=self._lost,
        )

    def _lost(self) -> None:
        self.ready = False

    async def _session(self) -> None:
        conn = await amqp_connect.connect(
            self.url, client_properties={"connection_name": self.connection_name}
        )
        try:
            channel = await conn.channel()
            await channel.set_qos(prefetch_count=self.batch * 2)
            queue = await declare_history_queue(channel, self.names)
            inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
            tag = await queue.consume(inbox.put)
            self.ready = True
            log.info("history_consumer_ready", queue=queue.name)
            try:
                while not self._stop.is_set() and not channel.is_closed:
                    messages = await self._next_batch(inbox)
                    if messages:
                        await self._store(messages)
            finally:
                self.ready = False
                with contextlib.suppress(Exception):
                    await queue.cancel(tag)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _next_batch(
        self, inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage]
    ) -> list[aio_pika.abc.AbstractIncomingMessage]:
        try:
            first = await asyncio.wait_for(inbox.get(), 0.5)
        except TimeoutError:
            return []
        out = [first]
        deadline = asyncio.get_running_loop().time() + self.linger
        while len(out) < self.batch:
            if inbox.empty():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    out.append(await asyncio.wait_for(inbox.get(), left))
                except TimeoutError:
                    break
                continue
            out.append(inbox.get_nowait())
        return out

    async def _store(self, messages: list[aio_pika.abc.AbstractIncomingMessage]) -> None:
        rows: list[EventRow] = []
        for m in messages:
            row = parse_event(m.body)
            if isinstance(row, str):
                log.warning("history_event_skipped", reason=row, routing_key=(m.routing_key or "")[:100])
            else:
                rows.append(row)
        while True:
            try:
                self.stored += await self.sink(rows)
                break
            except Exception as exc:  # the database away: keep the batch unacked and try again
                log.warning("history_store_failed", error=type(exc).__name__, events=len(rows))
                if self._stop.is_set():
                    return  # not acked: the broker delivers them again
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.retry)
        self.seen += len(messages)
        await messages[-1].ack(multiple=True)
