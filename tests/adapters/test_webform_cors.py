"""CORS for the web form (issue 14, item 7): a tenant's own websites may post it from the browser;
another tenant's website and unknown ones get no CORS headers, and a clear 403 on the preflight."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.testing import START, RecordingPublisher, adapter_settings
from adapters.kit.wiring import build_context
from router.core.clock import ManualClock
from router.core.tenants import Tenant

OMMEN = "/v1/channels/webform/ommen"
OMMEN_SITE = "https://www.ommen.nl"
COEVORDEN_SITE = "https://www.coevorden.nl"
ORIGINS = f"ommen:{OMMEN_SITE},ommen:https://ommen.nl:443,coevorden:{COEVORDEN_SITE}"
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
    "Access-Control-Allow-Credentials",
    "Access-Control-Expose-Headers",
    "Access-Control-Max-Age",
)

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(tenants: dict[str, Tenant]) -> AsyncIterator[Client]:
    ctx = build_context(
        publisher=RecordingPublisher(),
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(adapters_enabled="webform", webform_allowed_origins=ORIGINS),
    )
    app = web.Application()
    app[ADAPTERS] = ctx
    add_routes(app)
    async with TestClient(TestServer(app)) as c:
        yield c


def preflight_headers(origin: str, **extra: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST", **extra}


def no_cors(headers: Any) -> bool:
    return not any(h in headers for h in CORS_HEADERS)


async def test_an_allowed_origin_gets_its_own_origin_back_never_a_star(client: Client) -> None:
    resp = await client.post(OMMEN, json={"message": "Vraag"}, headers={"Origin": OMMEN_SITE})
    assert resp.status == 202
    assert resp.headers["Access-Control-Allow-Origin"] == OMMEN_SITE
    assert "Origin" in resp.headers["Vary"]
    assert resp.headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    # The second origin of Ommen, configured with its default port, matches what browsers send.
    resp = await client.post(OMMEN, json={"message": "Vraag"}, headers={"Origin": "https://ommen.nl"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://ommen.nl"


async def test_errors_carry_the_cors_headers_too_so_the_page_can_show_why(client: Client) -> None:
    resp = await client.post(OMMEN, json={"message": ""}, headers={"Origin": OMMEN_SITE})
    assert resp.status == 422
    assert resp.headers["Access-Control-Allow-Origin"] == OMMEN_SITE


async def test_another_tenants_origin_gets_no_cors_headers(client: Client) -> None:
    resp = await client.post(OMMEN, json={"message": "Vraag"}, headers={"Origin": COEVORDEN_SITE})
    # A plain HTML form post carries an Origin too and is still taken; the browser keeps a script of
    # another site from reading the answer.
    assert resp.status == 202
    assert no_cors(resp.headers)
    assert "Origin" in resp.headers["Vary"]
    resp = await client.options(OMMEN, headers=preflight_headers(COEVORDEN_SITE))
    assert resp.status == 403
    assert no_cors(resp.headers)
    assert "may not post the web form of tenant 'ommen'" in (await resp.json())["error"]
    # And Coevorden's own form does answer it.
    resp = await client.options("/v1/channels/webform/coevorden", headers=preflight_headers(COEVORDEN_SITE))
    assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == COEVORDEN_SITE


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://www.ommen.nl",  # another scheme is another origin
        "https://www.ommen.nl.evil.example",
        "https://www.ommen.nl:8443",
        "null",
    ],
)
async def test_unknown_origins_get_no_cors_headers_and_a_403_preflight(client: Client, origin: str) -> None:
    resp = await client.post(OMMEN, json={"message": "Vraag"}, headers={"Origin": origin})
    assert no_cors(resp.headers)
    resp = await client.options(
        OMMEN, headers=preflight_headers(origin, **{"Access-Control-Request-Headers": "content-type"})
    )
    assert resp.status == 403
    assert no_cors(resp.headers)
    assert "Origin" in resp.headers["Vary"]


async def test_the_preflight_of_an_allowed_origin_names_method_headers_and_max_age(client: Client) -> None:
    resp = await client.options(
        OMMEN, headers=preflight_headers(OMMEN_SITE, **{"Access-Control-Request-Headers": "Content-Type"})
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == OMMEN_SITE
    assert resp.headers["Access-Control-Allow-Methods"] == "POST"
    assert resp.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert int(resp.headers["Access-Control-Max-Age"]) > 0
    vary = {v.strip() for v in resp.headers["Vary"].split(",")}
    assert {"Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"} <= vary
    assert "Access-Control-Allow-Credentials" not in resp.headers


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"Access-Control-Request-Method": "DELETE"}, "POST only"),
        ({"Access-Control-Request-Headers": "content-type, x-api-key"}, "header(s) not allowed: x-api-key"),
    ],
)
async def test_a_preflight_for_another_method_or_header_is_refused_clearly(
    client: Client, extra: dict[str, str], message: str
) -> None:
    resp = await client.options(OMMEN, headers={**preflight_headers(OMMEN_SITE), **extra})
    assert resp.status == 403
    assert message in (await resp.json())["error"]
    assert no_cors(resp.headers)


async def test_options_without_origin_is_no_preflight_and_unknown_tenants_are_404(client: Client) -> None:
    resp = await client.options(OMMEN)
    assert resp.status == 204 and resp.headers["Allow"] == "OPTIONS, POST" and no_cors(resp.headers)
    resp = await client.options("/v1/channels/webform/zwolle", headers=preflight_headers(OMMEN_SITE))
    assert resp.status == 404 and no_cors(resp.headers)


async def test_without_configured_origins_no_origin_is_allowed(tenants: dict[str, Tenant]) -> None:
    ctx = build_context(
        publisher=RecordingPublisher(),
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(adapters_enabled="webform", webform_allowed_origins=""),
    )
    app = web.Application()
    app[ADAPTERS] = ctx
    add_routes(app)
    async with TestClient(TestServer(app)) as c:
        resp = await c.options(OMMEN, headers=preflight_headers(OMMEN_SITE))
        assert resp.status == 403 and no_cors(resp.headers)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("ommen:*", "'*' is not allowed"),
        ("ommen:https://www.ommen.nl/contact", "no path"),
        ("ommen:www.ommen.nl", "not an origin"),
        ("https://www.ommen.nl", "cannot read"),
    ],
)
def test_a_bad_origin_setting_fails_at_start_up_naming_the_variable(value: str, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        adapter_settings(webform_allowed_origins=value)
    assert "WEBFORM_ALLOWED_ORIGINS" in str(info.value) and problem in str(info.value)


def test_origins_are_read_per_tenant_and_normalised() -> None:
    settings = adapter_settings(
        webform_allowed_origins="ommen:https://WWW.Ommen.nl, ommen:http://localhost:8000,coevorden:https://a.nl:443"
    )
    assert settings.allowed_origins == {
        "ommen": frozenset({"https://www.ommen.nl", "http://localhost:8000"}),
        "coevorden": frozenset({"https://a.nl"}),
    }
