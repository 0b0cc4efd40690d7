"""A running router + API + scheduler with a manual clock, for case-work tests."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient

from router.core.clock import ManualClock
from router.core.contact import Contact
from router.service import Runtime

AMS = ZoneInfo("Europe/Amsterdam")
OMMEN_KEY = {"X-API-Key": "ommen-key", "X-Agent-Id": "agent-7"}
ALL_KEY = {"X-API-Key": "secret-key", "X-Agent-Id": "agent-1"}


class Harness:
    def __init__(self, rt: Runtime, client: TestClient[Any, Any], clock: ManualClock, events: Any):
        self.rt = rt
        self.client = client
        self.clock = clock
        self.events = events

    async def route(self, tenant: str, channel: str, body: str, phone: str | None = "+31612345678") -> str:
        contact = Contact.model_validate(
            {
                "tenant": tenant,
                "channel": channel,
                "received_at": self.clock.now().isoformat(),
                "source": {"adapter": "test", "native_id": uuid.uuid4().hex},
                "subject": "Vraag",
                "body": body,
                "sender": {"name": "Test Inwoner", "phone": phone} if phone else None,
            }
        )
        await self.rt.publisher.publish(contact)
        for _ in range(200):
            record = await self.rt.store.get(contact.cid)
            if record is not None and record.fields.get("status") == "routed":
                return contact.cid
            await asyncio.sleep(0.05)
        raise AssertionError("contact not routed")

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

    async def event_names(self) -> list[str]:
        msgs = await drain_queue(self.events)
        return [json.loads(m.body)["event"] for m in msgs]


async def drain_queue(queue: Any, settle: float = 0.3) -> list[Any]:
    out = []
    idle = 0.0
    while idle < settle:
        msg = await queue.get(no_ack=True, fail=False)
        if msg is None:
            await asyncio.sleep(0.05)
            idle += 0.05
            continue
        idle = 0.0
        out.append(msg)
    return out
