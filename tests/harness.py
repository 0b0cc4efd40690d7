"""A running router + API (+ scheduler) with a manual clock, and what a behaviour test does with it.

The harness is the same for every backend: it publishes contacts through the runtime's publisher, waits
on the store, talks to the HTTP API, and reads what the service published through `Taps`, which each
backend implements in its own way (tests/backends.py): the queues of RabbitMQ, or the in-process
broker's record of what was published.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient

from router.core import topology
from router.core.clock import ManualClock
from router.core.contact import Contact
from router.core.topology import Names
from router.service import Runtime

AMS = ZoneInfo("Europe/Amsterdam")
OMMEN_KEY = {"X-API-Key": "ommen-key", "X-Agent-Id": "agent-7"}
ALL_KEY = {"X-API-Key": "secret-key", "X-Agent-Id": "agent-1"}
# A queue of the tests' own, bound to the `events` exchange with "#" before anything is published.
EVENTS_TAP = "tests.events"
PHONE = "+31612345678"
# The default of `Harness.contact`: a resident of its own, with a number no other contact has. One
# resident's contacts on one category join each other (router/core/residents.py), so a test that means
# one resident names the number (`phone=PHONE`), and every other contact is someone else's.
NEW_RESIDENT = "new resident"


def resident_phone() -> str:
    """A mobile number (E.164) of a resident of its own."""
    return f"+3169{uuid.uuid4().int % 10**7:07d}"


class Received(Protocol):
    """A message a test took from a queue: aio-pika's incoming message, or the embedded broker's record."""

    @property
    def body(self) -> bytes: ...

    @property
    def message_id(self) -> str | None: ...

    @property
    def routing_key(self) -> str | None: ...

    @property
    def headers(self) -> Mapping[str, Any] | None: ...


class Taps(Protocol):
    """What a test sees of the transport, by the contract's queue names (README, topology): raw input
    onto the router's queue, and taking what arrived in a queue, as a consumer of it would."""

    async def publish_raw(self, routing_key: str, body: bytes) -> None:
        """Put `body` on exchange `contacts` with this key, bypassing the publisher (a fresh message id)."""
        ...

    async def take(self, queue: str, settle: float) -> list[Received]:
        """Every message in `queue` now (taken: a second call sees only newer ones), waiting `settle`
        seconds for stragglers."""
        ...

    async def close(self) -> None: ...


async def collect(get_one: Callable[[], Awaitable[Received | None]], settle: float = 0.3) -> list[Received]:
    """Take messages one by one until none came for `settle` seconds."""
    out: list[Received] = []
    idle = 0.0
    while idle < settle:
        msg = await get_one()
        if msg is None:
            await asyncio.sleep(0.05)
            idle += 0.05
            continue
        idle = 0.0
        out.append(msg)
    return out


async def drain_queue(queue: Any, settle: float = 0.3) -> list[Any]:
    """Take every message in an aio-pika queue (acked), waiting `settle` seconds for stragglers."""
    return await collect(lambda: queue.get(no_ack=True, fail=False), settle)


async def wait_record(
    rt: Runtime, cid: str, done: Callable[[dict[str, str]], bool], what: str, within: float = 10
) -> dict[str, str]:
    for _ in range(int(within / 0.05)):
        record = await rt.store.get(cid)
        if record is not None and done(record.fields):
            return record.fields
        await asyncio.sleep(0.05)
    raise AssertionError(f"contact {cid} was not {what} within {within}s")


async def wait_routed(rt: Runtime, cid: str, within: float = 10) -> dict[str, str]:
    """The contact's fields once its status is `routed`."""
    return await wait_record(rt, cid, lambda f: f.get("status") == "routed", "routed", within)


async def wait_committed(rt: Runtime, cid: str, within: float = 10) -> dict[str, str]:
    """The contact's fields once the broker took its batch, whatever its status (closed, merged, ...)."""
    return await wait_record(rt, cid, lambda f: f.get("committed") == "1", "processed", within)


class Harness:
    """One backend's runtime, its API client and its taps. `kind` is "embedded" or "real"."""

    def __init__(self, kind: str, rt: Runtime, client: TestClient[Any, Any], clock: ManualClock, taps: Taps):
        self.kind = kind
        self.rt = rt
        self.client = client
        self.clock = clock
        self.taps = taps

    @property
    def names(self) -> Names:
        return self.rt.names

    # -- input --------------------------------------------------------------------------------------

    def contact(
        self,
        tenant: str,
        channel: str,
        body: str,
        *,
        subject: str = "Vraag",
        metadata: dict[str, str] | None = None,
        phone: str | None = NEW_RESIDENT,
        name: str | None = "Test Inwoner",
    ) -> Contact:
        """A contact of a resident of its own (a number no other contact has), unless `phone` names
        one; `phone=None`: no sender."""
        if phone == NEW_RESIDENT:
            phone = resident_phone()
        sender = {k: v for k, v in (("name", name), ("phone", phone)) if v is not None}
        return Contact.model_validate(
            {
                "tenant": tenant,
                "channel": channel,
                "received_at": self.clock.now().isoformat(),
                "source": {"adapter": "test", "native_id": uuid.uuid4().hex},
                "subject": subject,
                "body": body,
                "sender": sender if phone else None,
                "metadata": metadata or {},
            }
        )

    async def route(self, tenant: str, channel: str, body: str, phone: str | None = NEW_RESIDENT) -> str:
        """Publish a contact through the runtime's publisher; its id once it is routed."""
        contact = self.contact(tenant, channel, body, phone=phone)
        await self.rt.publisher.publish(contact)
        await wait_routed(self.rt, contact.cid)
        return contact.cid

    async def send(self, tenant: str, channel: str, body: str, **fields: Any) -> str:
        """Publish a contact (fields as for `contact`); its id once processed, whatever became of it."""
        contact = self.contact(tenant, channel, body, **fields)
        await self.rt.publisher.publish(contact)
        await wait_committed(self.rt, contact.cid)
        return contact.cid

    async def publish_raw(self, routing_key: str, body: bytes) -> None:
        await self.taps.publish_raw(routing_key, body)

    # -- what the service published -----------------------------------------------------------------

    async def team_queue(self, tenant: str, team: str, settle: float = 0.3) -> list[Received]:
        return await self.taps.take(self.names.team_queue(tenant, team), settle)

    async def dead_letters(self, settle: float = 0.3) -> list[Received]:
        return await self.taps.take(self.names(topology.DEAD), settle)

    async def escalations(self, tenant: str, settle: float = 0.3) -> list[Received]:
        return await self.taps.take(self.names.escalation_queue(tenant), settle)

    async def router_queue(self, settle: float = 0.3) -> list[Received]:
        """Input not (yet) taken by the router."""
        return await self.taps.take(self.names(topology.ROUTER_QUEUE), settle)

    async def events(self, settle: float = 0.3) -> list[Received]:
        return await self.taps.take(self.names(EVENTS_TAP), settle)

    async def event_names(self) -> list[str]:
        return [json.loads(m.body)["event"] for m in await self.events()]

    async def stop_router(self) -> None:
        """Stop the router and wait until it is gone (its input then stays in the router's queue)."""
        assert self.rt.router is not None
        self.rt.router.stop()
        router = [t for t in self.rt.tasks if t.get_name() == "router"]
        await asyncio.wait_for(asyncio.gather(*router), 30)

    # -- the API ------------------------------------------------------------------------------------

    async def get(self, cid: str, headers: dict[str, str] = ALL_KEY) -> dict[str, Any]:
        resp = await self.client.get(f"/v1/contacts/{cid}", headers=headers)
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data

    async def transfer(
        self, cid: str, to_team: str, from_team: str | None, headers: dict[str, str] = ALL_KEY, **extra: Any
    ) -> tuple[int, dict[str, Any]]:
        body = {"to_team": to_team, "note": f"Inwoner vraagt naar {to_team}", **extra}
        if from_team is not None:
            body["from_team"] = from_team
        resp = await self.client.post(f"/v1/contacts/{cid}/transfer", json=body, headers=headers)
        return resp.status, await resp.json()
