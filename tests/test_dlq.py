"""`contact-router dlq list | show | replay` against the real broker: bodies stay out of `list`, replay
goes back to `contacts` with the original routing key, and replaying twice never routes twice."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from router.cli import main
from router.core.contact import contact_id
from router.core.tenants import Tenant
from router.core.topology import H_DEAD_REASON, H_ORIGINAL_KEY, Names
from router.service import Runtime, build, declare_topology, start
from router.settings import Settings
from tests.backends import contacts_tap
from tests.conftest import RULES, drain
from tests.test_routing_e2e import contact_json, publish_raw, wait_routed

# Personal data in the test bodies: none of it may appear in `dlq list`.
NAME, EMAIL = "Johanna Verbeek-Smit", "j.verbeek@example.nl"
UNKNOWN_TENANT = "unknown tenant: no rules for the contact's tenant"


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]):
        self.capsys = capsys

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, ["dlq", *argv])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("AMQP_URL", settings.amqp_url)
    monkeypatch.setenv("NAMESPACE", settings.namespace)
    return Cli(capsys)


async def started(settings: Settings) -> Runtime:
    rt = await build(settings, with_router=True, embedded="never")
    await start(rt)
    for _ in range(100):
        if rt.router is not None and rt.router.ready:
            break
        await asyncio.sleep(0.05)
    return rt


@pytest.fixture
async def runtime(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> AsyncIterator[Runtime]:
    rt = await started(settings)
    yield rt
    await rt.close()


async def dead_count(amqp: aio_pika.abc.AbstractConnection, names: Names, n: int) -> None:
    channel = await amqp.channel()
    for _ in range(200):
        q = await channel.declare_queue(names("router.dead"), passive=True)
        if q.declaration_result.message_count >= n:
            break
        await asyncio.sleep(0.05)
    await channel.close()
    assert q.declaration_result.message_count == n


def personal(tenant: str = "ommen", native_id: str | None = None) -> dict[str, Any]:
    return contact_json(
        tenant=tenant,
        native_id=native_id,
        sender={"name": NAME, "email": EMAIL},
        body=f"Beste gemeente, met vriendelijke groet, {NAME}",
    )


async def test_list_shows_id_reason_key_size_and_age_but_never_a_body(
    runtime: Runtime, amqp: aio_pika.abc.AbstractConnection, cli: Cli
) -> None:
    names = runtime.names
    unknown = json.dumps(personal(tenant="zwolle")).encode()
    await publish_raw(amqp, names, "zwolle.mail", unknown)
    await publish_raw(
        amqp, names, "ommen.webform", b'{"tenant": "ommen", "sender": {"name": "' + NAME.encode()
    )
    await dead_count(amqp, names, 2)

    code, out, _ = await cli("list")
    assert code == 0
    assert NAME not in out and EMAIL not in out and "vriendelijke" not in out
    assert "unknown tenant: no rules" in out and "malformed JSON" in out
    assert "zwolle.mail" in out and "ommen.webform" in out
    assert "2 dead letter(s)" in out

    code, out, _ = await cli("list", "--json")
    rows = json.loads(out)
    assert NAME not in out and EMAIL not in out
    by_key = {r["routing_key"]: r for r in rows}
    assert by_key["zwolle.mail"]["size"] == len(unknown)
    assert by_key["zwolle.mail"]["reason"] == UNKNOWN_TENANT
    assert by_key["zwolle.mail"]["age"].endswith("s")  # seconds old: the router stamps dead letters
    assert set(rows[0]) == {"id", "reason", "routing_key", "size", "age", "dead_at"}
    # Listing leaves the queue as it was.
    await dead_count(amqp, names, 2)


async def test_an_adapters_dead_letter_carries_its_age(
    runtime: Runtime, amqp: aio_pika.abc.AbstractConnection, cli: Cli
) -> None:
    """Dead letters of the adapters (unparseable mail, say) are dated at the source like the router's,
    so `dlq list` shows their age and the retention purge knows when their term ends."""
    from router.amqp.publisher import AmqpContactPublisher

    publisher = AmqpContactPublisher(runtime.settings.amqp_url, runtime.names)
    try:
        await publisher.dead_letter(b"not a mail", "unparseable mail", routing_key="ommen.mail")
    finally:
        await publisher.close()
    await dead_count(amqp, runtime.names, 1)
    code, out, _ = await cli("list", "--json")
    assert code == 0
    [row] = json.loads(out)
    assert row["dead_at"] is not None and row["age"].endswith("s"), row


async def test_show_prints_one_body_on_request_and_says_when_the_id_is_unknown(
    runtime: Runtime, amqp: aio_pika.abc.AbstractConnection, cli: Cli
) -> None:
    names = runtime.names
    await publish_raw(amqp, names, "zwolle.mail", json.dumps(personal(tenant="zwolle")).encode())
    await dead_count(amqp, names, 1)
    _, out, _ = await cli("list", "--json")
    ident = json.loads(out)[0]["id"]

    code, out, _ = await cli("show", ident)
    assert code == 0
    assert NAME in out and UNKNOWN_TENANT in out and "personal data" in out
    code, out, _ = await cli("show", ident, "--json")
    shown = json.loads(out)
    assert shown["body"]["sender"]["email"] == EMAIL
    assert shown["headers"][H_ORIGINAL_KEY] == "zwolle.mail"

    code, _, err = await cli("show", "no-such-id")
    assert code == 1 and "no dead letter with id 'no-such-id'" in err
    await dead_count(amqp, names, 1)


async def test_replay_after_a_fix_routes_once_even_when_replayed_twice(
    settings: Settings,
    amqp: aio_pika.abc.AbstractConnection,
    redis_client: Any,
    cli: Cli,
    tmp_path: Path,
) -> None:
    """Pins router/core/pipeline.py `RoutingCore.emit`: `await tx.ack(p.delivery)` in
    `for p in result.duplicates:` — the copies routed as duplicates are settled, so router.contacts,
    read once the router has stopped (while it runs it holds unacked copies out of sight), is empty.
    A tap on `contacts` shows that the three deliveries really went out."""
    # Before the fix: the router knows only Ommen, so a Coevorden contact is dead-lettered. It was
    # sent twice by its adapter (same source id, two message ids): two dead letters.
    only_ommen = tmp_path / "rules"
    only_ommen.mkdir()
    shutil.copy(RULES / "ommen.yaml", only_ommen / "ommen.yaml")
    names = Names(settings.namespace)
    rt = await started(settings.model_copy(update={"rules_dir": only_ommen}))
    data = personal(tenant="coevorden", native_id=f"replay-{uuid.uuid4().hex}")
    body = json.dumps(data).encode()
    try:
        await publish_raw(amqp, names, "coevorden.mail", body)
        await publish_raw(amqp, names, "coevorden.mail", body)
        await dead_count(amqp, names, 2)
    finally:
        await rt.close()
    code, out, _ = await cli("list", "--json")
    rows = json.loads(out)
    assert [r["reason"] for r in rows] == [UNKNOWN_TENANT] * 2
    first = rows[0]["id"]
    _, shown, _ = await cli("show", first, "--json")
    kept = json.loads(shown)

    # The fix: Coevorden's rules are deployed. Replay everything. A tap on `contacts` opened first
    # sees what the replays publish (router.contacts cannot: the running router empties it).
    rt = await started(settings)
    try:
        async with contacts_tap(amqp, names) as tap:
            code, out, _ = await cli("replay", "--all")
            assert code == 0, out
            assert "2 dead letter(s) replayed" in out and "key coevorden.mail" in out
            cid = contact_id("coevorden", "test", data["source"]["native_id"])
            fields = await wait_routed(rt, cid)
            await asyncio.sleep(0.5)  # the second copy is handled (as a duplicate) meanwhile

            # A replay that crashed after publishing but before removing its dead letter leaves it
            # behind; replaying it again must not route the contact a second time.
            channel = await amqp.channel(publisher_confirms=True)
            dead_x = await channel.get_exchange(names("router.dead"))
            await dead_x.publish(
                aio_pika.Message(
                    body,
                    message_id=first,
                    headers={H_DEAD_REASON: kept["headers"][H_DEAD_REASON], H_ORIGINAL_KEY: "coevorden.mail"},
                ),
                routing_key="coevorden.mail",
            )
            await channel.close()
            code, out, _ = await cli("replay", first)
            assert code == 0 and "1 dead letter(s) replayed" in out
            await asyncio.sleep(1.0)
            replayed = await tap.take()
        # Three deliveries went out, with the original key and body ...
        assert [(m.routing_key, m.body) for m in replayed] == [("coevorden.mail", body)] * 3

        team = fields["team"]
        items = await drain(amqp, names.team_queue("coevorden", team))
        assert [m.message_id for m in items] == [cid]  # ... and were routed once
        record = await rt.store.get(cid)
        assert record is not None
        # The contact was received in May (its received_at): its deadlines were breached on arrival and
        # say so; apart from those, one routing and nothing else.
        events = [h["event"] for h in record.history]
        assert [e for e in events if not e.startswith("deadline.")] == ["contact.routed"]
        assert await drain(amqp, names("router.dead"), settle=0.2) == []
    finally:
        await rt.close()
    # Every delivery was settled (the copies acked as duplicates: router/core/pipeline.py
    # `RoutingCore.emit`, `await tx.ack(p.delivery)` for `result.duplicates`). Read with the router
    # stopped: while it runs it holds an unacked copy where no reader sees it. The control: a copy
    # sent now is seen there.
    assert await drain(amqp, names("router.contacts"), settle=0.2) == []
    await publish_raw(amqp, names, "coevorden.mail", body)
    assert [m.body for m in await drain(amqp, names("router.contacts"))] == [body]


async def test_replay_of_an_unknown_id_replays_nothing(
    runtime: Runtime, amqp: aio_pika.abc.AbstractConnection, cli: Cli
) -> None:
    names = runtime.names
    await publish_raw(amqp, names, "zwolle.mail", json.dumps(personal(tenant="zwolle")).encode())
    await dead_count(amqp, names, 1)
    _, out, _ = await cli("list", "--json")
    ident = json.loads(out)[0]["id"]
    code, _, err = await cli("replay", ident, "missing-id")
    assert code == 1
    assert "not in router.dead: missing-id; nothing was replayed" in err
    await dead_count(amqp, names, 1)
    code, _, err = await cli("replay")
    assert code == 2 and "--all" in err


async def test_message_the_broker_gave_up_on_lists_its_delivery_limit_and_replays(
    settings: Settings,
    amqp: aio_pika.abc.AbstractConnection,
    redis_client: Any,
    tenants: dict[str, Tenant],
    cli: Cli,
) -> None:
    """A contact that kept failing (here: rejected by a consumer standing in for a crashing router)
    is dead-lettered by the broker itself after x-delivery-limit; its reason comes from x-death."""
    settings = settings.model_copy(update={"delivery_limit": 1})
    await declare_topology(settings, tenants)
    names = Names(settings.namespace)
    data = contact_json(native_id=f"poison-{uuid.uuid4().hex}")
    await publish_raw(amqp, names, "ommen.mail", json.dumps(data).encode())
    channel = await amqp.channel()
    queue = await channel.get_queue(names("router.contacts"))
    for _ in range(2):
        message = await queue.get(timeout=5)
        assert message is not None
        await message.reject(requeue=True)
    await channel.close()
    await dead_count(amqp, names, 1)

    code, out, _ = await cli("list", "--json")
    [row] = json.loads(out)
    assert row["reason"].startswith("broker: delivery_limit in " + names("router.contacts")), row
    assert row["routing_key"] == "ommen.mail"

    rt = await started(settings)
    try:
        code, out, _ = await cli("replay", row["id"])
        assert code == 0, out
        await wait_routed(rt, contact_id("ommen", "test", data["source"]["native_id"]))
    finally:
        await rt.close()


async def test_a_contact_held_by_routers_that_died_in_a_row_is_still_routed(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, tenants: dict[str, Tenant]
) -> None:
    """The broker counts every return towards the delivery limit, also that of a message a router
    held when its connection went (killed, cut off). Ten such losses in a row, as in the fault suite,
    leave a good contact routable with the default limit, not in router.dead."""
    await declare_topology(settings, tenants)
    names = Names(settings.namespace)
    data = contact_json(native_id=f"held-{uuid.uuid4().hex}")
    await publish_raw(amqp, names, "ommen.mail", json.dumps(data).encode())
    for _ in range(10):
        connection = await aio_pika.connect(settings.amqp_url)
        channel = await connection.channel()
        queue = await channel.get_queue(names("router.contacts"))
        assert await queue.get(timeout=5, no_ack=False) is not None
        await connection.close()  # unacked: back to the queue, counted as a delivery
    rt = await started(settings)
    try:
        await wait_routed(rt, contact_id("ommen", "test", data["source"]["native_id"]))
    finally:
        await rt.close()
    dead = await (await amqp.channel()).declare_queue(names("router.dead"), passive=True)
    assert dead.declaration_result.message_count == 0


async def test_unreachable_broker_is_a_clear_error(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.faults.helpers import free_port

    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    code, _, err = await cli("list")
    assert code == 2 and err.startswith("error: cannot reach the broker")
