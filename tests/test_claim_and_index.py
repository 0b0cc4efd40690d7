"""Claim and index in one round trip (standalone Redis) writes exactly what claim, then index (the path
a Redis Cluster takes) writes; and a contact whose claim is not taken is not indexed."""

from __future__ import annotations

import json
import uuid
from typing import Any

from router.core.casework import callback_id
from router.core.ports import Join, Staged
from router.redis.keys import Keys
from router.redis.store import RedisStore

NOW_MS = 1_780_000_000_000


def batch() -> list[Staged]:
    """Three contacts with every kind of index write: a phone note with a callback request, closed at
    once; a mail with threads; a reply that joins the first."""
    first, second, third = (str(uuid.UUID(int=n)) for n in (1, 2, 3))
    sender = json.dumps({"sender": {"email": "Iemand@Example.nl", "phone": "06 12345678"}})
    fields = {"tenant": "ommen", "team": "burgerzaken", "channel": "phone", "category": "paspoort"}
    cb = callback_id(first, 1)
    return [
        Staged(
            cid=first, tenant="ommen", team="burgerzaken", token="r1.1",
            fields={**fields, "contact": sender, "closed_at": "2026-05-04T10:00:00+00:00"},
            history=['{"event":"contact.routed"}'], reference="OM-1", team_score_ms=None,
            timers=[(f"{cb}|callback|warning", NOW_MS + 1000), (f"{cb}|callback|breach", NOW_MS + 2000)],
            callbacks={1: {"status": "open", "channel": "phone", "created_at": "2026-05-04T10:00:00+00:00"}},
            listed=[("burgerzaken", cb, NOW_MS + 2000)], final_status="closed",
        ),
        Staged(
            cid=second, tenant="ommen", team="belastingen", token="r1.1",
            fields={**fields, "channel": "email", "contact": sender}, history=['{"event":"contact.routed"}'],
            reference="OM-2", team_score_ms=NOW_MS + 5000,
            timers=[(f"{second}|answer|breach", NOW_MS + 5000)], thread_ids=["<a@x>", "<b@x>"],
        ),
        Staged(
            cid=third, tenant="ommen", team="burgerzaken", token="r1.1", fields=fields,
            history=['{"event":"contact.reply_joined"}'], reference="OM-3", team_score_ms=None,
            thread_ids=["<c@x>"], thread_target=first, final_status="merged",
            join=Join(first, "ommen", "burgerzaken", '{"event":"contact.reply"}', NOW_MS + 7000),
        ),
    ]  # fmt: skip


async def dump(r: Any, prefix: str) -> dict[str, Any]:
    """Every key under `prefix` with its value, without the prefix (in names and values), the lease's
    expiry and the scores of the pending list (both the time of the call)."""
    out: dict[str, Any] = {}

    def plain(b: bytes) -> str:
        return b.decode().replace(prefix, "")

    async for raw in r.scan_iter(match=f"{prefix}*", count=1000):
        key = raw.decode()
        name = key.removeprefix(prefix)
        kind = (await r.type(key)).decode()
        if kind == "hash":
            value: Any = {plain(k): plain(v) for k, v in (await r.hgetall(key)).items()}
            value.pop("lease_until", None)
        elif kind == "zset":
            value = sorted((plain(m), s) for m, s in await r.zrange(key, 0, -1, withscores=True))
            if name == "routing:pending":
                value = sorted(m for m, _ in value)
        elif kind == "set":
            value = sorted(plain(m) for m in await r.smembers(key))
        elif kind == "list":
            value = [plain(m) for m in await r.lrange(key, 0, -1)]
        else:
            value = plain(await r.get(key))
        out[name] = value
    return out


async def test_one_round_trip_writes_what_claim_then_index_writes(redis_client: Any, namespace: str) -> None:
    one = RedisStore(redis_client, Keys(f"{namespace}one."))
    two = RedisStore(redis_client, Keys(f"{namespace}two."))
    items = batch()
    assert await one.claim_and_index(items, 5000) == [("ok", "")] * 3
    assert await two.claim_and_stage(items, 5000) == [("ok", "")] * 3
    await two.index(items)
    written = await dump(redis_client, f"{namespace}one.")
    assert written == await dump(redis_client, f"{namespace}two.")
    # What the comparison rests on: every kind of write is there.
    first, second, third = (i.cid for i in items)
    assert written["team:{ommen}:burgerzaken:open"] == [
        (first, NOW_MS + 7000), (f"{first}-cb1", NOW_MS + 2000)
    ]  # fmt: skip
    assert set(written["team:{ommen}:burgerzaken:heads"]) == {f"{first}-cb1"}
    assert [m for m, _ in written["team:{ommen}:belastingen:open"]] == [second]
    assert set(json.loads(written[f"contact:{{{first}}}"]["index_keys"])) == {"strings", "sets"}
    assert written[f"contact:{{{first}}}:history"] == ['{"event":"contact.reply"}']
    assert written[f"contact:{{{first}}}"][f"reply:{third}"] == "1"
    assert written["ref:OM-2"] == second
    assert len([k for k in written if k.startswith("thread:ommen:")]) == 3
    assert len([k for k in written if k.startswith("resident:{ommen}:")]) == 2
    assert len(written["{timers}:due"]) == 3
    assert written["routing:pending"] == sorted([first, second, third])
    assert [m for m, _ in written["closed:{ommen}"]] == [first]
    # Again with the same token (a batch staged again after the store was away): nothing changes.
    assert await one.claim_and_index(items, 5000) == [("ok", "")] * 3
    assert await dump(redis_client, f"{namespace}one.") == written


async def test_a_contact_whose_claim_is_not_taken_is_not_indexed(redis_client: Any, namespace: str) -> None:
    store = RedisStore(redis_client, Keys(f"{namespace}x."))
    items = batch()
    held = items[1]
    assert await store.claim_and_stage([held], 60_000) == [("ok", "")]
    before = await dump(redis_client, f"{namespace}x.")
    retry = [Staged(**{**vars(i), "token": "r2.7"}) for i in items]
    claims = await store.claim_and_index(retry, 60_000)
    assert claims == [("ok", ""), ("busy", "r1.1"), ("ok", "")]
    after = await dump(redis_client, f"{namespace}x.")
    assert "ref:OM-2" not in after and "ref:OM-1" in after
    assert [m for m, _ in after.get("team:{ommen}:belastingen:open", [])] == []
    assert held.cid not in after["routing:pending"]
    assert after[f"contact:{{{held.cid}}}"] == before[f"contact:{{{held.cid}}}"]
