"""The separate processes an operator runs: `topology declare` and a lone `scheduler`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import aio_pika

from router.redis.keys import Keys
from router.settings import Settings
from tests.conftest import ROOT, drain
from tests.harness import ALL_KEY, PHONE, Harness


def env_for(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "AMQP_URL": settings.amqp_url,
        "REDIS_URL": settings.redis_url,
        "NAMESPACE": settings.namespace,
        "RULES_DIR": str(settings.rules_dir),
    }


async def test_topology_declare_is_idempotent(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection
) -> None:
    for _ in range(2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "router.cli",
            "topology",
            "declare",
            cwd=ROOT,
            env=env_for(settings),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert b"for 2 tenant(s)" in out
    channel = await amqp.channel()
    for queue in (
        "router.contacts",
        "router.dead",
        "team.ommen.burgerzaken",
        "team.coevorden.kcc",
        "escalations.ommen",
    ):
        declared = await channel.declare_queue(settings.namespace + queue, passive=True)
        assert declared.name == settings.namespace + queue
    await channel.close()


async def test_lone_scheduler_process_fires_a_due_callback_and_stops_on_sigterm(
    h: Harness, amqp: aio_pika.abc.AbstractConnection, settings: Settings
) -> None:
    cid = await h.route("ommen", "phone", "Vraag over mijn aanslag", phone=PHONE)
    resp = await h.client.post(
        f"/v1/contacts/{cid}/callback-requests", headers=ALL_KEY, json={"reason": "bellen"}
    )
    cbid = (await resp.json())["id"]
    # Make the breach due now (the process runs on the real clock; the test's clock is in May 2026).
    keys = Keys(settings.namespace)
    client: Any = h.rt.casework.store.r
    await client.zadd(keys.timers(), {f"{cbid}|callback|breach": 0})
    await client.zrem(keys.timers(), f"{cbid}|callback|warning")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router.cli",
        "scheduler",
        "--embedded",
        "never",
        cwd=ROOT,
        env=env_for(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        esc: list[Any] = []
        for _ in range(100):
            esc += await drain(amqp, h.rt.names.escalation_queue("ommen"), settle=0.1)
            if esc:
                break
            await asyncio.sleep(0.1)
        assert [json.loads(m.body)["callback_id"] for m in esc] == [cbid]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert b"timer_fired" in out and b"+31612345678" not in out
    # Its start-up heap frozen before it took work (router/heap.py): no full collection walks it.
    settled = [json.loads(line) for line in out.splitlines() if b'"heap_settled"' in line]
    assert len(settled) == 1 and settled[0]["frozen_objects"] > 10_000


async def test_settling_the_heap_freezes_what_exists_and_lets_the_young_generation_grow() -> None:
    probe = (
        "import gc; from router.heap import settle, YOUNG_THRESHOLD; kept = [[i] for i in range(50_000)]; "
        "n = settle(); assert gc.get_freeze_count() == n >= 50_000, n; "
        "assert gc.get_threshold()[0] == YOUNG_THRESHOLD; assert gc.collect() == 0"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", probe, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()


async def test_a_router_waits_for_the_broker_then_gives_up_with_a_clear_message(settings: Settings) -> None:
    env = {**env_for(settings), "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/", "STARTUP_TIMEOUT": "2"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router.cli",
        "router",
        "--embedded",
        "never",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"cannot start: RabbitMQ not reachable at start-up" in err
    assert err.count(b"waiting_for_rabbitmq") >= 2
