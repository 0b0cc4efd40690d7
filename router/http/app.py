"""HTTP API: health, readiness, contact submission for integrators, contact look-up.

Errors are JSON: {"error": "...", "fields": [{"field": "...", "message": "..."}]} with a fitting status.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from adapters.kit.publisher import ContactPublisher, PublishError
from router import logs
from router.core.casework import CaseError, public_callback
from router.core.casework_service import Casework
from router.core.clock import Clock
from router.core.contact import Contact, field_errors
from router.core.jsonbody import BodyError, parse_json
from router.core.ports import Store, StoreUnavailable
from router.core.tenants import Tenant
from router.settings import Credential

log = logs.get("router.http.app")

MAX_JSON_BYTES = 1_000_000


@dataclass
class ApiContext:
    tenants: dict[str, Tenant]
    store: Store
    publisher: ContactPublisher
    clock: Clock
    credentials: dict[str, Credential]
    # name -> async check returning None when fine, or a reason; used by /readyz.
    readiness: dict[str, Callable[[], Awaitable[str | None]]] = field(default_factory=dict)
    embedded: bool = False
    casework: Casework | None = None


CTX = web.AppKey("ctx", ApiContext)


def error(status: int, message: str, fields: list[dict[str, str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = fields
    return web.json_response(body, status=status)


def credential_of(request: web.Request) -> Credential | None:
    ctx = request.app[CTX]
    key = request.headers.get("X-API-Key")
    auth = request.headers.get("Authorization", "")
    if key is None and auth.startswith("Bearer "):
        key = auth.removeprefix("Bearer ").strip()
    if not key:
        return None
    return ctx.credentials.get(key)


def require_credential(request: web.Request) -> Credential:
    cred = credential_of(request)
    if cred is None:
        raise web.HTTPUnauthorized(
            text=json.dumps(
                {"error": "missing or unknown API key (header X-API-Key or Authorization: Bearer)"}
            ),
            content_type="application/json",
        )
    return cred


async def read_json(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_JSON_BYTES,
            actual_size=request.content_length,
            text=json.dumps({"error": f"body too large: limit is {MAX_JSON_BYTES} bytes"}),
            content_type="application/json",
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        # A chunked body (no Content-Length) past client_max_size: aiohttp stops reading; say why in JSON.
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_JSON_BYTES,
            actual_size=MAX_JSON_BYTES + 1,
            text=json.dumps({"error": f"body too large: limit is {MAX_JSON_BYTES} bytes"}),
            content_type="application/json",
        ) from exc
    if len(raw) > MAX_JSON_BYTES:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_JSON_BYTES,
            actual_size=len(raw),
            text=json.dumps({"error": f"body too large: limit is {MAX_JSON_BYTES} bytes"}),
            content_type="application/json",
        )
    try:
        return parse_json(raw)
    except BodyError as exc:
        error_class = web.HTTPBadRequest if exc.status == 400 else web.HTTPUnprocessableEntity
        raise error_class(text=json.dumps(exc.body()), content_type="application/json") from exc


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    checks: dict[str, str] = {}
    ok = True
    for name, check in ctx.readiness.items():
        try:
            problem = await check()
        except Exception as exc:
            problem = f"{type(exc).__name__}"
        checks[name] = problem or "ok"
        ok = ok and problem is None
    body = {"status": "ready" if ok else "unready", "checks": checks, "embedded": ctx.embedded}
    return web.json_response(body, status=200 if ok else 503)


async def submit_contact(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    cred = require_credential(request)
    data = await read_json(request)
    if not isinstance(data, dict):
        return error(422, "expected a JSON object (a Contact)")
    try:
        contact = Contact.model_validate(data)
    except ValidationError as exc:
        return error(422, "invalid contact", field_errors(exc))
    if contact.tenant not in ctx.tenants:
        return error(
            422, "unknown tenant", [{"field": "tenant", "message": f"no rules for tenant '{contact.tenant}'"}]
        )
    if not cred.allows(contact.tenant):
        return error(403, f"this API key may not submit contacts for tenant '{contact.tenant}'")
    try:
        await ctx.publisher.publish(contact)
    except PublishError as exc:
        log.warning("submit_failed", contact_id=contact.cid, error=str(exc))
        return error(503, "the contact could not be queued; nothing was accepted, try again")
    log.info("contact_submitted", contact_id=contact.cid, tenant=contact.tenant, integrator=cred.name)
    return web.json_response(
        {"id": contact.cid, "reference": contact.reference, "status": "accepted"},
        status=202,
        headers={"Location": f"/v1/contacts/{contact.cid}"},
    )


def contact_view(cid: str, fields: dict[str, str], history: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": cid,
        "tenant": fields.get("tenant"),
        "status": fields.get("status"),
        "team": fields.get("team"),
        "category": fields.get("category") or None,
        "rule": fields.get("rule"),
        "transfers": int(fields.get("transfers", "0")),
        "received_at": fields.get("received_at"),
        "routed_at": fields.get("routed_at"),
        "deadlines": json.loads(fields.get("deadlines", "[]")),
        "met": {k.removeprefix("met:"): v for k, v in fields.items() if k.startswith("met:")},
        "closed_at": fields.get("closed_at"),
        "resolution": fields.get("resolution"),
        "contact": json.loads(fields["contact"]) if "contact" in fields else None,
        "history": history,
    }


async def get_contact(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    cred = require_credential(request)
    cid = request.match_info["id"]
    record = await ctx.store.get(cid)
    # Another tenant's contact looks exactly like a missing one.
    if record is None or "tenant" not in record.fields or not cred.allows(record.fields["tenant"]):
        return error(404, f"no contact with id '{cid}'")
    view = contact_view(cid, record.fields, record.history)
    callbacks = []
    if ctx.casework is not None:
        state = await ctx.casework.load(cid)
        if state is not None:
            callbacks = [public_callback(cb) for _, cb in sorted(state.callbacks.items())]
    view["callback_requests"] = callbacks
    version = record.fields.get("version", "")
    view["version"] = version
    return web.json_response(view, headers={"ETag": f'"{version}"'})


async def openapi(request: web.Request) -> web.Response:
    from router.http.openapi import document

    return web.json_response(document())


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except CaseError as exc:
        return web.json_response(exc.body, status=exc.status)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.empty_body:
            raise
        resp = error(exc.status, exc.reason)
        if "Allow" in exc.headers:  # a 405 must say which methods the resource has (RFC 9110)
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except StoreUnavailable:
        return error(503, "state store unavailable, try again")
    except Exception:
        log.exception("unhandled_error", path=request.path)
        return error(500, "internal error")


def create_app(ctx: ApiContext) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_JSON_BYTES)
    app[CTX] = ctx
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/v1/contacts", submit_contact)
    app.router.add_get("/v1/contacts/{id}", get_contact)
    app.router.add_get("/v1/openapi.json", openapi)
    from router.http import agents as agent_api

    agent_api.add_routes(app)
    return app


def now_iso(clock: Clock) -> str:
    value: datetime = clock.now()
    return value.isoformat()
