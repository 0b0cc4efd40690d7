"""The agent workspace on a busy morning, timed: `python -m bench.workspace [--items 5000]
[--clients 200] [--real]`.

1. A work list of `--items` open items (contacts routed to one team through the router, as in
   production) rendered by GET /werkplek/: the median and worst time of ten renders, measured at the
   client on loopback (the server's time plus a local round trip). Target: under 300 ms.
2. `--clients` signed-in pages on the live stream (GET /werkplek/live) and one new contact for their
   team: the time from its publication until every page has the event (routing included). Target:
   under 1 s.

The embedded backend by default (in-process broker, Redis code on fakeredis); `--real` uses RabbitMQ
and Redis on 127.0.0.1 in a namespace of its own, removed afterwards. Not a test: the figures are for
people (docs/workspace.md, "Performance").
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from router import logs
from router.core.contact import Contact
from router.http.app import create_app
from router.http.workspace import setup_workspace
from router.service import Runtime, build, workspace_for
from router.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
AGENT = "demo-ommen-burgerzaken"


def contact(n: int) -> Contact:
    return Contact.model_validate(
        {
            "tenant": "ommen",
            "channel": "webform",
            "received_at": datetime.now(UTC).isoformat(),
            "source": {"adapter": "bench", "native_id": uuid.uuid4().hex},
            "subject": f"Paspoort {n}",
            "body": "Mijn paspoort is verlopen, wanneer kan ik een nieuwe aanvragen?",
            "sender": {"name": "Inwoner", "phone": "+31612345678"},
        }
    )


async def seed(rt: Runtime, count: int) -> None:
    contacts = [contact(n) for n in range(count)]
    for c in contacts:
        await rt.publisher.publish(c)
    last = contacts[-1].cid
    for _ in range(6000):
        record = await rt.store.get(last)
        if record is not None and record.fields.get("status") == "routed":
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)


async def signed_in(base: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.get(f"{base}/werkplek/aanmelden") as r:
        token = re.search(r'name="csrf" value="([^"]+)"', await r.text())
    assert token is not None
    async with session.post(
        f"{base}/werkplek/aanmelden/ontwikkeling", data={"agent": AGENT, "csrf": token.group(1)}
    ) as r:
        assert r.status == 200, r.status
    return session


async def render_times(session: aiohttp.ClientSession, base: str, runs: int = 10) -> tuple[list[float], int]:
    times = []
    rows = 0
    for _ in range(runs):
        started = time.perf_counter()
        async with session.get(f"{base}/werkplek/?team=burgerzaken") as r:
            text = await r.text()
            assert r.status == 200
        times.append((time.perf_counter() - started) * 1000)
        rows = text.count('href="/werkplek/contact/')
    return times, rows


async def profile_one(base: str) -> None:
    """Where one render's time goes (server and client share this process): cProfile, by own time."""
    import cProfile
    import pstats

    session = await signed_in(base)
    profiler = cProfile.Profile()
    profiler.enable()
    async with session.get(f"{base}/werkplek/?team=burgerzaken") as r:
        await r.text()
    profiler.disable()
    await session.close()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


async def parts(rt: Runtime) -> None:
    """The render's parts timed one by one (median of five), without the profiler's overhead."""
    from router.http.workspace import views

    service, tenant, now = rt.casework, rt.tenants["ommen"], rt.clock.now()
    assert service is not None
    laps: dict[str, list[float]] = {"item_heads": [], "work_list_page": [], "items_by_id": []}
    for _ in range(5):
        t0 = time.perf_counter()
        heads = await service.item_heads("ommen", "burgerzaken")
        t1 = time.perf_counter()
        _listed, shown = views.work_list_page(tenant, "burgerzaken", heads, now)
        t2 = time.perf_counter()
        await service.items_by_id("ommen", [p.id_score for p in shown])
        t3 = time.perf_counter()
        for name, lap in zip(laps, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            laps[name].append(lap * 1000)
    print("  " + ", ".join(f"{k} {statistics.median(v):.0f} ms" for k, v in laps.items()))


async def live_latency(rt: Runtime, base: str, clients: int) -> list[float]:
    session = await signed_in(base)
    connector_session = aiohttp.ClientSession(
        cookie_jar=session.cookie_jar, connector=aiohttp.TCPConnector(limit=clients + 10)
    )
    ready = asyncio.Event()
    connected = 0
    published_at: list[float] = []
    arrived: list[float] = []
    target: list[str] = []

    async def listen() -> None:
        nonlocal connected
        async with connector_session.get(
            f"{base}/werkplek/live", timeout=aiohttp.ClientTimeout(total=60)
        ) as r:
            await r.content.readuntil(b"\n\n")  # the `retry:` frame: connected
            connected += 1
            if connected == clients:
                ready.set()
            buffer = b""
            while True:
                chunk = await r.content.readany()
                if not chunk:
                    return
                buffer += chunk
                if target and target[0].encode() in buffer:
                    arrived.append(time.perf_counter())
                    return

    tasks = [asyncio.create_task(listen()) for _ in range(clients)]
    await asyncio.wait_for(ready.wait(), 60)
    new = contact(-1)
    target.append(new.cid)
    published_at.append(time.perf_counter())
    await rt.publisher.publish(new)
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    await connector_session.close()
    await session.close()
    return [(t - published_at[0]) * 1000 for t in arrived]


async def main(args: argparse.Namespace) -> int:
    logs.configure("warning", "console")
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    settings = Settings(
        rules_dir=ROOT / "rules",
        namespace=namespace,
        workspace_dev_signin=True,
        session_secret=SecretStr("bench-session-secret-0123456789"),
        log_level="warning",
    )
    embedded = "never" if args.real else "always"
    rt = await build(settings, with_router=True, embedded=embedded)
    assert rt.router is not None
    rt.tasks.append(asyncio.create_task(rt.router.run(), name="router"))
    app = create_app(rt.api_context())
    config, closers = await workspace_for(rt)
    setup_workspace(app, config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        started = time.perf_counter()
        await seed(rt, args.items)
        print(
            f"seeded {args.items} open items in {time.perf_counter() - started:.1f} s "
            f"({'real' if args.real else 'embedded'})"
        )
        session = await signed_in(base)
        times, rows = await render_times(session, base)
        await session.close()
        median, worst = statistics.median(times), max(times)
        verdict = "ok" if median < 300 else "OVER TARGET"
        print(
            f"work list of {rows} items: median {median:.0f} ms, worst {worst:.0f} ms "
            f"(target < 300 ms) {verdict}"
        )
        if args.profile:
            await profile_one(base)
            await parts(rt)
        latencies = await live_latency(rt, base, args.clients)
        worst_live = max(latencies)
        verdict = "ok" if len(latencies) == args.clients and worst_live < 1000 else "OVER TARGET"
        print(
            f"{len(latencies)}/{args.clients} live pages got the new item: median "
            f"{statistics.median(latencies):.0f} ms, last {worst_live:.0f} ms (target < 1000 ms) {verdict}"
        )
    finally:
        await server.close()
        for close in closers:
            await close()
        await rt.close()
        if args.real:
            await _cleanup(settings, namespace)
    return 0


async def _cleanup(settings: Settings, namespace: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(settings.redis_url)
    async for key in client.scan_iter(match=f"{namespace}*", count=1000):
        await client.delete(key)
    await client.aclose()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.workspace", description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=5000)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--profile", action="store_true", help="print where one render's time goes")
    p.add_argument("--real", action="store_true", help="RabbitMQ and Redis on 127.0.0.1 (default: embedded)")
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse())))
