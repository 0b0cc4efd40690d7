"""Retention and erasure on Redis: everything the service keeps about a contact, found without scanning.

A contact lives in keys of its own hash slot (hash, history, outbox, callback hashes: `Keys.contact`
and the three beside it) and is named in shared ones: its reference and thread keys (`ref:`, `thread:`,
holding its id), its tenant's team work lists, the timers of its deadlines and callback requests, the
routing and outbox pending sets, the tenant's closed index and its resident's index by address and
number. `plan` lists all of them from the contact's hash (which records the names of the keys written
for it at routing time, `INDEX_KEYS`), so a purge or an erasure never walks the keyspace.

Removing a contact: the plan is written to `purge:pending` first; one Lua script deletes the contact's
own keys (for the purge only if it is still closed, at the same moment: a reply may have reopened it);
then the shared entries go, and the plan is dropped. A process stopped in between leaves the plan,
and the next purge or erasure finishes it. A reply joined to a contact (its own contact, status
`merged`) goes with it.

The closed index (`Keys.closed`) is written where contacts close (router/redis/casestore.py, and
router/redis/store.py for a phone note answered on the line); a reopened contact's entry is dropped
when the purge finds it. Contacts closed before the index existed are indexed by `reindex`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson
from redis.exceptions import NoScriptError

from router.core.casework import callback_id, timer_members
from router.core.clock import epoch_ms
from router.core.contact import reference_for
from router.core.erasure import identities
from router.core.ports import Removal, Subject
from router.core.retention import Period, RetentionPolicy
from router.core.tenants import ROUTING_DEADLINE_KINDS
from router.redis.client import RedisClient
from router.redis.keys import Keys
from router.redis.store import INDEX_KEYS

# KEYS: the contact's own keys (one slot), KEYS[1] its hash. ARGV[1]: '' (erasure: whatever its state)
# or the closed_at the purge decided on: then only if the contact is still closed since that moment.
DELETE_CONTACT = """
if ARGV[1] ~= '' then
  local status = redis.call('HGET', KEYS[1], 'status')
  if status ~= 'closed' or redis.call('HGET', KEYS[1], 'closed_at') ~= ARGV[1] then return -1 end
end
return redis.call('DEL', unpack(KEYS))
"""

# KEYS[1] a key holding a contact id (reference, thread); ARGV the ids it may hold to be deleted: a key
# that meanwhile names another contact stays.
DELETE_IF_NAMES = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
for i = 1, #ARGV do
  if v == ARGV[i] then return redis.call('DEL', KEYS[1]) end
end
return 0
"""

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Metadata of a contact naming the Message-IDs its thread keys hash (router/core/routing.py
# own_thread_ids); read here for contacts routed before their hash recorded its keys.
_THREAD_METADATA = ("thread.message_id", "thread.ack_message_id")
_PHASES = ("warning", "breach")


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class Plan:
    """Everything to remove for one contact."""

    cid: str
    own: list[str]  # the contact's own keys, one hash slot
    strings: list[str]  # keys holding the contact's id: deleted if they still do
    owners: list[str]  # the ids those keys may hold for this contact (its own; a reply's target)
    zsets: dict[str, list[str]] = field(default_factory=dict)  # sorted set -> members
    sets: dict[str, list[str]] = field(default_factory=dict)  # set -> members
    hash_fields: dict[str, list[str]] = field(default_factory=dict)  # hash -> fields
    replies: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Plan:
        return cls(**orjson.loads(raw))


class RedisPersonalData:
    """The `PersonalData` port (router/core/ports.py) on Redis: state store and case store."""

    name = "redis"

    def __init__(self, client: RedisClient, keys: Keys, teams: Mapping[str, list[str]], *, batch: int = 500):
        self.r = client
        self.keys = keys
        self.teams = {t: list(ids) for t, ids in teams.items()}
        self.batch = batch
        self._delete_contact = self.r.register_script(DELETE_CONTACT)
        self._delete_if = self.r.register_script(DELETE_IF_NAMES)

    # -- what a contact has ---------------------------------------------------------------------------

    async def _fields(self, cid: str) -> dict[str, str]:
        raw: dict[bytes, bytes] = await self.r.hgetall(self.keys.contact(cid))  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    def plan(self, cid: str, fields: Mapping[str, str], who: Subject | None = None) -> Plan:
        """What to remove for contact `cid` with hash `fields` (empty: the hash is gone already, and
        only the entries that can be named from the id and the subject are removed)."""
        k = self.keys
        tenant = fields.get("tenant") or (who.tenant if who else "")
        contact: dict[str, Any] = {}
        if fields.get("contact"):
            try:
                contact = orjson.loads(fields["contact"])
            except orjson.JSONDecodeError:
                contact = {}
        n = int(fields.get("callbacks") or 0)
        callbacks = [callback_id(cid, i) for i in range(1, n + 1)]
        recorded: dict[str, list[str]] = orjson.loads(fields[INDEX_KEYS]) if fields.get(INDEX_KEYS) else {}

        strings = set(recorded.get("strings", []))
        sets = set(recorded.get("sets", []))
        if tenant:
            strings.add(k.reference(reference_for(tenant, cid)))
            metadata = contact.get("metadata")
            if isinstance(metadata, dict):
                strings |= {k.thread(tenant, mid) for m in _THREAD_METADATA if (mid := metadata.get(m))}
            sets |= {k.resident(tenant, kind, value) for kind, value in identities(contact)}
            if not fields and who is not None:  # an id without its hash: whatever the subject names
                sets |= {k.resident(tenant, "email", e) for e in who.emails}
                sets |= {k.resident(tenant, "phone", p) for p in who.phones}

        deadlines = orjson.loads(fields["deadlines"]) if fields.get("deadlines") else []
        kinds = {d["kind"] for d in deadlines if isinstance(d, dict) and "kind" in d}
        timers = [m for kind in sorted(kinds | set(ROUTING_DEADLINE_KINDS)) for m in timer_members(cid, kind)]
        timers += [m for cb in callbacks for m in timer_members(cb, "callback")]

        zsets: dict[str, list[str]] = {
            k.timers(): timers,
            k.timer_claims(): timers,
            k.outbox_pending(): [cid],
            k.routing_pending(): [cid],
        }
        if tenant:
            zsets[k.closed(tenant)] = [cid]
            teams = set(self.teams.get(tenant, [])) | ({fields["team"]} if fields.get("team") else set())
            for team in sorted(teams):
                zsets[k.team_items(tenant, team)] = [cid, *callbacks]
        heads = {k.team_heads(tenant, team): [cid, *callbacks] for team in sorted(teams)} if tenant else {}
        return Plan(
            cid=cid,
            own=[
                k.contact(cid),
                k.history(cid),
                k.outbox(cid),
                *(k.callback(cid, i) for i in range(1, n + 1)),
            ],
            strings=sorted(strings),
            owners=[cid, *([fields["merged_into"]] if fields.get("merged_into") else [])],
            zsets=zsets,
            sets={key: [cid] for key in sorted(sets)},
            hash_fields={k.timer_claim_dues(): timers, **heads},
            replies=sorted(f.removeprefix("reply:") for f in fields if f.startswith("reply:")),
        )

    # -- removing -------------------------------------------------------------------------------------

    async def _remove(self, plan: Plan, removal: Removal, *, closed_at: str | None = None) -> bool:
        """Delete the contact's own keys (with `closed_at`: only if it is still closed since then), then
        its shared entries. False when it was not removed (reopened meanwhile)."""
        await self.r.hset(self.keys.purge_pending(), plan.cid, plan.to_json())
        deleted = int(await self._delete_contact(keys=plan.own, args=[closed_at or ""]))
        if deleted < 0:
            await self.r.hdel(self.keys.purge_pending(), plan.cid)
            return False
        removal.add("keys", deleted)
        await self._finish(plan, removal)
        return True

    async def _finish(self, plan: Plan, removal: Removal) -> None:
        """The shared entries of a contact whose own keys are gone; idempotent."""
        # (pipeline method, arguments): the reference and thread keys by script (EVALSHA routed by its
        # key, router/redis/client.py queue_script), then the index entries.
        steps: list[tuple[str, tuple[Any, ...]]] = [
            ("execute_command", ("EVALSHA", self._delete_if.sha, 1, key, *plan.owners))
            for key in plan.strings
        ]
        steps += [("zrem", (key, *members)) for key, members in plan.zsets.items() if members]
        steps += [("srem", (key, *members)) for key, members in plan.sets.items()]
        steps += [("hdel", (key, *names)) for key, names in plan.hash_fields.items() if names]
        results = await self._each_once(steps)
        n = len(plan.strings)
        removal.add("keys", sum(int(x) for x in results[:n]))
        removal.add("index entries", sum(int(x) for x in results[n:]))
        await self.r.hdel(self.keys.purge_pending(), plan.cid)

    async def _each_once(self, steps: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Each step's command in one pipeline without a transaction (one round trip per node), and
        the result of each as it ran. A server that does not know the script (restarted, flushed, a
        master new to the cluster) fails only those commands: the script is loaded (on every master)
        and only they run again, so that what the first round removed is counted once, not lost from
        the report as a plain retry of the whole pipeline would."""
        results: list[Any] = [None] * len(steps)
        todo = list(range(len(steps)))
        for attempt in (1, 2):
            async with self.r.pipeline(transaction=False) as pipe:
                for i in todo:
                    method, args = steps[i]
                    getattr(pipe, method)(*args)
                replies = await pipe.execute(raise_on_error=False)
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 1:
                    missing.append(i)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[i] = reply
            if not missing:
                return results
            await self.r.script_load(DELETE_IF_NAMES)
            todo = missing
        raise AssertionError("unreachable")

    async def finish_pending(self, removal: Removal) -> None:
        """Finish what a purge or an erasure stopped half-way left (the shared entries of contacts
        whose own keys it had deleted)."""
        pending: dict[bytes, bytes] = await self.r.hgetall(self.keys.purge_pending())  # type: ignore[assignment]
        for raw in pending.values():
            plan = Plan.from_json(raw)
            if await self.r.exists(plan.own[0]):
                # Stopped before its keys were deleted (or the contact came back, re-sent): nothing was
                # removed, so nothing is finished; the next purge or erasure decides again.
                await self.r.hdel(self.keys.purge_pending(), plan.cid)
                continue
            await self._finish(plan, removal)
            removal.contact_ids.add(plan.cid)

    async def _remove_with_replies(
        self,
        cid: str,
        fields: Mapping[str, str],
        removal: Removal,
        *,
        closed_at: str | None,
        who: Subject | None,
    ) -> bool:
        plan = self.plan(cid, fields, who)
        if not await self._remove(plan, removal, closed_at=closed_at):
            return False
        removal.contact_ids.add(cid)
        removal.add("contacts")
        for reply in plan.replies:
            reply_fields = await self._fields(reply)
            if reply_fields and await self._remove(self.plan(reply, reply_fields, who), removal):
                removal.contact_ids.add(reply)
                removal.add("replies")
        return True

    # -- erasure --------------------------------------------------------------------------------------

    async def find(self, who: Subject) -> set[str]:
        """The subject's contacts by reference and by address and number (the resident index), with
        the replies joined to them; never another tenant's."""
        k = self.keys
        async with self.r.pipeline(transaction=False) as pipe:
            for ref in sorted(who.references):
                pipe.get(k.reference(ref))
            for email in sorted(who.emails):
                pipe.smembers(k.resident(who.tenant, "email", email))
            for phone in sorted(who.phones):
                pipe.smembers(k.resident(who.tenant, "phone", phone))
            results = await pipe.execute()
        found: set[str] = set()
        for result in results:
            if isinstance(result, bytes):
                found.add(result.decode())
            elif isinstance(result, set):
                found |= {m.decode() for m in result}
        todo, out = sorted(found | who.contact_ids), set()
        while todo:
            cid = todo.pop()
            if cid in out:
                continue
            fields = await self._fields(cid)
            if fields.get("tenant") not in (None, who.tenant):
                continue
            out.add(cid)
            todo += [f.removeprefix("reply:") for f in fields if f.startswith("reply:")]
        return out

    async def erase(self, who: Subject) -> Removal:
        removal = Removal(self.name)
        await self.finish_pending(removal)
        for cid in sorted(who.contact_ids):
            fields = await self._fields(cid)
            if fields.get("tenant") not in (None, who.tenant):
                removal.add("skipped: another tenant's")
                continue
            if not fields:  # gone already; index entries may remain
                before = removal.counts.get("index entries", 0)
                await self._finish(self.plan(cid, {}, who), removal)
                if removal.counts.get("index entries", 0) > before:
                    removal.contact_ids.add(cid)
                continue
            await self._remove_with_replies(cid, fields, removal, closed_at=None, who=who)
        return removal

    # -- retention ------------------------------------------------------------------------------------

    async def purge(self, policy: RetentionPolicy, now: datetime, *, dry_run: bool) -> Removal:
        """Contacts closed longer than their tenant's `closed_contacts` term, with their replies."""
        removal = Removal(self.name, dry_run=dry_run)
        if not dry_run:
            await self.finish_pending(removal)
        for tenant in policy.tenants():
            await self._purge_tenant(tenant, policy.closed_contacts(tenant), now, removal, dry_run=dry_run)
        return removal

    async def _purge_tenant(
        self, tenant: str, term: Period, now: datetime, removal: Removal, *, dry_run: bool
    ) -> None:
        key = self.keys.closed(tenant)
        cutoff = epoch_ms(term.latest_start(now))
        offset = 0
        while True:
            page: list[tuple[bytes, float]] = await self.r.zrangebyscore(  # type: ignore[assignment]
                key, "-inf", cutoff, start=offset, num=self.batch, withscores=True
            )
            if not page:
                return
            async with self.r.pipeline(transaction=False) as pipe:
                for member, _ in page:
                    pipe.hmget(self.keys.contact(member.decode()), ["status", "closed_at"])
                rows = await pipe.execute()
            kept = 0
            for (member, score), (status, closed_at) in zip(page, rows, strict=True):
                cid = member.decode()
                kept += not await self._purge_one(
                    key, cid, int(score), _text(status), _text(closed_at), term, now, removal, dry_run=dry_run
                )
            offset += kept

    async def _purge_one(
        self,
        key: str,
        cid: str,
        score: int,
        status: str | None,
        closed_at: str | None,
        term: Period,
        now: datetime,
        removal: Removal,
        *,
        dry_run: bool,
    ) -> bool:
        """One candidate of the closed index; True when its entry left the index."""
        if status == "routing":  # closed on the line, its batch not yet recorded: later
            return False
        if status != "closed" or not closed_at:  # gone, or reopened by a reply: not closed any more
            if not dry_run:
                await self.r.zrem(key, cid)
            return not dry_run
        at = datetime.fromisoformat(closed_at)
        if epoch_ms(at) != score and not dry_run:  # closed again later: its entry follows
            await self.r.zadd(key, {cid: epoch_ms(at)})
        if not term.past(at, now):
            return False
        fields = await self._fields(cid)
        if dry_run:
            removal.contact_ids.add(cid)
            removal.add("contacts")
            replies = [f.removeprefix("reply:") for f in fields if f.startswith("reply:")]
            removal.contact_ids.update(replies)
            removal.add("replies", len(replies))
            return False
        return await self._remove_with_replies(cid, fields, removal, closed_at=closed_at, who=None)

    # -- contacts stored before the indexes -----------------------------------------------------------

    async def reindex(self) -> dict[str, int]:
        """Walk every contact once (SCAN) and write its closed-index and resident-index entries and its
        `INDEX_KEYS`: for contacts stored before this version. Idempotent."""
        counts = {"contacts": 0, "closed": 0, "resident entries": 0}
        # `contact:{*}` matches the contacts' own hashes, not their callback hashes (`...}:callback:n`).
        async for raw in self.r.scan_iter(match=self.keys.contact("*"), count=1000, _type="HASH"):
            name = raw.decode()
            cid = name[name.index("{") + 1 : name.rindex("}")]
            fields = await self._fields(cid)
            tenant = fields.get("tenant")
            if not tenant or not fields.get("contact"):
                continue
            counts["contacts"] += 1
            plan = self.plan(cid, fields)
            async with self.r.pipeline(transaction=False) as pipe:
                for key in plan.sets:
                    pipe.sadd(key, cid)
                if fields.get("status") == "closed" and fields.get("closed_at"):
                    pipe.zadd(
                        self.keys.closed(tenant), {cid: epoch_ms(datetime.fromisoformat(fields["closed_at"]))}
                    )
                    counts["closed"] += 1
                if not fields.get(INDEX_KEYS):
                    recorded = {"strings": plan.strings, "sets": sorted(plan.sets)}
                    pipe.hset(self.keys.contact(cid), INDEX_KEYS, orjson.dumps(recorded))
                await pipe.execute()
            counts["resident entries"] += len(plan.sets)
        return counts


class RedisRunLock:
    """`RunLock` on one Redis key: SET NX PX, released only by its holder."""

    def __init__(self, client: RedisClient, key: str):
        self.r = client
        self.key = key
        self._release = self.r.register_script(RELEASE_LOCK)

    async def acquire(self, ttl_ms: int) -> str | None:
        token = uuid.uuid4().hex
        return token if await self.r.set(self.key, token, nx=True, px=ttl_ms) else None

    async def release(self, token: str) -> None:
        await self._release(keys=[self.key], args=[token])
