"""The web form's token buckets in Redis, shared by every API instance (the kit's RateLimiter port)."""

from __future__ import annotations

import time

from adapters.kit.ratelimit import Verdict, verdict
from router.redis.client import RedisClient
from router.redis.keys import Keys

# One key per bucket (cluster-safe): fields tokens and ts (ms). Refill, take one if possible, set a TTL
# of a full refill so idle buckets disappear.
_TAKE = """
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = capacity; ts = now end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * per_ms)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_ms) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter:
    def __init__(self, client: RedisClient, keys: Keys, capacity: int, window_seconds: float):
        self.client = client
        self.keys = keys
        self.capacity = capacity
        self.per_ms = capacity / (window_seconds * 1000)
        self._script = client.register_script(_TAKE)

    async def take(self, key: str) -> Verdict:
        now = int(time.time() * 1000)
        allowed, tokens = await self._script(
            keys=[self.keys.rate_bucket(key)], args=[self.capacity, self.per_ms, now]
        )
        return verdict(bool(int(allowed)), float(tokens), self.per_ms)
