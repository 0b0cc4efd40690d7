"""Scoped API keys (issue 14, item 6): every route that takes a key × every scope → allowed or 403; keys
configured as SHA-256 digests; the bearer scheme in any case; agent ids, never names or addresses; and
who acted (`by`, the credential's name) in the history and the events.

The scope table runs on the embedded backend: the real app and service code on the in-process broker
(the check is the HTTP layer's, before any backend is touched, so the real servers would add only time).
The attribution and event-routing tests run on both backends.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError
from structlog.testing import capture_logs

from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.openapi import AUTHED
from adapters.kit.settings import AdapterSettings
from router.core import topology
from router.core.clock import ManualClock
from router.http.app import create_app
from router.http.openapi import document
from router.service import context_for_runtime
from router.settings import Settings, parse_api_keys
from tests.backends import open_harness
from tests.conftest import AMQP_URL, REDIS_URL, RULES
from tests.harness import Harness, drain_queue

ADMIN_KEY = "k-admin"
KEYS = ",".join(
    [
        "sub:k-submit:*:submit",
        "agt:k-agent::agent",
        "rd:k-read:ommen|coevorden:read",
        f"adm:sha256={hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}:*:admin",  # the digest, not the key
        "legacy:k-legacy",  # no scopes: what a key could do before keys had scopes
        "ommen-kcc:k-ommen:ommen:agent|read",
    ]
)
KEY_OF = {"submit": "k-submit", "agent": "k-agent", "read": "k-read", "admin": ADMIN_KEY, "none": "k-legacy"}
ADMIN = {"X-API-Key": ADMIN_KEY, "X-Agent-Id": "setup-1"}


@pytest.fixture
def settings(namespace: str) -> Settings:
    return Settings(
        amqp_url=AMQP_URL,
        redis_url=REDIS_URL,
        rules_dir=RULES,
        namespace=namespace,
        api_keys=KEYS,  # type: ignore[arg-type]
        claim_lease_ms=3000,
    )


@dataclass
class Service:
    """The embedded runtime with the app as `serve` builds it: API, agent routes and channel routes."""

    h: Harness
    client: TestClient[Any, Any]
    adapters: list[type[Any]]


@pytest.fixture
async def service(settings: Settings, clock: ManualClock) -> AsyncIterator[Service]:
    async with open_harness("embedded", settings, clock) as h:
        adapters = await context_for_runtime(
            h.rt, AdapterSettings(adapters_enabled="webform,social,phone,counter", meta_app_secret="s")
        )
        app = create_app(h.rt.api_context())
        app[ADAPTERS] = adapters
        add_routes(app)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        try:
            yield Service(h, client, [type(a) for a in adapters.adapters.values()])
        finally:
            await client.close()


# -- the table -----------------------------------------------------------------------------------

Call = Callable[[Service, dict[str, str]], Awaitable[tuple[int, Any]]]


async def _routed(svc: Service) -> str:
    return await svc.h.route("ommen", "phone", "Vraag over mijn aanslag")  # classified: belastingen


async def _answer(resp: Any) -> tuple[int, Any]:
    return resp.status, await resp.json()


async def submit_contact(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    contact = svc.h.contact("ommen", "mail", "Vraag").model_dump(mode="json", exclude={"id", "reference"})
    return await _answer(await svc.client.post("/v1/contacts", json=contact, headers=key))


async def get_contact(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    cid = await _routed(svc)
    return await _answer(await svc.client.get(f"/v1/contacts/{cid}", headers=key))


async def get_related(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    cid = await _routed(svc)
    return await _answer(await svc.client.get(f"/v1/contacts/{cid}/related", headers=key))


async def list_items(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    await _routed(svc)
    return await _answer(await svc.client.get("/v1/tenants/ommen/teams/belastingen/items", headers=key))


async def transfer(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    cid = await _routed(svc)
    body = {"to_team": "burgerzaken", "from_team": "belastingen"}
    return await _answer(await svc.client.post(f"/v1/contacts/{cid}/transfer", json=body, headers=key))


async def callback_request(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    cid = await _routed(svc)
    body = {"reason": "bellen"}
    return await _answer(
        await svc.client.post(f"/v1/contacts/{cid}/callback-requests", json=body, headers=key)
    )


async def attempt(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    cid = await _routed(svc)
    made = await svc.client.post(f"/v1/contacts/{cid}/callback-requests", json={"reason": "b"}, headers=ADMIN)
    assert made.status == 201
    cbid = (await made.json())["id"]
    body = {"outcome": "no_answer"}
    return await _answer(
        await svc.client.post(f"/v1/callback-requests/{cbid}/attempts", json=body, headers=key)
    )


async def close_callback(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    cid = await _routed(svc)
    made = await svc.client.post(f"/v1/contacts/{cid}/callback-requests", json={"reason": "b"}, headers=ADMIN)
    assert made.status == 201
    cbid = (await made.json())["id"]
    body = {"reason": "resolved_otherwise"}
    return await _answer(await svc.client.post(f"/v1/callback-requests/{cbid}/close", json=body, headers=key))


async def extension(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    cid = await svc.h.route("ommen", "mail", "Bezwaar tegen de aanslag")  # resolve: 12 weeks + 6 weeks
    body = {"kind": "resolve", "reason": "advies nodig"}
    return await _answer(await svc.client.post(f"/v1/contacts/{cid}/extensions", json=body, headers=key))


async def response(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    cid = await _routed(svc)
    body = {"kind": "respond"}
    return await _answer(await svc.client.post(f"/v1/contacts/{cid}/responses", json=body, headers=key))


async def close(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    cid = await _routed(svc)
    body = {"resolution": "klaar"}
    return await _answer(await svc.client.post(f"/v1/contacts/{cid}/close", json=body, headers=key))


async def take(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    cid = await _routed(svc)
    return await _answer(await svc.client.post(f"/v1/contacts/{cid}/take", json={}, headers=key))


async def phone_note(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    body = {"topic": "paspoort", "note": "Vraag beantwoord", "outcome": "answered", "agent": "kcc-1"}
    return await _answer(await svc.client.post("/v1/channels/phone/ommen/notes", json=body, headers=key))


async def counter_visit(svc: Service, key: dict[str, str]) -> tuple[int, Any]:
    body = {"visit_id": "Q-1", "desk": "balie-3", "topic": "Paspoort aanvragen"}
    return await _answer(await svc.client.post("/v1/channels/counter/ommen/visits", json=body, headers=key))


# (method, route as the router names it) -> the scope it needs, its success status, the call.
ROUTES: dict[tuple[str, str], tuple[str, int, Call]] = {
    ("POST", "/v1/contacts"): ("submit", 202, submit_contact),
    ("GET", "/v1/contacts/{id}"): ("read", 200, get_contact),
    ("GET", "/v1/contacts/{id}/related"): ("read", 200, get_related),
    ("GET", "/v1/tenants/{tenant}/teams/{team}/items"): ("read", 200, list_items),
    ("POST", "/v1/contacts/{id}/transfer"): ("agent", 200, transfer),
    ("POST", "/v1/contacts/{id}/callback-requests"): ("agent", 201, callback_request),
    ("POST", "/v1/callback-requests/{id}/attempts"): ("agent", 200, attempt),
    ("POST", "/v1/callback-requests/{id}/close"): ("agent", 200, close_callback),
    ("POST", "/v1/contacts/{id}/extensions"): ("agent", 201, extension),
    ("POST", "/v1/contacts/{id}/responses"): ("agent", 200, response),
    ("POST", "/v1/contacts/{id}/close"): ("agent", 200, close),
    ("POST", "/v1/contacts/{id}/take"): ("agent", 200, take),
    ("POST", "/v1/channels/phone/{tenant}/notes"): ("submit", 202, phone_note),
    ("POST", "/v1/channels/counter/{tenant}/visits"): ("submit", 202, counter_visit),
}
KEY_SCOPES = ["submit", "agent", "read", "admin", "none"]  # "none": a key configured without scopes
TABLE = [
    pytest.param(route, key_scope, id=f"{route[0]} {route[1]} with {key_scope}")
    for route in ROUTES
    for key_scope in KEY_SCOPES
]


@pytest.mark.parametrize(("route", "key_scope"), TABLE)
async def test_each_route_takes_a_key_with_its_scope_and_no_other(
    service: Service, route: tuple[str, str], key_scope: str
) -> None:
    needs, ok, call = ROUTES[route]
    allowed = key_scope in (needs, "admin", "none")
    status, body = await call(service, {"X-API-Key": KEY_OF[key_scope], "X-Agent-Id": "agent-1"})
    if allowed:
        assert status == ok, body
    else:
        assert (status, body) == (403, {"error": f"this API key lacks the scope '{needs}'"})


async def test_the_table_has_every_route_that_takes_a_key_with_the_scope_the_document_names(
    service: Service,
) -> None:
    doc = document(service.adapters)
    keyed = {
        (method.upper(), path): op["security"]
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if op["security"]
    }
    assert set(keyed) == set(ROUTES)
    for route, security in keyed.items():
        scope = ROUTES[route][0]
        if security == AUTHED:
            # The kit's scope-less AUTHED (the worked example uses it): `require_key`'s default, submit.
            assert scope == "submit", route
            continue
        assert security == [{"apiKey": [scope]}, {"bearer": [scope]}], route
        assert scope in doc["paths"][route[1]][route[0].lower()]["responses"]["403"]["description"]


# The routes that take no key: health, this document, the metrics (no personal data), and the channels
# that authenticate otherwise (the web form's origin and rate limit, Meta's signature).
UNKEYED = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/metrics"),
    ("POST", "/v1/channels/webform/{tenant}"),
    ("OPTIONS", "/v1/channels/webform/{tenant}"),
    ("GET", "/v1/channels/social/{tenant}/webhook"),
    ("POST", "/v1/channels/social/{tenant}/webhook"),
}


async def test_the_routes_without_a_key_are_these_and_metrics_answers_without_one(service: Service) -> None:
    doc = document(service.adapters)
    unkeyed = {
        (m.upper(), p) for p, ops in doc["paths"].items() for m, op in ops.items() if not op["security"]
    }
    assert unkeyed == UNKEYED
    resp = await service.client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"


async def test_a_scope_is_checked_before_the_tenant_and_the_tenant_rule_stands(service: Service) -> None:
    cid = await service.h.route("coevorden", "phone", "Algemene vraag")
    # ommen-kcc may act for Ommen only: Coevorden's contact does not exist for it ...
    kcc = {"X-API-Key": "k-ommen", "X-Agent-Id": "kcc-017"}
    assert (await service.client.get(f"/v1/contacts/{cid}", headers=kcc)).status == 404
    resp = await service.client.post(f"/v1/contacts/{cid}/close", json={"resolution": "x"}, headers=kcc)
    assert resp.status == 404
    # ... and it may not submit at all, for any tenant
    status, body = await phone_note(service, kcc)
    assert (status, body["error"]) == (403, "this API key lacks the scope 'submit'")


# -- the keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["Bearer k-read", "bearer k-read", "BEARER k-read", "bEaReR   k-read "])
async def test_the_bearer_scheme_is_case_insensitive(service: Service, auth: str) -> None:
    cid = await _routed(service)
    assert (await service.client.get(f"/v1/contacts/{cid}", headers={"Authorization": auth})).status == 200


@pytest.mark.parametrize("auth", ["Basic k-read", "k-read", "Bearer", "Bearer k-rea", "Bearerk-read"])
async def test_anything_else_in_authorization_is_no_key(service: Service, auth: str) -> None:
    cid = await _routed(service)
    assert (await service.client.get(f"/v1/contacts/{cid}", headers={"Authorization": auth})).status == 401


def test_a_key_is_kept_only_as_its_digest_and_a_digest_key_is_found_by_its_key() -> None:
    creds = parse_api_keys(KEYS)
    assert set(creds) == {hashlib.sha256(k.encode()).hexdigest() for k in [*KEY_OF.values(), "k-ommen"]}
    assert not any(k in repr(creds) for k in [*KEY_OF.values(), "k-ommen"])
    admin = creds[hashlib.sha256(ADMIN_KEY.encode()).hexdigest()]
    assert (admin.name, admin.tenants, admin.scoped) == ("adm", None, True)
    assert all(admin.permits(s) for s in ("submit", "agent", "read", "admin"))
    kcc = creds[hashlib.sha256(b"k-ommen").hexdigest()]
    assert (kcc.tenants, kcc.scopes) == (frozenset({"ommen"}), frozenset({"agent", "read"}))
    assert not kcc.permits("submit") and not kcc.permits("admin")
    legacy = creds[hashlib.sha256(b"k-legacy").hexdigest()]
    assert (legacy.tenants, legacy.scoped) == (None, False)
    assert [s for s in ("submit", "agent", "read", "admin") if legacy.permits(s)] == [
        "submit",
        "agent",
        "read",
    ]
    # an upper-case digest is the same digest
    upper = parse_api_keys(f"x:sha256={hashlib.sha256(b'k').hexdigest().upper()}")
    assert set(upper) == {hashlib.sha256(b"k").hexdigest()}


@pytest.mark.parametrize(
    ("api_keys", "says"),
    [
        ("a:k-secret:*:submit|write", "credential 1 ('a'): 1 unknown scope(s) in the fourth field"),
        ("a:k-1,b:k-secret:ommen:Agent", "credential 2 ('b'): 1 unknown scope(s)"),
        # A ':' in a key: the rest of it is never quoted.
        ("a:k-se:cr:etpart", "credential 1 ('a'): 1 unknown scope(s)"),
        ("a:sha256=abc", "credential 1 ('a'): 'sha256=' must be followed by 64 hex digits"),
        ("a:k-secret:ommen:read:extra", "credential 1: expected 'name:key[:tenants[:scopes]]'"),
        ("a", "credential 1: expected"),
        (":k-secret", "credential 1: expected"),
        ("Jan de Vries:k-secret", "credential 1: the name must be an id"),
        ("a:k-secret,b:k-secret", "credential 2 ('b'): the same key as credential 'a'"),
        ("a:k-secret:ommen|*", "credential 1 ('a'): tenants are"),
    ],
)
def test_a_bad_api_keys_setting_stops_the_start_naming_the_credential_never_the_key(
    api_keys: str, says: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(api_keys=api_keys)  # type: ignore[arg-type]
    assert says in str(refused.value)
    assert "k-secret" not in str(refused.value) and "etpart" not in str(refused.value)


def test_a_key_without_scopes_is_named_in_one_warning_at_start_up_and_scoped_keys_in_none(
    settings: Settings,
) -> None:
    from router.http.context import ApiContext

    ctx = ApiContext(tenants={}, store=None, publisher=None, clock=None, credentials=settings.credentials())  # type: ignore[arg-type]
    with capture_logs() as logged:
        create_app(ctx)
    warnings = [e for e in logged if e["event"] == "api_key_without_scopes"]
    assert [(w["log_level"], w["credential"]) for w in warnings] == [("warning", "legacy")]
    assert "k-legacy" not in json.dumps(logged)


# -- who acted -----------------------------------------------------------------------------------


@pytest.mark.parametrize("agent", ["jan.devries@ommen.nl", "Jan de Vries", "-x", "a" * 65, "kcc:1"])
async def test_an_agent_is_an_id_an_address_or_a_name_is_refused_naming_the_field(
    service: Service, agent: str
) -> None:
    cid = await _routed(service)
    url = f"/v1/contacts/{cid}/close"
    key = {"X-API-Key": "k-agent"}
    for headers, body in [
        (key, {"resolution": "klaar", "agent": agent}),
        ({**key, "X-Agent-Id": agent}, {"resolution": "klaar"}),
    ]:
        resp = await service.client.post(url, json=body, headers=headers)
        assert resp.status == 422
        assert [f["field"] for f in (await resp.json())["fields"]] == ["agent"]
        assert agent not in await resp.text()
    assert (await service.h.get(cid, headers=ADMIN))["status"] == "routed"


async def test_a_display_name_is_checked_for_length_only(service: Service) -> None:
    cid = await _routed(service)
    body = {"resolution": "klaar", "agent": "kcc-017", "agent_name": "x" * 201}
    resp = await service.client.post(f"/v1/contacts/{cid}/close", json=body, headers={"X-API-Key": "k-agent"})
    assert resp.status == 422 and [f["field"] for f in (await resp.json())["fields"]] == ["agent_name"]


async def test_an_agent_action_records_the_credential_as_by_and_the_display_name_only_in_the_history(
    backend: Harness,
) -> None:
    cid = await backend.route("ommen", "phone", "Vraag over mijn aanslag")
    await backend.events()  # forget the routing events
    kcc = {"X-API-Key": "k-ommen"}
    status, _ = await backend.transfer(
        cid, "burgerzaken", "belastingen", headers=kcc, agent="kcc-017", agent_name="Jan de Vries"
    )
    assert status == 200
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/close", json={"resolution": "klaar"}, headers={**kcc, "X-Agent-Id": "kcc-018"}
    )
    assert resp.status == 200

    history = (await backend.get(cid, headers=kcc))["history"]
    moved, closed = history[-2], history[-1]
    assert (moved["event"], moved["agent"], moved["by"], moved["agent_name"]) == (
        "contact.transferred",
        "kcc-017",
        "ommen-kcc",
        "Jan de Vries",
    )
    assert (closed["event"], closed["agent"], closed["by"]) == ("contact.closed", "kcc-018", "ommen-kcc")
    assert "agent_name" not in closed

    events = await backend.events()
    bodies = [json.loads(m.body) for m in events]
    assert [(m.routing_key, b["event"]) for m, b in zip(events, bodies, strict=True)] == [
        ("ommen.contact.transferred", "contact.transferred"),
        ("ommen.contact.closed", "contact.closed"),
    ]
    assert [(b["tenant"], b["agent"], b["by"]) for b in bodies] == [
        ("ommen", "kcc-017", "ommen-kcc"),
        ("ommen", "kcc-018", "ommen-kcc"),
    ]
    assert not any("Jan de Vries" in m.body.decode() or "agent_name" in m.body.decode() for m in events)


async def test_a_municipality_binds_its_own_events_and_gets_no_other(h: Harness, amqp: Any) -> None:
    channel = await amqp.channel()
    mine = await channel.declare_queue(exclusive=True)
    await mine.bind(h.names(topology.EVENTS), routing_key="ommen.#")
    ommen = await h.route("ommen", "phone", "Vraag over mijn aanslag")
    await h.route("coevorden", "phone", "Algemene vraag")
    resp = await h.client.post(
        f"/v1/contacts/{ommen}/close",
        json={"resolution": "klaar"},
        headers={"X-API-Key": "k-ommen", "X-Agent-Id": "a1"},
    )
    assert resp.status == 200
    got: list[aio_pika.abc.AbstractIncomingMessage] = await drain_queue(mine, settle=0.5)
    bodies = [json.loads(m.body) for m in got]
    assert [b["event"] for b in bodies] == ["contact.received", "contact.routed", "contact.closed"]
    assert {b["tenant"] for b in bodies} == {"ommen"} and {b["contact_id"] for b in bodies} == {ommen}
    assert [m.routing_key for m in got] == [f"ommen.{b['event']}" for b in bodies]
    # the tests' own tap, bound with "#", saw Coevorden's too
    assert {json.loads(m.body)["tenant"] for m in await h.events()} == {"ommen", "coevorden"}
    await channel.close()
