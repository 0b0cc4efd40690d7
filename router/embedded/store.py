"""The embedded mode's store: the real Redis code (Lua scripts included) on an in-memory Redis.

One implementation of the store ports, not two: what the embedded mode shows is what production runs.
"""

from __future__ import annotations

import redis.asyncio as aioredis


def memory_redis() -> aioredis.Redis:
    """A Redis in this process's memory (fakeredis with Lua); nothing survives the process."""
    import fakeredis

    client: aioredis.Redis = fakeredis.FakeAsyncRedis()
    return client
