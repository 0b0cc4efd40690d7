"""Helpers for adapters that take input over HTTP: part of the public kit (see docs/adapters.md).

Errors are JSON like the rest of the API: {"error": "...", "fields": [{"field": ..., "message": ...}]}.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, Protocol

from aiohttp import web

from adapters.kit.answers import answer_by
from adapters.kit.base import ChannelAdapter, Inbound, Outcome, PublishError, Rejected, submit
from adapters.kit.context import AdapterContext
from router import logs
from router.core.contact import Contact
from router.core.jsonbody import BodyError, parse_json

log = logs.get("adapters.kit.http")

P = ParamSpec("P")

ADAPTERS = web.AppKey("adapter_context", AdapterContext)


# What an API key may do: submit contacts, act as an agent (transfer, callbacks, close), read contacts
# and work lists; `admin` may do all of it. A channel's submit route asks for `submit`.
Scope = Literal["submit", "agent", "read", "admin"]


class Caller(Protocol):
    """Who sent a request: a system with an API key (an integrator, a KCC telephony system)."""

    @property
    def name(self) -> str:
        """The credential's name, an id (e.g. `ommen-kcc`): what the service records as `by`."""
        ...

    def allows(self, tenant: str) -> bool: ...

    def permits(self, scope: str) -> bool:
        """Whether the key has `scope` (`admin` has every scope)."""
        ...


class Authenticator(Protocol):
    """How the service tells who sent a request; the HTTP layer implements it (API keys) and puts it on
    the app under AUTHENTICATOR, so an adapter asks `require_key` and never sees credentials."""

    def caller(self, request: web.Request) -> Caller | None:
        """The caller the request's credentials name, or None when it has none or unknown ones."""
        ...


AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
UNAUTHENTICATED = "missing or unknown API key (header X-API-Key or Authorization: Bearer)"


def lacks_scope(scope: str) -> str:
    """The 403 message for a key without the route's scope (the same from the API and the kit)."""
    return f"this API key lacks the scope '{scope}'"


def context(request: web.Request) -> AdapterContext:
    return request.app[ADAPTERS]


def rejected(exc: Rejected, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(exc.body(), status=exc.status, headers=headers)


def known_tenant(request: web.Request) -> str:
    """The `{tenant}` of the URL; Rejected 404 when the service has no rules for it."""
    tenant = request.match_info["tenant"]
    if tenant not in context(request).tenants:
        raise Rejected(f"unknown tenant '{tenant}'", status=404)
    return tenant


def require_key(request: web.Request, tenant: str, scope: Scope = "submit") -> Caller:
    """An API key (X-API-Key or Authorization: Bearer) with `scope` that may act for `tenant`: 401 without
    a known key, 403 without the scope or the tenant."""
    authenticator = request.app.get(AUTHENTICATOR)
    if authenticator is None:
        raise Rejected("API keys are not configured on this server", status=503)
    caller = authenticator.caller(request)
    if caller is None:
        raise Rejected(UNAUTHENTICATED, status=401)
    if not caller.permits(scope):
        raise Rejected(lacks_scope(scope), status=403)
    if not caller.allows(tenant):
        raise Rejected(f"this API key may not submit contacts for tenant '{tenant}'", status=403)
    return caller


JSON_ONLY = "send the body as JSON, with Content-Type: application/json"


def require_json(request: web.Request) -> None:
    """Rejected 415 unless the body is sent as JSON (application/json or a +json type): a JSON route
    never guesses what a body of another type means."""
    content_type = request.content_type
    if content_type != "application/json" and not (
        content_type.startswith("application/") and content_type.endswith("+json")
    ):
        raise Rejected(JSON_ONLY, status=415)


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(f"body too large: limit is {limit} bytes", status=413)
    # Chunked bodies have no length up front: count while reading and stop at the limit.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(65_536):
        size += len(chunk)
        if size > limit:
            raise Rejected(f"body too large: limit is {limit} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = parse_json(raw)
    except BodyError as exc:
        raise Rejected(exc.message, exc.fields, status=exc.status) from exc
    if not isinstance(data, dict):
        raise Rejected("expected a JSON object", status=422)
    return data


def receipt(ctx: AdapterContext, contact: Contact) -> dict[str, Any]:
    """What a resident-facing channel answers: the reference and the date by which they get an answer."""
    tenant = ctx.tenants[contact.tenant]
    answer = answer_by(tenant, contact)
    return {
        "id": contact.cid,
        "reference": contact.reference,
        "status": "accepted",
        "expected_answer_by": answer.due.isoformat() if answer else None,
        "expected_answer_text": answer.text if answer else None,
        "status_url": ctx.status_links(contact) if ctx.status_links is not None else None,
    }


async def submit_or_error(
    adapter: ChannelAdapter, inbound: Inbound, ctx: AdapterContext, *, dead_letter_ok: bool = False
) -> Outcome | web.Response:
    """Submit; a Rejected, an unconfirmed publish or (unless `dead_letter_ok`) input that ended as a
    dead letter becomes the JSON error response. A returned Outcome then has at least one contact."""
    try:
        outcome = await submit(adapter, inbound, ctx)
        if not outcome.contacts and not dead_letter_ok:
            reason = outcome.dead_reason or "no contact in the input"
            return web.json_response({"error": f"not accepted: {reason}"}, status=422)
        return outcome
    except Rejected as exc:
        return rejected(exc)
    except PublishError:
        log.warning("submit_failed", adapter=adapter.name, tenant=inbound.tenant)
        return web.json_response(
            {"error": "the contact could not be queued; nothing was accepted, try again"}, status=503
        )


def handler(fn: Callable[P, Awaitable[web.StreamResponse]]) -> Callable[P, Awaitable[web.StreamResponse]]:
    """Decorator for handlers (functions or methods): a Rejected raised anywhere becomes its JSON answer."""

    @functools.wraps(fn)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> web.StreamResponse:
        try:
            return await fn(*args, **kwargs)
        except Rejected as exc:
            return rejected(exc)

    return wrapped


def add_routes(app: web.Application) -> None:
    """Serve the routes of every enabled adapter on `app` (set app[ADAPTERS] first)."""
    if ADAPTERS not in app:
        raise RuntimeError("set app[adapters.kit.http.ADAPTERS] to the AdapterContext before add_routes(app)")
    for adapter in app[ADAPTERS].adapters.values():
        app.router.add_routes(adapter.routes())
