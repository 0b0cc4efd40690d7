"""One contact's sync in process, on the real Redis and the contract stub: a crash between a create
and its mapping write (the mapping left at PENDING) never makes a second object, and a sync that
finds everything in step sends nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from router.core.contact import Contact
from router.core.openklant import OpenKlantConfig
from router.export.openklant.client import OpenKlantClient
from router.export.openklant.mapping import PENDING, MappingStore
from router.export.openklant.sync import ContactSync, Target
from router.redis.casestore import RedisCaseStore
from router.redis.keys import Keys
from tests.openklant.stub import OpenKlantStub


@pytest.fixture
async def stub() -> AsyncIterator[OpenKlantStub]:
    async with OpenKlantStub(token="t") as s:
        yield s


@pytest.fixture
async def sync(stub: OpenKlantStub, redis_client: Any, namespace: str) -> AsyncIterator[ContactSync]:
    keys = Keys(namespace)
    async with aiohttp.ClientSession() as session:
        client = OpenKlantClient(session, "ommen", stub.url, "t")
        target = Target("ommen", OpenKlantConfig(base_url=stub.url), client, {"kcc": "KCC"})
        yield ContactSync(
            RedisCaseStore(redis_client, keys), MappingStore(redis_client, keys), {"ommen": target}
        )


async def routed(redis_client: Any, namespace: str, callback: bool = True) -> Contact:
    """A contact (with a callback request) in the store as the router and case work leave it."""
    c = Contact.model_validate(
        {
            "tenant": "ommen",
            "channel": "phone",
            "received_at": "2026-11-30T09:15:00+01:00",
            "source": {"adapter": "test", "native_id": uuid.uuid4().hex},
            "subject": "Vraag",
            "body": "Bel mij terug",
            "sender": {"email": "a@example.nl", "phone": "+31612345678"},
        }
    )
    keys = Keys(namespace)
    fields = {"contact": c.model_dump_json(), "tenant": "ommen", "team": "kcc", "channel": "phone"}
    if callback:
        fields["callbacks"] = "1"
        cb = {"id": f"{c.cid}-cb1", "team": "kcc", "reason": "Terugbellen", "status": "open", "phone": ""}
        await redis_client.hset(keys.callback(c.cid, 1), mapping=cb)
    await redis_client.hset(keys.contact(c.cid), mapping=fields)
    return c


def counts(stub: OpenKlantStub) -> dict[str, int]:
    return {name: len(items) for name, items in stub.objects.items() if items}


async def test_a_crash_after_every_create_and_before_its_mapping_write_makes_nothing_twice(
    sync: ContactSync, stub: OpenKlantStub, redis_client: Any, namespace: str
) -> None:
    c = await routed(redis_client, namespace)
    event = {"tenant": "ommen", "contact_id": c.cid}
    assert await sync.handle(event) == "synced"
    first = counts(stub)
    assert first == {
        "klantcontacten": 1,
        "betrokkenen": 1,
        "digitaleadressen": 2,
        "onderwerpobjecten": 2,
        "actoren": 1,
        "actorklantcontacten": 1,
        "internetaken": 1,
    }
    key = sync.mapping.contact_key("ommen", c.cid)
    before = await sync.mapping.contact("ommen", c.cid)
    # As if the process died after each POST, before the uuid was written.
    await redis_client.hset(
        key, mapping={f: PENDING for f in before if not f.startswith(("verzonden", "team"))}
    )
    await redis_client.delete(sync.mapping.actors_key("ommen"))
    sync._actors.clear()
    assert await sync.handle(event) == "synced"
    assert counts(stub) == first
    assert await sync.mapping.contact("ommen", c.cid) == before


async def test_a_pending_mark_without_a_create_creates_once_and_a_second_sync_sends_nothing(
    sync: ContactSync, stub: OpenKlantStub, redis_client: Any, namespace: str
) -> None:
    c = await routed(redis_client, namespace, callback=False)
    key = sync.mapping.contact_key("ommen", c.cid)
    await redis_client.hset(key, "klantcontact", PENDING)  # died before the POST left
    assert await sync.handle({"tenant": "ommen", "contact_id": c.cid}) == "synced"
    assert len(stub.klantcontacten_of(c.cid)) == 1
    sent = sum(stub.requests.values())
    assert await sync.handle({"tenant": "ommen", "contact_id": c.cid}) == "synced"
    assert sum(stub.requests.values()) == sent  # all in step: not one request


async def test_events_of_other_tenants_and_gone_contacts_are_skipped(
    sync: ContactSync, stub: OpenKlantStub
) -> None:
    assert (
        await sync.handle({"tenant": "coevorden", "contact_id": str(uuid.uuid4())}) == "tenant_not_exported"
    )
    assert await sync.handle({"tenant": "ommen", "contact_id": str(uuid.uuid4())}) == "contact_gone"
    assert await sync.handle({"tenant": "ommen"}) == "no_contact_id"
    assert sum(stub.requests.values()) == 0
