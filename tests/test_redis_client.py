"""The router's Redis client (router/redis/client.py) on a real server: its pipelines pack commands with
hiredis and read all replies under one deadline. What a caller must not notice: any reply differing from
redis-py's own client, or a pipeline that timed out leaving replies on the connection for the next one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import DataError

from router.redis.client import UNAVAILABLE, execute_pipeline
from router.redis.client import redis_client as router_client
from tests.conftest import REDIS_URL

SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]); return {ARGV[1], 7, redis.call('GET', KEYS[1])}"


def _fill(namespace: str, sha: str) -> Any:
    def fill(pipe: Any) -> None:
        pipe.set(f"{namespace}:a", "één")
        pipe.get(f"{namespace}:a")
        pipe.zadd(f"{namespace}:z", {"x": 1.5, "y": 2})
        pipe.zrange(f"{namespace}:z", 0, -1, withscores=True)
        pipe.hset(f"{namespace}:h", mapping={"k": b"\x00\xff", "n": 3})
        pipe.hgetall(f"{namespace}:h")
        pipe.get(f"{namespace}:missing")
        pipe.evalsha(sha, 1, f"{namespace}:s", "v")
        pipe.config_get("maxmemory-policy")

    return fill


async def test_replies_equal_redis_pys_own(redis_client: aioredis.Redis, namespace: str) -> None:
    """The same pipeline through the router's client and through redis-py's default one: the same
    replies, in order."""
    ours = redis_client_for_test()
    try:
        sha = await ours.script_load(SCRIPT)
        got = await execute_pipeline(ours, _fill(namespace, sha), [SCRIPT])
        await redis_client.delete(f"{namespace}:a", f"{namespace}:z", f"{namespace}:h", f"{namespace}:s")
        async with redis_client.pipeline(transaction=False) as pipe:
            _fill(namespace, sha)(pipe)
            expected = await pipe.execute()
        assert got == expected
        assert got[1] == "één".encode() and got[7] == [b"v", 7, b"v"]
    finally:
        await ours.aclose()


async def test_a_script_the_server_forgot_is_loaded_and_run(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """NOSCRIPT (a server restarted or flushed its scripts): the pipeline is loaded and run again."""
    ours = redis_client_for_test()
    try:
        sha = await ours.script_load(SCRIPT)
        await redis_client.script_flush()
        got = await execute_pipeline(
            ours,
            lambda pipe: (pipe.get(f"{namespace}:s"), pipe.evalsha(sha, 1, f"{namespace}:s", "w")),
            [SCRIPT],
        )
        assert got == [None, [b"w", 7, b"w"]]  # the first run's script never ran
    finally:
        await ours.aclose()


async def test_a_value_it_cannot_send_is_a_data_error(namespace: str) -> None:
    ours = redis_client_for_test()
    try:
        with pytest.raises(DataError):
            await execute_pipeline(ours, lambda pipe: pipe.set(f"{namespace}:a", {"no": "dict"}), [])
    finally:
        await ours.aclose()


async def test_a_stalled_pipeline_times_out_and_the_next_one_reads_its_own_replies(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """A server that stops answering (CLIENT PAUSE from another client): the pipeline gives up after its
    one deadline with an error the service treats as "Redis unavailable", not hanging for a deadline per
    reply; once the server answers again, the next pipeline on the same client gets its own replies,
    never the stalled one's."""
    ours = router_client(REDIS_URL, max_connections=1)  # one connection: the next pipeline reuses it
    try:
        await ours.set(f"{namespace}:before", "1")
        await redis_client.execute_command("CLIENT", "PAUSE", "7000", "WRITE")
        started = time.monotonic()
        try:
            with pytest.raises(UNAVAILABLE):
                await execute_pipeline(
                    ours, lambda pipe: [pipe.incr(f"{namespace}:n") for _ in range(200)], []
                )
            waited = time.monotonic() - started
        finally:
            await redis_client.execute_command("CLIENT", "UNPAUSE")
        assert 4.5 <= waited < 6.5, waited
        replies = await execute_pipeline(
            ours, lambda pipe: (pipe.get(f"{namespace}:before"), pipe.set(f"{namespace}:after", "2")), []
        )
        assert replies == [b"1", True]
        await asyncio.sleep(0)
        assert await redis_client.get(f"{namespace}:after") == b"2"
        # The stalled INCRs were sent and ran after UNPAUSE, or were dropped with the connection: never
        # half of them answered to the next caller.
        assert int(await redis_client.get(f"{namespace}:n") or 0) in (0, 200)
    finally:
        await ours.aclose()


def redis_client_for_test() -> aioredis.Redis:
    return router_client(REDIS_URL)
