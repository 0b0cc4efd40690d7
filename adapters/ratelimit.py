"""Token buckets for the web form: per client address and tenant, in Redis (shared by every API
instance) or in memory (embedded mode). Client addresses are personal data: keys hold a hash."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int  # whole seconds until one token is back; 0 when allowed


class RateLimiter(Protocol):
    async def take(self, key: str) -> Verdict: ...


def bucket_key(tenant: str, address: str) -> str:
    return hashlib.sha256(f"{tenant}\x1f{address}".encode()).hexdigest()[:32]


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
    def __init__(self, client: aioredis.Redis, prefix: str, capacity: int, window_seconds: float):
        self.client = client
        self.prefix = prefix
        self.capacity = capacity
        self.per_ms = capacity / (window_seconds * 1000)
        self._script = client.register_script(_TAKE)

    async def take(self, key: str) -> Verdict:
        now = int(time.time() * 1000)
        allowed, tokens = await self._script(
            keys=[f"{self.prefix}webform:rate:{key}"], args=[self.capacity, self.per_ms, now]
        )
        return _verdict(bool(int(allowed)), float(tokens), self.per_ms)


@dataclass
class MemoryRateLimiter:
    capacity: int
    window_seconds: float
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    async def take(self, key: str) -> Verdict:
        per_ms = self.capacity / (self.window_seconds * 1000)
        now = time.monotonic() * 1000
        tokens, ts = self.buckets.get(key, (float(self.capacity), now))
        tokens = min(self.capacity, tokens + max(0.0, now - ts) * per_ms)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self.buckets[key] = (tokens, now)
        return _verdict(allowed, tokens, per_ms)


def _verdict(allowed: bool, tokens: float, per_ms: float) -> Verdict:
    if allowed:
        return Verdict(True, 0)
    return Verdict(False, max(1, math.ceil((1 - tokens) / per_ms / 1000)))
