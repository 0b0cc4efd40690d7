"""The state store on Redis. One pipeline per batch for each step; every script touches one hash slot."""

from __future__ import annotations

import json
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.keys import Keys
from router.store import ClaimStatus, ContactRecord, Staged, StoreUnavailable

# KEYS[1] contact hash. ARGV: token, lease_ms, then field/value pairs to stage.
CLAIM_AND_STAGE = """
if redis.call('HGET', KEYS[1], 'committed') == '1' then
  return {'dup', redis.call('HGET', KEYS[1], 'team') or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = redis.call('HGET', KEYS[1], 'lease')
if holder and holder ~= ARGV[1] then
  local lease_until = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
  if lease_until > now then return {'busy', holder} end
end
redis.call('HSET', KEYS[1], 'lease', ARGV[1], 'lease_until', now + tonumber(ARGV[2]))
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return {'ok', ''}
"""

# KEYS[1] contact hash, KEYS[2] history list. ARGV[1] history event.
COMMIT = """
if redis.call('HGET', KEYS[1], 'committed') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'committed', '1', 'status', 'routed')
redis.call('HDEL', KEYS[1], 'lease', 'lease_until')
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""

_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisStore:
    def __init__(self, client: aioredis.Redis, keys: Keys):
        self.r = client
        self.keys = keys
        self._claim = self.r.register_script(CLAIM_AND_STAGE)
        self._commit = self.r.register_script(COMMIT)

    @classmethod
    def from_url(cls, url: str, keys: Keys) -> RedisStore:
        # A blocking pool waits for a free connection instead of raising under load (STYLE.md).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=32, timeout=10, socket_timeout=5, socket_connect_timeout=3
        )
        return cls(aioredis.Redis(connection_pool=pool, decode_responses=False), keys)

    async def close(self) -> None:
        await self.r.aclose()

    async def ping(self) -> None:
        try:
            await self.r.ping()
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def claim_and_stage(self, items: list[Staged], lease_ms: int) -> list[tuple[ClaimStatus, str]]:
        if not items:
            return []
        try:
            async with self.r.pipeline(transaction=False) as pipe:
                for item in items:
                    argv: list[Any] = [item.token, lease_ms]
                    for k, v in item.fields.items():
                        argv += [k, v]
                    await self._claim(keys=[self.keys.contact(item.cid)], args=argv, client=pipe)
                raw = await pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [(cast(ClaimStatus, r[0].decode()), r[1].decode()) for r in raw]

    async def index(self, items: list[Staged]) -> None:
        if not items:
            return
        try:
            async with self.r.pipeline(transaction=False) as pipe:
                for item in items:
                    pipe.zadd(self.keys.team_items(item.tenant, item.team), {item.cid: item.team_score_ms})
                    pipe.set(self.keys.reference(item.reference), item.cid)
                    if item.timers:
                        pipe.zadd(self.keys.timers(), dict(item.timers))
                await pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def commit(self, items: list[Staged]) -> None:
        if not items:
            return
        try:
            async with self.r.pipeline(transaction=False) as pipe:
                for item in items:
                    await self._commit(
                        keys=[self.keys.contact(item.cid), self.keys.history(item.cid)],
                        args=[item.history_event],
                        client=pipe,
                    )
                await pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def get(self, cid: str) -> ContactRecord | None:
        try:
            async with self.r.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.keys.contact(cid))
                pipe.lrange(self.keys.history(cid), 0, -1)
                fields, history = await pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        if not fields:
            return None
        return ContactRecord(
            {k.decode(): v.decode() for k, v in fields.items()},
            [json.loads(h) for h in history],
        )

    async def resolve_reference(self, reference: str) -> str | None:
        try:
            raw = await self.r.get(self.keys.reference(reference))
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        if not raw:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)
