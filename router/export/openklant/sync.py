"""One contact made to match in Open Klant: its klantcontact (with betrokkene, digitale adressen and the
onderwerpobjecten of our id and reference), the team it is assigned to, and an internetaak per callback
request, each with its status and attempts.

Every event of a contact leads to the same thing: read the contact from the store, compare with the
mapping (router.export.openklant.mapping), and create or change only what differs. So the order
events arrive in does not matter (a callback request whose contact is not yet exported exports the
contact first), an event delivered twice changes nothing, and a replayed dead letter picks up where it
stopped.

Each create follows one rule: mark the mapping PENDING, send, write the uuid. Finding a PENDING mark
means an earlier try may have created the object, so it is looked up first: the klantcontact by the
onderwerpobject of our contact id (one identifier: several onderwerpobject filters at once return
duplicates), an internetaak by the callback id on the first line of its toelichting, an actor by its
actoridentificator. The klantcontact, its betrokkene and the onderwerpobject of our id are created in
one request (`/maak-klantcontact`), so a klantcontact never exists that the lookup cannot find.

Contacts are synced one at a time per contact id (a lock per id; one active exporter per queue, see
router.export.openklant.consumer), and an actor is created once per team.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from router import logs
from router.core.casework import CaseState
from router.core.contact import Contact
from router.core.openklant import (
    DigitalAddress,
    OpenKlantConfig,
    actor_body,
    actor_identifier,
    callback_tag,
    digital_addresses,
    internetaak_body,
    klantcontact_body,
    onderwerpobject_identifiers,
)
from router.export.openklant.client import OpenKlantClient
from router.export.openklant.mapping import PENDING, MappingStore
from router.redis.casestore import RedisCaseStore

log = logs.get("router.export.openklant")


@dataclass
class Target:
    """One tenant's Open Klant."""

    tenant: str
    config: OpenKlantConfig
    client: OpenKlantClient
    # Team id -> the name of its actor (the rules' `openklant.actors`, else the team's name).
    actor_names: dict[str, str]


def digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


class ContactSync:
    def __init__(self, cases: RedisCaseStore, mapping: MappingStore, targets: dict[str, Target]):
        self.cases = cases
        self.mapping = mapping
        self.targets = targets
        self.created: Counter[str] = Counter()
        self.changed: Counter[str] = Counter()
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: Counter[str] = Counter()
        self._actors: dict[tuple[str, str], str] = {}
        self._actor_locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def handle(self, event: dict[str, Any]) -> str:
        """Sync the contact an event is about; what became of it ("synced", or why nothing was done)."""
        target = self.targets.get(str(event.get("tenant")))
        if target is None:
            return "tenant_not_exported"
        cid = event.get("contact_id")
        if not isinstance(cid, str) or not cid:
            return "no_contact_id"
        self._waiting[cid] += 1
        lock = self._locks.setdefault(cid, asyncio.Lock())
        try:
            async with lock:
                return await self.sync(target, cid)
        finally:
            self._waiting[cid] -= 1
            if not self._waiting[cid]:
                del self._waiting[cid]
                self._locks.pop(cid, None)

    async def sync(self, target: Target, cid: str) -> str:
        state = await self.cases.load(cid)
        if state is None or "contact" not in state.fields:
            return "contact_gone"  # purged or erased: nothing left to export
        if state.tenant != target.tenant:
            return "tenant_mismatch"
        contact = state.contact()
        key = self.mapping.contact_key(target.tenant, cid)
        m = await self.mapping.contact(target.tenant, cid)
        kc = await self._klantcontact(target, contact, key, m)
        await self._reference(target, contact, kc, key, m)
        await self._addresses(target, state, contact, key, m)
        if state.fields.get("team"):
            await self._assignment(target, state.team, kc, key, m)
        if state.callbacks:
            history = await self.cases.history(cid)
            for n, cb in sorted(state.callbacks.items()):
                if cb.get("id") and cb.get("team"):
                    await self._internetaak(target, n, cb, history, kc, key, m)
        return "synced"

    async def _ensure(
        self,
        key: str,
        m: dict[str, str],
        field: str,
        lookup: Callable[[], Awaitable[str | None]],
        create: Callable[[], Awaitable[str]],
        kind: str,
        extra: dict[str, str] | None = None,
    ) -> str:
        """The uuid of `field`: from the mapping, else looked up (when a create may have happened),
        else created. What `lookup` or `create` put in `extra` is written with the uuid, at once."""
        value = m.get(field)
        if value and value != PENDING:
            return value
        found = await lookup() if value == PENDING else None
        if found is None:
            await self.mapping.put(key, {field: PENDING})
            m[field] = PENDING
            found = await create()
            self.created[kind] += 1
        else:
            log.info("openklant_found_after_retry", kind=kind)
        written = {**(extra or {}), field: found}
        await self.mapping.put(key, written)
        m.update(written)
        return found

    async def _klantcontact(self, target: Target, contact: Contact, key: str, m: dict[str, str]) -> str:
        client = target.client
        ids = onderwerpobject_identifiers(contact)
        extra: dict[str, str] = {}

        async def lookup() -> str | None:
            found = await client.list_all(
                "/klantcontacten", {"onderwerpobject__onderwerpobjectidentificatorObjectId": contact.cid}
            )
            if len(found) > 1:
                log.warning("openklant_duplicate_klantcontacten", contact_id=contact.cid, found=len(found))
            if not found:
                return None
            for b in found[0].get("hadBetrokkenen", [])[:1]:
                extra["betrokkene"] = str(b["uuid"])
            return str(found[0]["uuid"])

        async def create() -> str:
            doc = await client.post(
                "/maak-klantcontact",
                {
                    "klantcontact": klantcontact_body(contact, target.config),
                    "betrokkene": {"wasPartij": None, "rol": "klant", "initiator": True},
                    "onderwerpobject": {"wasKlantcontact": None, "onderwerpobjectidentificator": ids[0]},
                },
            )
            extra["betrokkene"] = str(doc["betrokkene"]["uuid"])
            return str(doc["klantcontact"]["uuid"])

        kc = await self._ensure(key, m, "klantcontact", lookup, create, "klantcontact", extra)
        if not m.get("betrokkene"):  # found without one (made by hand in Open Klant?): add it
            doc = await client.post(
                "/betrokkenen",
                {"hadKlantcontact": {"uuid": kc}, "wasPartij": None, "rol": "klant", "initiator": True},
            )
            m["betrokkene"] = str(doc["uuid"])
            await self.mapping.put(key, {"betrokkene": m["betrokkene"]})
        return kc

    async def _reference(
        self, target: Target, contact: Contact, kc: str, key: str, m: dict[str, str]
    ) -> None:
        client = target.client
        ident = onderwerpobject_identifiers(contact)[1]

        async def lookup() -> str | None:
            found = await client.list_all(
                "/onderwerpobjecten", {"onderwerpobjectidentificatorObjectId": ident["objectId"]}
            )
            mine = [o for o in found if (o.get("klantcontact") or {}).get("uuid") == kc]
            return str(mine[0]["uuid"]) if mine else None

        async def create() -> str:
            doc = await client.post(
                "/onderwerpobjecten",
                {
                    "klantcontact": {"uuid": kc},
                    "wasKlantcontact": None,
                    "onderwerpobjectidentificator": ident,
                },
            )
            return str(doc["uuid"])

        await self._ensure(key, m, "referentie", lookup, create, "onderwerpobject")

    async def _addresses(
        self, target: Target, state: CaseState, contact: Contact, key: str, m: dict[str, str]
    ) -> None:
        betrokkene = m["betrokkene"]
        phones = [cb.get("phone", "") for _, cb in sorted(state.callbacks.items())]
        for address in digital_addresses(contact, phones):
            await self._address(target, betrokkene, address, key, m)

    async def _address(
        self, target: Target, betrokkene: str, address: DigitalAddress, key: str, m: dict[str, str]
    ) -> None:
        client = target.client

        async def lookup() -> str | None:
            found = await client.list_all("/digitaleadressen", {"verstrektDoorBetrokkene__uuid": betrokkene})
            mine = [
                a
                for a in found
                if a.get("soortDigitaalAdres") == address.kind and a.get("adres") == address.address
            ]
            return str(mine[0]["uuid"]) if mine else None

        async def create() -> str:
            return str((await client.post("/digitaleadressen", address.body(betrokkene)))["uuid"])

        field = self.mapping.address_field(target.tenant, address.kind, address.address)
        await self._ensure(key, m, field, lookup, create, "digitaaladres")

    async def _actor(self, target: Target, team: str) -> str:
        cached = self._actors.get((target.tenant, team))
        if cached:
            return cached
        lock = self._actor_locks.setdefault((target.tenant, team), asyncio.Lock())
        async with lock:
            if (target.tenant, team) in self._actors:
                return self._actors[(target.tenant, team)]
            key = self.mapping.actors_key(target.tenant)
            m = await self.mapping.actors(target.tenant)
            client = target.client

            async def lookup() -> str | None:
                found = await client.list_all(
                    "/actoren",
                    {
                        "actoridentificatorObjectId": actor_identifier(target.tenant, team),
                        "soortActor": "organisatorische_eenheid",
                    },
                )
                return str(found[0]["uuid"]) if found else None

            async def create() -> str:
                name = target.actor_names.get(team, team)
                return str((await client.post("/actoren", actor_body(target.tenant, team, name)))["uuid"])

            # An actor may exist already (made by hand, or by another deployment): always look first.
            m.setdefault(team, PENDING)
            uuid = await self._ensure(key, m, team, lookup, create, "actor")
            self._actors[(target.tenant, team)] = uuid
            return uuid

    async def _assignment(self, target: Target, team: str, kc: str, key: str, m: dict[str, str]) -> None:
        """The klantcontact is assigned to the contact's team (an actorklantcontact): one, the current."""
        link = m.get("toewijzing")
        if m.get("team") == team and link and link != PENDING:
            return
        actor = await self._actor(target, team)
        client = target.client
        keep = None
        if link:  # assigned before, or a try may have assigned it: look at what Open Klant has
            for item in await client.list_all("/actorklantcontacten", {"klantcontact__uuid": kc}):
                if (item.get("actor") or {}).get("uuid") == actor and keep is None:
                    keep = str(item["uuid"])
                else:
                    await client.delete(f"/actorklantcontacten/{item['uuid']}")
        await self.mapping.put(key, {"toewijzing": PENDING})
        if keep is None:
            doc = await client.post(
                "/actorklantcontacten", {"actor": {"uuid": actor}, "klantcontact": {"uuid": kc}}
            )
            keep = str(doc["uuid"])
            self.created["actorklantcontact"] += 1
        elif m.get("team"):
            self.changed["toewijzing"] += 1
        await self.mapping.put(key, {"team": team, "toewijzing": keep})
        m.update(team=team, toewijzing=keep)

    async def _internetaak(
        self,
        target: Target,
        n: int,
        cb: dict[str, str],
        history: list[dict[str, Any]],
        kc: str,
        key: str,
        m: dict[str, str],
    ) -> None:
        client = target.client
        actor = await self._actor(target, cb["team"])
        body = internetaak_body(cb, history, kc, actor)
        sent_field = f"verzonden:taak:{n}"
        tag = callback_tag(cb["id"])

        async def lookup() -> str | None:
            found = await client.list_all("/internetaken", {"klantcontact__uuid": kc})
            mine = [t for t in found if str(t.get("toelichting", "")).split("\n", 1)[0] == tag]
            return str(mine[0]["uuid"]) if mine else None

        async def create() -> str:
            # Created open; a closed one is then set `verwerkt` by PATCH, which fills afgehandeldOp.
            first = {**body, "status": "te_verwerken"}
            doc = await client.post("/internetaken", first)
            m[sent_field] = digest(first)
            return str(doc["uuid"])

        had = m.get(sent_field)
        uuid = await self._ensure(key, m, f"taak:{n}", lookup, create, "internetaak")
        if m.get(sent_field) != had:
            await self.mapping.put(key, {sent_field: m[sent_field]})
        if m.get(sent_field) == digest(body):
            return
        await client.patch(f"/internetaken/{uuid}", body)
        self.changed["internetaak"] += 1
        await self.mapping.put(key, {sent_field: digest(body)})
        m[sent_field] = digest(body)
