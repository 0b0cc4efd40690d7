"""The OpenAPI document is valid, every route in it exists, one walk through the API exercises all of them
with the documented status codes, and the main success answers have the shapes clients code against."""

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
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource

from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.settings import AdapterSettings
from router.cli.schema import SCHEMA_PATH
from router.core.clock import ManualClock
from router.http.app import create_app
from router.http.openapi import document
from router.service import Runtime, build, context_for_runtime
from router.settings import Settings
from tests.harness import ALL_KEY, Harness, wait_routed

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
        for _ in range(200):
            if (await client.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("/readyz did not answer 200 within 10 s")
        assert (await client.get("/v1/openapi.json")).status == 200
        assert (await client.get("/metrics")).status == 200
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
        await wait_routed(rt, cid)
        assert (await client.get(f"/v1/contacts/{cid}", headers=KEY)).status == 200
        assert (await client.get(f"/v1/contacts/{cid}/related", headers=KEY)).status == 200
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
            f"/v1/callback-requests/{cbid}/attempts", headers=KEY, json={"outcome": "no_answer"}
        )
        assert resp.status == 200
        resp = await client.post(
            f"/v1/callback-requests/{cbid}/close", headers=KEY, json={"reason": "resolved_otherwise"}
        )
        assert resp.status == 200
        objection = {**contact, "source": {"adapter": "walk", "native_id": uuid.uuid4().hex}}
        objection["body"] = "Ik maak bezwaar tegen de aanslag"
        resp = await client.post("/v1/contacts", json=objection, headers=KEY)
        oid = (await resp.json())["id"]
        await wait_routed(rt, oid)
        resp = await client.post(
            f"/v1/contacts/{oid}/extensions", headers=KEY, json={"kind": "resolve", "reason": "advies"}
        )
        assert resp.status == 201, await resp.text()
        resp = await client.post(f"/v1/contacts/{cid}/responses", headers=KEY, json={"kind": "respond"})
        assert resp.status == 200
        resp = await client.post(f"/v1/contacts/{cid}/take", headers=KEY, json={})
        assert resp.status == 200, await resp.text()
        resp = await client.post(f"/v1/contacts/{cid}/close", headers=KEY, json={"resolution": "klaar"})
        assert resp.status == 200
        resp = await client.post(
            "/v1/channels/webform/ommen", json={"message": "Losse stoeptegel", "email": "a@b.nl"}
        )
        assert resp.status == 202
        resp = await client.options(
            "/v1/channels/webform/ommen",
            headers={"Origin": "https://www.ommen.nl", "Access-Control-Request-Method": "POST"},
        )
        assert resp.status == 403  # this app names no WEBFORM_ALLOWED_ORIGINS: no website may
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


# --- The bodies of the success answers, field by field ----------------------------------------------
#
# The document describes most success bodies as "any object", so the fuzz test cannot see a field
# renamed, dropped or retyped. These are the shapes integrators and the back office code against, as
# strict JSON Schemas (every field required, nothing else allowed), checked against what the API
# answers on both backends. A deliberate change of a shape is a change here too (and in the docs).

_TS = {"type": "string", "format": "date-time"}
_TS_OR_NULL = {"anyOf": [_TS, {"type": "null"}]}
_TEXT_OR_NULL = {"type": ["string", "null"]}
_COUNT = {"type": "integer", "minimum": 0}
_ID = {"type": "string", "minLength": 1}
_TEAM = {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,39}$"}
CONTACT_ID = "https://contact-router.example/schemas/contact.v1.json"


def strict(fields: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these fields, each required."""
    return {"type": "object", "required": sorted(fields), "properties": fields, "additionalProperties": False}


DEADLINE = strict(
    {
        "kind": {"enum": ["acknowledge", "respond", "resolve"]},
        "term": {"type": "string"},
        "due": _TS,
        "warning_at": _TS,
        "original_due": _TS_OR_NULL,
        "extension": _TEXT_OR_NULL,
        "extended_at": _TS_OR_NULL,
    }
)
CALLBACK_REQUEST = strict(
    {
        "id": _ID,
        "contact_id": {"type": "string", "format": "uuid"},
        "team": _TEAM,
        "reason": _TEXT_OR_NULL,
        "phone": _TEXT_OR_NULL,
        "preferred_time": _TEXT_OR_NULL,
        "status": {"enum": ["open", "closed"]},
        "due": _TS,
        "term": _TEXT_OR_NULL,
        "counted_from": _TS_OR_NULL,
        "created_at": _TS_OR_NULL,
        "created_by": _TEXT_OR_NULL,
        "origin": _TEXT_OR_NULL,
        "attempts": _COUNT,
        "last_outcome": {"enum": ["reached", "no_answer", "wrong_number", None]},
        "closed_at": _TS_OR_NULL,
        "closed_reason": _TEXT_OR_NULL,
    }
)
HISTORY_ENTRY = {
    "type": "object",
    "required": ["event", "at"],
    "properties": {"event": {"type": "string", "minLength": 1}, "at": _TS},
    "additionalProperties": True,  # each event has fields of its own
}
_WORK_ITEM = {
    "contact_id": {"type": "string", "format": "uuid"},
    "due": _TS_OR_NULL,
    "term": _TEXT_OR_NULL,
    "working_time_left_seconds": {"type": ["integer", "null"]},
    "overdue": {"type": "boolean"},
    "reference": _TEXT_OR_NULL,
    "channel": _TEXT_OR_NULL,
    "received_at": _TS_OR_NULL,
    "sender_name": _TEXT_OR_NULL,
    "subject": _TEXT_OR_NULL,
    "last_note": _TEXT_OR_NULL,
    "category": _TEXT_OR_NULL,
    "owner": _TEXT_OR_NULL,
}
RESPONSES: dict[str, dict[str, Any]] = {
    "healthz 200": strict({"status": {"const": "ok"}}),
    "readyz 200": strict(
        {
            "status": {"const": "ready"},
            "checks": {"type": "object", "additionalProperties": {"const": "ok"}, "minProperties": 1},
            "embedded": {"type": "boolean"},
        }
    ),
    "submitContact 202": strict(
        {
            "id": {"type": "string", "format": "uuid"},
            "reference": {"type": "string", "pattern": "^[A-Z]{3}-[A-Z2-7]{4}-[A-Z2-7]{4}$"},
            "status": {"const": "accepted"},
        }
    ),
    "getContact 200": strict(
        {
            "id": {"type": "string", "format": "uuid"},
            "tenant": _TEAM,
            "status": {"enum": ["routing", "routed", "closed", "merged"]},
            "team": {"anyOf": [_TEAM, {"type": "null"}]},
            "category": _TEXT_OR_NULL,
            "rule": _TEXT_OR_NULL,
            "transfers": _COUNT,
            "received_at": _TS_OR_NULL,
            "routed_at": _TS_OR_NULL,
            "deadlines": {"type": "array", "items": DEADLINE},
            "met": {"type": "object", "additionalProperties": _TS},
            "closed_at": _TS_OR_NULL,
            "resolution": _TEXT_OR_NULL,
            "contact": {"anyOf": [{"$ref": CONTACT_ID}, {"type": "null"}]},
            "history": {"type": "array", "items": HISTORY_ENTRY},
            "callback_requests": {"type": "array", "items": CALLBACK_REQUEST},
            "version": {"type": "string", "pattern": "^[0-9]+$"},
        }
    ),
    "listItems 200": strict(
        {
            "tenant": _TEAM,
            "team": _TEAM,
            "items": {
                "type": "array",
                "items": {
                    "oneOf": [
                        strict(
                            {
                                **_WORK_ITEM,
                                "kind": {"const": "contact"},
                                "id": {"type": "string", "format": "uuid"},
                                "deadline_kind": {"enum": ["acknowledge", "respond", "resolve", None]},
                                "transfers": _COUNT,
                                "status": _TEXT_OR_NULL,
                            }
                        ),
                        strict(
                            {
                                **_WORK_ITEM,
                                "kind": {"const": "callback_request"},
                                "id": _ID,
                                "deadline_kind": {"const": "callback"},
                                "reason": _TEXT_OR_NULL,
                                "attempts": _COUNT,
                                "phone": {
                                    "anyOf": [
                                        {"type": "string", "pattern": r"^\+[1-9][0-9]{6,14}$"},
                                        {"type": "null"},
                                    ]
                                },
                                "preferred_time": _TEXT_OR_NULL,
                                "counted_from": _TS_OR_NULL,
                            }
                        ),
                    ]
                },
            },
        }
    ),
    "transferContact 200": strict(
        {
            "id": {"type": "string", "format": "uuid"},
            "team": _TEAM,
            "from_team": {"anyOf": [_TEAM, {"type": "null"}]},
            "transfers": _COUNT,
            "transfer_limit": _COUNT,
            "outcome": {"enum": ["transferred", "sent_to_coordinating_team", "assigned"]},
            "intended_team": _TEAM,
            "message": {"type": "string", "minLength": 1},
        }
    ),
    "createCallbackRequest 201": CALLBACK_REQUEST,
    "recordCallbackAttempt 200": CALLBACK_REQUEST,
    "closeCallbackRequest 200": CALLBACK_REQUEST,
    "extendDeadline 201": strict(
        {
            "id": {"type": "string", "format": "uuid"},
            "kind": {"enum": ["acknowledge", "respond", "resolve"]},
            "term": {"type": "string"},
            "extension": {"type": "string"},
            "original_due": _TS,
            "due": _TS,
            "warning_at": _TS,
            "notice": strict(
                {
                    "kind": {"const": "deadline_extended"},
                    "channel": {"enum": ["email", "letter"]},
                    "sent_by_service": {"type": "boolean"},
                    "subject": {"type": "string"},
                    "text": {"type": "string", "minLength": 1},
                }
            ),
        }
    ),
    "recordResponse 200": strict(
        {
            "id": {"type": "string", "format": "uuid"},
            "kind": {"enum": ["acknowledge", "respond"]},
            "on_time": {"type": "boolean"},
            "due": _TS_OR_NULL,
            "met_at": _TS,
        }
    ),
    "closeContact 200": strict(
        {"id": {"type": "string", "format": "uuid"}, "status": {"const": "closed"}, "closed_at": _TS}
    ),
    "getRelatedContacts 200": strict(
        {
            "id": {"type": "string", "format": "uuid"},
            "months": {"type": "integer", "minimum": 1},
            "related": {
                "type": "array",
                "items": strict(
                    {
                        "id": {"type": "string", "format": "uuid"},
                        "reference": {"type": "string"},
                        "channel": {"type": "string"},
                        "received_at": _TS,
                        "status": {"enum": ["routing", "routed", "closed", "merged"]},
                        "team": _TEAM,
                        "category": _TEXT_OR_NULL,
                    }
                ),
            },
        }
    ),
}


def shape_problems(answer: str, body: Any) -> list[str]:
    """Why `body` is not the shape of `answer` ("<operationId> <status>"), [] when it is."""
    contact_schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource(CONTACT_ID, Resource.from_contents(contact_schema))
    validator = Draft202012Validator(
        RESPONSES[answer], registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(body)]


def test_every_answer_with_a_shape_is_a_documented_success_answer() -> None:
    doc = document()["paths"]
    declared = {
        f"{op['operationId']} {code}"
        for ops in doc.values()
        for op in ops.values()
        for code in op["responses"]
    }
    assert set(RESPONSES) <= declared
    for schema in RESPONSES.values():
        Draft202012Validator.check_schema(schema)


async def test_success_bodies_have_their_shapes(backend: Harness) -> None:
    client, clock = backend.client, backend.clock
    bodies: list[tuple[str, Any]] = []

    async def call(answer: str, method: str, path: str, **kw: Any) -> Any:
        resp = await client.request(method, path, **kw)
        assert f"{resp.status}" == answer.split()[1], (answer, resp.status, await resp.text())
        body = await resp.json()
        bodies.append((answer, body))
        return body, resp.headers

    await call("healthz 200", "GET", "/healthz")
    for _ in range(200):
        if (await client.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.05)
    await call("readyz 200", "GET", "/readyz")

    contact = {
        "tenant": "ommen",
        "channel": "mail",
        "received_at": clock.now().isoformat(),
        "source": {"adapter": "shapes", "native_id": uuid.uuid4().hex},
        "subject": "Vraag over mijn aanslag",
        "body": "Ik begrijp de aanslag niet.",
        "sender": {"name": "Test Inwoner", "email": "inwoner@example.nl", "phone": "+31612345678"},
    }
    submitted, headers = await call(
        "submitContact 202", "POST", "/v1/contacts", json=contact, headers=ALL_KEY
    )
    cid = submitted["id"]
    assert headers["Location"] == f"/v1/contacts/{cid}"
    await wait_routed(backend.rt, cid)

    view, headers = await call("getContact 200", "GET", f"/v1/contacts/{cid}", headers=ALL_KEY)
    assert headers["ETag"] == f'"{view["version"]}"'
    assert (view["id"], view["tenant"], view["status"], view["team"]) == (
        cid,
        "ommen",
        "routed",
        "belastingen",
    )
    assert view["contact"]["reference"] == submitted["reference"]
    assert {d["kind"] for d in view["deadlines"]} >= {"acknowledge", "respond"}
    assert [e["event"] for e in view["history"]] == ["contact.routed"]

    items, _ = await call(
        "listItems 200", "GET", "/v1/tenants/ommen/teams/belastingen/items", headers=ALL_KEY
    )
    assert cid in [i["id"] for i in items["items"]]
    moved, _ = await call(
        "transferContact 200",
        "POST",
        f"/v1/contacts/{cid}/transfer",
        json={"to_team": "burgerzaken", "from_team": "belastingen", "note": "Graag terugbellen"},
        headers=ALL_KEY,
    )
    assert (moved["team"], moved["from_team"], moved["transfers"]) == ("burgerzaken", "belastingen", 1)
    cb, _ = await call(
        "createCallbackRequest 201",
        "POST",
        f"/v1/contacts/{cid}/callback-requests",
        json={"reason": "terugbellen", "preferred_time": "na 15:00"},
        headers=ALL_KEY,
    )
    items, _ = await call(
        "listItems 200", "GET", "/v1/tenants/ommen/teams/burgerzaken/items", headers=ALL_KEY
    )
    assert {i["kind"] for i in items["items"]} == {"contact", "callback_request"}
    tried, _ = await call(
        "recordCallbackAttempt 200",
        "POST",
        f"/v1/callback-requests/{cb['id']}/attempts",
        json={"outcome": "no_answer"},
        headers=ALL_KEY,
    )
    assert (tried["status"], tried["attempts"], tried["last_outcome"]) == ("open", 1, "no_answer")
    ended, _ = await call(
        "closeCallbackRequest 200",
        "POST",
        f"/v1/callback-requests/{cb['id']}/close",
        json={"reason": "unreachable"},
        headers=ALL_KEY,
    )
    assert (ended["status"], ended["closed_reason"]) == ("closed", "unreachable")
    objection = {**contact, "source": {"adapter": "shapes", "native_id": uuid.uuid4().hex}}
    objection["subject"] = "Bezwaar tegen de aanslag"
    oid = (await client.post("/v1/contacts", json=objection, headers=ALL_KEY)).headers["Location"]
    await wait_routed(backend.rt, oid.rsplit("/", 1)[1])
    extended, _ = await call(
        "extendDeadline 201",
        "POST",
        f"{oid}/extensions",
        json={"kind": "resolve", "reason": "advies nodig"},
        headers=ALL_KEY,
    )
    assert extended["extension"] == "6 weeks"
    await call(
        "recordResponse 200",
        "POST",
        f"/v1/contacts/{cid}/responses",
        json={"kind": "acknowledge"},
        headers=ALL_KEY,
    )
    await call(
        "closeContact 200",
        "POST",
        f"/v1/contacts/{cid}/close",
        json={"resolution": "Uitgelegd"},
        headers=ALL_KEY,
    )
    # The objection came from the same resident (same address and number): listed, newest first.
    related, _ = await call("getRelatedContacts 200", "GET", f"/v1/contacts/{cid}/related", headers=ALL_KEY)
    assert [r["id"] for r in related["related"]] == [oid.rsplit("/", 1)[1]]
    closed, headers = await call("getContact 200", "GET", f"/v1/contacts/{cid}", headers=ALL_KEY)
    assert (closed["status"], closed["resolution"]) == ("closed", "Uitgelegd")
    assert set(closed["met"]) == {"acknowledge"}
    assert [c["status"] for c in closed["callback_requests"]] == ["closed"]
    assert closed["callback_requests"][0]["closed_reason"] == "unreachable"
    assert headers["ETag"] == f'"{closed["version"]}"' and int(closed["version"]) > int(view["version"])

    for answer, body in bodies:
        assert shape_problems(answer, body) == [], answer
    assert {answer for answer, _ in bodies} == set(RESPONSES)


_VIEW = {
    "id": "7beeb41c-00ea-5636-8f73-1545d2d93f7b",
    "tenant": "ommen",
    "status": "routed",
    "team": "belastingen",
    "category": "belasting",
    "rule": "gemeentelijke-belastingen",
    "transfers": 0,
    "received_at": "2026-05-13T08:00:00+00:00",
    "routed_at": "2026-05-13T08:00:00+00:00",
    "deadlines": [
        {
            "kind": "respond",
            "term": "5 workdays",
            "due": "2026-05-21T17:00:00+02:00",
            "warning_at": "2026-05-20T17:00:00+02:00",
            "original_due": None,
            "extension": None,
            "extended_at": None,
        }
    ],
    "met": {},
    "closed_at": None,
    "resolution": None,
    "contact": None,
    "history": [{"event": "contact.routed", "at": "2026-05-13T08:00:00+00:00", "team": "belastingen"}],
    "callback_requests": [],
    "version": "1",
}


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in _VIEW.items() if k != key}


@pytest.mark.parametrize(
    ("body", "reported"),
    [
        (_without("version"), "'version' is a required property"),
        ({**_VIEW, "etag": "1"}, "Additional properties"),
        ({**_VIEW, "transfers": "0"}, "$.transfers"),
        ({**_VIEW, "status": "afgehandeld"}, "$.status"),
        ({**_VIEW, "deadlines": [{"kind": "respond", "due": "morgen"}]}, "$.deadlines[0]"),
        ({**_VIEW, "history": [{"event": "contact.routed"}]}, "$.history[0]"),
        ({**_VIEW, "contact": {"tenant": "ommen"}}, "$.contact"),
    ],
)
def test_a_changed_shape_is_reported(body: dict[str, Any], reported: str) -> None:
    assert shape_problems("getContact 200", _VIEW) == []
    problems = shape_problems("getContact 200", body)
    assert any(reported in p for p in problems), problems
