"""JSON request bodies and JSON errors: {"error": "...", "fields": [{"field": "...", "message": "..."}]}.

A JSON route takes only a body sent as JSON (`Content-Type: application/json`, or a `+json` type):
anything else is 415, before the body is read.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from router.core.jsonbody import BodyError, parse_json

MAX_JSON_BYTES = 1_000_000


def error(status: int, message: str, fields: list[dict[str, str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = fields
    return web.json_response(body, status=status)


UNSUPPORTED = "send the body as JSON, with Content-Type: application/json"


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def read_json(request: web.Request) -> Any:
    if not is_json(request.content_type):
        raise web.HTTPUnsupportedMediaType(
            text=json.dumps({"error": UNSUPPORTED}), content_type="application/json"
        )
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
