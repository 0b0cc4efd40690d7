"""The agent and back-office API: work lists, transfers, callback requests, attempts, responses, closing.

Reading work lists needs an API key with the scope `read`, every action one with the scope `agent`. An
action names the agent by its id (body field `agent` or header X-Agent-Id; never an e-mail address or a
name) and is recorded with the credential's name as `by`. A display name (`agent_name`) goes into the
contact's history only. Credentials are per tenant; a contact of another tenant looks exactly like a
missing one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from router.core.casework import AGENT_ID_PATTERN, CALLBACK_OUTCOMES, CaseError, agent_id
from router.core.casework_service import Casework
from router.core.contact import field_errors
from router.http.auth import require_credential
from router.http.body import error, read_json
from router.http.context import CTX

TeamId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
AgentId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
AgentName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Phone = Annotated[str, StringConstraints(min_length=6, max_length=40, pattern=r"^\+?[0-9 ()-]+$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: AgentId | None = Field(
        default=None,
        description="The agent's id (letters, digits, '.', '_', '-'; no e-mail address or name); or header "
        "X-Agent-Id. Recorded in the history and the events, with the API key's name as `by`",
    )
    agent_name: AgentName | None = Field(
        default=None, description="A display name for the contact's history; never in events or logs"
    )


class TransferIn(_Body):
    to_team: TeamId
    note: Text | None = Field(default=None, description="Travels with the contact (warm hand-over)")
    from_team: TeamId | None = Field(
        default=None, description="The team the agent transfers from; or header If-Match with the version"
    )


class CallbackRequestIn(_Body):
    team: TeamId | None = Field(
        default=None, description="Team that must call back; default: the contact's team"
    )
    reason: Text
    phone: Phone | None = Field(default=None, description="Default: the contact's sender phone")
    preferred_time: Annotated[str, StringConstraints(max_length=200)] | None = None


class AttemptIn(_Body):
    outcome: Literal["reached", "no_answer", "wrong_number"]
    note: Text | None = None


class CloseIn(_Body):
    resolution: Text


class ResponseIn(_Body):
    kind: Literal["acknowledge", "respond"]
    note: Text | None = None


assert tuple(AttemptIn.model_fields["outcome"].annotation.__args__) == CALLBACK_OUTCOMES  # type: ignore[union-attr]


def casework_of(request: web.Request) -> Casework:
    ctx = request.app[CTX]
    if ctx.casework is None:
        raise web.HTTPServiceUnavailable(
            text='{"error": "case work is not available in this process"}', content_type="application/json"
        )
    return ctx.casework


async def parse(request: web.Request, model: type[BaseModel]) -> Any:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise CaseError(422, "expected a JSON object")
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        raise CaseError(422, "invalid request", fields=field_errors(exc)) from exc
    agent = getattr(body, "agent", None) or request.headers.get("X-Agent-Id")
    if not agent:
        raise CaseError(
            422,
            "an agent id is required",
            fields=[{"field": "agent", "message": "give body field 'agent' or header X-Agent-Id"}],
        )
    if agent_id(agent) is None:
        raise CaseError(422, "invalid request", fields=[{"field": "agent", "message": _AGENT_ID_MESSAGE}])
    body.agent = agent  # type: ignore[attr-defined]
    return body


_AGENT_ID_MESSAGE = (
    "X-Agent-Id must be an agent id: letters, digits, '.', '_' or '-', at most 64 characters "
    "(no e-mail address or name; a display name goes in body field 'agent_name')"
)


def respond(result: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(result, status=status)


async def list_items(request: web.Request) -> web.Response:
    cred = require_credential(request, "read")
    tenant, team = request.match_info["tenant"], request.match_info["team"]
    ctx = request.app[CTX]
    if tenant not in ctx.tenants or not cred.allows(tenant):
        return error(404, f"no tenant '{tenant}'")
    if team not in ctx.tenants[tenant].loaded.rules.team_ids():
        return error(404, f"no team '{team}' in tenant '{tenant}'")
    try:
        limit = int(request.query.get("limit", "100"))
        offset = int(request.query.get("offset", "0"))
        if not (1 <= limit <= 1000 and offset >= 0):
            raise ValueError
    except ValueError:
        return error(422, "invalid paging", [{"field": "limit", "message": "limit 1..1000, offset >= 0"}])
    items = await casework_of(request).items(tenant, team, limit=limit, offset=offset)
    return respond({"tenant": tenant, "team": team, "items": items})


async def transfer(request: web.Request) -> web.Response:
    cred = require_credential(request, "agent")
    body: TransferIn = await parse(request, TransferIn)
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
    return respond(result)


async def create_callback_request(request: web.Request) -> web.Response:
    cred = require_credential(request, "agent")
    body: CallbackRequestIn = await parse(request, CallbackRequestIn)
    result = await casework_of(request).request_callback(
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
    return respond(result, 201)


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
    return respond(result)


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
    return respond(result)


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
    return respond(result)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/tenants/{tenant}/teams/{team}/items", list_items)
    app.router.add_post("/v1/contacts/{id}/transfer", transfer)
    app.router.add_post("/v1/contacts/{id}/callback-requests", create_callback_request)
    app.router.add_post("/v1/callback-requests/{id}/attempts", record_attempt)
    app.router.add_post("/v1/contacts/{id}/responses", record_response)
    app.router.add_post("/v1/contacts/{id}/close", close)
