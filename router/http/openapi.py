"""The OpenAPI 3.1 document of the HTTP API, served at /v1/openapi.json.

Request bodies come from the pydantic models the handlers validate with, and every answer's schema from
the model its handler sends it through (router/http/schemas.py; the kit's `Accepted`, `Receipt` and
`Error`), so the document cannot drift from what the service accepts and answers, and a client generated
from it (openapi-python-client, datamodel-code-generator) gets the real shapes. Each operation's `security`
names the API key scope it needs (OpenAPI 3.1 allows role names for API key schemes): `submit`, `agent` or
`read`; `admin` has all.

The document says what the service enforces, as far as a schema can: the served document lists the
deployment's tenants and team ids as enums (the service refuses any other with 404 or 422), contact and
callback ids by pattern, and an agent action's `agent` (or header X-Agent-Id) and a transfer's `from_team`
(or header If-Match) as required. What no schema can say is in the descriptions: a contact's
`received_at` may not lie more than minutes in the future; a team must be one of the contact's own
tenant (the enums list the teams of every tenant).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from adapters.kit.base import ChannelAdapter
from adapters.kit.http import Scope
from adapters.kit.openapi import REF_TEMPLATE, ApiSpec, Error, body, error_responses, json_response, ref
from adapters.kit.registry import load_adapters
from adapters.kit.settings import AdapterSettings
from router import __version__
from router.core.casework import AGENT_ID_PATTERN
from router.core.contact import Contact
from router.core.tenants import Tenant
from router.http import schemas
from router.http.agents import (
    AGENT_BODIES,
    AttemptIn,
    CallbackCloseIn,
    CallbackRequestIn,
    CloseIn,
    ExtensionIn,
    ResponseIn,
    TakeIn,
    TransferIn,
)
from router.http.metrics import OPENAPI_PATHS
from router.http.schemas import CALLBACK_ID, CONTACT_ID, RESPONSE_MODELS

_CONTACT_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": CONTACT_ID},
    "description": "The contact's id (a UUID)",
}
_CALLBACK_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": CALLBACK_ID},
    "description": "The callback request's id: the contact's id, '-cb' and its number",
}
_AGENT = {
    "name": "X-Agent-Id",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": AGENT_ID_PATTERN},
    "description": "The agent's id, instead of body field `agent` (no e-mail address or name)",
}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": r'^"?[0-9]+"?$'},
    "description": "The contact's version (its ETag), instead of body field `from_team`",
}

# JSON bodies: not sent as JSON (415), too large (413), malformed (400), invalid (422).
_BODY_ERRORS = (400, 413, 415, 422)


def authed(scope: Scope) -> list[dict[str, list[str]]]:
    """An API key (either scheme) with `scope`."""
    return [{"apiKey": [scope]}, {"bearer": [scope]}]


def forbidden(scope: Scope, tenant: bool = False) -> dict[str, Any]:
    """The 403 of a route that needs `scope` (and, with `tenant`, a key for the tenant named)."""
    text = f"The API key lacks the scope '{scope}'" + (" or may not act for this tenant" if tenant else "")
    return {"403": json_response(ref(Error), text)}


def answer(model: type[BaseModel], description: str, **headers: str) -> dict[str, Any]:
    out = json_response(ref(model), description)
    if headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return out


_SCOPES = (
    "An API key from API_KEYS. Keys carry scopes: `submit` (contacts, channel submissions), `agent` "
    "(transfers, callback requests, attempts, responses, extensions, closing), `read` (contacts, work "
    "lists); `admin` has all. Each operation names the scope it needs; without it the answer is 403."
)


def document(
    adapters: Iterable[type[ChannelAdapter]] | None = None, tenants: Mapping[str, Tenant] | None = None
) -> dict[str, Any]:
    """The document of the API and of `adapters` (default: those enabled by the environment), with the
    tenant and team ids of `tenants` (without them: their patterns)."""
    if adapters is None:
        adapters = [type(a) for a in load_adapters(sorted(AdapterSettings().enabled)).values()]
    teams = tuple(sorted((t, tuple(x.loaded.rules.team_ids())) for t, x in (tenants or {}).items()))
    return _document(tuple(sorted(adapters, key=lambda cls: cls.name)), teams)


def _agent_action(
    summary: str, operation: str, model: type[BaseModel], responses: dict[str, Any], *params: Any
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": operation,
            "security": authed("agent"),
            "parameters": [*params, _AGENT],
            "requestBody": body(model),
            "responses": {
                **responses,
                **error_responses(*_BODY_ERRORS, 401, 404, 409, 503),
                **forbidden("agent"),
            },
        }
    }


def _schemas(specs: list[ApiSpec]) -> tuple[dict[str, Any], dict[Any, str]]:
    """components.schemas, and each (model, mode)'s component name. A model that reads differently from
    how it is written (Contact: `reference` is only in answers) gets two: `Contact` as sent, `ContactOut`
    as answered."""
    requests: list[type[BaseModel]] = [Contact, *AGENT_BODIES]
    requests += [m for spec in specs for m in spec.models if m not in requests]
    responses: list[type[BaseModel]] = list(RESPONSE_MODELS)
    responses += [m for spec in specs for m in spec.responses if m not in responses]
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in requests]
    pairs += [(m, "serialization") for m in responses]
    keys, defs = models_json_schema(pairs, ref_template=REF_TEMPLATE)
    found: dict[str, Any] = defs.get("$defs", {})
    renamed = {
        name: name.removesuffix("-Input") if name.endswith("-Input") else name.removesuffix("-Output") + "Out"
        for name in found
        if name.endswith(("-Input", "-Output"))
    }

    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rename(v) for k, v in node.items()}
            target = out.get("$ref")
            if isinstance(target, str) and target.rsplit("/", 1)[-1] in renamed:
                out["$ref"] = REF_TEMPLATE.format(model=renamed[target.rsplit("/", 1)[-1]])
            return out
        if isinstance(node, list):
            return [rename(v) for v in node]
        return node

    components = {renamed.get(name, name): rename(schema) for name, schema in found.items()}
    for name in renamed.values():
        components[name]["title"] = name  # generators name their classes by title: one per component
    names: dict[Any, str] = {}
    for key, value in keys.items():
        name = value["$ref"].rsplit("/", 1)[-1]
        names[key] = renamed.get(name, name)
    return components, names


def _enforced(schemas_: dict[str, Any], teams: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    """What the service requires beyond the models' own checks: `agent` and `from_team` given (or their
    headers), and, for a deployment, its tenant and team ids."""
    agent = {"type": "string", "pattern": AGENT_ID_PATTERN}
    for model in AGENT_BODIES:
        schema = schemas_[model.__name__]
        schema["properties"]["agent"] = {**schema["properties"]["agent"], **agent}
        schema["properties"]["agent"].pop("anyOf", None)
        schema["properties"]["agent"].pop("default", None)
        schema.setdefault("required", []).append("agent")
    transfer = schemas_["TransferIn"]
    transfer["properties"]["from_team"].pop("anyOf", None)
    transfer["properties"]["from_team"].pop("default", None)
    transfer["required"].append("from_team")
    team_ids = sorted({team for _, ids in teams for team in ids})
    team = (
        {"type": "string", "enum": team_ids} if team_ids else {"type": "string", "pattern": schemas.TEAM_ID}
    )
    fields = [("TransferIn", "to_team"), ("TransferIn", "from_team"), ("CallbackRequestIn", "team")]
    if "PhoneNote" in schemas_:
        fields.append(("PhoneNote", "to_team"))
    for name, field in fields:
        prop = schemas_[name]["properties"][field]
        described = {k: v for k, v in prop.items() if k in ("description", "title", "default")}
        nullable = "anyOf" in prop
        prop.clear()
        prop.update(described)
        if nullable:
            prop["anyOf"] = [team, {"type": "null"}]
        else:
            prop.update(team)
    # The id is derived from the source; a given one must be that (omit it): not input.
    schemas_["Contact"]["properties"]["id"] = {**schemas_["Contact"]["properties"]["id"], "readOnly": True}
    if teams:
        schemas_["Contact"]["properties"]["tenant"] = {
            **{k: v for k, v in schemas_["Contact"]["properties"]["tenant"].items() if k != "pattern"},
            "enum": [t for t, _ in teams],
        }


def _forms_without_null(paths: dict[str, Any], components: dict[str, Any]) -> None:
    """A body sent as an HTML form (application/x-www-form-urlencoded) has text values only, and an
    empty field is an absent one: it gets a schema of its own, `<Model>Form`, where an optional field
    is its text or blank (instead of null)."""
    empty = {"type": "string", "pattern": r"^\s*$"}

    def text_only(node: Any) -> Any:
        if isinstance(node, dict):
            choices = node.get("anyOf")
            if isinstance(choices, list) and {"type": "null"} in choices:
                rest = [text_only(c) for c in choices if c != {"type": "null"}]
                merged = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
                return {**merged, "anyOf": [*rest, empty]}
            return {k: text_only(v) for k, v in node.items()}
        return node

    for item in paths.values():
        for operation in item.values():
            content = operation.get("requestBody", {}).get("content", {})
            form = content.get("application/x-www-form-urlencoded")
            if form is None or "$ref" not in form.get("schema", {}):
                continue
            name = form["schema"]["$ref"].rsplit("/", 1)[-1]
            components[f"{name}Form"] = {**text_only(components[name]), "title": f"{name}Form"}
            form["schema"] = ref(f"{name}Form")


@cache
def _document(
    adapters: tuple[type[ChannelAdapter], ...], teams: tuple[tuple[str, tuple[str, ...]], ...]
) -> dict[str, Any]:
    specs: list[ApiSpec] = [cls.openapi() for cls in adapters]
    components, names = _schemas(specs)
    _enforced(components, teams)
    tenant_ids = [t for t, _ in teams]
    team_ids = sorted({team for _, ids in teams for team in ids})
    tenant_param = {
        "name": "tenant",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": tenant_ids} if tenant_ids else {"type": "string"},
    }
    team_param = {
        "name": "team",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": team_ids} if team_ids else {"type": "string"},
        "description": "One of the tenant's teams",
    }
    callback = answer(schemas.CallbackRequest, "The callback request")
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "security": [],
                "responses": {"200": answer(schemas.Health, "The process is up")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: broker, store, router consumer",
                "operationId": "readyz",
                "security": [],
                "responses": {
                    "200": answer(schemas.Readiness, "Ready"),
                    "503": answer(schemas.Readiness, "Not ready; checks say why"),
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "security": [],
                "responses": {"200": answer(schemas.OpenApiDocument, "OpenAPI document")},
            }
        },
        "/v1/contacts": {
            "post": {
                "summary": "Submit a contact (integrators)",
                "description": "received_at may not lie more than 5 minutes in the future (422).",
                "operationId": "submitContact",
                "security": authed("submit"),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(names[(Contact, "validation")])}},
                },
                "responses": {
                    "202": answer(
                        schemas.Accepted, "Accepted: queued for routing", Location="/v1/contacts/{id}"
                    ),
                    **error_responses(*_BODY_ERRORS, 401, 503),
                    **forbidden("submit", tenant=True),
                },
            }
        },
        "/v1/contacts/{id}": {
            "get": {
                "summary": "A contact with state, team, deadlines, callback requests and history",
                "operationId": "getContact",
                "security": authed("read"),
                "parameters": [_CONTACT_ID],
                "responses": {
                    "200": answer(schemas.ContactView, "The contact", ETag="Its version, for If-Match"),
                    **error_responses(401, 404, 503),
                    **forbidden("read"),
                },
            }
        },
        "/v1/contacts/{id}/related": {
            "get": {
                "summary": "The same resident's other contacts of the tenant's last months, across channels",
                "description": "Linked by e-mail address, phone number or social handle (kept as keyed "
                "hashes); only contacts of the contact's own tenant, ids and codes only.",
                "operationId": "getRelatedContacts",
                "security": authed("read"),
                "parameters": [_CONTACT_ID],
                "responses": {
                    "200": answer(schemas.RelatedContacts, "The other contacts, newest first"),
                    **error_responses(401, 404, 503),
                    **forbidden("read"),
                },
            }
        },
        "/v1/tenants/{tenant}/teams/{team}/items": {
            "get": {
                "summary": "Open items of a team, soonest open deadline first, with the time left",
                "operationId": "listItems",
                "security": authed("read"),
                "parameters": [
                    tenant_param,
                    team_param,
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "maximum": 100_000, "default": 0},
                    },
                ],
                "responses": {
                    "200": answer(schemas.WorkList, "Items"),
                    **error_responses(401, 404, 422, 503),
                    **forbidden("read"),
                },
            }
        },
        "/v1/contacts/{id}/transfer": _agent_action(
            "Warm transfer to another team; counted against the tenant's limit",
            "transferContact",
            TransferIn,
            {
                "200": answer(
                    schemas.Transferred,
                    "Done: transferred, or (a written contact past the limit) sent to the coordinating "
                    "team, or the coordinating team's final assignment",
                ),
                "409": {
                    "description": "Refused by the contact's state; past the limit while the resident is "
                    "on the line, with the callback request that takes its place",
                    "content": {
                        "application/json": {"schema": {"anyOf": [ref(schemas.TransferRefused), ref(Error)]}}
                    },
                },
                **error_responses(412, 428),
            },
            _CONTACT_ID,
            _IF_MATCH,
        ),
        "/v1/contacts/{id}/callback-requests": _agent_action(
            "A callback request (terugbelnotitie), due in the tenant's callback term; one open per team",
            "createCallbackRequest",
            CallbackRequestIn,
            {"201": callback, "200": answer(schemas.CallbackRequest, "The team's open request, asked again")},
            _CONTACT_ID,
        ),
        "/v1/callback-requests/{id}/attempts": _agent_action(
            "Record a callback attempt; 'reached' closes the request",
            "recordCallbackAttempt",
            AttemptIn,
            {"200": callback},
            _CALLBACK_ID,
        ),
        "/v1/callback-requests/{id}/close": _agent_action(
            "Close a callback request with a reason",
            "closeCallbackRequest",
            CallbackCloseIn,
            {"200": callback},
            _CALLBACK_ID,
        ),
        "/v1/contacts/{id}/responses": _agent_action(
            "Record that the resident got an acknowledgement or reaction (deadline met, once)",
            "recordResponse",
            ResponseIn,
            {"200": answer(schemas.ResponseRecorded, "Recorded (or recorded before: the first time)")},
            _CONTACT_ID,
        ),
        "/v1/contacts/{id}/extensions": _agent_action(
            "Extend a deadline by its norm's extension term; the resident is told",
            "extendDeadline",
            ExtensionIn,
            {"201": answer(schemas.Extension, "Extended; the notice to the resident")},
            _CONTACT_ID,
        ),
        "/v1/contacts/{id}/take": _agent_action(
            "Take a contact ('ik pak dit op'): a colleague's take is refused with 409 naming them",
            "takeContact",
            TakeIn,
            {"200": answer(schemas.Taken, "Taken (also when this agent had it already)")},
            _CONTACT_ID,
        ),
        "/v1/contacts/{id}/close": _agent_action(
            "Close a contact: its timers and open callback requests end",
            "closeContact",
            CloseIn,
            {"200": answer(schemas.Closed, "Closed")},
            _CONTACT_ID,
        ),
    }
    paths.update(OPENAPI_PATHS)  # GET /metrics
    for spec in specs:
        taken = paths.keys() & spec.paths.keys()
        if taken:
            raise ValueError(f"an adapter documents paths the API already has: {sorted(taken)}")
        paths.update(copy.deepcopy(spec.paths))
    _forms_without_null(paths, components)
    if tenant_ids:
        for item in paths.values():
            for operation in item.values():
                for param in operation.get("parameters", []):
                    if param.get("in") == "path" and param.get("name") == "tenant":
                        param["schema"] = {"type": "string", "enum": tenant_ids}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "contact-router",
            "version": __version__,
            "description": "Omnichannel contact routing for Dutch municipalities. Text never holds a NUL "
            "character (U+0000): a body with one is refused (422).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": _SCOPES},
                "bearer": {"type": "http", "scheme": "bearer", "description": _SCOPES},
            },
        },
    }
