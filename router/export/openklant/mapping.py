"""Our ids → Open Klant uuids, in Redis: what makes the export exactly-once on the Open Klant side.

One hash per contact, `openklant:{<tenant>}:contact:<id>` (the tenant's hash slot, as every key of a
tenant's export), with a field per object of the contact in Open Klant: `klantcontact`, `betrokkene`,
`referentie` (the reference's onderwerpobject), `adres:<keyed hash>` (a digitaal adres; the address
itself never in a name), `team` (the team the klantcontact is assigned to), `taak:<n>` (the internetaak
of callback request n) and `verzonden:taak:<n>` (a digest of what was last sent for it). The actors of
a tenant's teams: `openklant:{<tenant>}:actors`, field team id.

A field holds `PENDING` from just before a create is sent until its uuid is written. Finding it so after
a crash or a retry means the create may have reached Open Klant: the exporter looks the object up
before creating it again (router.export.openklant.sync). Values are uuids, team ids and digests:
nothing personal.
"""

from __future__ import annotations

from typing import Any

from router.core.ports import StoreUnavailable
from router.redis.client import UNAVAILABLE, RedisClient
from router.redis.keys import Keys

PENDING = "?"
_ERRORS = UNAVAILABLE


class MappingStore:
    def __init__(self, client: RedisClient, keys: Keys):
        self.r = client
        self.keys = keys

    def contact_key(self, tenant: str, cid: str) -> str:
        return f"{self.keys.prefix}openklant:{{{tenant}}}:contact:{cid}"

    def actors_key(self, tenant: str) -> str:
        return f"{self.keys.prefix}openklant:{{{tenant}}}:actors"

    def address_field(self, tenant: str, kind: str, address: str) -> str:
        return f"adres:{self.keys.hashed('openklant-adres', tenant, kind, address.lower())}"

    async def contact(self, tenant: str, cid: str) -> dict[str, str]:
        return await self._hgetall(self.contact_key(tenant, cid))

    async def actors(self, tenant: str) -> dict[str, str]:
        return await self._hgetall(self.actors_key(tenant))

    async def put(self, key: str, fields: dict[str, str]) -> None:
        try:
            await self.r.hset(key, mapping=fields)  # type: ignore[arg-type]
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def remove(self, key: str, *fields: str) -> None:
        try:
            await self.r.hdel(key, *fields)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _hgetall(self, key: str) -> dict[str, str]:
        try:
            raw: dict[Any, Any] = await self.r.hgetall(key)
        except _ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
