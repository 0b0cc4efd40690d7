"""Fixtures of the workspace tests: a running router and API with the workspace on it (each backend in
turn: the embedded one and the real RabbitMQ and Redis), an SQLite history for the audit, and
`Browser`s, each with its own cookies, that sign in as demo agents the way a person does."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from adapters.kit.context import AdapterContext
from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.testing import RecordingAcks, adapter_settings
from router.core.clock import ManualClock
from router.core.history import HistoryStore
from router.http.app import create_app
from router.http.workspace import setup_workspace
from router.service import Runtime, build, context_for_runtime, workspace_for
from router.settings import Settings
from tests.harness import NEW_RESIDENT, Harness, wait_routed

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """One person's browser: its own cookie jar, forms posted with the page's CSRF token."""

    def __init__(self, base: str):
        self.base = base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.session.get(self.base + path, **kw) as r:
            text = await r.text()
            if m := CSRF.search(text):
                self.csrf = m.group(1)
            return r.status, text

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True
    ) -> tuple[int, str, str]:
        """(status, body, final path) after following the redirect, as a browser does."""
        form = dict(data or {})
        if csrf:
            assert self.csrf, "open a page first: its forms carry the CSRF token"
            form["csrf"] = self.csrf
        async with self.session.post(self.base + path, data=form) as r:
            text = await r.text()
            if m := CSRF.search(text):
                self.csrf = m.group(1)
            return r.status, text, r.url.path + (f"?{r.url.query_string}" if r.url.query_string else "")

    async def sign_in(self, agent: str) -> None:
        status, _ = await self.get("/werkplek/aanmelden")
        assert status == 200
        status, text, path = await self.post("/werkplek/aanmelden/ontwikkeling", {"agent": agent})
        assert status == 200 and path == "/werkplek/", (status, path, text[:500])

    async def close(self) -> None:
        await self.session.close()


class Workspace:
    def __init__(self, harness: Harness, history: HistoryStore, base: str):
        self.h = harness
        self.rt = harness.rt
        self.history = history
        self.base = base
        self.browsers: list[Browser] = []
        # With `adapters=True`: the channel routes on the same app, acknowledgements kept in `acks`.
        self.adapters: AdapterContext | None = None
        self.acks = RecordingAcks()

    async def browser(self, agent: str | None = None) -> Browser:
        b = Browser(self.base)
        self.browsers.append(b)
        if agent is not None:
            await b.sign_in(agent)
        return b

    async def contact(self, tenant: str, channel: str, body: str, phone: str | None = NEW_RESIDENT) -> str:
        contact = self.h.contact(tenant, channel, body, phone=phone)
        await self.rt.publisher.publish(contact)
        await wait_routed(self.rt, contact.cid)
        return contact.cid

    async def fields(self, cid: str) -> dict[str, str]:
        record = await self.rt.store.get(cid)
        assert record is not None
        return record.fields

    async def audit(self, cid: str) -> list[tuple[str, str | None, str | None]]:
        rows = await self.history.audit_log(contact_id=cid)
        return [(r.action, r.agent, r.credential) for r in rows]


@asynccontextmanager
async def open_workspace(
    kind: str, settings: Settings, clock: ManualClock, history_path: Path, *, adapters: bool = False
) -> AsyncIterator[Workspace]:
    settings = settings.model_copy(
        update={
            "history_url": SecretStr(f"sqlite:///{history_path}"),
            "workspace_dev_signin": True,
            "session_secret": SecretStr("test-session-secret-0123456789"),
        }
    )
    embedded = "always" if kind == "embedded" else "never"
    rt: Runtime = await build(settings, with_router=True, with_scheduler=True, embedded=embedded, clock=clock)
    assert rt.router is not None
    rt.tasks.append(asyncio.create_task(rt.router.run(), name="router"))
    app = create_app(rt.api_context())
    recorded = RecordingAcks()
    ctx: AdapterContext | None = None
    if adapters:
        ctx = await context_for_runtime(
            rt, adapter_settings(adapters_enabled="mail,webform", ack_from="ommen:noreply@ommen.nl")
        )
        ctx.acks = recorded
        app[ADAPTERS] = ctx
        add_routes(app)
    config, closers = await workspace_for(rt)
    setup_workspace(app, config)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    assert config.history is not None
    ws = Workspace(
        Harness(kind, rt, client, clock, None), config.history, str(client.make_url("")).rstrip("/")
    )  # type: ignore[arg-type]
    ws.adapters, ws.acks = ctx, recorded
    try:
        yield ws
    finally:
        if ctx is not None:
            await ctx.drain(5)
            for close in ctx.closers:
                await close()
        for b in ws.browsers:
            await b.close()
        await client.close()
        for close in closers:
            await close()
        await rt.close()


@pytest.fixture
async def ws(
    backend_kind: tuple[str, aio_pika.abc.AbstractConnection | None],
    settings: Settings,
    clock: ManualClock,
    tmp_path: Path,
) -> AsyncIterator[Workspace]:
    """The workspace on each backend in turn."""
    async with open_workspace(backend_kind[0], settings, clock, tmp_path / "history.sqlite") as workspace:
        yield workspace
