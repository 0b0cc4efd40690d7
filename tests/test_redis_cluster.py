"""The service on a Redis Cluster (issue 21): `REDIS_URL=redis+cluster://…`, three masters that the suite
starts (tests/redis_cluster.py). The behaviour tests run on it as backend "cluster" (tests/backends.py);
here: what only a cluster shows — settings, the keys spread over the masters, and a master killed while
contacts stream through two router processes, which must lose nothing and route nothing twice.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.asyncio.cluster import RedisCluster

from router.core.tenants import Tenant
from router.core.topology import DEAD, ROUTER_QUEUE, Names
from router.redis.client import redis_client
from router.redis.keys import Keys
from router.service import declare_topology
from router.settings import Settings, cluster_nodes, seed_address
from tests.faults.helpers import RouterProcess
from tests.faults.test_fault_suite import (
    Publisher,
    contact_body,
    queue_depth,
    take_all,
    team_queues,
    wait_for,
)
from tests.redis_cluster import RedisClusterNodes

CONTACTS = int(os.environ.get("CLUSTER_FAULT_CONTACTS", "4000"))


def test_a_cluster_url_names_its_seed_nodes() -> None:
    url = "redis+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001/"
    assert cluster_nodes(url) == ([("10.0.0.1", 7000), ("10.0.0.2", 7001)], "app", "s@cret")
    assert seed_address(url) == ("10.0.0.1", 7000)
    assert seed_address("redis://cache:6380/0") == ("cache", 6380)
    assert isinstance(redis_client("redis+cluster://127.0.0.1:7000"), RedisCluster)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://127.0.0.1:7000,127.0.0.1/", "host:port"),
        ("redis+cluster://127.0.0.1:7000/2", "one database"),
        ("redis+cluster://127.0.0.1:99999", "host:port"),
    ],
)
def test_a_wrong_cluster_url_stops_the_settings_with_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(redis_url=url)
    assert "redis_url" in str(caught.value) and says in str(caught.value)


@pytest.mark.cluster_faults
async def test_a_master_killed_mid_stream_loses_nothing_and_routes_nothing_twice(
    settings: Settings,
    amqp: aio_pika.abc.AbstractConnection,
    tenants: dict[str, Tenant],
    redis_cluster: RedisClusterNodes,
    tmp_path: Path,
) -> None:
    """Two router processes on the cluster; a master is SIGKILLed while a backlog waits and restarted (from
    its append-only file) 3 s later, then one router is SIGKILLed (its batches settled by the in-doubt
    repair, on the cluster). Every tenth contact is sent twice, the identical message right behind."""
    names = Names(settings.namespace)
    settings = settings.model_copy(update={"redis_url": redis_cluster.url})
    await declare_topology(settings, tenants)
    env = {
        "AMQP_URL": settings.amqp_url,
        "REDIS_URL": redis_cluster.url,
        "NAMESPACE": settings.namespace,
        "RULES_DIR": str(settings.rules_dir),
        "CLAIM_LEASE_MS": "3000",
        "LOG_FORMAT": "json",
    }
    r1 = RouterProcess(env, tmp_path / "router-1.log", "r1").start()
    r2 = RouterProcess(env, tmp_path / "router-2.log", "r2").start()
    stream = Stream(await aio_pika.connect(settings.amqp_url), names)
    store = redis_client(redis_cluster.url)
    keys = Keys(settings.namespace)
    faults: list[str] = []
    try:

        async def both_consuming() -> bool:
            return (await queue_depth(amqp, names(ROUTER_QUEUE)))[1] == 2

        await wait_for(both_consuming, 60, "two router consumers")
        publishing = asyncio.create_task(stream.run(CONTACTS))

        async def backlog() -> bool:
            return stream.sent >= CONTACTS * 0.3 and (await queue_depth(amqp, names(ROUTER_QUEUE)))[0] > 0

        await wait_for(backlog, 60, "a backlog in the router queue")
        redis_cluster.kill(0)
        faults.append(f"master 0 SIGKILL after {stream.sent} sent, a backlog waiting")
        await asyncio.sleep(3)
        redis_cluster.restart(0)
        await wait_for(lambda: stream.past(0.7), 60, "70 % of the stream")
        r1.signal(signal.SIGKILL)
        r1.wait(10)
        faults.append(f"router 1 SIGKILL after {stream.sent} sent")
        r1.start()
        await publishing
        seen = await _routed_once_each(amqp, names, tenants, stream.expected)
        lost = sorted(stream.expected - set(seen))
        twice = sorted(cid for cid, n in seen.items() if n > 1)
        if lost or twice:
            evidence = await _evidence(store, keys, (lost + twice)[:3], [r1, r2])
            raise AssertionError(f"{len(lost)} lost, {len(twice)} routed twice; faults {faults}\n{evidence}")
        # Nothing in doubt afterwards: every contact `routed` on the cluster (the repair settles what
        # the killed router left), its keys spread over all three masters.
        states: list[Any] = []

        async def all_routed() -> bool:
            nonlocal states
            states = [await store.hget(keys.contact(cid), "status") for cid in sorted(stream.expected)]
            return all(s == b"routed" for s in states)

        try:
            await wait_for(all_routed, 60, "every contact 'routed'", interval=1.0)
        except AssertionError:
            stuck = [c for c, st in zip(sorted(stream.expected), states, strict=True) if st != b"routed"]
            evidence = await _evidence(store, keys, stuck[:3], [r1, r2])
            raise AssertionError(f"{len(stuck)} not 'routed'; faults {faults}\n{evidence}") from None
        masters = [await _contact_keys_on(port, settings.namespace) for port in redis_cluster.ports]
        assert all(n > 0 for n in masters), f"contact keys per master: {masters}"
        dead = await take_all(amqp, names(DEAD))
        assert dead == [], f"{len(dead)} dead letters"
        print(f"redis cluster faults: {faults}; {len(seen)} routed once; contact keys per master {masters}")
    finally:
        r1.stop()
        r2.stop()
        await stream.conn.close()
        await store.aclose()


class Stream:
    """Contacts as fast as the broker confirms them (100 in flight), so that the routers have a backlog."""

    def __init__(self, conn: aio_pika.abc.AbstractConnection, names: Names):
        self.conn = conn
        self.names = names
        self.sent = 0
        self.total = 0
        self.expected: set[str] = set()

    async def run(self, total: int) -> None:
        self.total = total
        channel = await self.conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(self.names("contacts"))
        run, at = uuid.uuid4().hex[:8], datetime.now(UTC).isoformat()
        for start in range(0, total, 100):
            chunk = []
            for i in range(start, min(total, start + 100)):
                cid, body, key = contact_body(i, run, at)
                self.expected.add(cid)
                message_id = str(uuid.uuid4())
                chunk += [(body, key, message_id)] * (2 if i % 10 == 0 else 1)
            await asyncio.gather(*(Publisher._publish(exchange, b, k, m) for b, k, m in chunk))
            self.sent = min(total, start + 100)
        await channel.close()

    async def past(self, fraction: float) -> bool:
        return self.sent >= self.total * fraction


async def _routed_once_each(
    amqp: aio_pika.abc.AbstractConnection, names: Names, tenants: dict[str, Tenant], expected: set[str]
) -> collections.Counter[str]:
    """How often each contact reached a team queue, once the router queue is empty."""
    seen: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for queue in team_queues(names, tenants):
            for message in await take_all(amqp, queue):
                seen[json.loads(message.body)["contact"]["id"]] += 1
        if set(seen) >= expected and (await queue_depth(amqp, names(ROUTER_QUEUE)))[0] == 0:
            break
        await asyncio.sleep(1)
    await asyncio.sleep(2)  # a late second copy, if any, lands meanwhile
    for queue in team_queues(names, tenants):
        for message in await take_all(amqp, queue):
            seen[json.loads(message.body)["contact"]["id"]] += 1
    return seen


async def _contact_keys_on(port: int, namespace: str) -> int:
    """How many contact hashes of the test one master holds (SCAN on that node alone)."""
    node = aioredis.Redis(port=port)
    try:
        return len([k async for k in node.scan_iter(match=f"{namespace}contact:{{*}}", _type="HASH")])
    finally:
        await node.aclose()


async def _evidence(store: Any, keys: Keys, cids: list[str], routers: list[RouterProcess]) -> str:
    """For a few contacts: their store fields, and every router log line naming them or their batch."""
    lines = []
    for cid in cids:
        raw = await store.hgetall(keys.contact(cid))
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        shown = {k: fields.get(k) for k in ("status", "committed", "batch", "lease", "team", "routed_at")}
        pending = await store.zscore(keys.routing_pending(), cid)
        timers = await store.zrangebyscore(keys.timers(), "-inf", "+inf", start=0, num=1)
        lines.append(f"  {cid}: {shown} routing_pending={pending} timers_present={bool(timers)}")
        batch = fields.get("batch") or fields.get("lease")
        for proc in routers:
            for e in proc.events():
                if e.get("event") == "in_doubt_repaired":
                    lines.append(f"    {proc.name} {e.get('timestamp')} {e}")
                elif e.get("contact_id") == cid or (batch and e.get("batch") == batch):
                    lines.append(
                        f"    {proc.name} {e.get('timestamp')} {e.get('event')} batch={e.get('batch')}"
                    )
    return "\n".join(lines)
