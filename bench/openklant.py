"""The Open Klant export at full size, timed: `python -m bench.openklant [--contacts 1000]
[--callbacks 200] [--outage 120] [--kills 2]`.

Two tenants, each with its own contract stub (tests/openklant/stub.py) on a loopback port; a real
`contact-router export openklant` process on the local RabbitMQ and Redis (AMQP_URL, REDIS_URL), in a
namespace of its own that is removed afterwards. The store is filled as the router leaves it (a
contact's hash with its JSON, team and callback requests, the history entries of attempts) and the
events the router publishes are published for them, so the figure is the exporter's own:

1. throughput: every contact's `contact.routed` at once; the exporter is killed when 40 % are in Open
   Klant and started again; the figure is contacts per second from the first event to the last
   klantcontact (the restart included);
2. an outage: both stubs answer 503 for `--outage` seconds; meanwhile every callback request's
   `callback.requested` is published and the exporter is killed once more; then attempts and closes;
3. the check: every contact exactly one klantcontact, every callback request exactly one internetaak,
   `verwerkt` (with afgehandeldOp) where it was reached or closed, nothing in openklant.dead.

Prints the figures; exits 1 when the check fails. Not a test (docs/openklant.md, "Throughput"); the
scaled-down run is tests/openklant/test_export.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import redis.asyncio as aioredis

from router.core import topology
from router.core.contact import Contact
from router.core.messages import dumps, event_message
from router.core.topology import Names
from router.redis.keys import Keys
from tests.openklant.stub import OpenKlantStub

ROOT = Path(__file__).resolve().parent.parent
TENANTS = ("ommen", "coevorden")
CHANNELS = ("mail", "webform", "phone")


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.openklant", description=__doc__.split("\n\n")[0])
    p.add_argument("--contacts", type=int, default=1000)
    p.add_argument("--callbacks", type=int, default=200)
    p.add_argument("--outage", type=float, default=120.0, help="seconds of 503 (default 120)")
    p.add_argument("--kills", type=int, default=2, choices=(0, 1, 2))
    return p.parse_args(argv)


def contact(i: int, received: datetime) -> Contact:
    return Contact.model_validate(
        {
            "tenant": TENANTS[i % 2],
            "channel": CHANNELS[i % 3],
            "received_at": received.isoformat(),
            "source": {"adapter": "bench", "native_id": uuid.uuid4().hex},
            "subject": f"Vraag {i}",
            "body": "Ik heb een vraag over mijn aanslag. " * (1 + i % 40),
            "sender": {"email": f"inwoner{i}@example.nl", "phone": f"+3161{i:07d}"},
        }
    )


async def seed(r: aioredis.Redis, keys: Keys, contacts: list[Contact]) -> None:
    """The store as the router leaves a routed contact (the fields the exporter reads)."""
    async with r.pipeline(transaction=False) as pipe:
        for c in contacts:
            fields = {
                "contact": c.model_dump_json(),
                "tenant": c.tenant,
                "team": "kcc",
                "channel": c.channel,
                "status": "routed",
                "committed": "1",
                "version": "1",
                "received_at": c.received_at.isoformat(),
            }
            pipe.hset(keys.contact(c.cid), mapping=fields)
        await pipe.execute()


async def ask_callbacks(r: aioredis.Redis, keys: Keys, contacts: list[Contact], now: datetime) -> None:
    """A callback request of each contact's team, as the case work records it."""
    async with r.pipeline(transaction=False) as pipe:
        for c in contacts:
            pipe.hset(
                keys.callback(c.cid, 1),
                mapping={
                    "id": f"{c.cid}-cb1",
                    "contact_id": c.cid,
                    "tenant": c.tenant,
                    "team": "kcc",
                    "reason": "Graag terugbellen",
                    "phone": c.sender.phone if c.sender and c.sender.phone else "",
                    "status": "open",
                    "due": (now + timedelta(days=3)).isoformat(),
                    "attempts": "0",
                },
            )
            pipe.hset(keys.contact(c.cid), "callbacks", "1")
        await pipe.execute()


async def close_callbacks(r: aioredis.Redis, keys: Keys, contacts: list[Contact], now: datetime) -> None:
    """Half the callback requests reached at the first attempt, the rest one attempt without answer."""
    async with r.pipeline(transaction=False) as pipe:
        for i, c in enumerate(contacts):
            reached = i % 2 == 0
            cbid = f"{c.cid}-cb1"
            entry = {"event": "callback.attempted", "at": now.isoformat(), "callback_id": cbid, "attempt": 1}
            entry["outcome"] = "reached" if reached else "no_answer"
            pipe.rpush(keys.history(c.cid), dumps(entry))
            update = {"attempts": "1", "last_outcome": entry["outcome"]}
            if reached:
                update |= {"status": "closed", "closed_at": now.isoformat(), "closed_reason": "reached"}
            pipe.hset(keys.callback(c.cid, 1), mapping=update)
        await pipe.execute()


async def publish(
    exchange: aio_pika.abc.AbstractExchange, name: str, contacts: list[Contact], **extra: Any
) -> None:
    now = datetime.now(UTC)
    for start in range(0, len(contacts), 200):
        messages = [
            event_message("events", name, now, tenant=c.tenant, contact_id=c.cid, channel=c.channel, **extra)
            for c in contacts[start : start + 200]
        ]
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        m.body.encode(),
                        message_id=m.message_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=m.routing_key,
                )
                for m in messages
            )
        )


class Exporter:
    def __init__(self, env: dict[str, str], log: Path):
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "router.cli", "export", "openklant"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


async def consumers(conn: aio_pika.abc.AbstractConnection, name: str) -> tuple[int, int]:
    channel = await conn.channel()
    try:
        q = await channel.declare_queue(name, passive=True)
        return int(q.declaration_result.message_count or 0), int(q.declaration_result.consumer_count or 0)
    except Exception:
        return -1, 0
    finally:
        if not channel.is_closed:
            await channel.close()


async def until(check: Any, within: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            raise SystemExit(f"FAILED: {what} not within {within:.0f}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def write_rules(target: Path, stubs: dict[str, OpenKlantStub]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for file in (ROOT / "rules").glob("*.yaml"):
        if not file.name.startswith("_"):
            text = file.read_text(encoding="utf-8")
            if file.stem in stubs:
                text += f"\nopenklant:\n  base_url: {stubs[file.stem].url}\n  concurrency: 8\n"
            (target / file.name).write_text(text, encoding="utf-8")


async def run(args: argparse.Namespace) -> int:
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    names, keys = Names(namespace), Keys(namespace)
    tmp = Path(tempfile.mkdtemp(prefix="bench-openklant-"))
    stubs = {t: await OpenKlantStub(token=f"{t}-token").start() for t in TENANTS}
    write_rules(tmp / "rules", stubs)
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "REDIS_URL": redis_url,
        "NAMESPACE": namespace,
        "RULES_DIR": str(tmp / "rules"),
        "LOG_LEVEL": "warning",
        **{f"OPENKLANT_TOKEN_{t.upper()}": f"{t}-token" for t in TENANTS},
    }
    exporter = Exporter(env, tmp / "exporter.log")
    r = aioredis.Redis.from_url(redis_url)
    conn = await aio_pika.connect(amqp_url)
    channel = await conn.channel(publisher_confirms=True)
    events = await channel.declare_exchange(names(topology.EVENTS), aio_pika.ExchangeType.TOPIC, durable=True)
    now = datetime.now(UTC)
    contacts = [contact(i, now - timedelta(minutes=5)) for i in range(args.contacts)]
    asked = contacts[: args.callbacks]

    def exported() -> int:
        return sum(len(s.objects["klantcontacten"]) for s in stubs.values())

    def tasks(closed_too: bool) -> bool:
        made = sum(len(s.objects["internetaken"]) for s in stubs.values())
        if made < len(asked):
            return False
        done = sum(
            1 for s in stubs.values() for t in s.objects["internetaken"].values() if t["status"] == "verwerkt"
        )
        return not closed_too or done >= (len(asked) + 1) // 2

    try:
        await seed(r, keys, contacts)
        exporter.start()
        for _ in range(600):
            if all([(await consumers(conn, names.openklant_queue(t)))[1] for t in TENANTS]):
                break
            await asyncio.sleep(0.05)
        print(f"contacts {args.contacts}, callback requests {args.callbacks}, tenants {', '.join(TENANTS)}")

        started = time.monotonic()
        await publish(events, "contact.routed", contacts, team="kcc")
        if args.kills >= 1:
            await until(lambda: exported() >= 0.4 * args.contacts, 300, "40 % exported")
            exporter.kill()
            print(f"  killed at {exported()} klantcontacten; started again")
            exporter.start()
        await until(lambda: exported() >= args.contacts, 600, "every klantcontact")
        elapsed = time.monotonic() - started
        requests = sum(sum(s.requests.values()) for s in stubs.values())
        rate = args.contacts / elapsed
        print(f"throughput: {args.contacts} klantcontacten in {elapsed:.1f}s = {rate:.0f} contacts/s")
        print(f"  {requests} requests to Open Klant ({requests / args.contacts:.1f} per contact)")

        for s in stubs.values():
            s.outage(args.outage)
        outage_start = time.monotonic()
        await ask_callbacks(r, keys, asked, now)
        await publish(events, "callback.requested", asked, team="kcc")
        if args.kills >= 2:
            await asyncio.sleep(min(args.outage / 2, 30))
            exporter.kill()
            print(f"  killed during the outage ({time.monotonic() - outage_start:.0f}s in); started again")
            exporter.start()
        await asyncio.sleep(max(0.0, args.outage - (time.monotonic() - outage_start)))
        after = await until(lambda: tasks(False), 600, "every internetaak")
        print(f"outage: {args.outage:.0f}s of 503; every internetaak {after:.1f}s after it ended")
        await close_callbacks(r, keys, asked, datetime.now(UTC))
        await publish(events, "callback.attempted", asked)
        await until(lambda: tasks(True), 300, "the reached callback requests verwerkt")

        problems = check(stubs, contacts, asked)
        dead, _ = await consumers(conn, names(topology.OPENKLANT_DEAD))
        if dead:
            problems.append(f"{dead} events in openklant.dead")
        served = sum(s.statuses[503] for s in stubs.values())
        print(f"503 answers: {served}; dead letters: {dead}")
        if problems:
            print("FAILED:\n  " + "\n  ".join(problems[:20]))
            return 1
        print("check: every contact one klantcontact, every callback request one internetaak, statuses right")
        return 0
    finally:
        exporter.stop()
        for s in stubs.values():
            await s.close()
        ch = await conn.channel()
        for q in (*(names.openklant_queue(t) for t in TENANTS), names(topology.OPENKLANT_DEAD)):
            await ch.queue_delete(q)
        for x in (topology.OPENKLANT_DEAD, topology.OPENKLANT_REPLAY, topology.EVENTS):
            await ch.exchange_delete(names(x))
        await conn.close()
        async for key in r.scan_iter(match=f"{namespace}*", count=1000):
            await r.delete(key)
        await r.aclose()


def check(stubs: dict[str, OpenKlantStub], contacts: list[Contact], asked: list[Contact]) -> list[str]:
    problems = []
    for c in contacts:
        n = len(stubs[c.tenant].klantcontacten_of(c.cid))
        if n != 1:
            problems.append(f"contact {c.cid}: {n} klantcontacten")
    for i, c in enumerate(asked):
        found = stubs[c.tenant].internetaken_tagged(f"{c.cid}-cb1")
        want = "verwerkt" if i % 2 == 0 else "te_verwerken"
        if len(found) != 1:
            problems.append(f"callback {c.cid}-cb1: {len(found)} internetaken")
        elif found[0]["status"] != want or (want == "verwerkt") != bool(found[0].get("afgehandeldOp")):
            problems.append(f"callback {c.cid}-cb1: status {found[0]['status']}, expected {want}")
    if sum(len(s.objects["klantcontacten"]) for s in stubs.values()) != len(contacts):
        problems.append("klantcontacten other than one per contact")
    return problems


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(arguments(argv)))


if __name__ == "__main__":
    sys.exit(main())
