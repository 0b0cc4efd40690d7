"""Fixtures of the history tests: a PostgreSQL database of the test run's own, and a history store on
each implementation (`store`: SQLite and PostgreSQL, one behaviour test for both).

The database is created on the server at PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres,
as scripts/services-up starts it) under a unique name per test and dropped afterwards. A server that
is not reachable fails the run with instructions, like RabbitMQ and Redis (tests/conftest.py).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from router.core.history import HistoryStore
from router.core.tenants import Tenant
from router.history import open_store

PG_URL = os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STORES = ("sqlite", "postgresql")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> str:
    if not _reachable(PG_URL):
        pytest.fail(
            "PostgreSQL is not reachable on 127.0.0.1:5432. Run the tests with scripts/test, which starts "
            "a local server when one is installed, or start one: `pg_ctlcluster 15 main start`, or "
            "`docker compose up -d postgres` with a port published (docker-compose.yml), and set PG_URL "
            "to a superuser's URL of it.",
            pytrace=False,
        )
    return PG_URL


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
async def pg_url(postgres_server: str) -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = f"history_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(postgres_server, name)
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.sqlite3'}"


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty history on each implementation in turn."""
    url: str = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    return url


@pytest.fixture
async def store(store_url: str, tenants: dict[str, Tenant]) -> AsyncIterator[HistoryStore]:
    s = await open_store(store_url, tenants)
    yield s
    await s.close()
