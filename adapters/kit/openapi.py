"""How an adapter documents its HTTP routes: the pieces of an OpenAPI 3.1 path item.

An adapter that serves routes returns them from `ChannelAdapter.openapi()`; the service assembles one
document (`/v1/openapi.json`) from the API's own paths and what each enabled adapter registers, so the
document always lists exactly what is served. Request bodies are named pydantic models; their schemas
land in `components.schemas`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

__all__ = [
    "AUTHED",
    "OBJECT",
    "PUBLIC",
    "TENANT",
    "ApiSpec",
    "body",
    "error_responses",
    "json_response",
    "ref",
]

REF_TEMPLATE = "#/components/schemas/{model}"
OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
# Security requirements: an API key in X-API-Key or as a bearer token; or none (signed webhooks, forms).
AUTHED: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
PUBLIC: list[dict[str, list[str]]] = []
TENANT: dict[str, Any] = {"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"}}

ERROR_TEXT = {
    400: "Malformed request body (JSON, UTF-8)",
    401: "Missing or unknown API key",
    403: "The API key may not act for this tenant",
    404: "Not found (or belongs to another tenant)",
    409: "Refused by the current state; the body says why",
    412: "If-Match does not match the contact's version",
    413: "Body too large",
    415: "Unsupported content type",
    422: "Invalid request; `fields` names each problem",
    428: "A precondition (from_team or If-Match) is required",
    429: "Too many requests; see Retry-After",
    503: "Broker or state store unavailable; nothing was accepted",
}


@dataclass(frozen=True)
class ApiSpec:
    """An adapter's part of the document: path items by path, and the models their bodies use."""

    paths: dict[str, Any] = field(default_factory=dict)
    models: tuple[type[BaseModel], ...] = ()


def ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": REF_TEMPLATE.format(model=name)}


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def body(model: type[BaseModel], *media_types: str) -> dict[str, Any]:
    """A required request body validated by `model`, as application/json unless media types are named."""
    return {
        "required": True,
        "content": {m: {"schema": ref(model)} for m in media_types or ("application/json",)},
    }


def error_responses(*codes: int) -> dict[str, Any]:
    """The JSON error answers ({"error", "fields"}) a route gives, by status code."""
    return {str(c): json_response(ref("Error"), ERROR_TEXT[c]) for c in codes}
