"""The state store in memory: for the embedded mode and fast tests. Same behaviour as RedisStore."""

from __future__ import annotations

import json
import time
from typing import Any

from router.store import ClaimStatus, ContactRecord, Staged


class MemoryStore:
    def __init__(self) -> None:
        self.contacts: dict[str, dict[str, str]] = {}
        self.history: dict[str, list[str]] = {}
        self.team_items: dict[tuple[str, str], dict[str, int]] = {}
        self.references: dict[str, str] = {}
        self.timers: dict[str, int] = {}

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def claim_and_stage(self, items: list[Staged], lease_ms: int) -> list[tuple[ClaimStatus, str]]:
        out: list[tuple[ClaimStatus, str]] = []
        now = int(time.time() * 1000)
        for item in items:
            rec = self.contacts.setdefault(item.cid, {})
            if rec.get("committed") == "1":
                out.append(("dup", rec.get("team", "")))
                continue
            holder = rec.get("lease")
            if holder and holder != item.token and int(rec.get("lease_until", "0")) > now:
                out.append(("busy", holder))
                continue
            rec.update(item.fields, lease=item.token, lease_until=str(now + lease_ms))
            out.append(("ok", ""))
        return out

    async def index(self, items: list[Staged]) -> None:
        for item in items:
            self.team_items.setdefault((item.tenant, item.team), {})[item.cid] = item.team_score_ms
            self.references[item.reference] = item.cid
            self.timers.update(dict(item.timers))

    async def commit(self, items: list[Staged]) -> None:
        for item in items:
            rec = self.contacts[item.cid]
            if rec.get("committed") == "1":
                continue
            rec.update(committed="1", status="routed")
            rec.pop("lease", None)
            rec.pop("lease_until", None)
            self.history.setdefault(item.cid, []).append(item.history_event)

    async def get(self, cid: str) -> ContactRecord | None:
        rec = self.contacts.get(cid)
        if not rec:
            return None
        history: list[dict[str, Any]] = [json.loads(h) for h in self.history.get(cid, [])]
        return ContactRecord(dict(rec), history)

    async def resolve_reference(self, reference: str) -> str | None:
        return self.references.get(reference)
