"""How an adapter documents its HTTP routes: the pieces of an OpenAPI 3.1 path item.

An adapter that serves routes returns them from `ChannelAdapter.openapi()`; the service assembles one
document (`/v1/openapi.json`) from the API's own paths and what each enabled adapter registers, so the
document always lists exactly what is served. Request bodies and answers are named pydantic models; their
schemas land in `components.schemas` (answers as they serialise: `ApiSpec.responses`), so a client can be
generated from the document. `Accepted`, `Receipt` and `Error` are the kit's own answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

__all__ = [
    "AUTHED",
    "OBJECT",
    "PUBLIC",
    "TENANT",
    "Accepted",
    "ApiSpec",
    "Error",
    "FieldError",
    "Receipt",
    "Timestamp",
    "body",
    "error_responses",
    "json_response",
    "ref",
    "response",
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
    415: "Not sent as JSON (Content-Type: application/json)",
    422: "Invalid request; `fields` names each problem",
    428: "A precondition (from_team or If-Match) is required",
    429: "Too many requests; see Retry-After",
    503: "Broker or state store unavailable; nothing was accepted",
}


# A moment as the service writes it everywhere (ISO 8601 with its offset, `+00:00` rather than `Z`).
Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_REFERENCE = r"^[A-Z]{3}-[A-Z2-7]{4}-[A-Z2-7]{4}$"


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(description="The field, as a dotted path of the schema's names")
    message: str


class Error(BaseModel):
    """Every error: what went wrong, and per field what is wrong with it. Some answers add facts (a
    refused transfer: `transfers`, `transfer_limit`, `team`)."""

    model_config = ConfigDict(extra="allow")
    error: str
    fields: list[FieldError] | None = None


class Accepted(BaseModel):
    """A contact taken: queued for routing."""

    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(pattern=_UUID)]
    reference: Annotated[str, Field(pattern=_REFERENCE)]
    status: Literal["accepted"]


class Receipt(BaseModel):
    """What a resident-facing channel answers: the reference and when the answer comes."""

    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(pattern=_UUID)]
    reference: Annotated[str, Field(pattern=_REFERENCE)]
    status: Literal["accepted"]
    expected_answer_by: Timestamp | None
    expected_answer_text: str | None = Field(description="The same date in plain Dutch")
    message: str | None = Field(default=None, description="A thank-you text in plain Dutch")
    status_url: str | None = Field(
        default=None,
        description="The resident's own page on this question (/status/<reference>?t=<token>): show it "
        "or mail it, never log it (the token in it is the only key to the page)",
    )


@dataclass(frozen=True)
class ApiSpec:
    """An adapter's part of the document: path items by path, the models their request bodies use, and
    the models of their answers."""

    paths: dict[str, Any] = field(default_factory=dict)
    models: tuple[type[BaseModel], ...] = ()
    responses: tuple[type[BaseModel], ...] = ()


def ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": REF_TEMPLATE.format(model=name)}


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def response(model: type[BaseModel], description: str) -> dict[str, Any]:
    """An answer with `model`'s body (list the model in `ApiSpec.responses`)."""
    return json_response(ref(model), description)


def body(model: type[BaseModel], *media_types: str) -> dict[str, Any]:
    """A required request body validated by `model`, as application/json unless media types are named."""
    return {
        "required": True,
        "content": {m: {"schema": ref(model)} for m in media_types or ("application/json",)},
    }


def error_responses(*codes: int) -> dict[str, Any]:
    """The JSON error answers ({"error", "fields"}) a route gives, by status code."""
    return {str(c): json_response(ref(Error), ERROR_TEXT[c]) for c in codes}
