"""Phone notes: `POST /v1/channels/phone/{tenant}/notes`, written by contact-centre agents (API key).

The agent records who called about what and how the call ended. The router acts on the outcome
(`metadata["phone.outcome"]`): answered, transferred to `phone.to_team`, or the colleague could not be
reached — then a callback request for that team, within the tenant's callback term. The note names the
agent by id (`agent`, as the agent API does): it travels in `metadata["phone.agent"]` into the hop and
the events, so an e-mail address or a name is refused.

The call's time (`called_at`) is the contact's `received_at`: every term of the call, the callback's
included, counts from the moment the resident was promised it, however late the note is logged (the
moment it was logged is kept as `metadata["phone.logged_at"]`). Without `called_at` the call is taken to
be the moment the note arrives.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from adapters.kit.base import ChannelAdapter, Inbound, Rejected
from adapters.kit.context import AdapterContext
from adapters.kit.http import (
    context,
    handler,
    json_object,
    known_tenant,
    read_body,
    require_json,
    require_key,
    submit_or_error,
)
from adapters.kit.openapi import TENANT, Accepted, ApiSpec, Error, body, error_responses, response
from adapters.kit.phones import to_e164
from router import logs
from router.core.casework import AGENT_ID_PATTERN
from router.core.contact import MAX_FUTURE_AT_ENTRY, Contact, Moment, Sender, Source, field_errors

log = logs.get("adapters.phone")

NAME = "phone"
MAX_BODY_BYTES = 64_000
CallOutcome = Literal["answered", "transferred", "colleague_unavailable"]
Text = Annotated[str, StringConstraints(strip_whitespace=True)]


# What `_check` requires beyond the fields' own types, stated in the schema too (JSON Schema if/then).
_REQUIRED_BY_OUTCOME: dict[str, Any] = {
    "allOf": [
        {
            "if": {"properties": {"outcome": {"enum": ["transferred", "colleague_unavailable"]}}},
            "then": {"required": ["to_team"], "properties": {"to_team": {"type": "string"}}},
        },
        {
            "if": {"properties": {"outcome": {"const": "colleague_unavailable"}}},
            "then": {"required": ["phone"], "properties": {"phone": {"type": "string"}}},
        },
    ]
}


class PhoneNote(BaseModel):
    model_config = ConfigDict(
        extra="forbid", hide_input_in_errors=True, json_schema_extra=_REQUIRED_BY_OUTCOME
    )

    topic: Annotated[Text, StringConstraints(min_length=1, max_length=200, pattern=r"\S")]
    note: Annotated[Text, StringConstraints(min_length=1, max_length=10_000, pattern=r"\S")]
    outcome: CallOutcome
    # The agent's id (letters, digits, '.', '_', '-'), never an e-mail address or a name.
    agent: Annotated[Text, StringConstraints(pattern=AGENT_ID_PATTERN)]
    caller_name: Annotated[Text, StringConstraints(max_length=200)] | None = None
    phone: Annotated[str, Field(json_schema_extra={"format": "phone"})] | None = Field(
        default=None, description="Any notation (06-12 34 56 78); stored in E.164"
    )
    email: EmailStr | None = Field(
        default=None,
        description="The caller's e-mail address, when they give it: the note then joins an open contact "
        "of theirs on the same topic, such as the mail they sent before (one resident across channels)",
    )
    to_team: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")] | None = Field(
        default=None, description="One of the tenant's teams"
    )
    # The telephony system's call id, when there is one: the same note sent twice is one contact.
    call_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,200}$")] | None = None
    called_at: Moment | None = Field(
        default=None,
        description="When the call was made (ISO 8601 with offset): every term of the call counts from it, "
        "however late the note is logged; default: now. Not in the future",
    )

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return to_e164(value) if value else None


def _check(note: PhoneNote, teams: list[str], now: datetime) -> list[dict[str, str]]:
    problems = []
    if note.called_at is not None and note.called_at > now + MAX_FUTURE_AT_ENTRY:
        problems.append({"field": "called_at", "message": "the call cannot be in the future"})
    if note.outcome in ("transferred", "colleague_unavailable") and note.to_team is None:
        problems.append({"field": "to_team", "message": f"required when outcome is {note.outcome}"})
    if note.to_team is not None and note.to_team not in teams:
        problems.append({"field": "to_team", "message": f"unknown team; one of {', '.join(teams)}"})
    if note.outcome == "colleague_unavailable" and note.phone is None:
        problems.append({"field": "phone", "message": "required to call the resident back"})
    return problems


class PhoneNotesAdapter(ChannelAdapter):
    name = NAME
    channel = "phone"
    summary = "Phone notes by contact-centre agents: POST /v1/channels/phone/{tenant}/notes (API key)."

    def translate(self, inbound: Inbound, ctx: AdapterContext) -> list[Contact]:
        assert inbound.tenant is not None
        data: Any = json_object(inbound.payload)
        try:
            note = PhoneNote.model_validate(data)
        except ValidationError as exc:
            raise Rejected("invalid phone note", field_errors(exc)) from None
        problems = _check(note, ctx.tenants[inbound.tenant].loaded.rules.team_ids(), inbound.received_at)
        if problems:
            raise Rejected("invalid phone note", problems)
        metadata = {"phone.outcome": note.outcome, "phone.agent": note.agent}
        if note.to_team:
            metadata["phone.to_team"] = note.to_team
        if note.called_at is not None:
            metadata["phone.logged_at"] = inbound.received_at.isoformat()
        known = note.caller_name or note.phone or note.email
        sender = Sender(name=note.caller_name, phone=note.phone, email=note.email) if known else None
        return [
            Contact(
                tenant=inbound.tenant,
                channel=self.channel,
                received_at=note.called_at or inbound.received_at,
                source=Source(adapter=self.name, native_id=note.call_id or str(uuid.uuid4())),
                sender=sender,
                subject=note.topic,
                body=note.note,
                metadata=metadata,
            )
        ]

    def routes(self) -> Sequence[web.RouteDef]:
        return [web.post("/v1/channels/phone/{tenant}/notes", self.handle)]

    @classmethod
    def openapi(cls) -> ApiSpec:
        post = {
            "summary": "Phone note by an agent; its outcome acts by itself",
            "operationId": "submitPhoneNote",
            # An API key with the scope `submit` (README, "Settings").
            "security": [{"apiKey": ["submit"]}, {"bearer": ["submit"]}],
            "parameters": [TENANT],
            "requestBody": body(PhoneNote),
            "responses": {
                "202": response(Accepted, "Accepted"),
                **error_responses(400, 401, 404, 413, 415, 422, 503),
                "403": response(Error, "The API key lacks the scope 'submit' or may not act for this tenant"),
            },
        }
        return ApiSpec({"/v1/channels/phone/{tenant}/notes": {"post": post}}, (PhoneNote,), (Accepted,))

    @handler
    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = context(request)
        tenant = known_tenant(request)
        cred = require_key(request, tenant, "submit")
        require_json(request)
        raw = await read_body(request, MAX_BODY_BYTES)
        inbound = Inbound(
            payload=raw, received_at=ctx.clock.now(), tenant=tenant, content_type="application/json"
        )
        outcome = await submit_or_error(self, inbound, ctx)
        if isinstance(outcome, web.Response):
            return outcome
        contact = outcome.contacts[0]
        log.info("phone_note_accepted", contact_id=contact.cid, tenant=tenant, integrator=cred.name)
        answer = Accepted(id=contact.cid, reference=contact.reference, status="accepted")
        return web.json_response(
            answer.model_dump(mode="json"), status=202, headers={"Location": f"/v1/contacts/{contact.cid}"}
        )
