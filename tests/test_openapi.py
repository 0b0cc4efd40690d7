"""The OpenAPI document is valid, every route in it exists, and one walk through the API exercises all of them
with the documented status codes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.settings import AdapterSettings
from router.core.clock import ManualClock
from router.http.app import create_app
from router.http.openapi import document
from router.service import Runtime, build, context_for_runtime
from router.settings import Settings

KEY = {"X-API-Key": "secret-key", "X-Agent-Id": "agent-1"}
SECRET = "meta-app-secret"


def test_document_is_valid_openapi() -> None:
    validate(document())  # type: ignore[arg-type]


def documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in document()["paths"].items() for method in ops}


async def full_app(rt: Runtime) -> web.Application:
    """The app as `serve` builds it: API, agent routes and the channel adapters' routes."""
    adapters = await context_for_runtime(
        rt, AdapterSettings(meta_app_secret=SECRET, meta_verify_token="verify-me")
    )
    app = create_app(rt.api_context())
    app[ADAPTERS] = adapters
    add_routes(app)
    return app


async def test_every_documented_route_exists_and_every_route_is_documented(settings: Settings) -> None:
    rt = await build(settings, with_router=False, embedded="always")
    app = await full_app(rt)
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    await rt.close()
    assert served == documented()


async def test_one_walk_exercises_every_route(settings: Settings, amqp: Any, redis_client: Any) -> None:
    clock = ManualClock(datetime(2026, 5, 13, 10, 0, tzinfo=ZoneInfo("Europe/Amsterdam")))
    rt = await build(settings, with_router=True, with_scheduler=True, embedded="never", clock=clock)
    assert rt.router is not None
    rt.tasks.append(asyncio.create_task(rt.router.run()))
    seen: list[tuple[str, str, int]] = []

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        seen.append((request.method, request.match_info.route.resource.canonical, response.status))  # type: ignore[union-attr]
        return response

    app = await full_app(rt)
    app.middlewares.insert(0, record)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        assert (await client.get("/healthz")).status == 200
        for _ in range(100):
            if (await client.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.05)
        assert (await client.get("/v1/openapi.json")).status == 200
        contact = {
            "tenant": "ommen",
            "channel": "phone",
            "received_at": clock.now().isoformat(),
            "source": {"adapter": "walk", "native_id": uuid.uuid4().hex},
            "body": "Vraag over de aanslag",
        }
        resp = await client.post("/v1/contacts", json=contact, headers=KEY)
        assert resp.status == 202
        cid = (await resp.json())["id"]
        for _ in range(200):
            got = await client.get(f"/v1/contacts/{cid}", headers=KEY)
            if got.status == 200 and (await got.json())["status"] == "routed":
                break
            await asyncio.sleep(0.05)
        assert (await client.get("/v1/tenants/ommen/teams/belastingen/items", headers=KEY)).status == 200
        resp = await client.post(
            f"/v1/contacts/{cid}/transfer",
            headers=KEY,
            json={"to_team": "burgerzaken", "from_team": "belastingen"},
        )
        assert resp.status == 200
        resp = await client.post(
            f"/v1/contacts/{cid}/callback-requests", headers=KEY, json={"reason": "bellen"}
        )
        assert resp.status == 201
        cbid = (await resp.json())["id"]
        resp = await client.post(
            f"/v1/callback-requests/{cbid}/attempts", headers=KEY, json={"outcome": "reached"}
        )
        assert resp.status == 200
        resp = await client.post(f"/v1/contacts/{cid}/responses", headers=KEY, json={"kind": "respond"})
        assert resp.status == 200
        resp = await client.post(f"/v1/contacts/{cid}/close", headers=KEY, json={"resolution": "klaar"})
        assert resp.status == 200
        resp = await client.post(
            "/v1/channels/webform/ommen", json={"message": "Losse stoeptegel", "email": "a@b.nl"}
        )
        assert resp.status == 202
        resp = await client.post(
            "/v1/channels/phone/ommen/notes",
            headers=KEY,
            json={"topic": "paspoort", "note": "Vraag beantwoord", "outcome": "answered", "agent": "kcc-1"},
        )
        assert resp.status == 202
        resp = await client.get(
            "/v1/channels/social/ommen/webhook",
            params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "42"},
        )
        assert resp.status == 200 and await resp.text() == "42"
        payload = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
        resp = await client.post(
            "/v1/channels/social/ommen/webhook",
            data=payload,
            headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"},
        )
        assert resp.status == 200
    finally:
        await client.close()
        await rt.close()
    exercised = {(m, p) for m, p, _ in seen}
    assert exercised == documented()
    # Every status seen is one the document declares for that route.
    doc = document()["paths"]
    for method, path, status in seen:
        declared = doc[path][method.lower()]["responses"]
        assert str(status) in declared, (method, path, status)


@pytest.mark.parametrize("path", ["/v1/contacts/x/transfer", "/v1/contacts/x/close"])
async def test_agent_routes_need_a_key(settings: Settings, path: str) -> None:
    from router.http.app import ApiContext

    app = create_app(ApiContext(tenants={}, store=None, publisher=None, clock=None, credentials={}))  # type: ignore[arg-type]
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.post(path, json={})
        assert resp.status == 401
    finally:
        await client.close()
