"""Retention and erasure (issue 14, item 5) against the real RabbitMQ and Redis.

Erasure: one resident's contacts across mail, web form and phone, a reply, a callback request, two dead
letters and escalations, beside two other residents (one of them at another municipality). After
`contact-router erase` (run as a process, as an operator would), no Redis key of the namespace names or
holds anything of theirs, no queue message of the namespace does, and everything of the others is
exactly as it was.

Purge: closed contacts past their tenant's term go with all their keys; younger ones, open ones and
reopened ones stay; dead letters past their term go, younger ones stay; a dry run removes nothing.
The clock is the harness's manual clock (or, where the command line runs, dates relative to today).

Each test that touches Redis runs twice (fixture `backend_kind`, tests/backends.py): on the single Redis
("real") and on the suite's three-master Redis Cluster ("cluster"), where the command line gets the
cluster's REDIS_URL and what a test reads of Redis directly (`dump`) is read from every master.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
import redis.asyncio as aioredis

from router.cli import main
from router.core import topology
from router.core.clock import ManualClock
from router.core.contact import Contact, reference_for
from router.core.topology import Names
from router.redis.client import RedisClient, redis_client
from router.redis.keys import Keys
from router.redis.privacy import RedisPersonalData, RedisRunLock
from router.redis.store import INDEX_KEYS
from router.settings import Settings
from tests.backends import BackendChoice, open_harness
from tests.conftest import ROOT, RULES
from tests.harness import ALL_KEY, AMS, Harness, wait_committed
from tests.redis_cluster import RedisClusterNodes

# The Redis-backed tests run on one server and on the cluster (the embedded backend has no erasure).
ON_BOTH = pytest.mark.parametrize("backend_kind", ["real", "cluster"], indirect=True)

ANNA = {"name": "Anna Jansen-Visser", "email": "anna.jansen@example.nl", "phone": "+31611122233"}
BERT = {"name": "Bert Smit", "email": "bert.smit@example.nl", "phone": "+31622233344"}
CLARA = {"name": "Clara de Vries", "email": "clara.devries@example.nl", "phone": "+31633344455"}


@dataclass
class RedisUnderTest:
    """The Redis of the test's backend: the client the service uses (one server's, or the cluster
    client), and a plain client on each master, for what must look at all of them (SCAN)."""

    client: RedisClient
    masters: list[aioredis.Redis]


@pytest.fixture
async def h(backend_kind: BackendChoice, settings: Settings, clock: ManualClock) -> AsyncIterator[Harness]:
    """RabbitMQ and the test's Redis (the single server or the cluster), as conftest's `h` on one."""
    async with open_harness(
        backend_kind.kind, backend_kind.settings(settings), clock, backend_kind.amqp
    ) as harness:
        yield harness


@pytest.fixture
async def redis_db(
    backend_kind: BackendChoice, namespace: str, request: pytest.FixtureRequest
) -> AsyncIterator[RedisUnderTest]:
    if backend_kind.kind != "cluster":
        plain: aioredis.Redis = request.getfixturevalue("redis_client")  # it cleans the namespace
        yield RedisUnderTest(plain, [plain])
        return
    cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
    client = redis_client(cluster.url)
    masters = [aioredis.Redis(port=port) for port in cluster.ports]
    try:
        yield RedisUnderTest(client, masters)
    finally:
        for node in masters:
            with contextlib.suppress(Exception):
                async for key in node.scan_iter(match=f"{namespace}*", count=1000):
                    await node.delete(key)
            await node.aclose()
        await client.aclose()


def contact(
    h: Harness,
    who: dict[str, str],
    adapter: str,
    *,
    tenant: str = "ommen",
    native: str | None = None,
    sender: tuple[str, ...] = ("name", "email", "phone"),
    body: str = "Mijn paspoort is verlopen",
    metadata: dict[str, str] | None = None,
    received_at: datetime | None = None,
) -> Contact:
    return Contact.model_validate(
        {
            "tenant": tenant,
            "channel": adapter,
            "received_at": (received_at or h.clock.now()).isoformat(),
            "source": {"adapter": adapter, "native_id": native or f"{uuid.uuid4().hex}.{who['email']}"},
            "subject": f"Vraag van {who['name']}",
            "body": f"{body}. Groet, {who['name']}, {who['phone']}",
            "sender": {k: who[k] for k in sender},
            "metadata": metadata or {},
        }
    )


async def send(h: Harness, c: Contact) -> str:
    await h.rt.publisher.publish(c)
    await wait_committed(h.rt, c.cid)
    return c.cid


async def dump(redis: RedisUnderTest, namespace: str) -> dict[str, Any]:
    """Every key of the namespace with its value, decoded: SCAN on every master, each key read on the
    master that holds it."""
    out: dict[str, Any] = {}
    for client in redis.masters:
        found = await _dump_node(client, namespace)
        assert not found.keys() & out.keys()
        out.update(found)
    return out


async def _dump_node(client: aioredis.Redis, namespace: str) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def text(v: bytes) -> str:
        return v.decode("utf-8", "replace")

    async for raw in client.scan_iter(match=f"{namespace}*", count=1000):
        name = text(raw)
        kind = text(await client.type(raw))
        if kind == "string":
            out[name] = text(await client.get(raw))
        elif kind == "hash":
            out[name] = {text(k): text(v) for k, v in (await client.hgetall(raw)).items()}
        elif kind == "list":
            out[name] = [text(v) for v in await client.lrange(raw, 0, -1)]
        elif kind == "set":
            out[name] = {text(v) for v in await client.smembers(raw)}
        elif kind == "zset":
            out[name] = {text(m): s for m, s in await client.zrange(raw, 0, -1, withscores=True)}
    return out


async def contacts_on(node: aioredis.Redis, namespace: str) -> int:
    """How many contact hashes of the namespace one master holds."""
    return len([k async for k in node.scan_iter(match=f"{namespace}contact:{{*}}", _type="HASH")])


def mentions(markers: list[str], value: Any) -> bool:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    flat = json.dumps(value, default=sorted).lower() if not isinstance(value, str) else value.lower()
    return any(m.lower() in flat for m in markers)


def without(markers: list[str], snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot minus every key, member, field and element that mentions a marker."""
    out: dict[str, Any] = {}
    for name, value in snapshot.items():
        if mentions(markers, name):
            continue
        if isinstance(value, str):
            kept: Any = None if mentions(markers, value) else value
        elif isinstance(value, dict):
            kept = {k: v for k, v in value.items() if not mentions(markers, k) and not mentions(markers, v)}
        elif isinstance(value, set):
            kept = {v for v in value if not mentions(markers, v)}
        else:
            kept = [v for v in value if not mentions(markers, v)]
        if kept:
            out[name] = kept
    return out


def all_queues(names: Names) -> list[str]:
    from router.core.tenants import load

    queues = [names(topology.ROUTER_QUEUE), names(topology.DEAD), names(topology.UNROUTABLE)]
    for t, tenant in load(RULES).items():
        queues += [names.team_queue(t, team) for team in tenant.loaded.rules.team_ids()]
        queues.append(names.escalation_queue(t))
    return queues


async def browse(
    conn: aio_pika.abc.AbstractConnection, queue: str
) -> list[tuple[str | None, bytes, dict[str, Any]]]:
    """(message id, body, headers) of every message in `queue`, left in the queue."""
    channel = await conn.channel()
    q = await channel.declare_queue(queue, passive=True)
    out = []
    while (m := await q.get(no_ack=False, fail=False)) is not None:
        out.append((m.message_id, m.body, dict(m.headers or {})))
    await channel.close()  # all of them go back
    return out


async def _all(q: aio_pika.abc.AbstractQueue) -> AsyncIterator[aio_pika.abc.AbstractIncomingMessage]:
    while (m := await q.get(no_ack=False, fail=False)) is not None:
        yield m


async def queue_contents(conn: aio_pika.abc.AbstractConnection, names: Names) -> dict[str, list[Any]]:
    return {q: await browse(conn, q) for q in all_queues(names)}


async def dead_letters(conn: aio_pika.abc.AbstractConnection, names: Names, n: int) -> None:
    for _ in range(200):
        if len(await browse(conn, names(topology.DEAD))) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {n} dead letters")


def cli_env(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """For `main([...])` in this process: the harness's settings, and the test run's logging kept (a
    command configures the process's logging; run as a process it must)."""
    for key, value in env_for(h).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("router.logs.configure", lambda *args, **kwargs: None)


def env_for(h: Harness) -> dict[str, str]:
    s = h.rt.settings
    env = {**os.environ, "AMQP_URL": s.amqp_url, "REDIS_URL": s.redis_url, "NAMESPACE": s.namespace}
    env["RULES_DIR"] = str(s.rules_dir)
    env.pop("KEY_SECRET", None)  # the harness hashes with the development secret too
    return env


# -- erasure ---------------------------------------------------------------------------------------


@ON_BOTH
async def test_erase_removes_every_trace_of_one_resident_and_nothing_of_the_others(
    h: Harness, amqp: aio_pika.abc.AbstractConnection, redis_db: RedisUnderTest
) -> None:
    rt, names, ns = h.rt, h.names, h.rt.settings.namespace
    mid = f"<m1.{ANNA['email']}>"
    mail = await send(
        h, contact(h, ANNA, "mail", native=mid, sender=("name", "email"), metadata={"thread.message_id": mid})
    )
    form = await send(h, contact(h, ANNA, "webform", body="Losse stoeptegel"))
    note = {"phone.outcome": "colleague_unavailable", "phone.to_team": "belastingen", "phone.agent": "kcc-1"}
    phone = await send(h, contact(h, ANNA, "phone", sender=("name", "phone"), body="Aanslag", metadata=note))
    reply_mid = f"<m2.{ANNA['email']}>"
    reply = await send(
        h,
        contact(
            h,
            ANNA,
            "mail",
            native=reply_mid,
            sender=("email",),
            metadata={"thread.message_id": reply_mid, "thread.in_reply_to": mid},
        ),
    )
    assert (await rt.store.get(reply)).fields["merged_into"] == mail  # type: ignore[union-attr]
    assert (await rt.store.get(phone)).fields["callbacks"] == "1"  # type: ignore[union-attr]
    # A transfer through the API: a second team item and an outbox.
    team = (await h.get(form))["team"]
    assert (await h.transfer(form, "burgerzaken" if team != "burgerzaken" else "kcc", team))[0] == 200

    b_mail = await send(h, contact(h, BERT, "mail", sender=("name", "email")))
    b_phone = await send(
        h, contact(h, BERT, "phone", sender=("name", "phone"), body="Aanslag", metadata=note)
    )
    c_mail = await send(h, contact(h, CLARA, "mail", tenant="coevorden", sender=("name", "email")))

    # Dead letters: Anna's contact dated far ahead (the router refuses it), a raw mail of hers an adapter
    # could not parse, and one of Bert's.
    future = datetime(2150, 1, 1, tzinfo=UTC)
    for who, key in ((ANNA, "ommen.webform"), (BERT, "ommen.mail")):
        await h.publish_raw(
            key, contact(h, who, key.split(".")[1], received_at=future).model_dump_json().encode()
        )
    raw_mail = f"From: Anna <{ANNA['email'].upper()}>\r\nSubject: vraag\r\n\r\nGeen geldige mail".encode()
    await rt.publisher.dead_letter(raw_mail, "mail: no Message-ID and no Date", routing_key="ommen.mail")
    await dead_letters(amqp, names, 3)

    # A week later the callbacks are breached (escalations for Anna's and Bert's) and the mails' timers
    # still pending (Wed 13 May + 5 workdays: Thu 21 May).
    h.clock.advance(timedelta(days=7))
    assert rt.scheduler is not None
    while await rt.scheduler.tick():
        pass
    await h.events()  # the tests' own tap on `events`: no queue of the service's (see the module doc)

    anna_ids = [mail, form, phone, reply]
    markers = [
        ANNA["name"],
        ANNA["email"],
        ANNA["phone"],
        "0611122233",
        *anna_ids,
        *(reference_for("ommen", c) for c in anna_ids),
    ]
    others = [b_mail, b_phone, c_mail]
    before = await dump(redis_db, ns)
    # On the cluster the namespace is spread over the masters: one node's SCAN would miss keys.
    held = [len(await _dump_node(m, ns)) for m in redis_db.masters]
    assert len(redis_db.masters) == 1 or len([n for n in held if n]) > 1, held
    queues_before = await queue_contents(amqp, names)
    assert mentions(markers, before) and all(mentions([c], before) for c in others)
    assert mentions([f"{mail}|respond|breach"], before[Keys(ns).timers()])
    esc = queues_before[names.escalation_queue("ommen")]
    assert any(mentions([phone], e[1]) for e in esc) and any(mentions([b_phone], e[1]) for e in esc)

    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "router.cli",
            "erase",
            "--tenant",
            "ommen",
            "--email",
            "Anna.Jansen@example.NL",
            "--phone",
            "06-11 12 22 33",
        ],
        env=env_for(h),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert all(cid in out for cid in anna_ids), out
    assert "2 dead letters" in out and "escalations" in out and "team messages" in out, out
    assert not mentions([ANNA["name"], ANNA["email"], ANNA["phone"], "0611122233"], out + done.stderr)
    assert out.startswith("erasure for tenant ommen: 4 contact(s)\n"), out  # the logs are on stderr

    # What a scrubbed queue kept are copies put back (confirmed), not the originals handed back: a
    # consumer gets them as new messages.
    channel = await amqp.channel()
    kept = await channel.declare_queue(names.team_queue("ommen", "burgerzaken"), passive=True)
    taken = [m async for m in _all(kept)]
    assert taken and not [m for m in taken if m.redelivered]
    await channel.close()

    after = await dump(redis_db, ns)
    leaks = {k: v for k, v in after.items() if mentions(markers, k) or mentions(markers, v)}
    assert leaks == {}
    assert after == without(markers, before)  # the others' keys, members and values exactly as they were
    assert all(mentions([c], after) for c in others)

    queues_after = await queue_contents(amqp, names)
    for queue, messages in queues_after.items():
        for message_id, body, headers in messages:
            assert not mentions(markers, [message_id, body.decode("utf-8", "replace"), repr(headers)]), queue
    for queue, messages in queues_before.items():
        expected = Counter(
            (m, b) for m, b, _ in messages if not mentions(markers, [m, b.decode("utf-8", "replace")])
        )
        assert Counter((m, b) for m, b, _ in queues_after[queue]) == expected, queue
    # What was kept in a scrubbed queue keeps its headers (a dead letter its reason and routing key).
    bert_dead = [
        hd for _, b, hd in queues_after[names(topology.DEAD)] if mentions([BERT["email"]], b.decode())
    ]
    assert len(bert_dead) == 1
    assert "invalid contact" in str(bert_dead[0][topology.H_DEAD_REASON])
    assert bert_dead[0][topology.H_ORIGINAL_KEY] in ("ommen.mail", b"ommen.mail")

    # The others still work: Bert's contact is served, and a reply to Anna's old mail is a new contact.
    assert (await h.get(b_mail))["status"] == "routed"
    late = await send(h, contact(h, ANNA, "mail", sender=("email",), metadata={"thread.in_reply_to": mid}))
    assert (await rt.store.get(late)).fields["status"] == "routed"  # type: ignore[union-attr]


@ON_BOTH
async def test_erase_by_reference_or_contact_id_takes_only_that_contact(
    h: Harness,
    amqp: aio_pika.abc.AbstractConnection,
    redis_db: RedisUnderTest,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cli_env(h, monkeypatch)
    first = await send(
        h, contact(h, BERT, "mail", sender=("name", "email"), metadata={"thread.message_id": "<q@x>"})
    )
    # Three questions on three topics: one resident's contacts on one topic would join (issue 19).
    second = await send(h, contact(h, BERT, "webform", body="Losse stoeptegel"))
    third = await send(h, contact(h, BERT, "phone", sender=("phone",), body="Vraag over mijn aanslag"))
    ref = reference_for("ommen", first)
    # A reply that names nobody: it goes with the contact it joined.
    reply = await send(
        h,
        contact(
            h, BERT, "mail", sender=(), metadata={"thread.in_reply_to": "<q@x>", "thread.message_id": "<r@x>"}
        ),
    )

    capsys.readouterr()
    assert await asyncio.to_thread(main, ["erase", "--tenant", "ommen", "--reference", ref.lower()]) == 0
    out = capsys.readouterr().out
    assert first in out and reply in out and second not in out
    assert await h.rt.store.get(first) is None and await h.rt.store.get(reply) is None
    assert await h.rt.store.get(second) is not None
    # The address index no longer names the erased contact; the others are still found by it.
    store = RedisPersonalData(redis_db.client, Keys(h.rt.settings.namespace), {})
    from router.core.erasure import subject

    assert await store.find(subject("ommen", emails=[BERT["email"]])) == {second}
    assert await store.find(subject("ommen", phones=[BERT["phone"]])) == {second, third}

    assert await asyncio.to_thread(main, ["erase", "--tenant", "ommen", "--contact-id", third, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["contact_ids"] == [third]
    assert await h.rt.store.get(third) is None and await h.rt.store.get(second) is not None

    # Refused: an unknown tenant, another tenant's reference, nothing to go by.
    for argv in (
        ["erase", "--tenant", "nergens", "--email", "x@y.nl"],
        ["erase", "--tenant", "coevorden", "--reference", ref],
        ["erase", "--tenant", "ommen"],
    ):
        assert await asyncio.to_thread(main, argv) == 2, argv
        assert "error:" in capsys.readouterr().err
    # Bert's address at another municipality is that municipality's resident (another controller): an
    # erasure for Ommen leaves it, also when named by its contact id.
    other = await send(h, contact(h, BERT, "mail", tenant="coevorden", sender=("email",)))
    assert await asyncio.to_thread(main, ["erase", "--tenant", "ommen", "--contact-id", other]) == 0
    assert await asyncio.to_thread(main, ["erase", "--tenant", "ommen", "--email", BERT["email"]]) == 0
    assert second in capsys.readouterr().out
    assert await h.rt.store.get(other) is not None and await h.rt.store.get(second) is None


@ON_BOTH
async def test_the_social_handle_index_and_a_same_resident_link_are_erased(
    h: Harness, redis_db: RedisUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: the resident index by social handle is removed with the contact, and a contact that
    joined an open one of the same resident goes with it, as a reply does."""
    keys = Keys(h.rt.settings.namespace)
    handle = "whatsapp:31644455566"

    def social(body: str) -> Contact:
        return Contact.model_validate(
            {
                "tenant": "ommen",
                "channel": "social",
                "received_at": h.clock.now().isoformat(),
                "source": {"adapter": "social", "native_id": uuid.uuid4().hex},
                "body": body,
                "sender": {"name": "Dirk", "handle": handle},
            }
        )

    first = await send(h, social("Mijn paspoort is kwijt"))
    joined = await send(h, social("En mijn paspoort is echt weg"))
    assert (await h.rt.store.get(joined)).fields["merged_into"] == first  # type: ignore[union-attr]
    index = keys.resident("ommen", "social", handle)
    assert handle not in index and await redis_db.client.smembers(index) == {first.encode(), joined.encode()}
    recorded = json.loads((await h.rt.store.get(first)).fields[INDEX_KEYS])  # type: ignore[union-attr]
    assert index in recorded["sets"]

    cli_env(h, monkeypatch)
    ref = reference_for("ommen", first)
    assert await asyncio.to_thread(main, ["erase", "--tenant", "ommen", "--reference", ref]) == 0
    assert await h.rt.store.get(first) is None and await h.rt.store.get(joined) is None
    assert not await redis_db.client.exists(index)


# -- purge -----------------------------------------------------------------------------------------


async def close(h: Harness, cid: str) -> None:
    resp = await h.client.post(
        f"/v1/contacts/{cid}/close", headers=ALL_KEY, json={"resolution": "beantwoord"}
    )
    assert resp.status == 200, await resp.text()


def at(moment: datetime) -> datetime:
    """A weekday at 10:00 in Amsterdam on the day of `moment`."""
    day = moment.astimezone(AMS).replace(hour=10, minute=0, second=0, microsecond=0)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


@ON_BOTH
async def test_purge_removes_closed_contacts_past_their_term_and_keeps_the_rest(
    h: Harness,
    redis_db: RedisUnderTest,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt, ns, keys = h.rt, h.rt.settings.namespace, Keys(h.rt.settings.namespace)
    today = datetime.now(UTC)
    h.clock.set(at(today - timedelta(days=430)))  # 14 months ago: Ommen keeps closed contacts 12 months
    old_mid, reopened_mid, reclosed_mid = "<old@x.example>", "<reopened@x.example>", "<reclosed@x.example>"
    old = await send(h, contact(h, ANNA, "mail", metadata={"thread.message_id": old_mid}))
    old_reply = await send(h, contact(h, ANNA, "mail", sender=(), metadata={"thread.in_reply_to": old_mid}))
    await close(h, old)
    answered = await send(
        h,
        contact(
            h,
            ANNA,
            "phone",
            sender=("phone",),
            metadata={"phone.outcome": "answered", "phone.agent": "kcc-1"},
        ),
    )
    assert (await rt.store.get(answered)).fields["status"] == "closed"  # type: ignore[union-attr]
    still_open = await send(h, contact(h, ANNA, "webform"))
    reopened = await send(h, contact(h, BERT, "mail", metadata={"thread.message_id": reopened_mid}))
    await close(h, reopened)
    reclosed = await send(h, contact(h, BERT, "mail", metadata={"thread.message_id": reclosed_mid}))
    await close(h, reclosed)
    elsewhere = await send(
        h, contact(h, CLARA, "mail", tenant="coevorden")
    )  # coevorden: the default, 12 months
    await close(h, elsewhere)

    h.clock.set(at(today - timedelta(days=350)))  # within 12 months, if only just
    nearly = await send(h, contact(h, BERT, "webform"))
    await close(h, nearly)

    h.clock.set(at(today - timedelta(days=40)))
    recent = await send(h, contact(h, BERT, "webform"))
    await close(h, recent)
    # Replies reopen two of the old ones; one is closed again since.
    await send(h, contact(h, BERT, "mail", sender=("email",), metadata={"thread.in_reply_to": reopened_mid}))
    reply = await send(
        h, contact(h, BERT, "mail", sender=("email",), metadata={"thread.in_reply_to": reclosed_mid})
    )
    assert (await rt.store.get(reopened)).fields["status"] == "routed"  # type: ignore[union-attr]
    await close(h, reclosed)

    h.clock.set(today)
    assert rt.privacy is not None
    before = await dump(redis_db, ns)
    dry = await rt.privacy.purge(dry_run=True)
    assert dry[0].contact_ids == {old, old_reply, answered, elsewhere} and dry[0].dry_run
    assert await dump(redis_db, ns) == before  # a dry run removes nothing

    # The command line says the same, and removes nothing either.
    cli_env(h, monkeypatch)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["purge", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove" in out and "nothing was removed" in out
    assert (
        all(c in out for c in (old, answered, elsewhere)) and recent not in out and ANNA["email"] not in out
    )
    assert await dump(redis_db, ns) == before

    removed = await rt.privacy.purge()
    assert removed[0].contact_ids == {old, old_reply, answered, elsewhere}
    assert (removed[0].counts["contacts"], removed[0].counts["replies"]) == (3, 1)
    after = await dump(redis_db, ns)
    for cid in (old, old_reply, answered, elsewhere):
        assert not [k for k, v in after.items() if mentions([cid, reference_for("ommen", cid)], [k, v])], cid
    assert not await redis_db.client.exists(keys.thread("ommen", old_mid))
    for cid in (still_open, reopened, reclosed, nearly, recent, reply):
        assert await rt.store.get(cid) is not None, cid
    assert await redis_db.client.exists(keys.thread("ommen", reopened_mid))
    # The reopened contact's stale entry left the closed index; the closed-again one has its new time.
    closed = await redis_db.client.zrange(keys.closed("ommen"), 0, -1)
    assert {c.decode() for c in closed} == {nearly, recent, reclosed}
    assert (await rt.privacy.purge())[0].counts == {}  # nothing left to purge


@pytest.mark.parametrize("backend_kind", ["real"], indirect=True)  # the queues' purge: Redis has no part
async def test_purge_removes_dead_letters_past_their_term(
    h: Harness,
    amqp: aio_pika.abc.AbstractConnection,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names, today = h.names, datetime.now(UTC)
    channel = await amqp.channel(publisher_confirms=True)
    dead = await channel.get_exchange(names(topology.DEAD))

    async def letter(ident: str, body: bytes, key: str, age: timedelta | None) -> None:
        await dead.publish(
            aio_pika.Message(
                body,
                message_id=ident,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                timestamp=today - age if age is not None else None,
                headers={
                    topology.H_DEAD_REASON: "invalid contact: received_at",
                    topology.H_ORIGINAL_KEY: key,
                },
            ),
            routing_key=key,
        )

    def body(tenant: str) -> bytes:
        return contact(h, ANNA, "mail", tenant=tenant).model_dump_json().encode()

    ids = {
        name: str(uuid.uuid4())
        for name in ("old", "young", "coevorden_old", "unknown_young", "unknown_old", "undated")
    }
    await letter(ids["old"], body("ommen"), "ommen.mail", timedelta(days=31))  # Ommen: 30 days
    await letter(ids["young"], body("ommen"), "ommen.mail", timedelta(days=29))
    await letter(ids["coevorden_old"], body("coevorden"), "coevorden.mail", timedelta(days=31))  # default 30
    await letter(ids["unknown_young"], b"\x00garbage", "nobody", timedelta(days=29))  # the shortest: 30
    await letter(ids["unknown_old"], b"\x00garbage", "nobody", timedelta(days=31))
    # Without a time (published by hand): given the time the purge first sees it, not removed now.
    await letter(ids["undated"], b"not json", "ommen.mail", None)
    await channel.close()
    await dead_letters(amqp, names, 6)

    h.clock.set(today)
    assert h.rt.privacy is not None
    dry = await h.rt.privacy.purge(dry_run=True)
    assert sorted(dry[1].message_ids) == sorted([ids["old"], ids["coevorden_old"], ids["unknown_old"]])
    assert len(await browse(amqp, names(topology.DEAD))) == 6

    cli_env(h, monkeypatch)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["purge", "--json"]) == 0
    report = {r["store"]: r for r in json.loads(capsys.readouterr().out)}
    assert report["queues"]["counts"] == {"dead letters": 3, "dead letters dated now": 1}
    assert sorted(report["queues"]["message_ids"]) == sorted(
        [ids["old"], ids["coevorden_old"], ids["unknown_old"]]
    )

    left = await browse(amqp, names(topology.DEAD))
    assert sorted(m for m, _, _ in left) == sorted([ids["young"], ids["unknown_young"], ids["undated"]])
    for _, _, headers in left:
        assert topology.H_DEAD_REASON in headers and topology.H_ORIGINAL_KEY in headers
    # The undated one now has a time: a purge a term from now removes it.
    channel = await amqp.channel()
    q = await channel.declare_queue(names(topology.DEAD), passive=True)
    stamps = {}
    while (m := await q.get(no_ack=False, fail=False)) is not None:
        stamps[m.message_id] = m.timestamp
    await channel.close()
    assert stamps[ids["undated"]] is not None
    h.clock.set(today + timedelta(days=31))
    removed = await h.rt.privacy.purge()
    assert sorted(removed[1].message_ids) == sorted([ids["young"], ids["unknown_young"], ids["undated"]])


@ON_BOTH
async def test_reindex_finds_contacts_stored_before_the_indexes(h: Harness, redis_db: RedisUnderTest) -> None:
    """On the cluster with contacts on every master: `reindex` walks all of them (SCAN on each)."""
    from router.core.erasure import subject

    keys, ns = Keys(h.rt.settings.namespace), h.rt.settings.namespace
    h.clock.set(at(datetime.now(UTC) - timedelta(days=430)))
    residents: dict[str, dict[str, str]] = {}
    while len(residents) < 3 or not all([await contacts_on(m, ns) for m in redis_db.masters]):
        assert len(residents) < 30, "the contacts keep to some masters"
        n = len(residents)
        who = {"name": f"Inwoner {n}", "email": f"inwoner{n}@example.nl", "phone": f"+316100000{n:02d}"}
        cid = await send(h, contact(h, who, "mail"))
        await close(h, cid)
        residents[cid] = who
    # As contacts of an older version: no closed index, no resident index, no recorded keys.
    await redis_db.client.delete(keys.closed("ommen"))
    for cid, who in residents.items():
        await redis_db.client.delete(keys.resident("ommen", "email", who["email"]))
        await redis_db.client.delete(keys.resident("ommen", "phone", who["phone"]))
        await redis_db.client.hdel(keys.contact(cid), INDEX_KEYS)
    h.clock.set(datetime.now(UTC))
    assert h.rt.privacy is not None
    assert (await h.rt.privacy.purge(dry_run=True))[0].contact_ids == set()

    store = RedisPersonalData(redis_db.client, keys, {})
    counts = await store.reindex()
    n = len(residents)
    assert counts == {"contacts": n, "closed": n, "resident entries": 2 * n}
    for cid, who in residents.items():
        assert await store.find(subject("ommen", emails=[who["email"]])) == {cid}
        assert await store.find(subject("ommen", phones=[who["phone"]])) == {cid}
    assert await store.reindex() == counts  # idempotent
    assert (await h.rt.privacy.purge())[0].contact_ids == set(residents)
    for cid in residents:
        assert await h.rt.store.get(cid) is None


@ON_BOTH
async def test_one_purge_at_a_time(h: Harness, redis_db: RedisUnderTest) -> None:
    lock = RedisRunLock(redis_db.client, Keys(h.rt.settings.namespace).purge_lock())
    token = await lock.acquire(60_000)
    assert token is not None and await lock.acquire(60_000) is None
    await lock.release("not-the-holder")
    assert await lock.acquire(60_000) is None
    await lock.release(token)
    # A router process purges every hour under this lock (router/service.py `start`).
    periodic = h.rt.purge
    assert periodic is not None and periodic.interval == 3600
    token = await lock.acquire(60_000)
    assert token is not None
    assert await periodic.run_once() is None  # another process is purging
    await lock.release(token)
    assert [r.store for r in await periodic.run_once() or []] == ["redis", "queues"]
    assert not await redis_db.client.exists(Keys(h.rt.settings.namespace).purge_lock())


@ON_BOTH
async def test_a_removal_stopped_half_way_is_finished_by_the_next(
    h: Harness, redis_db: RedisUnderTest
) -> None:
    from router.core.retention import RetentionPolicy
    from router.service import teams_by_tenant

    keys, ns = Keys(h.rt.settings.namespace), h.rt.settings.namespace
    store = RedisPersonalData(redis_db.client, keys, teams_by_tenant(h.rt.tenants))
    gone = await send(h, contact(h, ANNA, "mail", metadata={"thread.message_id": "<half@x.example>"}))
    live = await send(h, contact(h, BERT, "mail", metadata={"thread.message_id": "<live@x.example>"}))
    # Stopped after its own keys were deleted: its reference, thread, list, timer and index entries remain.
    plan = store.plan(gone, await store._fields(gone))
    await redis_db.client.hset(keys.purge_pending(), gone, plan.to_json())
    await redis_db.client.delete(*plan.own)
    assert mentions([gone], await dump(redis_db, ns))
    # Stopped before anything was deleted: nothing of it may go.
    await redis_db.client.hset(
        keys.purge_pending(), live, store.plan(live, await store._fields(live)).to_json()
    )

    before = await dump(redis_db, ns)
    del before[keys.purge_pending()]

    removal = await store.purge(RetentionPolicy({}), datetime.now(UTC), dry_run=False)
    assert removal.contact_ids == {gone}
    assert not await redis_db.client.exists(keys.purge_pending())
    after = await dump(redis_db, ns)
    assert not mentions([gone, reference_for("ommen", gone)], after)
    assert after == without([gone, reference_for("ommen", gone)], before)  # the live one untouched


@ON_BOTH
async def test_an_erasure_counts_what_it_removed_on_servers_without_its_scripts(
    h: Harness, redis_db: RedisUnderTest
) -> None:
    """A restarted Redis, or a master new to the cluster, knows none of the service's scripts: the
    erasure loads them, and its report counts what it removed as it does anywhere else."""
    from router.core.erasure import subject
    from router.service import teams_by_tenant

    store = RedisPersonalData(redis_db.client, Keys(h.rt.settings.namespace), teams_by_tenant(h.rt.tenants))
    cids = [
        await send(h, contact(h, who, "mail", metadata={"thread.message_id": f"<{n}@x.example>"}))
        for n, who in enumerate((ANNA, BERT, CLARA))
    ]
    await store.erase(subject("ommen", contact_ids=[cids[0]]))  # the scripts loaded
    warm = await store.erase(subject("ommen", contact_ids=[cids[1]]))
    for node in redis_db.masters:
        await node.script_flush()
    cold = await store.erase(subject("ommen", contact_ids=[cids[2]]))
    assert warm.counts["keys"] >= 4 and warm.counts["index entries"] >= 4, warm.counts
    assert (cold.contact_ids, cold.counts) == ({cids[2]}, warm.counts)
