"""The OpenAPI 3.1 document of the HTTP API, served at /v1/openapi.json.

Request bodies come from the same pydantic models the handlers validate with, so the document
cannot drift from what the service accepts. Each operation's `security` names the API key scope it
needs (OpenAPI 3.1 allows role names for API key schemes): `submit`, `agent` or `read`; `admin` has all.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from adapters.kit.base import ChannelAdapter
from adapters.kit.http import Scope
from adapters.kit.openapi import OBJECT, REF_TEMPLATE, ApiSpec, body, error_responses, json_response, ref
from adapters.kit.registry import load_adapters
from adapters.kit.settings import AdapterSettings
from router import __version__
from router.core.casework import AGENT_ID_PATTERN
from router.core.contact import Contact
from router.http.agents import AttemptIn, CallbackRequestIn, CloseIn, ResponseIn, TransferIn

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_AGENT = {
    "name": "X-Agent-Id",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": AGENT_ID_PATTERN},
    "description": "The agent's id, if not in the body (no e-mail address or name)",
}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "fields": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}
_OBJ = OBJECT


def authed(scope: Scope) -> list[dict[str, list[str]]]:
    """An API key (either scheme) with `scope`."""
    return [{"apiKey": [scope]}, {"bearer": [scope]}]


def forbidden(scope: Scope, tenant: bool = False) -> dict[str, Any]:
    """The 403 of a route that needs `scope` (and, with `tenant`, a key for the tenant named)."""
    text = f"The API key lacks the scope '{scope}'" + (" or may not act for this tenant" if tenant else "")
    return {"403": _json(ref("Error"), text)}


_json = json_response
_body = body
_error_responses = error_responses


_SCOPES = (
    "An API key from API_KEYS. Keys carry scopes: `submit` (contacts, channel submissions), `agent` "
    "(transfers, callback requests, attempts, responses, closing), `read` (contacts, work lists); "
    "`admin` has all. Each operation names the scope it needs; without it the answer is 403."
)


def document(adapters: Iterable[type[ChannelAdapter]] | None = None) -> dict[str, Any]:
    """The document of the API and of `adapters` (default: those enabled by the environment)."""
    if adapters is None:
        adapters = [type(a) for a in load_adapters(sorted(AdapterSettings().enabled)).values()]
    return _document(tuple(sorted(adapters, key=lambda cls: cls.name)))


@cache
def _document(adapters: tuple[type[ChannelAdapter], ...]) -> dict[str, Any]:
    specs: list[ApiSpec] = [cls.openapi() for cls in adapters]
    models: list[type[BaseModel]] = [Contact, TransferIn, CallbackRequestIn, AttemptIn, CloseIn, ResponseIn]
    models += [m for spec in specs for m in spec.models if m not in models]
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = ERROR
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "security": [],
                "responses": {"200": _json(_OBJ, "The process is up")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: broker, store, router consumer",
                "operationId": "readyz",
                "security": [],
                "responses": {"200": _json(_OBJ, "Ready"), "503": _json(_OBJ, "Not ready; checks say why")},
            }
        },
        "/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "security": [],
                "responses": {"200": _json(_OBJ, "OpenAPI document")},
            }
        },
        "/v1/contacts": {
            "post": {
                "summary": "Submit a contact (integrators)",
                "operationId": "submitContact",
                "security": authed("submit"),
                "requestBody": _body(Contact),
                "responses": {
                    "202": _json(_OBJ, "Accepted: queued for routing; body has id and reference"),
                    **_error_responses(400, 401, 413, 422, 503),
                    **forbidden("submit", tenant=True),
                },
            }
        },
        "/v1/contacts/{id}": {
            "get": {
                "summary": "A contact with state, team, deadlines, callback requests and history",
                "operationId": "getContact",
                "security": authed("read"),
                "parameters": [_ID],
                "responses": {
                    "200": _json(_OBJ, "The contact; ETag is its version"),
                    **_error_responses(401, 404, 503),
                    **forbidden("read"),
                },
            }
        },
        "/v1/tenants/{tenant}/teams/{team}/items": {
            "get": {
                "summary": "Open items of a team, soonest deadline first, with working time left",
                "operationId": "listItems",
                "security": authed("read"),
                "parameters": [
                    {"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "team", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
                "responses": {
                    "200": _json(_OBJ, "Items"),
                    **_error_responses(401, 404, 422, 503),
                    **forbidden("read"),
                },
            }
        },
        "/v1/contacts/{id}/transfer": {
            "post": {
                "summary": "Warm transfer to another team; counted against the tenant's limit",
                "operationId": "transferContact",
                "security": authed("agent"),
                "parameters": [
                    _ID,
                    _AGENT,
                    {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                ],
                "requestBody": _body(TransferIn),
                "responses": {
                    "200": _json(_OBJ, "Transferred"),
                    **_error_responses(400, 401, 404, 409, 412, 422, 428, 503),
                    **forbidden("agent"),
                },
            }
        },
        "/v1/contacts/{id}/callback-requests": {
            "post": {
                "summary": "A callback note with the tenant's callback term as deadline",
                "operationId": "createCallbackRequest",
                "security": authed("agent"),
                "parameters": [_ID, _AGENT],
                "requestBody": _body(CallbackRequestIn),
                "responses": {
                    "201": _json(_OBJ, "Created"),
                    **_error_responses(400, 401, 404, 409, 422, 503),
                    **forbidden("agent"),
                },
            }
        },
        "/v1/callback-requests/{id}/attempts": {
            "post": {
                "summary": "Record a callback attempt; 'reached' closes the request",
                "operationId": "recordCallbackAttempt",
                "security": authed("agent"),
                "parameters": [_ID, _AGENT],
                "requestBody": _body(AttemptIn),
                "responses": {
                    "200": _json(_OBJ, "Recorded"),
                    **_error_responses(400, 401, 404, 409, 422, 503),
                    **forbidden("agent"),
                },
            }
        },
        "/v1/contacts/{id}/responses": {
            "post": {
                "summary": "Record that the resident got an acknowledgement or reaction (deadline met)",
                "operationId": "recordResponse",
                "security": authed("agent"),
                "parameters": [_ID, _AGENT],
                "requestBody": _body(ResponseIn),
                "responses": {
                    "200": _json(_OBJ, "Recorded"),
                    **_error_responses(400, 401, 404, 409, 422, 503),
                    **forbidden("agent"),
                },
            }
        },
        "/v1/contacts/{id}/close": {
            "post": {
                "summary": "Close a contact: its timers and open callback requests end",
                "operationId": "closeContact",
                "security": authed("agent"),
                "parameters": [_ID, _AGENT],
                "requestBody": _body(CloseIn),
                "responses": {
                    "200": _json(_OBJ, "Closed"),
                    **_error_responses(400, 401, 404, 409, 422, 503),
                    **forbidden("agent"),
                },
            }
        },
    }
    for spec in specs:
        taken = paths.keys() & spec.paths.keys()
        if taken:
            raise ValueError(f"an adapter documents paths the API already has: {sorted(taken)}")
        paths.update(spec.paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "contact-router",
            "version": __version__,
            "description": "Omnichannel contact routing for Dutch municipalities.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": _SCOPES},
                "bearer": {"type": "http", "scheme": "bearer", "description": _SCOPES},
            },
        },
    }
