"""The case store on Redis: a contact's hash, history, callback hashes and outbox, changed atomically.

A change is applied by one Lua script over the contact's keys (one hash slot), only if the contact's
version is the one the decision was taken on; the work lists and timers follow in a second pipeline
(idempotent: set members with scores). A close also puts the contact in the tenant's closed index, where
the purge finds it (router/redis/privacy.py).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from router.core.casework import CaseState, Change, parse_callback_id
from router.core.clock import epoch_ms
from router.core.messages import OutMessage
from router.core.ports import StoreUnavailable
from router.core.worklist import HEAD_CALLBACK_FIELDS, HEAD_CONTACT_FIELDS, ItemHead, decode_head, item_head
from router.redis.client import UNAVAILABLE, RedisClient, execute_pipeline, queue_script
from router.redis.heads import head_of
from router.redis.keys import Keys

# KEYS[1] contact hash, KEYS[2] history, KEYS[3] outbox, KEYS[4..] callback hashes (same slot).
# ARGV: expected version, then counted groups: contact fields, history entries, outbox entries, and one
# field group per extra key. Returns the new version, or -1 when the contact changed meanwhile.
APPLY = """
local version = redis.call('HGET', KEYS[1], 'version')
if version ~= ARGV[1] then return -1 end
local i = 2
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('RPUSH', KEYS[2], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('RPUSH', KEYS[3], ARGV[i]); i = i + 1 end
for k = 4, #KEYS do
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do redis.call('HSET', KEYS[k], ARGV[i], ARGV[i + 1]); i = i + 2 end
end
local new = tonumber(version) + 1
redis.call('HSET', KEYS[1], 'version', new)
return new
"""

_ERRORS = UNAVAILABLE


def _decoded(row: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in row.items()}


class RedisCaseStore:
    def __init__(self, client: RedisClient, keys: Keys):
        self.r = client
        self.keys = keys
        self._apply = self.r.register_script(APPLY)

    async def load(self, cid: str) -> CaseState | None:
        try:
            raw: dict[bytes, bytes] = await self.r.hgetall(self.keys.contact(cid))  # type: ignore[assignment]
            if not raw:
                return None
            fields = _decoded(raw)
            callbacks: dict[int, dict[str, str]] = {}
            count = int(fields.get("callbacks", "0"))
            if count:
                async with self.r.pipeline(transaction=False) as pipe:
                    for n in range(1, count + 1):
                        pipe.hgetall(self.keys.callback(cid, n))
                    rows = await pipe.execute()
                callbacks = {n: _decoded(row) for n, row in enumerate(rows, start=1) if row}
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return CaseState(cid, fields, callbacks)

    async def history(self, cid: str) -> list[dict[str, Any]]:
        try:
            rows = await self.r.lrange(self.keys.history(cid), 0, -1)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [json.loads(r) for r in rows]

    def _apply_args(self, state: CaseState, change: Change) -> tuple[list[str], list[Any]]:
        keys = [self.keys.contact(state.cid), self.keys.history(state.cid), self.keys.outbox(state.cid)]
        args: list[Any] = [state.version, len(change.fields)]
        for k, v in change.fields.items():
            args += [k, v]
        args.append(len(change.history))
        args += [json.dumps(h, separators=(",", ":")) for h in change.history]
        args.append(len(change.outbox))
        args += [m.to_json() for m in change.outbox]
        for n, cb_fields in change.callbacks.items():
            keys.append(self.keys.callback(state.cid, n))
            args.append(len(cb_fields))
            for k, v in cb_fields.items():
                args += [k, v]
        return keys, args

    async def commit(self, state: CaseState, change: Change) -> bool:
        keys, args = self._apply_args(state, change)
        try:

            def fill(pipe: Any) -> None:
                queue_script(pipe, self._apply.sha, len(keys), *keys, *args)
                if change.outbox:
                    pipe.zadd(self.keys.outbox_pending(), {state.cid: int(time.time() * 1000)})
                if change.fields.get("status") == "closed" and (closed_at := change.fields.get("closed_at")):
                    # In the same round trip as the change, so that no closed contact escapes the purge;
                    # an entry for a change that lost its race is dropped by the purge, which re-reads.
                    score = epoch_ms(datetime.fromisoformat(closed_at))
                    pipe.zadd(self.keys.closed(state.tenant), {state.cid: score})

            # Run again after a NOSCRIPT: the change is version-checked, the set entries idempotent.
            result = (await execute_pipeline(self.r, fill, (APPLY,)))[0]
            if int(result) < 0:
                return False
            after = {**state.fields, **change.fields}
            callbacks = {n: {**state.callbacks.get(n, {}), **cb} for n, cb in change.callbacks.items()}
            callbacks = {**state.callbacks, **callbacks}
            async with self.r.pipeline(transaction=False) as pipe:
                for team, member in change.listed_remove:
                    pipe.zrem(self.keys.team_items(state.tenant, team), member)
                    pipe.hdel(self.keys.team_heads(state.tenant, team), member)
                for team, member, score in change.listed_add:
                    pipe.zadd(self.keys.team_items(state.tenant, team), {member: score})
                    if (head := head_of(member, score, after, callbacks)) is not None:
                        pipe.hset(self.keys.team_heads(state.tenant, team), member, head)
                    else:
                        pipe.hdel(self.keys.team_heads(state.tenant, team), member)
                if change.timers_remove:
                    pipe.zrem(self.keys.timers(), *change.timers_remove)
                if change.timers_add:
                    pipe.zadd(self.keys.timers(), change.timers_add)
                await pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return True

    async def outbox(self, cid: str) -> list[tuple[bytes, OutMessage]]:
        try:
            entries: list[bytes] = await self.r.lrange(self.keys.outbox(cid), 0, -1)  # type: ignore[assignment]
            if not entries:
                await self.r.zrem(self.keys.outbox_pending(), cid)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [(raw, OutMessage.from_json(raw)) for raw in entries]

    async def outbox_sent(self, cid: str, raw: bytes) -> None:
        try:
            await self.r.lrem(self.keys.outbox(cid), 1, raw)  # type: ignore[arg-type]
            if await self.r.llen(self.keys.outbox(cid)) == 0:
                await self.r.zrem(self.keys.outbox_pending(), cid)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def team_items(
        self, tenant: str, team: str, *, offset: int, limit: int
    ) -> list[tuple[str, float, dict[str, str], dict[str, str]]]:
        try:
            members: list[tuple[bytes, float]] = await self.r.zrange(  # type: ignore[assignment]
                self.keys.team_items(tenant, team), offset, offset + limit - 1, withscores=True
            )
            return await self._rows([(m.decode(), score) for m, score in members], None, None)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def team_item_heads(self, tenant: str, team: str) -> list[ItemHead]:
        """From the team's heads (router/redis/heads.py); members without a usable one from their own
        hashes."""
        try:
            async with self.r.pipeline(transaction=False) as pipe:
                pipe.zrange(self.keys.team_items(tenant, team), 0, -1, withscores=True)
                pipe.hgetall(self.keys.team_heads(tenant, team))
                members, heads = await pipe.execute()
            out: list[ItemHead | None] = []
            missing: list[tuple[int, str, float]] = []
            for raw_member, score in members:
                member = raw_member.decode()
                raw = heads.get(raw_member)
                head = decode_head(member, score, raw) if raw is not None else None
                if head is None:
                    missing.append((len(out), member, score))
                out.append(head)
            if missing:
                rows = await self._rows(
                    [(m, score) for _, m, score in missing], HEAD_CONTACT_FIELDS, HEAD_CALLBACK_FIELDS
                )
                read = {m: item_head(m, score, row, contact) for m, score, row, contact in rows}
                for i, member, _score in missing:
                    out[i] = read.get(member)
            return [h for h in out if h is not None]
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def items_of(
        self, members: list[tuple[str, float]]
    ) -> list[tuple[str, float, dict[str, str], dict[str, str]]]:
        try:
            return await self._rows(members, None, None)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _rows(
        self,
        members: list[tuple[str, float]],
        contact_fields: list[str] | None,
        callback_fields: list[str] | None,
    ) -> list[tuple[str, float, dict[str, str], dict[str, str]]]:
        """Each member's own hash, and a callback request's contact as well (what the agent needs to
        act): whole, or only the fields named (a contact's message is most of its hash)."""

        def read(pipe: Any, key: str, fields: list[str] | None) -> None:
            if fields is None:
                pipe.hgetall(key)
            else:
                pipe.hmget(key, fields)

        def decoded(raw: Any, fields: list[str] | None) -> dict[str, str]:
            if fields is None:
                return _decoded(raw)
            return {f: v.decode() for f, v in zip(fields, raw, strict=True) if v is not None}

        async with self.r.pipeline(transaction=False) as pipe:
            for m, _score in members:
                parsed = parse_callback_id(m)
                if parsed:
                    read(pipe, self.keys.callback(*parsed), callback_fields)
                    read(pipe, self.keys.contact(parsed[0]), contact_fields)
                else:
                    read(pipe, self.keys.contact(m), contact_fields)
            rows = iter(await pipe.execute())
        out = []
        for m, score in members:
            if parse_callback_id(m):
                row, contact = decoded(next(rows), callback_fields), decoded(next(rows), contact_fields)
            else:
                row = contact = decoded(next(rows), contact_fields)
            if row:
                out.append((m, score, row, contact))
        return out
