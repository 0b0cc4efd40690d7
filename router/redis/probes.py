"""Redis's round trip and the open work, read on a metrics scrape (router/metrics/).

Per team of the rules (a bounded set): the items in its work list (ZCARD) and the callback requests
among them (a ZSCAN for members of the callback-id form, `<contact id>-cb<n>`: a contact id is exactly
36 characters, so the pattern cannot take one). Plus the timers due and not yet fired and the contacts
with outbox entries not yet published. Cached `ttl` seconds between scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from redis.exceptions import RedisError

from router import logs
from router.core.clock import Clock, epoch_ms
from router.core.metrics import (
    CALLBACKS_OPEN,
    DEPENDENCY_PING,
    DEPENDENCY_UP,
    OUTBOX_PENDING,
    TIMERS_DUE,
    WORK_ITEMS_OPEN,
    Sample,
)
from router.redis.client import RedisClient
from router.redis.keys import Keys

log = logs.get("router.redis.probes")

# The members of a work list that are callback requests (router.core.casework `callback_id`).
CALLBACK_MEMBERS = "?" * 36 + "-cb*"


class RedisProbe:
    ttl = 10.0

    def __init__(self, client: RedisClient, keys: Keys, teams: Mapping[str, Sequence[str]], clock: Clock):
        self.r = client
        self.keys = keys
        self.teams = [(tenant, team) for tenant, ids in sorted(teams.items()) for team in ids]
        self.clock = clock

    async def sample(self) -> list[Sample]:
        try:
            started = time.perf_counter()
            await self.r.ping()
            ping = time.perf_counter() - started
            async with self.r.pipeline(transaction=False) as pipe:
                for tenant, team in self.teams:
                    pipe.zcard(self.keys.team_items(tenant, team))
                pipe.zcount(self.keys.timers(), "-inf", epoch_ms(self.clock.now()))
                pipe.zcard(self.keys.outbox_pending())
                counts = await pipe.execute()
            out = [Sample(DEPENDENCY_UP, ("redis",), 1.0), Sample(DEPENDENCY_PING, ("redis",), ping)]
            for (tenant, team), items in zip(self.teams, counts, strict=False):
                callbacks = 0
                if items:
                    key = self.keys.team_items(tenant, team)
                    async for _ in self.r.zscan_iter(key, match=CALLBACK_MEMBERS, count=1000):
                        callbacks += 1
                out.append(Sample(WORK_ITEMS_OPEN, (tenant, team), float(items)))
                out.append(Sample(CALLBACKS_OPEN, (tenant, team), float(callbacks)))
            out.append(Sample(TIMERS_DUE, (), float(counts[-2])))
            out.append(Sample(OUTBOX_PENDING, (), float(counts[-1])))
            return out
        except (RedisError, OSError) as exc:
            log.warning("metrics_redis_probe_failed", error=type(exc).__name__)
            return [Sample(DEPENDENCY_UP, ("redis",), 0.0)]
