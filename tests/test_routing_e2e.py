"""The routing spine against the real RabbitMQ and Redis: a contact lands in the right team queue,
once, and bad input ends in router.dead with a reason."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aiohttp.test_utils import TestClient, TestServer

from router.core.topology import H_DEAD_REASON, Names
from router.http.app import create_app
from router.service import Runtime, build, start
from router.settings import Settings
from tests.conftest import drain


def contact_json(
    tenant: str = "ommen", channel: str = "mail", native_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    data = {
        "tenant": tenant,
        "channel": channel,
        "received_at": "2026-05-13T10:00:00+02:00",
        "source": {"adapter": "test", "native_id": native_id or uuid.uuid4().hex},
        "subject": "Paspoort verlopen",
        "body": "Mijn paspoort is verlopen. Hoe vraag ik een nieuwe aan?",
    }
    data.update(extra)
    return data


async def publish_raw(conn: aio_pika.abc.AbstractConnection, names: Names, key: str, body: bytes) -> None:
    channel = await conn.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(names("contacts"))
    await exchange.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(uuid.uuid4())),
        routing_key=key,
    )
    await channel.close()


@pytest.fixture
async def runtime(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> AsyncIterator[Runtime]:
    rt = await build(settings, with_router=True, embedded="never")
    await start(rt)
    for _ in range(100):
        if rt.router is not None and rt.router.ready:
            break
        await asyncio.sleep(0.05)
    yield rt
    await rt.close()


async def wait_routed(rt: Runtime, cid: str, within: float = 10) -> dict[str, str]:
    for _ in range(int(within / 0.05)):
        record = await rt.store.get(cid)
        if record is not None and record.fields.get("status") == "routed":
            return record.fields
        await asyncio.sleep(0.05)
    raise AssertionError(f"contact {cid} was not routed within {within}s")


async def test_contact_published_to_exchange_lands_in_team_queue_and_is_visible_over_http(
    runtime: Runtime, amqp: aio_pika.abc.AbstractConnection
) -> None:
    names = runtime.names
    data = contact_json()
    await publish_raw(amqp, names, "ommen.mail", json.dumps(data).encode())
    from router.core.contact import contact_id

    cid = contact_id("ommen", "test", data["source"]["native_id"])
    fields = await wait_routed(runtime, cid)
    assert fields["team"] == "burgerzaken"

    msgs = await drain(amqp, names.team_queue("ommen", "burgerzaken"))
    assert [m.message_id for m in msgs] == [cid]
    envelope = json.loads(msgs[0].body)
    assert envelope["routing"]["team"] == "burgerzaken"
    assert envelope["routing"]["rule"] == "reisdocumenten"
    assert envelope["routing"]["rule_at"].startswith(str(runtime.settings.rules_dir / "ommen.yaml") + ":")
    # Mail to Ommen, reaction within 5 workdays. Day 0 Wed 13 May; Thu 14 is Hemelvaartsdag; workdays
    # Fri 15, Mon 18, Tue 19, Wed 20, Thu 21 -> Thu 21 May 17:00.
    respond = [d for d in envelope["routing"]["deadlines"] if d["kind"] == "respond"]
    assert respond[0]["due"] == "2026-05-21T17:00:00+02:00"

    client = TestClient(TestServer(create_app(runtime.api_context())))
    await client.start_server()
    try:
        resp = await client.get(f"/v1/contacts/{cid}", headers={"X-API-Key": "secret-key"})
        assert resp.status == 200
        body = await resp.json()
        assert body["team"] == "burgerzaken" and body["status"] == "routed"
        assert body["contact"]["subject"] == "Paspoort verlopen"
        assert body["history"][0]["event"] == "contact.routed"
        # The Ommen agent key sees it; no key does not.
        assert (await client.get(f"/v1/contacts/{cid}", headers={"X-API-Key": "ommen-key"})).status == 200
        assert (await client.get(f"/v1/contacts/{cid}")).status == 401
    finally:
        await client.close()


async def test_same_contact_published_twice_is_routed_once(
    runtime: Runtime, amqp: aio_pika.abc.AbstractConnection
) -> None:
    names = runtime.names
    data = contact_json(native_id="dup-1")
    body = json.dumps(data).encode()
    await publish_raw(amqp, names, "ommen.mail", body)
    await publish_raw(amqp, names, "ommen.mail", body)
    from router.core.contact import contact_id

    cid = contact_id("ommen", "test", "dup-1")
    await wait_routed(runtime, cid)
    await asyncio.sleep(0.5)  # give the second copy time to be (not) routed
    msgs = await drain(amqp, names.team_queue("ommen", "burgerzaken"))
    assert [m.message_id for m in msgs] == [cid]
    router_q = await drain(amqp, names("router.contacts"))
    assert router_q == []


async def test_malformed_json_and_unknown_tenant_are_dead_lettered_with_reason(
    runtime: Runtime, amqp: aio_pika.abc.AbstractConnection
) -> None:
    names = runtime.names
    await publish_raw(amqp, names, "ommen.mail", b'{"tenant": "ommen", ')
    await publish_raw(amqp, names, "zwolle.mail", json.dumps(contact_json(tenant="zwolle")).encode())
    await publish_raw(
        amqp, names, "ommen.mail", json.dumps(contact_json(received_at="2026-05-13T10:00:00")).encode()
    )
    dead: list[aio_pika.abc.AbstractIncomingMessage] = []
    for _ in range(100):
        dead += await drain(amqp, names("router.dead"), settle=0.1)
        if len(dead) >= 3:
            break
    reasons = sorted(str((m.headers or {})[H_DEAD_REASON]) for m in dead)
    assert len(reasons) == 3
    assert reasons[0].startswith("invalid contact: received_at: Input should have timezone info")
    assert reasons[1].startswith("malformed JSON")
    assert reasons[2] == "unknown tenant 'zwolle'"
    # The original body travels with the dead letter, for replay after a fix.
    assert any(m.body == b'{"tenant": "ommen", ' for m in dead)
    # The router keeps routing after bad input.
    data = contact_json()
    await publish_raw(amqp, names, "ommen.mail", json.dumps(data).encode())
    from router.core.contact import contact_id

    await wait_routed(runtime, contact_id("ommen", "test", data["source"]["native_id"]))


async def test_a_team_item_larger_than_an_amqp_frame_arrives_whole(
    runtime: Runtime, amqp: aio_pika.abc.AbstractConnection
) -> None:
    """The router writes a batch's frames itself (router/amqp/consumer.py AmqpTx): a team item bigger than
    the broker's frame size (128 KB) goes out as several body frames and must arrive byte for byte, in
    the same batch as small ones."""
    from router.core.contact import contact_id

    names = runtime.names
    # 100,000 characters (the most a body may have), 60,000 of them a 3-byte '€': a ~230 KB team item.
    big_body = ("Paspoort verlopen, één vraag over kosten. " * 1000)[:40_000] + "€" * 60_000
    contacts = [
        contact_json(native_id=f"big-{i}", body=big_body if i % 2 else "Paspoort kwijt") for i in range(4)
    ]
    for data in contacts:
        await publish_raw(amqp, names, "ommen.mail", json.dumps(data).encode())
    ids = [contact_id("ommen", "test", d["source"]["native_id"]) for d in contacts]
    for cid in ids:
        await wait_routed(runtime, cid)
    msgs = await drain(amqp, names.team_queue("ommen", "burgerzaken"))
    assert sorted(m.message_id for m in msgs) == sorted(ids)
    sizes = {m.message_id: len(m.body) for m in msgs}
    assert max(sizes.values()) > 131_072
    for m in msgs:
        sent = contacts[ids.index(m.message_id)]
        assert json.loads(m.body)["contact"]["body"] == sent["body"]
