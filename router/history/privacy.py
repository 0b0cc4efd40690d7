"""The history as one of the stores of retention and erasure (`PersonalData`, router/core/ports.py),
opened on first use so that `router.service.privacy_for` can list it without awaiting anything:

    if settings.history_url:
        stores.append(HistoryPersonalData(settings.history_url, tenants))

What it removes: the event rows of the subject's contacts (erasure) or of contacts closed longer than
the tenant's term (purge), and audit rows past the audit term; the contacts' norm items stay for the
report without ids or times (router/history/postgres.py, router/history/sqlite.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime

from router.core.history import HistoryStore
from router.core.ports import Removal, Subject
from router.core.retention import RetentionPolicy
from router.core.tenants import Tenant
from router.history import open_store


class HistoryPersonalData:
    name = "history"

    def __init__(self, url: str, tenants: Mapping[str, Tenant]):
        self.url = url
        self.tenants = tenants
        self._store: HistoryStore | None = None
        self._lock = asyncio.Lock()

    async def store(self) -> HistoryStore:
        async with self._lock:
            if self._store is None:
                self._store = await open_store(self.url, self.tenants)
            return self._store

    async def find(self, subject: Subject) -> set[str]:
        return await (await self.store()).find(subject)

    async def erase(self, subject: Subject) -> Removal:
        return await (await self.store()).erase(subject)

    async def purge(self, policy: RetentionPolicy, now: datetime, *, dry_run: bool) -> Removal:
        return await (await self.store()).purge(policy, now, dry_run=dry_run)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None
