"""What linking one resident across channels adds to routing: `python -m bench.resident_linking`.

Seeds Redis (REDIS_URL, default 127.0.0.1:6379, under a namespace of its own that it deletes afterwards)
with the identity keys of `--seeded` contacts (100,000: the resident sets of their e-mail addresses and
phone numbers, and each contact's hash with the fields the look-up reads), written directly so that the
seeding takes seconds. Then it routes `--n` new contacts through the router's own batch pipeline
(`RoutingCore.stage` and `commit` on the real `RedisStore`: parse, classify, the resident look-up, claim,
index, commit; no broker) in batches of `--batch`, with the tenant's linking on and off in turn. Half the
new contacts come from seeded residents, on another category than their open contact (so that every
look-up finds and reads candidates, and the routing stays the same in both runs); the rest are new
residents. Prints the routing time per contact for both and the difference: what linking adds (target:
under 1 ms per contact). A last run with the same category shows the joins happening.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from bench.workload import RULES
from router.core.clock import SystemClock
from router.core.contact import Contact
from router.core.pipeline import RoutingCore
from router.core.ports import Delivery
from router.core.residents import CANDIDATE_FIELDS
from router.core.rules import LoadedRules, Residents, load_dir
from router.core.tenants import Tenant, build
from router.core.topology import Names
from router.redis.client import redis_client
from router.redis.keys import Keys
from router.redis.store import RedisStore

TENANT = "ommen"


def tenants(link: bool) -> dict[str, Tenant]:
    loaded = load_dir(RULES)[TENANT]
    rules = loaded.rules.model_copy(update={"residents": Residents(link_open_same_category=link)})
    return build({TENANT: LoadedRules(rules, loaded.file, loaded.route_lines, loaded.default_line)})


def email(n: int) -> str:
    return f"inwoner{n}@example.nl"


def phone(n: int) -> str:
    return f"+316{n:08d}"


async def seed(store: RedisStore, keys: Keys, n: int, now: datetime) -> None:
    """`n` open contacts of `n // 2` residents (two each), category 'verhuizing', at burgerzaken."""
    received = (now - timedelta(days=10)).isoformat()
    step = 5_000
    for start in range(0, n, step):
        async with store.r.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + step)):
                cid = str(uuid.uuid4())
                resident = i // 2
                pipe.hset(
                    keys.contact(cid),
                    mapping={
                        "tenant": TENANT,
                        "channel": "mail",
                        "status": "routed",
                        "category": "verhuizing",
                        "team": "burgerzaken",
                        "received_at": received,
                        "committed": "1",
                    },
                )
                pipe.sadd(keys.resident(TENANT, "email", email(resident)), cid)
                pipe.sadd(keys.resident(TENANT, "phone", phone(resident)), cid)
            await pipe.execute()


def deliveries(n: int, seeded_residents: int, body: str, now: datetime) -> list[Delivery]:
    out = []
    for i in range(n):
        resident = i * 7 % seeded_residents if i % 2 == 0 else seeded_residents + 10_000_000 + i
        contact = Contact.model_validate(
            {
                "tenant": TENANT,
                "channel": "mail",
                "received_at": now.isoformat(),
                "source": {"adapter": "bench", "native_id": uuid.uuid4().hex},
                "subject": "Vraag",
                "body": body,
                "sender": {"name": "Inwoner", "email": email(resident), "phone": phone(resident % 10**8)},
            }
        )
        out.append(Delivery(contact.model_dump_json().encode(), None, f"{TENANT}.mail", {}, False))
    return out


async def route(core: RoutingCore, batch: list[Delivery]) -> tuple[float, int]:
    """Seconds to stage and commit one batch, and how many contacts joined another."""
    t0 = time.perf_counter()
    result = await core.stage(batch, uuid.uuid4().hex)
    await core.store.commit([p.staged for p in result.routed])
    joined = sum(1 for p in result.routed if p.summary == "joined")
    return time.perf_counter() - t0, joined


async def run(args: argparse.Namespace) -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    keys = Keys(prefix=f"bench-residents-{uuid.uuid4().hex[:8]}:")
    store = RedisStore(redis_client(url), keys)
    names = Names("bench.")
    now = datetime.now(UTC)
    try:
        t0 = time.perf_counter()
        await seed(store, keys, args.seeded, now)
        print(f"seeded {args.seeded:,} contacts' identity keys in {time.perf_counter() - t0:.1f} s")
        cores = {
            link: RoutingCore(tenants(link), store, names, SystemClock(), 15_000) for link in (True, False)
        }
        per_contact: dict[bool, list[float]] = {True: [], False: []}
        # Warm up both (scripts loaded, tables built), then alternate so that both see the same Redis.
        for link in (True, False):
            await route(cores[link], deliveries(args.batch, args.seeded // 2, "Ik ga verhuizen", now))
        for _ in range(args.repeats):
            for link in (True, False):
                contacts = deliveries(args.n, args.seeded // 2, "Mijn paspoort is verlopen", now)
                seconds = 0.0
                for i in range(0, len(contacts), args.batch):
                    spent, _ = await route(cores[link], contacts[i : i + args.batch])
                    seconds += spent
                per_contact[link].append(seconds / len(contacts) * 1000)
        on, off = statistics.median(per_contact[True]), statistics.median(per_contact[False])
        print(
            f"routed {args.n:,} contacts x {args.repeats} per mode, batches of {args.batch}, "
            f"half of them from seeded residents (candidates read: {len(CANDIDATE_FIELDS)} fields each)"
        )
        print(f"  linking off: {off:.3f} ms per contact (median of {args.repeats})")
        print(f"  linking on:  {on:.3f} ms per contact (median of {args.repeats})")
        print(f"  added by linking: {on - off:.3f} ms per contact (target < 1 ms)")
        contacts = deliveries(args.n, args.seeded // 2, "Ik ga verhuizen, mijn nieuwe adres", now)
        joined = 0
        for i in range(0, len(contacts), args.batch):
            joined += (await route(cores[True], contacts[i : i + args.batch]))[1]
        print(f"  same category: {joined:,} of {len(contacts):,} contacts joined an open contact")
    finally:
        removed = 0
        batch: list[bytes] = []
        async for key in store.r.scan_iter(match=f"{keys.prefix}*", count=5_000):
            batch.append(key)
            if len(batch) >= 5_000:
                removed += await store.r.unlink(*batch)
                batch = []
        if batch:
            removed += await store.r.unlink(*batch)
        await store.close()
        print(f"removed {removed:,} keys of the bench")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeded", type=int, default=100_000, help="contacts whose identity keys are seeded")
    parser.add_argument("--n", type=int, default=5_000, help="contacts routed per run")
    parser.add_argument("--batch", type=int, default=100, help="contacts per routed batch")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode; the median counts")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
