"""The state store on Redis. One pipeline per batch for each step; every script touches one hash slot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster

from router.core.ports import ClaimStatus, ContactRecord, Staged, StoreUnavailable
from router.redis.client import UNAVAILABLE, RedisClient, execute_pipeline, queue_script
from router.redis.indexing import INDEX_KEYS, JOIN_LUA, OPS_LUA, to_pipeline, to_script_args, writes_of
from router.redis.keys import Keys

__all__ = ["INDEX_KEYS", "RedisStore"]

# KEYS[1] contact hash, KEYS[2..] callback hashes of the contact (same slot). ARGV: token, lease_ms,
# then a counted group of field/value pairs for each key.
#
# The token names one attempt to route the contact (a router and its batch), never a message: a copy of
# the contact, whatever its message id, is another attempt. A live claim of another attempt: 'busy'
# (retry soon). A lapsed one: 'lapsed': that attempt's fate (committed by the broker or not) is unknown
# here, and the in-doubt repair settles it (AmqpRouter.reconcile): committed -> the contact is marked
# routed and this copy is a 'dup'; not committed -> the claim is released and this copy takes over.
CLAIM_LUA = """
local function claim(nstaged, first)
  if redis.call('HGET', KEYS[1], 'committed') == '1' then
    return {'dup', redis.call('HGET', KEYS[1], 'team') or ''}
  end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local holder = redis.call('HGET', KEYS[1], 'lease')
  if holder and holder ~= ARGV[1] then
    local lease_until = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
    if lease_until > now then return {'busy', holder} end
    return {'lapsed', holder}
  end
  redis.call('HSET', KEYS[1], 'lease', ARGV[1], 'lease_until', now + tonumber(ARGV[2]))
  local i = first
  for k = 1, nstaged do
    local n = tonumber(ARGV[i]); i = i + 1
    for _ = 1, n do redis.call('HSET', KEYS[k], ARGV[i], ARGV[i + 1]); i = i + 2 end
  end
  return {'ok', ''}, i
end
"""
CLAIM_AND_STAGE = CLAIM_LUA + "return (claim(#KEYS, 3))"

# The same claim, and for a contact it claims the writes to its indexes in the same call
# (router/redis/indexing.py): one round trip per batch on a standalone Redis. KEYS: the claim's keys
# (ARGV[3] of them), then the keys of the writes. ARGV: token, lease_ms, the number of the claim's keys,
# their field groups, then the writes.
CLAIM_STAGE_INDEX = (
    CLAIM_LUA
    + OPS_LUA
    + """
local status, i = claim(tonumber(ARGV[3]), 4)
if status[1] == 'ok' then run_writes(i) end
return status
"""
)

# KEYS[1] contact hash, KEYS[2] history list; ARGV[1] (optional) the token whose claim it must be.
# Whoever learns that the broker committed the contact's batch (its router, or the repair after that
# router is gone) marks it routed from what the claim staged: the final status and the history entries
# (one JSON document per line).
COMMIT = """
if redis.call('HGET', KEYS[1], 'committed') == '1' then return 0 end
if ARGV[1] and redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end
local final = redis.call('HGET', KEYS[1], '_final') or 'routed'
local history = redis.call('HGET', KEYS[1], '_history') or ''
local batch = redis.call('HGET', KEYS[1], 'lease') or ''
-- Which attempt the contact was committed from (a router and its batch): ids only, for the repair's
-- and an investigator's sake.
redis.call('HSET', KEYS[1], 'committed', '1', 'status', final, 'batch', batch)
redis.call('HDEL', KEYS[1], 'lease', 'lease_until', '_final', '_history')
for entry in string.gmatch(history, '[^\\n]+') do redis.call('RPUSH', KEYS[2], entry) end
return 1
"""

# KEYS[1] contact hash. ARGV[1] token. An attempt that was not committed gives its claim up.
RELEASE = """
if redis.call('HGET', KEYS[1], 'committed') == '1' then return 0 end
if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'lease', 'lease_until')
return 1
"""

# KEYS[1] target contact hash, KEYS[2] its history. ARGV: reply id, history event (indexing.JOIN_LUA).
JOIN = JOIN_LUA + "return join(KEYS[1], KEYS[2], ARGV[1], ARGV[2])"

# KEYS: resident index sets of one tenant (one hash slot, {<tenant>}). ARGV[1]: at most this many ids per
# key. The members of each key, in one reply for all of them: a batch asks once per tenant, not once per
# key. SRANDMEMBER with a positive count: the whole set when it is small (one resident's own), a bounded
# sample of a large one (an address many share).
RESIDENT_MEMBERS = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('SRANDMEMBER', KEYS[i], tonumber(ARGV[1])) end
return out
"""

# KEYS[1] the router's heartbeat, KEYS[2] the repair's lock on it, KEYS[3] its committed batches as
# found by a repair. ARGV[1] TTL ms. A router that others have begun to settle (or settled) as gone stays
# gone: it must take a new id, or its later commits would carry an id whose markers nobody reads again.
HEARTBEAT = """
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
"""

# KEYS[1] the heartbeat of the router to settle, KEYS[2] the lock. ARGV[1] TTL ms. Only a router without a
# heartbeat is settled, and from the lock on, HEARTBEAT refuses to bring it back.
LOCK_RESOLUTION = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""

_SCRIPTS = (CLAIM_AND_STAGE, CLAIM_STAGE_INDEX, COMMIT, JOIN, RELEASE, RESIDENT_MEMBERS)
_ERRORS = UNAVAILABLE
# Member of a router's committed-batches set that says the set is complete.
_RESOLVED = "*resolved*"


class RedisStore:
    def __init__(self, client: RedisClient, keys: Keys):
        self.r = client
        self.keys = keys
        self._claim = self.r.register_script(CLAIM_AND_STAGE)
        self._claim_and_index = self.r.register_script(CLAIM_STAGE_INDEX)
        self._commit = self.r.register_script(COMMIT)
        self._join = self.r.register_script(JOIN)
        self._release = self.r.register_script(RELEASE)
        self._resident_members = self.r.register_script(RESIDENT_MEMBERS)
        self._heartbeat = self.r.register_script(HEARTBEAT)
        self._lock_resolution = self.r.register_script(LOCK_RESOLUTION)

    async def close(self) -> None:
        await self.r.aclose()

    async def ping(self) -> None:
        try:
            await self.r.ping()
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _execute(self, fill: Callable[[Any], None]) -> list[Any]:
        return await execute_pipeline(self.r, fill, _SCRIPTS)

    async def claim_and_index(self, items: list[Staged], lease_ms: int) -> list[tuple[ClaimStatus, str]]:
        """Claim and stage each item and index those claimed: in one round trip on a standalone Redis
        (CLAIM_STAGE_INDEX), in two on a cluster, where the index writes span slots."""
        if not items:
            return []
        if isinstance(self.r, RedisCluster):
            claims = await self.claim_and_stage(items, lease_ms)
            claimed = [item for item, (status, _) in zip(items, claims, strict=True) if status == "ok"]
            await self.index(claimed)
            return claims
        now_ms = int(time.time() * 1000)

        def fill(pipe: Any) -> None:
            for item in items:
                keys, argv = self._claim_args(item, lease_ms)
                more_keys, writes = to_script_args(writes_of(self.keys, item, now_ms), len(keys) + 1)
                queue_script(
                    pipe, self._claim_and_index.sha, len(keys) + len(more_keys), *keys, *more_keys,
                    item.token, lease_ms, len(keys), *argv, *writes,
                )  # fmt: skip

        return await self._claims(items, fill)

    async def claim_and_stage(self, items: list[Staged], lease_ms: int) -> list[tuple[ClaimStatus, str]]:
        """Claim and stage each item (CLAIM_AND_STAGE), nothing more."""
        if not items:
            return []

        def fill(pipe: Any) -> None:
            for item in items:
                keys, argv = self._claim_args(item, lease_ms)
                queue_script(pipe, self._claim.sha, len(keys), *keys, item.token, lease_ms, *argv)

        return await self._claims(items, fill)

    def _claim_args(self, item: Staged, lease_ms: int) -> tuple[list[str], list[Any]]:
        """The claim's keys (the contact's hash, its callbacks' hashes: one slot) and a counted group of
        field/value pairs for each."""
        keys = [self.keys.contact(item.cid)]
        argv: list[Any] = []
        # What COMMIT needs, staged with the claim, so that anyone can finish the commit.
        staged = {**item.fields, "_final": item.final_status, "_history": "\n".join(item.history)}
        for key, fields in [(keys[0], staged)] + [
            (self.keys.callback(item.cid, n), cb) for n, cb in sorted(item.callbacks.items())
        ]:
            if key != keys[0]:
                keys.append(key)
            argv.append(len(fields))
            for k, v in fields.items():
                argv += [k, v]
        return keys, argv

    async def _claims(
        self, items: list[Staged], fill: Callable[[Any], None]
    ) -> list[tuple[ClaimStatus, str]]:
        try:
            raw = await self._execute(fill)
            claims = [(cast(ClaimStatus, r[0].decode()), r[1].decode()) for r in raw]
            lapsed = {
                item.cid: 0 for item, (status, _) in zip(items, claims, strict=True) if status == "lapsed"
            }
            if lapsed:  # for the repair to look at now, even if the attempt that holds it never listed it
                await self.r.zadd(self.keys.routing_pending(), lapsed)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return claims

    async def index(self, items: list[Staged]) -> None:
        """The index writes of claimed items in a pipeline (router/redis/indexing.py); idempotent."""
        if not items:
            return
        now_ms = int(time.time() * 1000)
        writes = [w for item in items for w in writes_of(self.keys, item, now_ms)]
        try:
            await self._execute(lambda pipe: to_pipeline(pipe, writes, self._join.sha))
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def commit(self, items: list[Staged]) -> None:
        if not items:
            return

        await self.commit_claimed([item.cid for item in items])

    async def commit_claimed(self, cids: list[str]) -> None:
        """Mark contacts routed from what their claims staged (idempotent)."""
        if not cids:
            return

        def fill(pipe: Any) -> None:
            for cid in cids:
                keys = [self.keys.contact(cid), self.keys.history(cid)]
                queue_script(pipe, self._commit.sha, len(keys), *keys)
            pipe.zrem(self.keys.routing_pending(), *cids)

        try:
            await self._execute(fill)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def commit_claims(self, claims: list[tuple[str, str]]) -> None:
        """Mark routed the contacts whose claim is still that attempt's (idempotent)."""
        if not claims:
            return

        def fill(pipe: Any) -> None:
            for cid, token in claims:
                keys = [self.keys.contact(cid), self.keys.history(cid)]
                queue_script(pipe, self._commit.sha, len(keys), *keys, token)

        try:
            await self._execute(fill)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def release(self, claims: list[tuple[str, str]]) -> None:
        """Give up the claims (contact id, token) of attempts the broker did not commit, so that the
        redelivered input (or a copy) takes the contact over."""
        if not claims:
            return

        def fill(pipe: Any) -> None:
            for cid, token in claims:
                queue_script(pipe, self._release.sha, 1, self.keys.contact(cid), token)
            pipe.zrem(self.keys.routing_pending(), *(cid for cid, _ in claims))

        try:
            await self._execute(fill)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def lapsed_claims(self, older_than_ms: int, limit: int = 500) -> list[tuple[str, str]]:
        """(contact id, token) of claims taken more than `older_than_ms` ago and not recorded as routed;
        entries that turn out settled (routed, or released and not claimed again) are dropped."""
        cutoff = int(time.time() * 1000) - older_than_ms
        try:
            raw: list[bytes] = await self.r.zrangebyscore(  # type: ignore[assignment]
                self.keys.routing_pending(), "-inf", cutoff, start=0, num=limit
            )
            cids = [c.decode() for c in raw]
            async with self.r.pipeline(transaction=False) as pipe:
                for cid in cids:
                    pipe.hmget(self.keys.contact(cid), ["committed", "lease"])
                rows = await pipe.execute()
            settled = [
                cid for cid, (committed, lease) in zip(cids, rows, strict=True) if committed or not lease
            ]
            if settled:
                await self.r.zrem(self.keys.routing_pending(), *settled)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [
            (cid, lease.decode())
            for cid, (committed, lease) in zip(cids, rows, strict=True)
            if not committed and lease
        ]

    async def heartbeat(self, router_id: str, ttl_ms: int) -> bool:
        keys = [
            self.keys.router_alive(router_id),
            self.keys.router_resolving(router_id),
            self.keys.router_committed(router_id),
        ]
        try:
            return bool(await self._heartbeat(keys=keys, args=[ttl_ms]))
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def forget_router(self, router_id: str) -> None:
        """A router that stops cleanly: nothing of it is left to repair."""
        try:
            await self.r.delete(self.keys.router_alive(router_id))
            await self.r.srem(self.keys.routers_known(), router_id)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def register_router(self, router_id: str) -> None:
        try:
            await self.r.sadd(self.keys.routers_known(), router_id)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def known_routers(self) -> set[str]:
        try:
            members: set[bytes] = await self.r.smembers(self.keys.routers_known())  # type: ignore[assignment]
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return {m.decode() for m in members}

    async def unregister_router(self, router_id: str) -> None:
        try:
            await self.r.srem(self.keys.routers_known(), router_id)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def alive(self, router_ids: list[str]) -> set[str]:
        try:
            async with self.r.pipeline(transaction=False) as pipe:
                for rid in router_ids:
                    pipe.exists(self.keys.router_alive(rid))
                found = await pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return {rid for rid, n in zip(router_ids, found, strict=True) if n}

    async def committed_batches(self, router_id: str) -> set[str] | None:
        """The committed batches of a router that is gone, once found out (None: not yet)."""
        try:
            members: set[bytes] = await self.r.smembers(self.keys.router_committed(router_id))  # type: ignore[assignment]
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        found = {m.decode() for m in members}
        return found - {_RESOLVED} if _RESOLVED in found else None

    async def record_committed_batches(self, router_id: str, batches: set[str]) -> None:
        try:
            key = self.keys.router_committed(router_id)
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.sadd(key, _RESOLVED, *batches)
                pipe.pexpire(key, 7 * 86_400_000)
                await pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def lock_resolution(self, router_id: str, ttl_ms: int) -> bool:
        try:
            keys = [self.keys.router_alive(router_id), self.keys.router_resolving(router_id)]
            return bool(await self._lock_resolution(keys=keys, args=[ttl_ms]))
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def find_threads(
        self, queries: list[tuple[str, list[str], list[str]]]
    ) -> list[dict[str, str] | None]:
        if not queries:
            return []
        try:
            async with self.r.pipeline(transaction=False) as pipe:
                for tenant, references, message_ids in queries:
                    for ref in references:
                        pipe.get(self.keys.reference(ref))
                    for mid in message_ids:
                        pipe.get(self.keys.thread(tenant, mid))
                found = await pipe.execute()
            targets: list[str | None] = []
            pos = 0
            for _tenant, references, message_ids in queries:
                n = len(references) + len(message_ids)
                hits = [h for h in found[pos : pos + n] if h]
                pos += n
                targets.append(hits[0].decode() if hits else None)
            async with self.r.pipeline(transaction=False) as pipe:
                for target in targets:
                    if target:
                        pipe.hmget(self.keys.contact(target), ["tenant", "team", "status", "committed"])
                rows = iter(await pipe.execute())
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        out: list[dict[str, str] | None] = []
        for (tenant, _r, _m), target in zip(queries, targets, strict=True):
            if not target:
                out.append(None)
                continue
            values = [v.decode() if v else "" for v in next(rows)]
            info = dict(zip(["tenant", "team", "status", "committed"], values, strict=True), id=target)
            # Only a routed contact of the same tenant can take a reply.
            out.append(info if info["tenant"] == tenant and info["committed"] == "1" else None)
        return out

    async def resident_contacts(
        self, queries: list[tuple[str, list[tuple[str, str]]]], fields: tuple[str, ...], per_key: int
    ) -> list[list[tuple[str, dict[str, str]]]]:
        if not any(ids for _, ids in queries):
            return [[] for _ in queries]
        # The keys of every query, per tenant (one script call each: one slot), in order.
        by_tenant: dict[str, list[str]] = {}
        for tenant, ids in queries:
            by_tenant.setdefault(tenant, []).extend(self.keys.resident(tenant, k, v) for k, v in ids)

        def fill(pipe: Any) -> None:
            for tenant_keys in by_tenant.values():
                queue_script(pipe, self._resident_members.sha, len(tenant_keys), *tenant_keys, per_key)

        try:
            replies = {t: iter(r) for t, r in zip(by_tenant, await self._execute(fill), strict=True)}
            members: list[list[str]] = []
            for tenant, ids in queries:
                seen: dict[str, None] = {}
                for _ in ids:
                    seen.update((m.decode(), None) for m in next(replies[tenant]))
                members.append(list(seen))
            unique = list(dict.fromkeys(cid for ms in members for cid in ms))
            rows: dict[str, dict[str, str]] = {}
            if unique:
                async with self.r.pipeline(transaction=False) as pipe:
                    for cid in unique:
                        pipe.hmget(self.keys.contact(cid), list(fields))
                    raw = await pipe.execute()
                for cid, values in zip(unique, raw, strict=True):
                    if any(values):
                        rows[cid] = {f: v.decode() for f, v in zip(fields, values, strict=True) if v}
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [[(cid, rows[cid]) for cid in ms if cid in rows] for ms in members]

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
