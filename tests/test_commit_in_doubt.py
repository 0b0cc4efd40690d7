"""A commit whose outcome the router never hears: after the reconnect it looks for the batch's marker.
Committed: the store learns it (the contacts do not stay 'routing' for good). Not committed: the
deliveries came back and are routed again. Either way each contact is in its team queue once."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from router.amqp import consumer as amqp_router
from router.core.contact import contact_id
from router.core.topology import Names
from router.service import build, start
from router.settings import Settings
from tests.conftest import drain


async def publish(conn: aio_pika.abc.AbstractConnection, names: Names, n: int) -> list[str]:
    channel = await conn.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(names("contacts"))
    ids = []
    for _ in range(n):
        native = uuid.uuid4().hex
        body = {
            "tenant": "ommen",
            "channel": "mail",
            # Now, as the router's real clock has it: a fixed date would be breached on arrival one day.
            "received_at": datetime.now(UTC).isoformat(),
            "source": {"adapter": "test", "native_id": native},
            "subject": "Paspoort verlopen",
        }
        message = aio_pika.Message(
            json.dumps(body).encode(),
            message_id=str(uuid.uuid4()),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await exchange.publish(message, routing_key="ommen.mail")
        ids.append(contact_id("ommen", "test", native))
    await channel.close()
    return ids


async def wait_routed(rt: Any, ids: list[str], within: float = 20.0) -> list[str]:
    """The contacts' states in the store, once all are `routed` or after `within` seconds."""
    statuses: list[str] = []
    for _ in range(int(within / 0.05)):
        records = [await rt.store.get(cid) for cid in ids]
        statuses = [r.fields.get("status", "") if r else "" for r in records]
        if statuses == ["routed"] * len(ids):
            break
        await asyncio.sleep(0.05)
    return statuses


@pytest.mark.parametrize("broker_committed", [True, False])
async def test_unheard_commit_is_resolved_after_reconnect(
    settings: Settings,
    amqp: aio_pika.abc.AbstractConnection,
    redis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    broker_committed: bool,
) -> None:
    real_commit = amqp_router.AmqpTx._commit
    lost: list[int] = []

    async def commit_then_lose_the_connection(self: amqp_router.AmqpTx) -> None:
        if lost:
            return await real_commit(self)
        lost.append(1)
        if broker_committed:
            await real_commit(self)
        await self.channel.close()  # before commit-ok reaches us, or instead of committing at all
        raise ConnectionError("connection lost during commit")

    monkeypatch.setattr(amqp_router.AmqpTx, "_commit", commit_then_lose_the_connection)
    rt = await build(settings, with_router=True, embedded="never")
    await start(rt)
    try:
        ids = await publish(amqp, rt.names, 5)
        statuses = await wait_routed(rt, ids, within=10.0)
        assert lost == [1]
        assert statuses == ["routed"] * 5
        msgs = await drain(amqp, rt.names.team_queue("ommen", "burgerzaken"))
        assert sorted(str(m.message_id) for m in msgs) == sorted(ids)  # each exactly once
    finally:
        await rt.close()
