"""Readiness that tells the truth: /readyz fails while the router has no consumer on its queue, and the
router re-attaches one by itself, without a restart, once the broker lets it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aiohttp.test_utils import TestClient, TestServer

from router.core.contact import contact_id
from router.http.app import create_app
from router.service import Runtime, build, start
from router.settings import Settings
from tests.faults.helpers import TcpProxy, close_named_connection
from tests.test_routing_e2e import contact_json, publish_raw, wait_routed


async def readiness(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/readyz")
    body: dict[str, Any] = await resp.json()
    return resp.status, body


async def wait_readiness(
    client: TestClient[Any, Any], status: int, within: float, consumer: str = ""
) -> dict[str, Any]:
    """Poll /readyz until it answers `status` (and the consumer check starts with `consumer`)."""
    deadline = time.monotonic() + within
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        code, last = await readiness(client)
        if code == status and last["checks"].get("consumer", "").startswith(consumer):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"/readyz did not answer {status} within {within}s; last answer: {last}")


UNATTACHED = "router consumer not attached"


@pytest.fixture
def proxy() -> AsyncIterator[TcpProxy]:
    p = TcpProxy().start()
    yield p
    p.close()


async def running(settings: Settings) -> tuple[Runtime, TestClient[Any, Any]]:
    rt = await build(settings, with_router=True, embedded="never")
    await start(rt)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(rt.api_context())))
    await client.start_server()
    await wait_readiness(client, 200, within=10)
    return rt, client


async def route_one(rt: Runtime, amqp: aio_pika.abc.AbstractConnection) -> str:
    data = contact_json()
    await publish_raw(amqp, rt.names, "ommen.mail", json.dumps(data).encode())
    cid = contact_id("ommen", "test", data["source"]["native_id"])
    await wait_routed(rt, cid, within=15)
    return cid


async def test_consumer_cancelled_by_broker_is_unready_until_the_watchdog_reattaches_it(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> None:
    rt, client = await running(settings)
    assert rt.router is not None
    try:
        await route_one(rt, amqp)
        queue = rt.names("router.contacts")
        channel = await amqp.channel()
        # Delete the router's queue: the broker cancels the consumer while connection and channel stay
        # open — the failure that leaves a naive consumer "up" forever. Put an exclusive queue of the
        # same name in its place, so the router cannot simply declare it again: it must stay unready.
        await channel.queue_delete(queue)
        blocker = await channel.declare_queue(queue, exclusive=True, auto_delete=False)
        body = await wait_readiness(client, 503, within=5, consumer=UNATTACHED)
        assert body["status"] == "unready"
        assert body["checks"]["store"] == "ok"
        assert body["checks"]["broker"] == "ok"
        await asyncio.sleep(1.5)  # the router keeps trying and keeps failing: still unready
        code, body = await readiness(client)
        assert code == 503, body
        assert "RESOURCE_LOCKED" in body["checks"]["consumer"] or "locked" in body["checks"]["consumer"]

        await blocker.delete()
        await channel.close()
        await wait_readiness(client, 200, within=10)
        assert rt.router.attachments >= 2
        # Routing resumes in the same process: the re-attached consumer takes new contacts.
        await route_one(rt, amqp)
    finally:
        await client.close()
        await rt.close()


async def test_connection_cut_is_unready_while_the_broker_is_unreachable_then_routing_resumes(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any, proxy: TcpProxy
) -> None:
    rt, client = await running(settings.model_copy(update={"amqp_url": proxy.url()}))
    assert rt.router is not None
    try:
        await route_one(rt, amqp)
        assert proxy.cut() >= 1  # the router's connection (and the API's, if any) dropped; new ones refused
        await wait_readiness(client, 503, within=3, consumer=UNATTACHED)
        await asyncio.sleep(2)
        code, body = await readiness(client)
        assert code == 503 and body["checks"]["consumer"].startswith(UNATTACHED), body
        proxy.restore()
        await wait_readiness(client, 200, within=10)
        assert rt.router.attachments >= 2
        await route_one(rt, amqp)
    finally:
        await client.close()
        await rt.close()


async def test_broker_closing_the_routers_own_named_connection_reattaches_without_restart(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> None:
    rt, client = await running(settings)
    assert rt.router is not None
    try:
        name = rt.router.connection_name
        assert settings.namespace in name  # unique: closing it touches no one else's connection
        assert rt.router.attachments == 1
        assert await asyncio.to_thread(close_named_connection, name, "readiness test") == 1
        for _ in range(200):
            if rt.router.attachments >= 2:
                break
            await asyncio.sleep(0.05)
        assert rt.router.attachments == 2, rt.router.last_error
        await wait_readiness(client, 200, within=5)
        await route_one(rt, amqp)
    finally:
        await client.close()
        await rt.close()


async def wait_ready(rt: Runtime, ready: bool, within: float) -> None:
    assert rt.router is not None
    for _ in range(int(within / 0.01)):
        if rt.router.ready == ready:
            break
        await asyncio.sleep(0.01)
    assert rt.router.ready == ready, rt.router.last_error


async def test_cancel_notification_alone_makes_the_router_unready_and_reattach(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> None:
    rt = await build(settings, with_router=True, embedded="never")
    assert rt.router is not None
    rt.router.watchdog_interval = 600  # the watchdog cannot be what notices here
    await start(rt)
    try:
        await wait_ready(rt, True, within=5)
        channel = await amqp.channel()
        await channel.queue_delete(rt.names("router.contacts"))
        blocker = await channel.declare_queue(rt.names("router.contacts"), exclusive=True)
        await wait_ready(rt, False, within=2)
        assert rt.router.attachments == 1
        await blocker.delete()
        await wait_ready(rt, True, within=10)
        assert rt.router.attachments == 2
    finally:
        await rt.close()


async def test_watchdog_alone_reattaches_a_consumer_lost_without_notification(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> None:
    rt = await build(settings, with_router=True, embedded="never")
    assert rt.router is not None
    rt.router.watchdog_interval = 0.2
    await start(rt)
    try:
        await wait_ready(rt, True, within=5)
        # Silence the broker's cancel notification: only the watchdog's own check is left.
        attached = rt.router._attached
        assert attached is not None
        attached.underlay.on_consumer_cancel_callbacks.clear()
        channel = await amqp.channel()
        await channel.queue_delete(rt.names("router.contacts"))
        blocker = await channel.declare_queue(rt.names("router.contacts"), exclusive=True)
        await wait_ready(rt, False, within=2)
        await blocker.delete()
        await wait_ready(rt, True, within=10)
        assert rt.router.attachments == 2
        await route_one(rt, amqp)
    finally:
        await rt.close()


@pytest.mark.parametrize("step", ["stage", "emit"])
async def test_an_unexpected_error_does_not_leave_the_process_up_without_a_consumer(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any, step: str
) -> None:
    """A channel closed under a publish raises a RuntimeError in aiormq, not an AMQP error: any such
    surprise, while staging a batch or while publishing it (a task of its own, overlapping the next
    batch), must end the session (deliveries back to the queue) and re-attach, not end the router."""
    rt = await build(settings, with_router=True, embedded="never")
    assert rt.router is not None
    core = rt.router.core
    real = getattr(core, step)
    calls = 0

    async def flaky(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("surprise")
        return await real(*args)

    setattr(core, step, flaky)
    await start(rt)
    try:
        await wait_ready(rt, True, within=5)
        cid = await route_one(rt, amqp)  # the first batch fails, is redelivered and routed
        assert calls >= 2 and rt.router.attachments == 2
        record = await rt.store.get(cid)
        assert record is not None and record.fields["status"] == "routed"
    finally:
        await rt.close()


async def test_a_publish_hung_on_a_dead_connection_does_not_hold_up_the_reconnect(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> None:
    """A batch is published in a task of its own while the next one is staged. A publish on a
    connection that died can wait for good (aiormq's frame buffer is full and nothing drains it): the
    lost connection must end the batch and the session at once, and the batch must be routed after."""
    rt = await build(settings, with_router=True, embedded="never")
    assert rt.router is not None
    core = rt.router.core
    real = core.emit
    hung = asyncio.Event()

    async def hanging(result: Any, tx: Any) -> None:
        if not hung.is_set():
            hung.set()
            await asyncio.Event().wait()  # never set: a publish that never returns
        await real(result, tx)

    core.emit = hanging  # type: ignore[method-assign]
    await start(rt)
    try:
        await wait_ready(rt, True, within=5)
        data = contact_json()
        await publish_raw(amqp, rt.names, "ommen.mail", json.dumps(data).encode())
        await asyncio.wait_for(hung.wait(), 10)
        assert await asyncio.to_thread(close_named_connection, rt.router.connection_name, "test") == 1
        started = time.monotonic()
        for _ in range(200):
            if rt.router.attachments >= 2:
                break
            await asyncio.sleep(0.05)
        assert rt.router.attachments == 2, rt.router.last_error
        assert time.monotonic() - started < 5
        cid = contact_id("ommen", "test", data["source"]["native_id"])
        await wait_routed(rt, cid, within=15)  # redelivered and routed, not left 'routing'
    finally:
        await rt.close()
