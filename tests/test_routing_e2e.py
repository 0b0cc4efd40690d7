"""The routing spine: a contact lands in the right team queue, once, and bad input ends in router.dead
with a reason. Each test runs on the embedded backend and on the real RabbitMQ and Redis (`backend`),
except where a comment says why it is about the real one alone (`h`)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Any

import pytest

from router.core import topology
from router.core.contact import contact_id
from router.core.pipeline import BatchResult
from router.core.ports import Delivery
from router.core.topology import H_DEAD_REASON
from tests.backends import publish_raw as publish_raw  # re-exported: other test modules use it
from tests.harness import AMS, Harness, Received, wait_routed


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


async def test_contact_published_to_exchange_lands_in_team_queue_and_is_visible_over_http(
    backend: Harness,
) -> None:
    # The router's clock is days past the contact's receipt: the deadlines count from receipt.
    backend.clock.set(datetime(2026, 5, 18, 9, 0, tzinfo=AMS))
    data = contact_json()
    await backend.publish_raw("ommen.mail", json.dumps(data).encode())

    cid = contact_id("ommen", "test", data["source"]["native_id"])
    fields = await wait_routed(backend.rt, cid)
    assert fields["team"] == "burgerzaken"

    msgs = await backend.team_queue("ommen", "burgerzaken")
    assert [m.message_id for m in msgs] == [cid]
    envelope = json.loads(msgs[0].body)
    assert envelope["routing"]["team"] == "burgerzaken"
    assert envelope["routing"]["rule"] == "reisdocumenten"
    assert envelope["routing"]["rule_at"].startswith(str(backend.rt.settings.rules_dir / "ommen.yaml") + ":")
    # Mail to Ommen, reaction within 5 workdays. Day 0 Wed 13 May; Thu 14 is Hemelvaartsdag; workdays
    # Fri 15, Mon 18, Tue 19, Wed 20, Thu 21 -> Thu 21 May 17:00.
    respond = [d for d in envelope["routing"]["deadlines"] if d["kind"] == "respond"]
    assert respond[0]["due"] == "2026-05-21T17:00:00+02:00"

    client = backend.client
    resp = await client.get(f"/v1/contacts/{cid}", headers={"X-API-Key": "secret-key"})
    assert resp.status == 200
    body = await resp.json()
    assert body["team"] == "burgerzaken" and body["status"] == "routed"
    assert body["contact"]["subject"] == "Paspoort verlopen"
    assert body["history"][0]["event"] == "contact.routed"
    # The Ommen agent key sees it; no key does not.
    assert (await client.get(f"/v1/contacts/{cid}", headers={"X-API-Key": "ommen-key"})).status == 200
    assert (await client.get(f"/v1/contacts/{cid}")).status == 401


async def test_same_contact_published_twice_is_routed_once(backend: Harness) -> None:
    """Both copies are settled: the second is acked as a duplicate, not left behind. Pins
    router/core/pipeline.py `RoutingCore.emit`: `await tx.ack(p.delivery)` in
    `for p in result.duplicates:` (on RabbitMQ; the embedded broker has no acks). The router is
    stopped before router.contacts is read: a running router holds an unacked copy where no reader
    sees it; stopped, it gives it back. A third copy sent then is the check's positive control."""
    data = contact_json(native_id="dup-1")
    body = json.dumps(data).encode()
    await backend.publish_raw("ommen.mail", body)
    await backend.publish_raw("ommen.mail", body)

    cid = contact_id("ommen", "test", "dup-1")
    await wait_routed(backend.rt, cid)
    await asyncio.sleep(2.0)  # the second copy is held until the first is committed, then dropped
    msgs = await backend.team_queue("ommen", "burgerzaken")
    assert [m.message_id for m in msgs] == [cid]
    await backend.stop_router()
    assert await backend.router_queue() == []
    await backend.publish_raw("ommen.mail", body)
    assert [json.loads(m.body)["source"]["native_id"] for m in await backend.router_queue()] == ["dup-1"]


async def test_each_publish_carries_its_own_message_id_and_the_idempotency_key(backend: Harness) -> None:
    """The publisher's side of "routed once" (README, Delivery guarantee): every publish a fresh
    message id (the router's claim token: a copy sent again is another message), and the idempotency
    key and contact id in headers."""
    await backend.stop_router()
    contact = backend.contact("ommen", "mail", "Paspoort verlopen")
    await backend.rt.publisher.publish(contact)
    await backend.rt.publisher.publish(contact)
    inputs = await backend.router_queue()
    assert len(inputs) == 2
    ids = [m.message_id for m in inputs]
    assert all(ids) and ids[0] != ids[1], ids
    for m in inputs:
        assert [m.routing_key, json.loads(m.body)["source"]] == [
            "ommen.mail",
            {"adapter": "test", "native_id": contact.source.native_id},
        ]
        headers = m.headers or {}
        assert headers[topology.H_IDEMPOTENCY] == contact.idempotency_key
        assert headers[topology.H_CONTACT_ID] == contact.cid


async def test_malformed_json_and_unknown_tenant_are_dead_lettered_with_reason(backend: Harness) -> None:
    await backend.publish_raw("ommen.mail", b'{"tenant": "ommen", ')
    await backend.publish_raw("zwolle.mail", json.dumps(contact_json(tenant="zwolle")).encode())
    await backend.publish_raw(
        "ommen.mail", json.dumps(contact_json(received_at="2026-05-13T10:00:00")).encode()
    )
    dead: list[Received] = []
    for _ in range(100):
        dead += await backend.dead_letters(settle=0.1)
        if len(dead) >= 3:
            break
    reasons = sorted(str((m.headers or {})[H_DEAD_REASON]) for m in dead)
    assert len(reasons) == 3
    assert reasons[0].startswith("invalid contact: received_at: Input should have timezone info")
    assert reasons[1].startswith("malformed JSON")
    assert reasons[2] == "unknown tenant: no rules for the contact's tenant"
    # The original body travels with the dead letter, for replay after a fix.
    assert any(m.body == b'{"tenant": "ommen", ' for m in dead)
    # The router keeps routing after bad input.
    data = contact_json()
    await backend.publish_raw("ommen.mail", json.dumps(data).encode())
    await wait_routed(backend.rt, contact_id("ommen", "test", data["source"]["native_id"]))


async def test_a_surprise_error_in_a_batch_does_not_stop_routing(
    backend: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug or a hiccup while a batch is staged must not end the router while the process lives on
    and says it is ready: the batch comes back and is routed (on RabbitMQ: the session is rebuilt and
    the broker redelivers the unacked batch)."""
    assert backend.rt.router is not None
    core = backend.rt.router.core
    real = core.stage
    calls = 0

    async def flaky(deliveries: list[Delivery], token: str) -> BatchResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("surprise")
        return await real(deliveries, token)

    monkeypatch.setattr(core, "stage", flaky)
    cid = await backend.route("ommen", "mail", "Paspoort verlopen")
    assert calls >= 2
    assert [m.message_id for m in await backend.team_queue("ommen", "burgerzaken")] == [cid]
    assert (await backend.client.get("/readyz")).status == 200


async def test_a_surprise_error_after_the_claims_loses_nothing(
    backend: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch fails after its contacts were claimed in the store, before anything was published:
    the claims must not keep the contact from being routed (the embedded router tries the batch again
    under the same token; the AMQP router gives the claims up and the broker redelivers)."""
    assert backend.rt.router is not None
    core = backend.rt.router.core
    real = core.emit
    calls = 0

    async def flaky(result: BatchResult, tx: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("surprise after the claims")
        await real(result, tx)

    monkeypatch.setattr(core, "emit", flaky)
    contact = backend.contact("ommen", "mail", "Paspoort verlopen")
    await backend.rt.publisher.publish(contact)
    await wait_routed(backend.rt, contact.cid, within=30)
    cid = contact.cid
    assert calls >= 2
    assert [m.message_id for m in await backend.team_queue("ommen", "burgerzaken")] == [cid]


# Real backend only: AMQP frames (the broker's frame_max) exist only on the wire to RabbitMQ; the
# embedded broker hands bytes over in memory.
async def test_a_team_item_larger_than_an_amqp_frame_arrives_whole(h: Harness) -> None:
    """The router writes a batch's frames itself (router/amqp/consumer.py AmqpTx): a team item bigger than
    the broker's frame size (128 KB) goes out as several body frames and must arrive byte for byte, in
    the same batch as small ones."""
    # 100,000 characters (the most a body may have), 60,000 of them a 3-byte '€': a ~230 KB team item.
    big_body = ("Paspoort verlopen, één vraag over kosten. " * 1000)[:40_000] + "€" * 60_000
    contacts = [
        contact_json(native_id=f"big-{i}", body=big_body if i % 2 else "Paspoort kwijt") for i in range(4)
    ]
    for data in contacts:
        await h.publish_raw("ommen.mail", json.dumps(data).encode())
    ids = [contact_id("ommen", "test", d["source"]["native_id"]) for d in contacts]
    for cid in ids:
        await wait_routed(h.rt, cid)
    msgs = await h.team_queue("ommen", "burgerzaken")
    assert sorted(str(m.message_id) for m in msgs) == sorted(ids)
    sizes = {m.message_id: len(m.body) for m in msgs}
    assert max(sizes.values()) > 131_072
    for m in msgs:
        sent = contacts[ids.index(str(m.message_id))]
        assert json.loads(m.body)["contact"]["body"] == sent["body"]
