"""The run command's demo (embedded and real) and the integrator API's error paths."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from router.http.app import create_app
from router.service import Runtime, build, start
from router.settings import Settings
from tests.conftest import AMQP_URL, REDIS_URL, ROOT


def run_demo(*extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", "serve", "--demo", "--once", "--port", "0", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_demo_in_embedded_mode_says_so_and_routes_every_sample() -> None:
    res = run_demo("--embedded", "always")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "EMBEDDED MODE" in res.stderr
    lines = [line for line in res.stdout.splitlines() if "->" in line]
    assert len(lines) == 7 and not any("NOT ROUTED" in line for line in lines)
    assert any("team.ommen.burgerzaken" in line and "rule reisdocumenten" in line for line in lines)
    # A newcomer can open the residents' side too: the first sample's status page.
    assert re.search(
        r"sees of their question: http://127\.0\.0\.1:\d+/status/[A-Z]{3}-[A-Z0-9-]+\?t=\S{22}$",
        res.stdout,
        re.MULTILINE,
    ), res.stdout


def test_demo_against_real_servers(servers: None, namespace: str) -> None:
    res = run_demo(
        "--embedded", "never", env={"NAMESPACE": namespace, "AMQP_URL": AMQP_URL, "REDIS_URL": REDIS_URL}
    )
    try:
        assert res.returncode == 0, res.stderr[-2000:]
        assert "EMBEDDED MODE" not in res.stderr
        assert sum("-> team." in line for line in res.stdout.splitlines()) == 7
    finally:
        subprocess.run([sys.executable, "-c", _CLEANUP, namespace], cwd=ROOT, timeout=60, check=False)


_CLEANUP = """
import asyncio, sys, aio_pika, redis
from tests.conftest import AMQP_URL, REDIS_URL, delete_namespace
async def main(ns):
    conn = await aio_pika.connect(AMQP_URL)
    await delete_namespace(conn, ns)
    await conn.close()
r = redis.Redis.from_url(REDIS_URL)
for k in r.scan_iter(match=sys.argv[1] + "*"):
    r.delete(k)
asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
async def api(
    settings: Settings, amqp: Any, redis_client: Any
) -> AsyncIterator[tuple[TestClient[Any, Any], Runtime]]:
    rt = await build(settings, with_router=True, embedded="never")
    await start(rt)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(rt.api_context())))
    await client.start_server()
    yield client, rt
    await client.close()
    await rt.close()


CONTACT = {
    "tenant": "coevorden",
    "channel": "webform",
    "received_at": "2026-04-24T16:00:00+02:00",
    "source": {"adapter": "cms", "native_id": "form-991"},
    "body": "Losse stoeptegel bij de bibliotheek",
}
KEY = {"X-API-Key": "secret-key"}


async def test_submit_contact_is_accepted_and_routed(api: tuple[TestClient[Any, Any], Runtime]) -> None:
    client, _ = api
    resp = await client.post("/v1/contacts", json=CONTACT, headers=KEY)
    assert resp.status == 202
    body = await resp.json()
    assert body["reference"].startswith("COE-")
    for _ in range(200):
        got = await client.get(f"/v1/contacts/{body['id']}", headers=KEY)
        if got.status == 200 and (await got.json())["status"] == "routed":
            break
        await asyncio.sleep(0.05)
    view = await got.json()
    assert view["team"] == "openbare_ruimte"
    # A key limited to Ommen cannot see Coevorden's contact, nor submit for Coevorden.
    assert (await client.get(f"/v1/contacts/{body['id']}", headers={"X-API-Key": "ommen-key"})).status == 404
    refused = await client.post("/v1/contacts", json=CONTACT, headers={"X-API-Key": "ommen-key"})
    assert refused.status == 403


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        (b'{"tenant": ', 400, "malformed JSON"),
        (b"\xff\xfe{}", 400, "not valid UTF-8"),
        (b"[1, 2]", 422, "expected a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "malformed JSON"),
        (json.dumps({**CONTACT, "tenant": "zwolle"}).encode(), 422, "unknown tenant"),
        (json.dumps({**CONTACT, "received_at": "gisteren"}).encode(), 422, "invalid contact"),
        (b"{" + b'"a":"' + b"x" * 1_100_000 + b'"}', 413, "too large"),
    ],
)
async def test_bad_submissions_get_clear_errors(
    api: tuple[TestClient[Any, Any], Runtime], payload: bytes, status: int, needle: str
) -> None:
    client, _ = api
    resp = await client.post(
        "/v1/contacts", data=payload, headers={**KEY, "Content-Type": "application/json"}
    )
    assert resp.status == status
    assert needle in (await resp.json())["error"]


async def test_field_errors_name_each_field(api: tuple[TestClient[Any, Any], Runtime]) -> None:
    client, _ = api
    bad = {**CONTACT, "received_at": "2026-04-24T16:00:00", "sender": {"email": "x"}, "channel": "Fax!"}
    resp = await client.post("/v1/contacts", json=bad, headers=KEY)
    assert resp.status == 422
    fields = {f["field"] for f in (await resp.json())["fields"]}
    assert fields == {"received_at", "sender.email", "channel"}


async def test_unauthenticated_and_readiness(api: tuple[TestClient[Any, Any], Runtime]) -> None:
    client, _ = api
    assert (await client.post("/v1/contacts", json=CONTACT)).status == 401
    assert (await client.post("/v1/contacts", json=CONTACT, headers={"X-API-Key": "nope"})).status == 401
    assert (await client.get("/healthz")).status == 200
    for _ in range(100):  # the consumer attaches shortly after start-up; until then: 503
        ready = await client.get("/readyz")
        body = await ready.json()
        if ready.status == 200:
            break
        assert ready.status == 503 and body["checks"]["consumer"].startswith("router consumer not attached")
        await asyncio.sleep(0.05)
    assert ready.status == 200, body
    assert body["checks"] == {"store": "ok", "consumer": "ok", "broker": "ok"}
