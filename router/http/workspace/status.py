"""The status page for residents (issue 19): GET /status/<reference>?t=<token>, as a page or, for the
municipality's own portal, as JSON (Accept: application/json). Its content: router/core/status.py.

A wrong or missing token answers exactly what an unknown reference answers (same status, body and
headers), after the same work: one reference look-up and one HMAC. Requests are limited per client
address (a guessing client is slowed down long before 128 bits could matter), and the token is in the
address, so the page sends no Referer anywhere and is never cached or indexed."""

from __future__ import annotations

import json
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from adapters.kit.ratelimit import bucket_key
from router import logs
from router.core.dutch import long_date_time
from router.core.ports import StoreUnavailable
from router.core.status import status_view, token_matches
from router.http.context import CTX
from router.http.workspace.context import PREFIX, WORKSPACE

log = logs.get("router.http.status")

PATH = "/status/{reference}"
NOT_FOUND = (
    "Controleer of u de hele link uit de e-mail heeft gebruikt. Werkt het niet? Neem dan contact op met "
    "de gemeente en noem uw referentienummer."
)
TOO_MANY = "U heeft deze pagina te vaak opgevraagd. Probeer het over een paar minuten opnieuw."
UNAVAILABLE = "Probeer het over een paar minuten opnieuw."
# The longest reference a tenant can have, with room: anything longer is no reference.
MAX_REFERENCE = 40
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
    ),
    "Vary": "Accept",
}


def _wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _answer(request: web.Request, status: int, template: str, values: dict[str, Any]) -> web.Response:
    if _wants_json(request):
        body = values["json"] if status == 200 else {"status": status, "message": values["message"]}
        return web.json_response(body, status=status, headers=_HEADERS)
    response = aiohttp_jinja2.render_template(
        template, request, {"prefix": PREFIX, "tenant_name": None, **values}, status=status
    )
    response.headers.update(_HEADERS)
    return response


def _not_found(request: web.Request) -> web.Response:
    return _answer(
        request,
        404,
        "status_onbekend.html",
        {"heading": "Wij kunnen deze vraag niet vinden", "message": NOT_FOUND},
    )


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


async def status_page(request: web.Request) -> web.StreamResponse:
    config = request.app[WORKSPACE]
    ctx = request.app[CTX]
    if config.status_limiter is not None:
        try:
            verdict = await config.status_limiter.take(bucket_key("status", _client(request)))
        except Exception as exc:  # the limiter away must not take the page with it
            log.warning("status_rate_limiter_failed", error=type(exc).__name__)
        else:
            if not verdict.allowed:
                slow = {"heading": "Even geduld", "message": TOO_MANY}
                response = _answer(request, 429, "status_onbekend.html", slow)
                response.headers["Retry-After"] = str(verdict.retry_after)
                return response
    reference = request.match_info["reference"].strip().upper()
    token = request.query.get("t", "")
    try:
        cid = await ctx.store.resolve_reference(reference) if len(reference) <= MAX_REFERENCE else None
        if not token_matches(config.status_secret, cid, token[:100]) or cid is None:
            return _not_found(request)
        casework = ctx.casework
        state = await casework.load(cid) if casework is not None else None
        if casework is None or state is None or state.fields.get("tenant") not in ctx.tenants:
            return _not_found(request)  # purged or erased since the link was sent
        if (target := state.fields.get("merged_into")) and state.status == "merged":
            # Joined to an earlier question of the resident (a reply, the same topic): that one is
            # what is being handled, under its own reference.
            joined = await casework.load(target)
            if joined is not None and joined.fields.get("tenant") == state.tenant:
                cid, state = target, joined
                reference = str(json.loads(state.fields["contact"]).get("reference") or reference)
        history = await casework.history(cid)
    except StoreUnavailable:
        away = {"heading": "Deze pagina werkt nu even niet", "message": UNAVAILABLE}
        return _answer(request, 503, "status_onbekend.html", away)
    tenant = ctx.tenants[state.tenant]
    zone = tenant.loaded.rules.calendar.timezone
    departments = {t.id: t.name for t in tenant.loaded.rules.teams}
    contact = json.loads(state.fields["contact"]) if "contact" in state.fields else {}
    view = status_view(
        reference=reference,
        fields=state.fields,
        contact=contact,
        history=history,
        departments=departments,
        calendar=tenant.calendar,
        zone=zone,
    )
    log.info("status_viewed", contact_id=cid, tenant=state.tenant)
    values = {
        "view": view,
        "json": view.as_json(),
        "tenant_name": tenant.loaded.rules.name,
        "received": long_date_time(view.received_at, zone),
        "answered": long_date_time(view.answered_at, zone) if view.answered_at else None,
        "steps": [{"when": long_date_time(s.at, zone), "text": s.text} for s in view.steps],
    }
    return _answer(request, 200, "status.html", values)
