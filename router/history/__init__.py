"""The durable history (router/core/history.py): PostgreSQL in production, SQLite in the embedded mode.

`open_store(url, tenants)` opens the store `HISTORY_URL` names (`postgresql://…` or `sqlite:///path`)
and applies its migrations. The consumer that feeds it from the `events` exchange is
`router.amqp.history`; the commands are `router.cli.history`.
"""

from __future__ import annotations

from collections.abc import Mapping

from router.core.history import HistoryStore
from router.core.tenants import Tenant

__all__ = ["open_store"]


async def open_store(url: str, tenants: Mapping[str, Tenant], *, migrate: bool = True) -> HistoryStore:
    """The history store at `url`, its schema migrated unless `migrate` is False."""
    if url.startswith(("postgresql://", "postgres://")):
        from router.history.postgres import PostgresHistory

        return await PostgresHistory.open(url, tenants, migrate_now=migrate)
    if url.startswith("sqlite:"):
        from router.history.sqlite import SqliteHistory

        return await SqliteHistory.open(url, tenants, migrate_now=migrate)
    raise ValueError("HISTORY_URL: expected postgresql://… or sqlite:///path")
