"""The history consumer killed mid-stream (SIGKILL) and started again: every event published is in
the table exactly once (issue 17). A real `contact-router history consume` process, RabbitMQ and
PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import asyncpg
import pytest

from router.core import topology
from router.core.history import HISTORY_QUEUE
from router.core.messages import event_message
from router.core.tenants import Tenant
from router.core.topology import Names
from router.history import open_store
from tests.conftest import AMQP_URL, RULES

pytestmark = pytest.mark.slow

EVENTS = 12_000
DOUBLES = 500  # published twice (a relayed outbox entry, a re-sent confirm): one row each


def consumer(pg_url: str, namespace: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HISTORY_URL": pg_url,
        "AMQP_URL": AMQP_URL,
        "NAMESPACE": namespace,
        "RULES_DIR": str(RULES),
        "LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "router.cli", "history", "consume"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def bodies(n: int) -> list[tuple[str, bytes]]:
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        cid = str(uuid.uuid4())
        msg = event_message(
            "events",
            "contact.received" if i % 2 else "contact.closed",
            start + timedelta(seconds=i),
            tenant="ommen" if i % 3 else "coevorden",
            contact_id=cid,
            channel="mail",
            received_at=start.isoformat(),
        )
        out.append((msg.message_id, msg.body.encode()))
    return out


async def publish(
    channel: aio_pika.abc.AbstractChannel, names: Names, items: list[tuple[str, bytes]]
) -> None:
    exchange = await channel.get_exchange(names(topology.EVENTS))
    for start in range(0, len(items), 500):
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(body, message_id=mid, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="ommen.contact.received",
                )
                for mid, body in items[start : start + 500]
            )
        )


async def rows(pg_url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(pg_url)
    try:
        r = await conn.fetchrow("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM history_events")
        return int(r["n"]), int(r["d"])
    finally:
        await conn.close()


async def wait_rows(pg_url: str, at_least: int, within: float) -> int:
    for _ in range(int(within / 0.02)):
        n, _ = await rows(pg_url)
        if n >= at_least:
            return n
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} rows after {within}s ({n})")


async def test_a_consumer_killed_mid_stream_and_restarted_stores_every_event_once(
    pg_url: str, namespace: str, amqp: aio_pika.abc.AbstractConnection, tenants: dict[str, Tenant]
) -> None:
    from router.amqp.history import declare_history_queue

    await (await open_store(pg_url, tenants)).close()  # migrated before the race starts
    names = Names(namespace)
    channel = await amqp.channel(publisher_confirms=True)
    await declare_history_queue(channel, names)
    events = bodies(EVENTS)
    first, rest = events[: EVENTS // 3], events[EVENTS // 3 :]
    await publish(channel, names, first + first[:DOUBLES])
    proc = consumer(pg_url, namespace)
    try:
        sending = asyncio.create_task(publish(channel, names, rest))
        stored = await wait_rows(pg_url, 1500, 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        killed_at, _ = await rows(pg_url)
        assert stored <= killed_at < EVENTS, "killed after the stream had ended: not mid-stream"
        await sending
        await publish(channel, names, rest[-DOUBLES:])  # and a few more doubles after the restart
        proc = consumer(pg_url, namespace)
        await wait_rows(pg_url, EVENTS, 120)
        await asyncio.sleep(1.0)  # nothing more comes: no doubles from redeliveries
        assert await rows(pg_url) == (EVENTS, EVENTS)
        conn = await asyncpg.connect(pg_url)
        try:
            stored_ids = {str(r[0]) for r in await conn.fetch("SELECT event_id FROM history_events")}
        finally:
            await conn.close()
        assert stored_ids == {mid for mid, _ in events}
        queue = await channel.declare_queue(names(HISTORY_QUEUE), passive=True)
        assert queue.declaration_result.message_count == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode() if proc.stderr else ""
        with_channel = await amqp.channel()
        await with_channel.queue_delete(names(HISTORY_QUEUE))
        await with_channel.close()
