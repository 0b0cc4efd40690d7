"""What a routed contact adds to the store's indexes, as a list of writes that either a pipeline or a
claim script carries out.

On a standalone Redis the writes travel inside the contact's claim (CLAIM_STAGE_INDEX in
router/redis/store.py) and run only when the claim is taken: one round trip per batch instead of two,
which is a fifth of the router's time per batch at low load. On a Redis Cluster they span slots (team
lists, references, timers, resident indexes), which no script may, so they follow the claims in a
pipeline of their own (`to_pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from router.core.clock import epoch_ms
from router.core.erasure import identities_of_json
from router.core.messages import dumps
from router.core.ports import Staged
from router.redis.client import queue_script
from router.redis.heads import head_of
from router.redis.keys import Keys

# Field of a contact's hash: the names of the keys written for the contact outside its own hash slot
# (reference, threads, resident index), JSON {"strings": [...], "sets": [...]}; router/redis/privacy.py.
INDEX_KEYS = "index_keys"

# Write operations, as the claim script knows them (OPS_LUA).
SET, SADD, ZADD, ZADD_NX, HSET, JOIN = "SET", "SADD", "ZADD", "ZADDNX", "HSET", "JOIN"


@dataclass(frozen=True, slots=True)
class Write:
    op: str
    keys: tuple[str, ...]
    # SET: (value,); SADD: members; ZADD/ZADDNX: member, score pairs flattened; HSET: field, value pairs
    # flattened; JOIN: (reply id, history event).
    args: tuple[Any, ...]


def writes_of(keys: Keys, item: Staged, now_ms: int) -> list[Write]:
    """Everything `item` adds to the indexes once it is claimed: its place in team lists (and their
    heads), its reference and mail threads, its timers, what retention and erasure need, a reply's join
    of the contact it answers, and its entry in the list of claims that are not yet committed."""
    out: list[Write] = []
    listed = list(item.listed)
    if item.team_score_ms is not None:
        listed.append((item.team, item.cid, item.team_score_ms))
    for team, member, score in listed:
        out.append(Write(ZADD, (keys.team_items(item.tenant, team),), (member, score)))
        if (head := head_of(member, score, item.fields, item.callbacks)) is not None:
            out.append(Write(HSET, (keys.team_heads(item.tenant, team),), (member, head)))
    reference = keys.reference(item.reference)
    out.append(Write(SET, (reference,), (item.cid,)))
    threads = [keys.thread(item.tenant, message_id) for message_id in item.thread_ids]
    out += [Write(SET, (key,), (item.thread_target or item.cid,)) for key in threads]
    out += _for_erasure(keys, item, [reference, *threads])
    for member, score in item.timers:
        out.append(Write(ZADD, (keys.timers(),), (member, score)))
    if (j := item.join) is not None:
        out.append(Write(JOIN, (keys.contact(j.target), keys.history(j.target)), (item.cid, j.event)))
        # Back on the list if it was closed; an open contact keeps its place.
        out.append(Write(ZADD_NX, (keys.team_items(j.tenant, j.team),), (j.target, j.score_ms)))
    out.append(Write(ZADD, (keys.routing_pending(),), (item.cid, now_ms)))
    return out


def _for_erasure(keys: Keys, item: Staged, strings: list[str]) -> list[Write]:
    """What retention and erasure need (router/redis/privacy.py): the contact in its resident's index by
    address and number (keyed hashes), a contact closed at once (a phone note answered) in the tenant's
    closed index, and in the contact's hash the names of the keys written for it, so they can be removed
    later even when the key secret or the key scheme changed meanwhile."""
    identities = identities_of_json(item.fields.get("contact"))
    residents = [keys.resident(item.tenant, kind, value) for kind, value in identities]
    out = [Write(SADD, (key,), (item.cid,)) for key in residents]
    if item.final_status == "closed" and (closed_at := item.fields.get("closed_at")):
        closed = epoch_ms(datetime.fromisoformat(closed_at))
        out.append(Write(ZADD, (keys.closed(item.tenant),), (item.cid, closed)))
    recorded = dumps({"strings": strings, "sets": residents})
    out.append(Write(HSET, (keys.contact(item.cid),), (INDEX_KEYS, recorded)))
    return out


def to_pipeline(pipe: Any, writes: list[Write], join_sha: str) -> None:
    """Queue `writes` in a pipeline: one ZADD and one HSET per key for the whole batch, not one per
    write, since every command costs a reply to parse (a later score or value for the same member wins
    either way, as it would write by write). They go last, after the writes that are not merged."""
    merged: dict[tuple[str, str], dict[Any, Any]] = {}
    for w in writes:
        if w.op in (ZADD, HSET):
            pairs = merged.setdefault((w.op, w.keys[0]), {})
            for i in range(0, len(w.args), 2):
                pairs[w.args[i]] = w.args[i + 1]
        elif w.op == SET:
            pipe.set(w.keys[0], w.args[0])
        elif w.op == SADD:
            pipe.sadd(w.keys[0], *w.args)
        elif w.op == ZADD_NX:
            pipe.zadd(w.keys[0], {w.args[0]: w.args[1]}, nx=True)
        elif w.op == JOIN:
            queue_script(pipe, join_sha, len(w.keys), *w.keys, *w.args)
        else:
            raise ValueError(f"unknown write {w.op}")
    for (op, key), pairs in merged.items():
        if op == ZADD:
            pipe.zadd(key, pairs)
        else:
            pipe.hset(key, mapping=pairs)


def to_script_args(writes: list[Write], first_key: int) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV for OPS_LUA: per write its name, how many keys and their positions in KEYS (the
    first of them at `first_key`), how many arguments and the arguments. ZADD's arguments are turned
    into Redis's order (score, member)."""
    keys: list[str] = []
    argv: list[Any] = []
    for w in writes:
        args: tuple[Any, ...] = w.args
        if w.op in (ZADD, ZADD_NX):
            args = tuple(x for i in range(0, len(args), 2) for x in (args[i + 1], args[i]))
        argv += [w.op, len(w.keys)]
        for key in w.keys:
            argv.append(first_key + len(keys))
            keys.append(key)
        argv.append(len(args))
        argv += args
    return keys, argv


# A reply joins the contact it answers, once per reply; a reply to a closed contact reopens it. A Lua
# function, so that the JOIN script and the claim script's writes share it.
JOIN_LUA = """
local function join(contact, history, reply_id, event)
  if redis.call('HSETNX', contact, 'reply:' .. reply_id, '1') == 0 then return 0 end
  redis.call('RPUSH', history, event)
  redis.call('HINCRBY', contact, 'version', 1)
  if redis.call('HGET', contact, 'status') == 'closed' then
    redis.call('HSET', contact, 'status', 'routed')
    redis.call('HDEL', contact, 'closed_at', 'resolution')
    return 2
  end
  return 1
end
"""

# Carries out the writes that `to_script_args` encoded, from ARGV[i] on.
OPS_LUA = (
    JOIN_LUA
    + """
local function run_writes(i)
  while i <= #ARGV do
    local op = ARGV[i]
    local nkeys = tonumber(ARGV[i + 1])
    i = i + 2
    local k = {}
    for n = 1, nkeys do k[n] = KEYS[tonumber(ARGV[i])]; i = i + 1 end
    local nargs = tonumber(ARGV[i])
    local a = {}
    for n = 1, nargs do a[n] = ARGV[i + n] end
    i = i + nargs + 1
    if op == 'JOIN' then join(k[1], k[2], a[1], a[2])
    elseif op == 'ZADDNX' then redis.call('ZADD', k[1], 'NX', unpack(a))
    elseif op == 'SET' or op == 'SADD' or op == 'ZADD' or op == 'HSET' then redis.call(op, k[1], unpack(a))
    else error('unknown write ' .. tostring(op)) end
  end
end
"""
)
