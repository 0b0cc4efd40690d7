"""The agent and back-office API: work lists, transfers, callback requests (attempts, closing), responses,
extensions, closing.

Reading work lists needs an API key with the scope `read`, every action one with the scope `agent`. An
action names the agent by its id (body field `agent` or header X-Agent-Id; never an e-mail address or a
name) and is recorded with the credential's name as `by`. A display name (`agent_name`) goes into the
contact's history only. Credentials are per tenant; a contact of another tenant looks exactly like a
missing one. Every body is JSON (415 otherwise); every answer goes through its model in
router/http/schemas.py, which the OpenAPI document is made of.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from router.core.casework import (
    AGENT_ID_PATTERN,
    CALLBACK_CLOSE_REASONS,
    CALLBACK_OUTCOMES,
    CaseError,
    agent_id,
    unknown_team_message,
)
from router.core.casework_service import Casework
from router.core.contact import field_errors
from router.core.phones import to_e164
from router.http import schemas
from router.http.auth import require_credential
from router.http.body import error, read_json
from router.http.context import CTX

# Team ids are checked against the contact's tenant (422 naming its teams); the document lists them.
TeamId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
AGENT_ID_MESSAGE = (
    "an agent id is letters, digits, '.', '_' or '-', at most 64 characters (no e-mail address or name; "
    "a display name goes in body field 'agent_name')"
)
_AGENT_ID = re.compile(AGENT_ID_PATTERN)


def _agent(value: str) -> str:
    if not _AGENT_ID.fullmatch(value):
        raise ValueError(AGENT_ID_MESSAGE)
    return value


AgentId = Annotated[str, AfterValidator(_agent), Field(json_schema_extra={"pattern": AGENT_ID_PATTERN})]
AgentName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"\S")
]
Phone = Annotated[
    str,
    StringConstraints(min_length=1, max_length=40),
    AfterValidator(to_e164),
    Field(json_schema_extra={"format": "phone"}),
]

PAGE_LIMIT = 1000
MAX_OFFSET = 100_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    agent: AgentId | None = Field(
        default=None,
        description="The agent's id (letters, digits, '.', '_', '-'; no e-mail address or name). Required: "
        "here or in the header X-Agent-Id. Recorded in the history and the events, with the API key's "
        "name as `by`",
    )
    agent_name: AgentName | None = Field(
        default=None, description="A display name for the contact's history; never in events or logs"
    )


class TransferIn(_Body):
    to_team: TeamId = Field(description="One of the tenant's teams")
    note: Text | None = Field(default=None, description="Travels with the contact (warm hand-over)")
    from_team: TeamId | None = Field(
        default=None,
        description="The team the agent transfers from. Required: this, or the header If-Match with the "
        "contact's version (ETag of GET /v1/contacts/{id}); without either the answer is 428",
    )


class CallbackRequestIn(_Body):
    team: TeamId | None = Field(
        default=None, description="Team that must call back; default: the contact's team"
    )
    reason: Text
    phone: Phone | None = Field(
        default=None,
        description="Any notation a phone number has (06 12345678); stored in E.164 (+31612345678); "
        "default: the sender's",
    )
    preferred_time: Annotated[str, StringConstraints(max_length=200)] | None = None


class AttemptIn(_Body):
    outcome: Literal["reached", "no_answer", "wrong_number"] = Field(
        description="reached closes the request; with the tenant's callback policy, the last attempt that "
        "did not reach the resident closes it as unreachable"
    )
    note: Text | None = None


class CallbackCloseIn(_Body):
    reason: Literal["reached", "wrong_number", "unreachable", "resolved_otherwise"] = Field(
        description="unreachable follows the tenant's callback policy (a letter or e-mail to the resident)"
    )
    note: Text | None = None


class CloseIn(_Body):
    resolution: Text


class TakeIn(_Body):
    """Only who takes it ("ik pak dit op"): the agent, in the body or the header X-Agent-Id."""


class ResponseIn(_Body):
    kind: Literal["acknowledge", "respond"]
    note: Text | None = None


class ExtensionIn(_Body):
    kind: Literal["acknowledge", "respond", "resolve"] = Field(
        description="The deadline to extend; its norm must have an extension term ('12 weeks + 6 weeks')"
    )
    reason: Text = Field(description="Why more time is needed: kept in the history, never sent out")


assert tuple(AttemptIn.model_fields["outcome"].annotation.__args__) == CALLBACK_OUTCOMES  # type: ignore[union-attr]
assert tuple(CallbackCloseIn.model_fields["reason"].annotation.__args__) == CALLBACK_CLOSE_REASONS  # type: ignore[union-attr]

# Request bodies that name an agent, for the document (`agent` or X-Agent-Id is required).
AGENT_BODIES: tuple[type[_Body], ...] = (
    TransferIn,
    CallbackRequestIn,
    AttemptIn,
    CallbackCloseIn,
    CloseIn,
    TakeIn,
    ResponseIn,
    ExtensionIn,
)


def casework_of(request: web.Request) -> Casework:
    ctx = request.app[CTX]
    if ctx.casework is None:
        raise web.HTTPServiceUnavailable(
            text='{"error": "case work is not available in this process"}', content_type="application/json"
        )
    return ctx.casework


def _fields(exc: ValidationError) -> list[dict[str, str]]:
    return [{**f, "message": f["message"].removeprefix("Value error, ")} for f in field_errors(exc)]


async def parse(request: web.Request, model: type[BaseModel]) -> Any:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise CaseError(422, "expected a JSON object")
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        raise CaseError(422, "invalid request", fields=_fields(exc)) from exc
    agent = getattr(body, "agent", None) or request.headers.get("X-Agent-Id")
    if not agent:
        raise CaseError(
            422,
            "an agent id is required",
            fields=[{"field": "agent", "message": "give body field 'agent' or header X-Agent-Id"}],
        )
    if agent_id(agent) is None:
        raise CaseError(422, "invalid request", fields=[{"field": "agent", "message": AGENT_ID_MESSAGE}])
    body.agent = agent  # type: ignore[attr-defined]
    return body


def _paging(request: web.Request) -> tuple[int, int] | web.Response:
    """limit 1..1000 (default 100) and offset 0..100000 (default 0), each error naming its own field."""
    problems = []
    values = {}
    for name, default, low, high in (("limit", 100, 1, PAGE_LIMIT), ("offset", 0, 0, MAX_OFFSET)):
        raw = request.query.get(name)
        try:
            value = default if raw is None else int(raw)
        except ValueError:
            problems.append({"field": name, "message": f"a whole number from {low} to {high}"})
            continue
        if not low <= value <= high:
            problems.append({"field": name, "message": f"a whole number from {low} to {high}"})
        values[name] = value
    if problems:
        return error(422, "invalid paging", problems)
    return values["limit"], values["offset"]


async def list_items(request: web.Request) -> web.Response:
    cred = require_credential(request, "read")
    tenant, team = request.match_info["tenant"], request.match_info["team"]
    ctx = request.app[CTX]
    if tenant not in ctx.tenants or not cred.allows(tenant):
        return error(404, f"no tenant '{tenant}'")
    teams = ctx.tenants[tenant].loaded.rules.team_ids()
    if team not in teams:
        return error(404, unknown_team_message(team, tenant, teams))
    paging = _paging(request)
    if isinstance(paging, web.Response):
        return paging
    limit, offset = paging
    items = await casework_of(request).items(tenant, team, limit=limit, offset=offset)
    return schemas.answer(schemas.WorkList, {"tenant": tenant, "team": team, "items": items})


async def transfer(request: web.Request) -> web.Response:
    cred = require_credential(request, "agent")
    body: TransferIn = await parse(request, TransferIn)
    try:
        result = await casework_of(request).transfer(
            request.match_info["id"],
            to_team=body.to_team,
            note=body.note,
            agent=str(body.agent),
            by=cred.name,
            agent_name=body.agent_name,
            from_team=body.from_team,
            if_match=request.headers.get("If-Match"),
            allowed=cred.allows,
        )
    except CaseError as exc:
        if exc.status == 409 and "callback_request" in exc.body:
            return schemas.answer(schemas.TransferRefused, exc.body, 409)
        raise
    return schemas.answer(schemas.Transferred, result)


async def create_callback_request(request: web.Request) -> web.Response:
    cred = require_credential(request, "agent")
    body: CallbackRequestIn = await parse(request, CallbackRequestIn)
    result, created = await casework_of(request).request_callback(
        request.match_info["id"],
        team=body.team,
        reason=body.reason,
        phone=body.phone,
        preferred_time=body.preferred_time,
        agent=str(body.agent),
        by=cred.name,
        agent_name=body.agent_name,
        allowed=cred.allows,
    )
    return schemas.answer(schemas.CallbackRequest, result, 201 if created else 200)


async def record_attempt(request: web.Request) -> web.Response:
    cred = require_credential(request, "agent")
    body: AttemptIn = await parse(request, AttemptIn)
    result = await casework_of(request).record_attempt(
        request.match_info["id"],
        outcome=body.outcome,
        note=body.note,
        agent=str(body.agent),
        by=cred.name,
        agent_name=body.agent_name,
        allowed=cred.allows,
    )
    return schemas.answer(schemas.CallbackRequest, result)


async def close_callback_request(request: web.Request) -> web.Response:
    cred = require_credential(request, "agent")
    body: CallbackCloseIn = await parse(request, CallbackCloseIn)
    result = await casework_of(request).close_callback(
        request.match_info["id"],
        reason=body.reason,
        note=body.note,
        agent=str(body.agent),
        by=cred.name,
        agent_name=body.agent_name,
        allowed=cred.allows,
    )
    return schemas.answer(schemas.CallbackRequest, result)


async def record_response(request: web.Request) -> web.Response:
    cred = require_credential(request, "agent")
    body: ResponseIn = await parse(request, ResponseIn)
    result = await casework_of(request).record_response(
        request.match_info["id"],
        kind=body.kind,
        note=body.note,
        agent=str(body.agent),
        by=cred.name,
        agent_name=body.agent_name,
        allowed=cred.allows,
    )
    return schemas.answer(schemas.ResponseRecorded, result)


async def extend(request: web.Request) -> web.Response:
    cred = require_credential(request, "agent")
    body: ExtensionIn = await parse(request, ExtensionIn)
    result = await casework_of(request).extend(
        request.match_info["id"],
        kind=body.kind,
        reason=body.reason,
        agent=str(body.agent),
        by=cred.name,
        agent_name=body.agent_name,
        allowed=cred.allows,
    )
    return schemas.answer(schemas.Extension, result, 201)


async def close(request: web.Request) -> web.Response:
    cred = require_credential(request, "agent")
    body: CloseIn = await parse(request, CloseIn)
    result = await casework_of(request).close(
        request.match_info["id"],
        resolution=body.resolution,
        agent=str(body.agent),
        by=cred.name,
        agent_name=body.agent_name,
        allowed=cred.allows,
    )
    return schemas.answer(schemas.Closed, result)


async def take(request: web.Request) -> web.Response:
    cred = require_credential(request, "agent")
    body: TakeIn = await parse(request, TakeIn)
    result = await casework_of(request).take(
        request.match_info["id"],
        agent=str(body.agent),
        by=cred.name,
        agent_name=body.agent_name,
        allowed=cred.allows,
    )
    return schemas.answer(schemas.Taken, result)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/contacts/{id}/take", take)
    app.router.add_get("/v1/tenants/{tenant}/teams/{team}/items", list_items)
    app.router.add_post("/v1/contacts/{id}/transfer", transfer)
    app.router.add_post("/v1/contacts/{id}/callback-requests", create_callback_request)
    app.router.add_post("/v1/callback-requests/{id}/attempts", record_attempt)
    app.router.add_post("/v1/callback-requests/{id}/close", close_callback_request)
    app.router.add_post("/v1/contacts/{id}/responses", record_response)
    app.router.add_post("/v1/contacts/{id}/extensions", extend)
    app.router.add_post("/v1/contacts/{id}/close", close)
