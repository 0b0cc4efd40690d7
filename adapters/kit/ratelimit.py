"""Token buckets for the web form, per client address and tenant: the port, and the in-memory one
(embedded mode, tests); `router.redis.ratelimit` shares them between API instances in Redis. Client
addresses are personal data: keys hold a hash."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int  # whole seconds until one token is back; 0 when allowed


class RateLimiter(Protocol):
    async def take(self, key: str) -> Verdict: ...


def bucket_key(tenant: str, address: str) -> str:
    return hashlib.sha256(f"{tenant}\x1f{address}".encode()).hexdigest()[:32]


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
        return verdict(allowed, tokens, per_ms)


def verdict(allowed: bool, tokens: float, per_ms: float) -> Verdict:
    if allowed:
        return Verdict(True, 0)
    return Verdict(False, max(1, math.ceil((1 - tokens) / per_ms / 1000)))
