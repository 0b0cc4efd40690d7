"""Routed once for every publisher (issue 12): a copy of a contact sent right behind the original —
the identical message (same bytes, same message_id, what a client sends after a lost confirm), the same
bytes without a message_id (pika and most non-Python clients), or with a fresh message_id — reaches its
team queue once, with two routers competing for the queue."""

from __future__ import annotations

import asyncio
import collections
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from router.core import topology
from router.core.contact import Contact, Source
from router.service import Runtime, build, start
from router.settings import Settings
from tests.backends import drain
from tests.harness import wait_committed

N = 1000


def contacts(n: int, tag: str) -> list[Contact]:
    at = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    return [
        Contact(
            tenant="ommen" if i % 2 else "coevorden",
            channel="mail",
            received_at=at,
            source=Source(adapter="resend-test", native_id=f"{tag}-{i}"),
            subject="Vraag",
            body="Tekst",
        )
        for i in range(n)
    ]


async def routers(settings: Settings, count: int) -> list[Runtime]:
    out = []
    for _ in range(count):
        rt = await build(settings, with_router=True, embedded="never")
        await start(rt)
        out.append(rt)
    for _ in range(200):
        if all(rt.router is not None and rt.router.ready for rt in out):
            break
        await asyncio.sleep(0.05)
    return out


async def team_items(amqp: Any, rt: Runtime) -> list[aio_pika.abc.AbstractIncomingMessage]:
    out = []
    for tenant, t in rt.tenants.items():
        for team in t.loaded.rules.team_ids():
            out += await drain(amqp, rt.names.team_queue(tenant, team), settle=0.3)
    return out


@pytest.mark.parametrize("kind", ["identical", "without_id", "fresh_id"])
async def test_copies_sent_right_behind_their_originals_are_routed_once(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any, kind: str
) -> None:
    # redis_client: its teardown removes the namespace's keys (3,000 a run, else left for good).
    runtimes = await routers(settings, 2)
    names = runtimes[0].names
    sent = contacts(N, f"{kind}-{uuid.uuid4().hex[:6]}")
    channel = await amqp.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(names(topology.CONTACTS))
    try:
        for contact in sent:
            body = contact.model_dump_json(exclude={"reference"}).encode()
            first_id = None if kind == "without_id" else str(uuid.uuid4())
            for copy in range(2):
                message_id = str(uuid.uuid4()) if kind == "fresh_id" and copy else first_id
                await exchange.publish(
                    aio_pika.Message(
                        body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id
                    ),
                    routing_key=f"{contact.tenant}.{contact.channel}",
                )
        # Every original routed (the store says so), then a moment for a second copy to land, if any.
        for contact in sent:
            await wait_committed(runtimes[0], contact.cid, within=60)
        await asyncio.sleep(1.0)
        items = await team_items(amqp, runtimes[0])
        per_contact = collections.Counter(json.loads(m.body)["contact"]["id"] for m in items)
        twice = {cid: n for cid, n in per_contact.items() if n > 1}
        missing = {c.cid for c in sent} - set(per_contact)
        assert (len(twice), len(missing)) == (0, 0), f"{len(twice)} routed twice, {len(missing)} missing"
        dead = await drain(amqp, names(topology.DEAD), settle=0.2)
        assert dead == []
    finally:
        await channel.close()
        for rt in runtimes:
            await rt.close()
