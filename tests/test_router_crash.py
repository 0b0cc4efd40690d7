"""1,000 contacts over two tenants and four channels; the router process is SIGKILLed halfway and
restarted. Every contact must end in exactly one team queue, exactly once, and none may be left
'routing': what the killed router had claimed is settled by the next one (issue 12: its heartbeat
expires, its commit markers tell which of its batches the broker committed)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from router.core.contact import contact_id
from router.core.tenants import Tenant
from router.core.topology import Names
from router.redis.keys import Keys
from router.settings import Settings
from tests.conftest import ROOT, drain

pytestmark = pytest.mark.slow

TENANTS = ("ommen", "coevorden")
CHANNELS = ("mail", "webform", "social", "phone")
SUBJECTS = ("Paspoort verlopen", "Losse stoeptegel", "WOZ-waarde", "Vraag over afval", "Algemene vraag")


def start_router(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AMQP_URL": settings.amqp_url,
        "REDIS_URL": settings.redis_url,
        "NAMESPACE": settings.namespace,
        "RULES_DIR": str(settings.rules_dir),
        # Small batches and prefetch so that the kill lands mid-stream.
        "ROUTER_BATCH_SIZE": "10",
        "ROUTER_PREFETCH": "40",
        "CLAIM_LEASE_MS": "3000",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "router.cli", "router", "--embedded", "never"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )


async def wait_settled(client: Any, keys: Keys, cids: set[str], within: float) -> dict[str, str]:
    """Each contact's status once none is 'routing' any more, or when `within` seconds are up."""
    statuses: dict[str, str] = {}
    for _ in range(int(within / 0.5)):
        async with client.pipeline(transaction=False) as pipe:
            for cid in sorted(cids):
                pipe.hget(keys.contact(cid), "status")
            rows = await pipe.execute()
        statuses = {cid: (s or b"").decode() for cid, s in zip(sorted(cids), rows, strict=True)}
        if not any(s in ("routing", "") for s in statuses.values()):
            break
        await asyncio.sleep(0.5)
    return statuses


async def ready_count(conn: aio_pika.abc.AbstractConnection, queue: str) -> int:
    channel = await conn.channel()
    q = await channel.declare_queue(queue, passive=True)
    await channel.close()
    count: int = q.declaration_result.message_count
    return count


async def test_sigkill_halfway_routes_every_contact_exactly_once(
    settings: Settings,
    amqp: aio_pika.abc.AbstractConnection,
    redis_client: Any,
    tenants: dict[str, Tenant],
    tmp_path: Path,
) -> None:
    from router.service import declare_topology

    names = Names(settings.namespace)
    await declare_topology(settings, tenants)
    channel = await amqp.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(names("contacts"))
    expected: set[str] = set()
    for i in range(1000):
        tenant, chan = TENANTS[i % 2], CHANNELS[(i // 2) % 4]
        native = f"crash-{uuid.uuid4().hex}"
        body = {
            "tenant": tenant,
            "channel": chan,
            "received_at": datetime.now(UTC).isoformat(),
            "source": {"adapter": "test", "native_id": native},
            "subject": SUBJECTS[i % len(SUBJECTS)],
            "body": "Zie onderwerp.",
        }
        expected.add(contact_id(tenant, "test", native))
        await exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(uuid.uuid4()),
            ),
            routing_key=f"{tenant}.{chan}",
        )
    await channel.close()

    log = tmp_path / "router.log"
    proc = start_router(settings, log)
    try:
        for _ in range(600):
            if await ready_count(amqp, names("router.contacts")) <= 500:
                break
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        left_at_kill = await ready_count(amqp, names("router.contacts"))
        assert 0 < left_at_kill < 1000, f"the kill did not land mid-stream ({left_at_kill} left)"

        proc = start_router(settings, log)
        restarted = asyncio.get_running_loop().time()
        for _ in range(1200):
            if await ready_count(amqp, names("router.contacts")) == 0:
                break
            await asyncio.sleep(0.05)
        assert await ready_count(amqp, names("router.contacts")) == 0
        # The killed router's claims lapse (CLAIM_LEASE_MS) and its heartbeat expires (10 s); then the
        # new router settles them: routed if their batch was committed, taken over if not.
        statuses = await wait_settled(redis_client, Keys(settings.namespace), expected, within=45)
        settled_in = asyncio.get_running_loop().time() - restarted
        stuck = [cid for cid, status in statuses.items() if status in ("routing", "")]
        assert not stuck, f"{len(stuck)} contacts left 'routing' {settled_in:.0f} s after the restart"
        assert settled_in < 30, f"settled only after {settled_in:.0f} s"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()

    seen: Counter[str] = Counter()
    queue_of: dict[str, set[str]] = {}
    for tenant in TENANTS:
        for team in tenants[tenant].loaded.rules.team_ids():
            q = names.team_queue(tenant, team)
            for msg in await drain(amqp, q, settle=0.2):
                assert msg.message_id is not None
                seen[msg.message_id] += 1
                queue_of.setdefault(msg.message_id, set()).add(q)
    dead = await drain(amqp, names("router.dead"), settle=0.2)
    twice = {cid: n for cid, n in seen.items() if n > 1}
    missing = expected - set(seen)
    assert not dead, [m.headers for m in dead[:3]]
    assert not twice, f"{len(twice)} contacts routed more than once"
    assert not missing, f"{len(missing)} contacts lost"
    assert all(len(qs) == 1 for qs in queue_of.values())
    assert set(seen) == expected
