"""Nothing stays in doubt (issue 12): a router that dies after claiming a batch — after the broker
committed it but before telling Redis, or before committing — leaves claims that no attempt of its own
will settle. Once its heartbeat has expired another router settles them from the dead router's commit
markers: committed batches are marked routed (state `routed`, timers present, agent actions work),
the claims of the others are given up and their redelivered inputs are routed, each contact once."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import aio_pika
import pytest

from router.amqp.consumer import AmqpRouter
from router.redis.keys import Keys
from router.service import Runtime, build, start
from router.settings import Settings
from tests.conftest import drain
from tests.test_commit_in_doubt import publish

N = 20


async def die(rt: Runtime, redis_client: Any, keys: Keys) -> None:
    """As SIGKILL leaves it: no clean stop, the connection gone, and (10 s later) the heartbeat."""
    router = rt.router
    assert isinstance(router, AmqpRouter)
    attached = router._attached
    if attached is not None and not attached.connection.is_closed:
        await attached.connection.close()
    # Every task of it, the batch in flight included, ends where it is (as a killed process does).
    ours = [t for t in asyncio.all_tasks() if t.get_name().startswith("router") or t in rt.tasks]
    for _ in range(5):
        for task in ours:
            task.cancel()
        _, pending = await asyncio.wait(ours, timeout=2)
        if not pending:
            break
    assert not pending, "the first router did not stop"
    await redis_client.delete(keys.router_alive(router.router_id))


async def attached(rt: Runtime, within: float = 10.0) -> None:
    """Until the runtime's router consumes (about 10 s at most)."""
    router = rt.router
    assert isinstance(router, AmqpRouter)
    for _ in range(int(within / 0.05)):
        if router.ready:
            return
        await asyncio.sleep(0.05)


async def statuses(redis_client: Any, keys: Keys, cids: list[str]) -> dict[str, str]:
    rows = [await redis_client.hget(keys.contact(cid), "status") for cid in cids]
    return {cid: (s or b"").decode() for cid, s in zip(cids, rows, strict=True)}


async def until_all_routed(redis_client: Any, keys: Keys, cids: list[str], within: float = 30) -> None:
    """Wait (up to `within` s) until every contact is `routed`; the caller asserts what it finds."""
    for _ in range(int(within / 0.25)):
        if set((await statuses(redis_client, keys, cids)).values()) == {"routed"}:
            return
        await asyncio.sleep(0.25)


@pytest.mark.parametrize("where", ["redis", "cluster"])
async def test_a_router_with_a_heartbeat_is_never_settled_and_a_settled_one_never_beats_again(
    settings: Settings, redis_client: Any, request: pytest.FixtureRequest, where: str
) -> None:
    """The heartbeat and the repair's lock exclude each other in one step on the store, so that no router
    goes on committing under an id whose claims another router is settling (the three keys share a slot,
    which the cluster shows)."""
    from router.redis.client import redis_client as client_for
    from router.redis.store import RedisStore

    url = request.getfixturevalue("redis_cluster").url if where == "cluster" else settings.redis_url
    client = client_for(url)
    store = RedisStore(client, Keys(settings.namespace))
    try:
        assert await store.heartbeat("r-alive", 5_000)
        assert not await store.lock_resolution("r-alive", 5_000), "alive: not to be settled"
        assert await store.lock_resolution("r-gone", 5_000), "no heartbeat: to be settled"
        assert not await store.lock_resolution("r-gone", 5_000), "one router settles it at a time"
        assert not await store.heartbeat("r-gone", 5_000), "being settled: may not come back"
        assert await store.alive(["r-alive", "r-gone"]) == {"r-alive"}
        await store.record_committed_batches("r-done", {"r-done.1"})
        assert not await store.heartbeat("r-done", 5_000), "settled: may not come back"
        assert await store.committed_batches("r-done") == {"r-done.1"}
    finally:
        for rid in ("r-alive", "r-gone", "r-done"):
            keys = Keys(settings.namespace)
            await client.delete(keys.router_alive(rid))
            await client.delete(keys.router_resolving(rid))
            await client.delete(keys.router_committed(rid))
        await client.aclose()


@pytest.mark.parametrize("pending_lost", [False, True], ids=["pending-kept", "pending-lost"])
@pytest.mark.parametrize("broker_committed", [True, False])
async def test_a_dead_routers_claims_are_settled_by_the_next_router(
    settings: Settings,
    amqp: aio_pika.abc.AbstractConnection,
    redis_client: Any,
    broker_committed: bool,
    pending_lost: bool,
) -> None:
    """pending-lost: the store lost its list of pending claims meanwhile (a Redis Cluster master that
    restarted lost it in the cluster fault test): the committed batch is found from the dead router's
    commit markers, which name its contacts; an uncommitted one from its redelivered inputs."""
    settings = settings.model_copy(update={"claim_lease_ms": 1000, "router_batch_size": 100})
    keys = Keys(settings.namespace)
    first = await build(settings, with_router=True, embedded="never")
    assert isinstance(first.router, AmqpRouter)
    stuck = asyncio.Event()

    async def hang(*_: Any) -> None:
        stuck.set()
        await asyncio.Event().wait()

    # Die between the broker's commit and telling Redis, or before anything reaches the broker.
    if broker_committed:
        first.router.core.after_commit = hang  # type: ignore[method-assign]
    else:
        first.router.core.emit = hang  # type: ignore[method-assign]
    await start(first)
    await attached(first)
    cids = await publish(amqp, first.names, N)
    await asyncio.wait_for(stuck.wait(), 20)
    await asyncio.sleep(0.5)  # the rest of the batch in flight too
    before = await statuses(redis_client, keys, cids)
    assert "routing" in before.values() and set(before.values()) <= {"routing", ""}, before
    if pending_lost:
        await redis_client.delete(keys.routing_pending())
    await die(first, redis_client, keys)

    second = await build(settings, with_router=True, embedded="never")
    await start(second)
    began = asyncio.get_running_loop().time()
    try:
        await until_all_routed(redis_client, keys, cids)
        took = asyncio.get_running_loop().time() - began
        assert set((await statuses(redis_client, keys, cids)).values()) == {"routed"}, took
        assert took < 30
        items = await drain(amqp, first.names.team_queue("ommen", "burgerzaken"), settle=0.3)
        counted = collections.Counter(m.message_id for m in items)
        assert counted == collections.Counter(cids), "each contact once in its team queue"
        # Timers and the work list are there, and agent actions work on a repaired contact.
        timers = await redis_client.zrange(keys.timers(), 0, -1)
        assert all(any(t.decode().startswith(cid) for t in timers) for cid in cids)
        assert await redis_client.zcard(keys.team_items("ommen", "burgerzaken")) == N
        state = await second.casework.open_case(cids[0], lambda tenant: True)
        assert state.status == "routed"
        history = [e["event"] for e in await second.casework.history(cids[0])]
        assert history == ["contact.routed"]
        assert await redis_client.zcard(keys.routing_pending()) == 0
    finally:
        await second.close()
        with contextlib.suppress(Exception):
            await first.close()


@pytest.mark.parametrize("step", ["staging", "record"])
async def test_a_store_step_that_fails_unexpectedly_once_leaves_nothing_behind(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any, step: str
) -> None:
    """The store raises something other than "unavailable" once (seen on a Redis Cluster: redis-py's
    cluster client raised AttributeError while a master restarted).

    staging (once the claims are taken and indexed, before the batch is published): the session ends, the
    inputs return to the queue, and the router releases the claims of the failed attempt itself (it is
    alive: no other router settles them); without that, the redelivered inputs wait for those claims for
    good.
    record (after the broker's commit): the router must record the batch itself, for the same reason.
    Either way every contact ends `routed`, each once in its team queue."""
    settings = settings.model_copy(update={"claim_lease_ms": 1000, "router_batch_size": 100})
    keys = Keys(settings.namespace)
    rt = await build(settings, with_router=True, embedded="never")
    assert isinstance(rt.router, AmqpRouter)
    owner: Any = rt.router.core.store if step == "staging" else rt.router.core
    name = "claim_and_index" if step == "staging" else "after_commit"
    real = getattr(owner, name)
    failures = 0

    async def broken(*args: Any) -> None:
        nonlocal failures
        failures += 1
        setattr(owner, name, real)
        if step == "staging":
            await real(*args)  # the claims are taken: the failure comes after them
        raise AttributeError("injected")

    setattr(owner, name, broken)
    await start(rt)
    try:
        await attached(rt)
        cids = await publish(amqp, rt.names, N)
        await until_all_routed(redis_client, keys, cids)
        assert failures == 1
        assert set((await statuses(redis_client, keys, cids)).values()) == {"routed"}
        items = await drain(amqp, rt.names.team_queue("ommen", "burgerzaken"), settle=0.3)
        assert collections.Counter(m.message_id for m in items) == collections.Counter(cids)
        assert await redis_client.zcard(keys.team_items("ommen", "burgerzaken")) == N
        assert await redis_client.zcard(keys.routing_pending()) == 0
    finally:
        await rt.close()


async def test_a_batch_given_up_while_staging_leaves_no_claim_behind(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> None:
    """The connection goes while the store is down mid-staging (the claims taken, their reply lost):
    the batch is given up unpublished, its inputs return to the queue, and the router releases the claims
    its given-up attempt took, which no attempt of another router would settle (the router is alive)."""
    from router.core.ports import StoreUnavailable

    settings = settings.model_copy(update={"claim_lease_ms": 1000, "router_batch_size": 100})
    keys = Keys(settings.namespace)
    rt = await build(settings, with_router=True, embedded="never")
    assert isinstance(rt.router, AmqpRouter)
    store = rt.router.core.store
    claim = store.claim_and_index
    failing = asyncio.Event()

    async def down(*args: Any) -> None:  # Redis gone after it took the claims, before it replied
        if not failing.is_set():
            failing.set()
            await claim(*args)
        raise StoreUnavailable("injected")

    store.claim_and_index = down  # type: ignore[method-assign]
    await start(rt)
    try:
        await attached(rt)
        cids = await publish(amqp, rt.names, N)
        await asyncio.wait_for(failing.wait(), 20)
        attachment = rt.router._attached
        assert attachment is not None
        await attachment.connection.close()  # the connection goes while the batch waits for the store
        await asyncio.sleep(0.3)
        store.claim_and_index = claim  # type: ignore[method-assign]
        await until_all_routed(redis_client, keys, cids)
        assert set((await statuses(redis_client, keys, cids)).values()) == {"routed"}
        items = await drain(amqp, rt.names.team_queue("ommen", "burgerzaken"), settle=0.3)
        assert collections.Counter(m.message_id for m in items) == collections.Counter(cids)
        assert await redis_client.zcard(keys.team_items("ommen", "burgerzaken")) == N
        assert await redis_client.zcard(keys.routing_pending()) == 0
    finally:
        await rt.close()


async def test_a_router_settled_as_gone_while_it_lives_goes_on_under_a_new_id(
    settings: Settings,
    amqp: aio_pika.abc.AbstractConnection,
    redis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store is away from one router long enough for its heartbeat to expire, and another router
    settles its claims from its marker queue (and deletes the queue). Then the first router's store comes
    back. Its id must be finished: under the old id, the markers of its later batches went to a queue
    that was gone, and the settlement recorded for that id was taken as complete, so that when the router
    died with a batch committed but not recorded, that batch's contacts were released instead of routed
    and stayed `routing` for good (seen on a Redis Cluster, RELIABILITY.md)."""
    from router.amqp import consumer
    from router.core.ports import StoreUnavailable

    monkeypatch.setattr(consumer, "HEARTBEAT_INTERVAL", 0.2)
    monkeypatch.setattr(consumer, "HEARTBEAT_TTL_MS", 1000)
    monkeypatch.setattr(consumer, "HEARTBEAT_STALE", 0.5)
    settings = settings.model_copy(update={"claim_lease_ms": 1000, "router_batch_size": 100})
    keys = Keys(settings.namespace)
    first = await build(settings, with_router=True, embedded="never")
    second = await build(settings, with_router=True, embedded="never")
    third: Runtime | None = None
    assert isinstance(first.router, AmqpRouter) and first.router.repair is not None
    repair = first.router.repair
    heartbeat, release = repair.heartbeat, repair.release
    try:
        await start(first)
        await attached(first)
        routed_before = await publish(amqp, first.names, N)
        await until_all_routed(redis_client, keys, routed_before)
        original_id = first.router.router_id

        async def down(*_: Any) -> bool:
            raise StoreUnavailable("injected")

        # The store away for the first router's heartbeat and releases: the heartbeat expires, and a
        # batch it claims meanwhile is neither committed (stale) nor released by itself.
        repair.heartbeat = down  # type: ignore[method-assign]
        repair.release = down  # type: ignore[method-assign]
        await asyncio.sleep(1.5)
        while_away = await publish(amqp, first.names, N)
        for _ in range(100):
            if "routing" in (await statuses(redis_client, keys, while_away)).values():
                break
            await asyncio.sleep(0.1)
        await start(second)  # settles the first router's claims: the router looks gone
        await until_all_routed(redis_client, keys, while_away)
        assert await repair.committed_batches(original_id) is not None, "the first router was settled"

        # The store is back for the first router; then it dies with a batch committed, not recorded.
        repair.heartbeat = heartbeat  # type: ignore[method-assign]
        repair.release = release  # type: ignore[method-assign]
        await second.close()
        stuck = asyncio.Event()

        async def hang(*_: Any) -> None:
            stuck.set()
            await asyncio.Event().wait()

        first.router.core.after_commit = hang  # type: ignore[method-assign]
        last = await publish(amqp, first.names, N)
        await asyncio.wait_for(stuck.wait(), 30)
        await asyncio.sleep(0.5)
        assert "routing" in (await statuses(redis_client, keys, last)).values()
        assert first.router.router_id != original_id, "the settled id is not used again"
        await die(first, redis_client, keys)

        third = await build(settings, with_router=True, embedded="never")
        await start(third)
        everything = routed_before + while_away + last
        await until_all_routed(redis_client, keys, everything)
        assert set((await statuses(redis_client, keys, everything)).values()) == {"routed"}
        items = await drain(amqp, first.names.team_queue("ommen", "burgerzaken"), settle=0.3)
        assert collections.Counter(m.message_id for m in items) == collections.Counter(everything)
    finally:
        for rt in (third, second, first):
            if rt is not None:
                with contextlib.suppress(Exception):
                    await rt.close()
