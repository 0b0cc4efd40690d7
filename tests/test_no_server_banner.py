"""No `Server: Python/3.x aiohttp/x` banner on any HTTP answer (issue 14, item 7): the app as `serve`
builds it, its own routes, an adapter's, errors from the router and from the HTTP parser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.settings import AdapterSettings
from router.http.app import create_app
from router.service import build, context_for_runtime
from router.settings import Settings


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    rt = await build(settings, with_router=False, embedded="always")
    app = create_app(rt.api_context())
    app[ADAPTERS] = await context_for_runtime(rt, AdapterSettings(adapters_enabled="webform"))
    add_routes(app)
    async with TestClient(TestServer(app)) as c:
        yield c
    await rt.close()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/v1/openapi.json", 200),
        ("GET", "/no/such/route", 404),
        ("DELETE", "/healthz", 405),
        ("GET", "/v1/contacts/x", 401),
        ("POST", "/v1/channels/webform/ommen", 415),
        ("OPTIONS", "/v1/channels/webform/ommen", 204),
    ],
)
async def test_no_answer_names_the_server_software(
    client: TestClient[Any, Any], method: str, path: str, status: int
) -> None:
    resp = await client.request(method, path, data=b"x" if method == "POST" else None)
    assert resp.status == status
    assert "Server" not in resp.headers


async def test_not_even_an_answer_to_a_request_the_http_parser_refuses(client: TestClient[Any, Any]) -> None:
    """aiohttp answers these before any app (and its hooks) runs: they name the service, no version."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n")
    await writer.drain()
    head = (await asyncio.wait_for(reader.read(4096), 5)).split(b"\r\n\r\n")[0]
    writer.close()
    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert b"\r\nserver: contact-router\r\n" in head.lower() + b"\r\n"
    assert b"aiohttp" not in head.lower() and b"python" not in head.lower()
