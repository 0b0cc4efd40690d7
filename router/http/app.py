"""HTTP API: health, readiness, contact submission for integrators (API key scope `submit`), contact
look-up (`read`).

Errors are JSON: {"error": "...", "fields": [{"field": "...", "message": "..."}]} with a fitting status.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web, web_response
from pydantic import ValidationError

from adapters.kit.http import ADAPTERS, AUTHENTICATOR
from adapters.kit.publisher import PublishError
from router import logs
from router.core.casework import CaseError, public_callback
from router.core.clock import Clock
from router.core.contact import Contact, admission_problems, field_errors
from router.core.ports import StoreUnavailable
from router.http import agents, openapi, residents, schemas
from router.http.auth import ApiKeys, readable_contact, require_credential
from router.http.body import MAX_JSON_BYTES, error, read_json
from router.http.context import CTX, ApiContext
from router.http.metrics import metrics

__all__ = ["CTX", "ApiContext", "create_app"]

log = logs.get("router.http.app")


async def healthz(request: web.Request) -> web.Response:
    return schemas.answer(schemas.Health, {"status": "ok"})


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
    return schemas.answer(schemas.Readiness, body, 200 if ok else 503)


async def submit_contact(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    cred = require_credential(request, "submit")
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
    if problems := admission_problems(contact, ctx.clock.now()):
        return error(422, "invalid contact", problems)
    try:
        await ctx.publisher.publish(contact)
    except PublishError as exc:
        log.warning("submit_failed", contact_id=contact.cid, error=type(exc).__name__)
        return error(503, "the contact could not be queued; nothing was accepted, try again")
    log.info("contact_submitted", contact_id=contact.cid, tenant=contact.tenant, integrator=cred.name)
    return schemas.answer(
        schemas.Accepted,
        {"id": contact.cid, "reference": contact.reference, "status": "accepted"},
        202,
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
    cid = request.match_info["id"]
    record = await readable_contact(request)
    if record is None:
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
    return schemas.answer(schemas.ContactView, view, headers={"ETag": f'"{version}"'})


async def openapi_document(request: web.Request) -> web.Response:
    """The document of what this app serves: the API, the agent routes and the enabled adapters'."""
    adapters = request.app[ADAPTERS].adapters.values() if ADAPTERS in request.app else ()
    tenants = request.app[CTX].tenants
    return web.json_response(openapi.document([type(a) for a in adapters], tenants))


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except CaseError as exc:
        return web.json_response(exc.body, status=exc.status)
    except web.HTTPException as exc:
        # A redirect stays one; the workspace's pages answer in HTML (router/http/workspace).
        if (
            exc.content_type == "application/json"
            or exc.empty_body
            or exc.status < 400
            or request.path.startswith("/werkplek/")
        ):
            raise
        resp = error(exc.status, exc.reason)
        if "Allow" in exc.headers:  # a 405 must say which methods the resource has (RFC 9110)
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except StoreUnavailable:
        return error(503, "state store unavailable, try again")
    except Exception:
        # The route's template, not the path: a path holds whatever the caller typed.
        resource = request.match_info.route.resource
        log.exception("unhandled_error", route=resource.canonical if resource else None)
        return error(500, "internal error")


# What aiohttp answers before any app runs (a request its HTTP parser refuses: 400) takes its Server
# header from this module's constant, out of reach of `drop_server_header`: without a version it says
# nothing an attacker can use.
web_response.SERVER_SOFTWARE = "contact-router"  # type: ignore[attr-defined]


async def drop_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """No `Server: Python/3.x aiohttp/x` on any answer: a version banner helps only an attacker."""
    response.headers.popall("Server", None)


def create_app(ctx: ApiContext) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_JSON_BYTES)
    app.on_response_prepare.append(drop_server_header)
    app[CTX] = ctx
    keys = ApiKeys(ctx.credentials)
    keys.warn_unscoped()
    app[AUTHENTICATOR] = keys
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/v1/contacts", submit_contact)
    app.router.add_get("/v1/contacts/{id}", get_contact)
    app.router.add_get("/v1/openapi.json", openapi_document)
    app.router.add_get("/metrics", metrics)
    agents.add_routes(app)
    residents.add_routes(app)
    return app


def now_iso(clock: Clock) -> str:
    value: datetime = clock.now()
    return value.isoformat()
