"""The deadline scheduler: fires due timers as `deadline.warning` / `deadline.breached` events and
publishes breaches to `escalations.<tenant>`.

Timers live in a Redis sorted set scored by due time. A scheduler claims due timers atomically (Lua):
a claimed timer moves to a second set scored by when the claim lapses, and leaves it only after its
messages were confirmed by the broker. So several schedulers never fire one timer twice in normal
operation, and a scheduler that dies mid-fire leaves a claim that lapses and is fired again by
another: once more at worst, never zero times. Timers of closed items, met deadlines and closed
callback requests are dropped when they come due.

The scheduler also relays outbox entries that an API process left unpublished (see
router/core/casework_service.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime

from router import logs
from router.core.casework import parse_callback_id
from router.core.casework_service import Casework
from router.core.clock import Clock, epoch_ms
from router.core.deadlines import breach_messages
from router.core.ports import Outbound
from router.core.topology import Names
from router.redis.client import UNAVAILABLE, RedisClient
from router.redis.keys import Keys

log = logs.get("router.redis.scheduler")

# KEYS[1] due timers, KEYS[2] claimed timers (one hash slot). ARGV: logical now (ms), lease (ms), limit.
# Lapsed claims come first: their scheduler died before it finished.
CLAIM = """
local t = redis.call('TIME')
local wall = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_until = wall + tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local out = {}
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', wall, 'LIMIT', 0, limit)
for _, m in ipairs(lapsed) do
  redis.call('ZADD', KEYS[2], lease_until, m)
  table.insert(out, m)
end
if #out < limit then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit - #out)
  for i = 1, #due, 2 do
    redis.call('ZREM', KEYS[1], due[i])
    redis.call('ZADD', KEYS[2], lease_until, due[i])
    redis.call('HSET', KEYS[3], due[i], due[i + 1])
    table.insert(out, due[i])
  end
end
return out
"""

_ERRORS = UNAVAILABLE


class Scheduler:
    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        names: Names,
        casework: Casework,
        outbound: Outbound,
        clock: Clock,
        *,
        lease_ms: int = 30_000,
        batch: int = 200,
        interval: float = 0.5,
        relay_after_ms: int = 10_000,
    ):
        self.r = client
        self.keys = keys
        self.names = names
        self.casework = casework
        self.outbound = outbound
        self.clock = clock
        self.lease_ms = lease_ms
        self.batch = batch
        self.interval = interval
        self.relay_after_ms = relay_after_ms
        self.fired = 0
        self._claim = self.r.register_script(CLAIM)
        self._stop = asyncio.Event()

    def _due_scores_key(self) -> str:
        # Due time of each claimed timer, so an event can say when the deadline was.
        return f"{self.keys.timer_claims()}:due"

    async def tick(self) -> int:
        """Claim and fire what is due now; returns how many timers fired."""
        now = self.clock.now()
        members = await self._claim(
            keys=[self.keys.timers(), self.keys.timer_claims(), self._due_scores_key()],
            args=[epoch_ms(now), self.lease_ms, self.batch],
        )
        fired = 0
        for raw in members:
            member = raw.decode()
            if await self._fire(member, now):
                fired += 1
            async with self.r.pipeline(transaction=False) as pipe:
                pipe.zrem(self.keys.timer_claims(), member)
                pipe.hdel(self._due_scores_key(), member)
                await pipe.execute()
        self.fired += fired
        return fired

    async def _fire(self, member: str, now: datetime) -> bool:
        """Publish the timer's messages; False when the timer turned out to be moot (item closed)."""
        try:
            subject, kind, phase = member.split("|")
        except ValueError:
            log.warning("timer_malformed_dropped", member=member[:100])
            return False
        parsed = parse_callback_id(subject)
        cid = parsed[0] if parsed else subject
        state = await self.casework.load(cid)
        if state is None or "tenant" not in state.fields:
            return False
        team = state.fields.get("team")
        callback = None
        if parsed is not None:
            callback = state.callbacks.get(parsed[1])
            if callback is None or callback.get("status") != "open":
                return False
            team = callback["team"]
        elif state.status == "closed" or state.fields.get(f"met:{kind}"):
            return False
        raw_due = await self.r.hget(self._due_scores_key(), member)
        due = datetime.fromtimestamp(float(raw_due) / 1000, tz=UTC) if raw_due else None
        messages = breach_messages(
            self.names,
            now,
            tenant=state.tenant,
            contact_id=cid,
            callback_id=subject if parsed else None,
            kind=kind,
            team=team,
            due=due,
            reference=json.loads(state.fields.get("contact", "{}")).get("reference"),
            phase=phase,
        )
        for message in messages:
            await self.outbound.publish(message)
        if phase == "breach":
            await self.r.rpush(
                self.keys.history(cid),
                json.dumps(
                    {
                        "event": "deadline.breached",
                        "at": now.isoformat(),
                        "kind": kind,
                        "callback_id": subject if parsed else None,
                        "due": due.isoformat() if due else None,
                    }
                ),
            )
        log.info("timer_fired", contact_id=cid, kind=kind, phase=phase, tenant=state.tenant)
        return True

    async def relay_outbox(self) -> int:
        """Publish outbox entries an API process left behind (it crashed, or the broker was away)."""
        cutoff = int(time.time() * 1000) - self.relay_after_ms
        cids: list[bytes] = await self.r.zrangebyscore(  # type: ignore[assignment]
            self.keys.outbox_pending(), "-inf", cutoff, start=0, num=100
        )
        sent = 0
        for raw in cids:
            sent += await self.casework.flush_outbox(raw.decode())
        return sent

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        last_relay = 0.0
        while not self._stop.is_set():
            try:
                await self.tick()
                if time.monotonic() - last_relay > 5:
                    await self.relay_outbox()
                    last_relay = time.monotonic()
            except _ERRORS as exc:
                log.warning("scheduler_store_unavailable", error=type(exc).__name__)
            except Exception as exc:
                # A broker hiccup: the claim lapses and the timer fires later.
                log.warning("scheduler_tick_failed", error=type(exc).__name__)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
