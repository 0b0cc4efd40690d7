"""Behaviour tests written once, run against two backends (fixture `backend` in tests/conftest.py):

- "embedded": `router.service.build(embedded="always")`: the in-process broker (router/embedded) and the
  Redis code on fakeredis. What was published is read from the broker's record, through the bindings the
  real topology declares (router/amqp/declare.py): a team queue takes key `<tenant>.<team>` of `teams`.
- "real": `embedded="never"`: RabbitMQ and Redis. What was published is read from the declared queues.
- "cluster": as "real", on a Redis Cluster of three masters that the suite starts (tests/redis_cluster.py),
  so that every script, transaction and pipeline is shown to keep to one hash slot where it must.

Both build the same Runtime with the same settings and a ManualClock, run its router and serve its API;
the scheduler is built but not run, so that a test decides when timers fire (`rt.scheduler.tick()`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import aio_pika
from aiohttp.test_utils import TestClient, TestServer

from router.core import topology
from router.core.clock import ManualClock
from router.core.ports import Delivery
from router.core.topology import Names
from router.embedded.broker import MemoryBroker
from router.http.app import create_app
from router.service import build, teams_by_tenant
from router.settings import Settings
from tests.harness import EVENTS_TAP, Harness, Received, Taps, collect, drain_queue

BACKENDS = ("embedded", "real", "cluster")


class BackendChoice(NamedTuple):
    """Fixture `backend_kind`: which backend, the test's broker connection (none for "embedded"), and the
    Redis URL that replaces REDIS_URL (the cluster's)."""

    kind: str
    amqp: aio_pika.abc.AbstractConnection | None = None
    redis_url: str | None = None

    def settings(self, settings: Settings) -> Settings:
        return (
            settings if self.redis_url is None else settings.model_copy(update={"redis_url": self.redis_url})
        )


async def drain(
    conn: aio_pika.abc.AbstractConnection, queue: str, *, settle: float = 0.3
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take every message currently in `queue` (acked), waiting `settle` seconds for stragglers."""
    channel = await conn.channel()
    q = await channel.get_queue(queue, ensure=True)
    out = await drain_queue(q, settle)
    await channel.close()
    return out


async def publish_raw(conn: aio_pika.abc.AbstractConnection, names: Names, key: str, body: bytes) -> None:
    """`body` on exchange `contacts`, confirmed, as any publisher might send it (not the service's)."""
    channel = await conn.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(names(topology.CONTACTS))
    await exchange.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(uuid.uuid4())),
        routing_key=key,
    )
    await channel.close()


# A queue of the tests' own on exchange `contacts` (see `contacts_tap`).
CONTACTS_TAP = "tests.contacts"


class ContactsTap:
    """What was published to exchange `contacts` since the tap was opened (see `contacts_tap`)."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue):
        self.queue = queue

    async def take(self, settle: float = 0.3) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Every message on the tap now (taken: a second call sees only newer ones)."""
        return await drain_queue(self.queue, settle)


@asynccontextmanager
async def contacts_tap(conn: aio_pika.abc.AbstractConnection, names: Names) -> AsyncIterator[ContactsTap]:
    """An exclusive queue bound to exchange `contacts` with key "#", declared before the test acts.

    For "nothing was published": `router.contacts` cannot tell while a router consumes it (a stray
    message is taken before a check gets to see it); this queue keeps a copy of every contact
    published from now on, whoever consumes the router's queue. Pair a check of it with a positive
    control in the same test (something that is published, seen on the tap)."""
    channel = await conn.channel()
    queue = await channel.declare_queue(names(CONTACTS_TAP), exclusive=True)
    await queue.bind(names(topology.CONTACTS), routing_key="#")
    try:
        yield ContactsTap(queue)
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await channel.close()


class AmqpTaps:
    """The real queues. The events tap is an exclusive queue of this connection, bound before use."""

    def __init__(self, conn: aio_pika.abc.AbstractConnection, names: Names):
        self.conn = conn
        self.names = names

    @classmethod
    async def open(cls, conn: aio_pika.abc.AbstractConnection, names: Names) -> AmqpTaps:
        channel = await conn.channel()
        events = await channel.declare_queue(names(EVENTS_TAP), exclusive=True)
        await events.bind(names(topology.EVENTS), routing_key="#")
        await channel.close()
        return cls(conn, names)

    async def publish_raw(self, routing_key: str, body: bytes) -> None:
        await publish_raw(self.conn, self.names, routing_key, body)

    async def take(self, queue: str, settle: float) -> list[Received]:
        return list(await drain(self.conn, queue, settle=settle))

    async def close(self) -> None:
        return None


class MemoryTaps:
    """The embedded broker's record of what was published, seen through the real topology's bindings:
    each queue name reads one exchange's list, filtered by its binding key (None: every message), from
    where its last read stopped. The router's queue is the broker's inbox."""

    def __init__(self, broker: MemoryBroker, names: Names, teams: dict[str, list[str]]):
        self.broker = broker
        self.names = names
        self.bindings: dict[str, tuple[str, str | None]] = {
            names(topology.DEAD): (names(topology.DEAD), None),
            names(EVENTS_TAP): (names(topology.EVENTS), None),
        }
        for tenant, team_ids in teams.items():
            for team in team_ids:
                self.bindings[names.team_queue(tenant, team)] = (names(topology.TEAMS), f"{tenant}.{team}")
            self.bindings[names.escalation_queue(tenant)] = (names(topology.ESCALATIONS), tenant)
        self._read: dict[str, int] = {}

    async def publish_raw(self, routing_key: str, body: bytes) -> None:
        await self.broker.inbox.put(Delivery(body, str(uuid.uuid4()), routing_key, {}, False))

    async def take(self, queue: str, settle: float) -> list[Received]:
        if queue == self.names(topology.ROUTER_QUEUE):
            return await collect(self._next_input, settle)
        exchange, key = self.bindings[queue]  # KeyError: no such queue in the topology

        async def next_message() -> Received | None:
            published = self.broker.published[exchange]
            start = self._read.get(queue, 0)
            for i in range(start, len(published)):
                if key is None or published[i].routing_key == key:
                    self._read[queue] = i + 1
                    return published[i]
            self._read[queue] = len(published)
            return None

        return await collect(next_message, settle)

    async def _next_input(self) -> Received | None:
        try:
            return self.broker.inbox.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def close(self) -> None:
        return None


@asynccontextmanager
async def open_harness(
    kind: str, settings: Settings, clock: ManualClock, amqp: aio_pika.abc.AbstractConnection | None = None
) -> AsyncIterator[Harness]:
    """A running router and API on backend `kind` (one of BACKENDS; all but "embedded" need `amqp`, and
    "cluster" settings whose REDIS_URL names the cluster)."""
    assert kind in BACKENDS, kind
    embedded = "always" if kind == "embedded" else "never"
    rt = await build(settings, with_router=True, with_scheduler=True, embedded=embedded, clock=clock)
    taps: Taps
    if rt.broker is not None:
        taps = MemoryTaps(rt.broker, rt.names, teams_by_tenant(rt.tenants))
    else:
        assert amqp is not None, "the real backend reads the queues over a connection of the test's"
        taps = await AmqpTaps.open(amqp, rt.names)
    assert rt.router is not None
    rt.tasks.append(asyncio.create_task(rt.router.run(), name="router"))
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(rt.api_context())))
    await client.start_server()
    try:
        yield Harness(kind, rt, client, clock, taps)
    finally:
        await client.close()
        await taps.close()
        await rt.close()
