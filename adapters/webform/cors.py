"""CORS for the web form: a municipality's own website may post the form from the browser (fetch).

The origins are per tenant (WEBFORM_ALLOWED_ORIGINS, `adapters.kit.settings`): Ommen's page may read
the answers of Ommen's form, not of Coevorden's. An answer names the allowed origin itself, never `*`,
and carries no credentials header (the form needs no cookies). Every answer of the route says
`Vary: Origin`, so a cache never hands one site's answer to another.

CORS is not access control. A plain HTML form (no script) posts with an `Origin` too and is taken as
before; what CORS decides is whether a script on another site may read the answer. The guards of the
form itself (size, rate limit, honeypot, validation) apply to every post.
"""

from __future__ import annotations

from aiohttp import web

from adapters.kit.settings import AdapterSettings

ALLOW_METHODS = "POST"
# What the form's script may send beyond the CORS-safelisted headers (Accept, Accept-Language,
# Content-Language): Content-Type, for application/json.
ALLOW_HEADERS = frozenset({"content-type"})
SAFELISTED = frozenset({"accept", "accept-language", "content-language"})
# How long a browser may keep a preflight's answer; short, so a changed list takes effect soon.
MAX_AGE = "600"
# A script may read Retry-After of a 429 to tell the resident when to try again.
EXPOSE_HEADERS = "Retry-After"


def allowed_origin(settings: AdapterSettings, tenant: str, request: web.Request) -> str | None:
    """The request's Origin when it is one of the tenant's websites, else None."""
    origin = request.headers.get("Origin")
    if origin and origin.lower() in settings.allowed_origins.get(tenant, frozenset()):
        return origin
    return None


def add_vary(response: web.StreamResponse, *names: str) -> None:
    present = [v.strip() for v in response.headers.get("Vary", "").split(",") if v.strip()]
    lowered = {v.lower() for v in present}
    present += [n for n in names if n.lower() not in lowered]
    response.headers["Vary"] = ", ".join(present)


def add_cors_headers(response: web.StreamResponse, origin: str | None) -> None:
    """On an actual (non-preflight) answer: the CORS headers for an allowed origin, none otherwise."""
    add_vary(response, "Origin")
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS


def refused(message: str) -> web.Response:
    response = web.json_response({"error": message}, status=403)
    add_vary(response, "Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers")
    return response


def preflight(settings: AdapterSettings, tenant: str, request: web.Request) -> web.Response:
    """The answer to `OPTIONS`: 204 with the Access-Control-Allow-* headers for one of the tenant's
    websites asking for POST with allowed headers; 403, without CORS headers, otherwise."""
    origin = request.headers.get("Origin")
    method = request.headers.get("Access-Control-Request-Method")
    if not origin or not method:
        # Not a CORS preflight: a plain OPTIONS asking what the resource allows.
        response = web.Response(status=204, headers={"Allow": "OPTIONS, POST"})
        add_vary(response, "Origin")
        return response
    if allowed_origin(settings, tenant, request) is None:
        return refused(
            f"this origin may not post the web form of tenant '{tenant}' from the browser; "
            "only the municipality's own websites may"
        )
    if method.strip().upper() != "POST":
        return refused("the web form takes POST only")
    asked = {h.strip().lower() for h in request.headers.get("Access-Control-Request-Headers", "").split(",")}
    extra = sorted(asked - ALLOW_HEADERS - SAFELISTED - {""})
    if extra:
        return refused(f"header(s) not allowed: {', '.join(extra)}; allowed: Content-Type")
    response = web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": MAX_AGE,
        },
    )
    add_vary(response, "Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers")
    return response
