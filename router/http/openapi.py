"""The OpenAPI 3.1 document of the HTTP API, served at /v1/openapi.json.

Request bodies come from the same pydantic models the handlers validate with, so the document
cannot drift from what the service accepts.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from adapters.phone.adapter import PhoneNote
from adapters.webform.adapter import WebformSubmission
from router import __version__
from router.core.contact import Contact
from router.http.agents import AttemptIn, CallbackRequestIn, CloseIn, ResponseIn, TransferIn

_REF = "#/components/schemas/{model}"

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


def _error_responses(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request body (JSON, UTF-8)",
        401: "Missing or unknown API key",
        403: "The API key may not act for this tenant",
        404: "Not found (or belongs to another tenant)",
        409: "Refused by the current state; the body says why",
        412: "If-Match does not match the contact's version",
        413: "Body too large",
        422: "Invalid request; `fields` names each problem",
        428: "A precondition (from_team or If-Match) is required",
        503: "Broker or state store unavailable; nothing was accepted",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
        }
        for c in codes
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}},
    }


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_AGENT = {
    "name": "X-Agent-Id",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Agent id, if not in the body",
}
_OBJ: dict[str, Any] = {"type": "object", "additionalProperties": True}


@cache
def document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [
            (m, "validation")
            for m in (
                Contact,
                TransferIn,
                CallbackRequestIn,
                AttemptIn,
                CloseIn,
                ResponseIn,
                WebformSubmission,
                PhoneNote,
            )
        ],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = ERROR
    authed: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
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
                "security": authed,
                "requestBody": _body(Contact),
                "responses": {
                    "202": _json(_OBJ, "Accepted: queued for routing; body has id and reference"),
                    **_error_responses(400, 401, 403, 413, 422, 503),
                },
            }
        },
        "/v1/contacts/{id}": {
            "get": {
                "summary": "A contact with state, team, deadlines, callback requests and history",
                "operationId": "getContact",
                "security": authed,
                "parameters": [_ID],
                "responses": {
                    "200": _json(_OBJ, "The contact; ETag is its version"),
                    **_error_responses(401, 404, 503),
                },
            }
        },
        "/v1/tenants/{tenant}/teams/{team}/items": {
            "get": {
                "summary": "Open items of a team, soonest deadline first, with working time left",
                "operationId": "listItems",
                "security": authed,
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
                "responses": {"200": _json(_OBJ, "Items"), **_error_responses(401, 404, 422, 503)},
            }
        },
        "/v1/contacts/{id}/transfer": {
            "post": {
                "summary": "Warm transfer to another team; counted against the tenant's limit",
                "operationId": "transferContact",
                "security": authed,
                "parameters": [
                    _ID,
                    _AGENT,
                    {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                ],
                "requestBody": _body(TransferIn),
                "responses": {
                    "200": _json(_OBJ, "Transferred"),
                    **_error_responses(400, 401, 404, 409, 412, 422, 428, 503),
                },
            }
        },
        "/v1/contacts/{id}/callback-requests": {
            "post": {
                "summary": "A callback note with the tenant's callback term as deadline",
                "operationId": "createCallbackRequest",
                "security": authed,
                "parameters": [_ID, _AGENT],
                "requestBody": _body(CallbackRequestIn),
                "responses": {
                    "201": _json(_OBJ, "Created"),
                    **_error_responses(400, 401, 404, 409, 422, 503),
                },
            }
        },
        "/v1/callback-requests/{id}/attempts": {
            "post": {
                "summary": "Record a callback attempt; 'reached' closes the request",
                "operationId": "recordCallbackAttempt",
                "security": authed,
                "parameters": [_ID, _AGENT],
                "requestBody": _body(AttemptIn),
                "responses": {
                    "200": _json(_OBJ, "Recorded"),
                    **_error_responses(400, 401, 404, 409, 422, 503),
                },
            }
        },
        "/v1/contacts/{id}/responses": {
            "post": {
                "summary": "Record that the resident got an acknowledgement or reaction (deadline met)",
                "operationId": "recordResponse",
                "security": authed,
                "parameters": [_ID, _AGENT],
                "requestBody": _body(ResponseIn),
                "responses": {
                    "200": _json(_OBJ, "Recorded"),
                    **_error_responses(400, 401, 404, 409, 422, 503),
                },
            }
        },
        "/v1/contacts/{id}/close": {
            "post": {
                "summary": "Close a contact: its timers and open callback requests end",
                "operationId": "closeContact",
                "security": authed,
                "parameters": [_ID, _AGENT],
                "requestBody": _body(CloseIn),
                "responses": {"200": _json(_OBJ, "Closed"), **_error_responses(400, 401, 404, 409, 422, 503)},
            }
        },
    }
    tenant = {"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"}}
    form_body = {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": _REF.format(model="WebformSubmission")}},
            "application/x-www-form-urlencoded": {"schema": {"$ref": _REF.format(model="WebformSubmission")}},
        },
    }
    paths.update(
        {
            "/v1/channels/webform/{tenant}": {
                "post": {
                    "summary": "Web form: a contact; answers the reference number and expected answer date",
                    "operationId": "submitWebform",
                    "security": [],
                    "parameters": [tenant],
                    "requestBody": form_body,
                    "responses": {
                        "202": _json(_OBJ, "Accepted; body has reference and expected_answer_by"),
                        "429": _json(_OBJ, "Too many submissions from this address; see Retry-After"),
                        **_error_responses(400, 404, 413, 422, 503),
                    },
                }
            },
            "/v1/channels/phone/{tenant}/notes": {
                "post": {
                    "summary": "Phone note by an agent; its outcome acts by itself",
                    "operationId": "submitPhoneNote",
                    "security": authed,
                    "parameters": [tenant],
                    "requestBody": _body(PhoneNote),
                    "responses": {
                        "202": _json(_OBJ, "Accepted"),
                        **_error_responses(400, 401, 403, 404, 413, 422, 503),
                    },
                }
            },
            "/v1/channels/social/{tenant}/webhook": {
                "get": {
                    "summary": "Meta webhook verification handshake",
                    "operationId": "verifySocialWebhook",
                    "security": [],
                    "parameters": [tenant]
                    + [
                        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                        for n in ("hub.mode", "hub.verify_token", "hub.challenge")
                    ],
                    "responses": {
                        "200": {
                            "description": "The challenge, echoed",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "403": _json(_OBJ, "Verification failed"),
                        **_error_responses(404),
                    },
                },
                "post": {
                    "summary": "Meta webhook (WhatsApp, Messenger, Instagram), signed",
                    "operationId": "receiveSocialWebhook",
                    "security": [],
                    "parameters": [
                        tenant,
                        {
                            "name": "X-Hub-Signature-256",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _OBJ}}},
                    "responses": {
                        "200": _json(_OBJ, "Received; one contact per inbound message"),
                        **_error_responses(400, 401, 404, 413, 422, 503),
                    },
                },
            },
        }
    )
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
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
