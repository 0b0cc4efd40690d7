"""Counter visits (balie): a queue-management system posts each finished visit as a contact.

`POST /v1/channels/counter/{tenant}/visits` with an API key and a JSON body:
    {"visit_id": "Q-2026-0001", "desk": "balie-3", "topic": "Paspoort aanvragen",
     "note": "Pasfoto ontbrak; komt terug.", "visitor_name": "...", "follow_up": true}

This module is the worked example in docs/adapters.md: it imports only the public interface
(`adapters.kit.base`, `adapters.kit.http`, `adapters.kit.context` and the `Contact` model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

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
from adapters.kit.openapi import AUTHED, TENANT, Accepted, ApiSpec, body, error_responses, response
from router.core.contact import Contact, Sender, Source, field_errors

Text = Annotated[str, StringConstraints(strip_whitespace=True)]


# 1. The native format, validated: every bad field is reported by name.
class Visit(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    visit_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,100}$")]
    desk: Annotated[Text, StringConstraints(min_length=1, max_length=50)]
    topic: Annotated[Text, StringConstraints(min_length=1, max_length=200)]
    note: Annotated[Text, StringConstraints(max_length=10_000)] = ""
    visitor_name: Annotated[Text, StringConstraints(max_length=200)] | None = None
    follow_up: bool = False


class CounterVisitAdapter(ChannelAdapter):
    # 2. A stable name (part of the idempotency key) and the channel the rules and norms know.
    name = "counter"
    channel = "counter"
    summary = "Example: counter visits from a queue-management system (docs/adapters.md)."

    # 3. translate: native input → contacts. Pure; raise Rejected with one entry per bad field.
    def translate(self, inbound: Inbound, ctx: AdapterContext) -> list[Contact]:
        assert inbound.tenant is not None
        try:
            visit = Visit.model_validate(json_object(inbound.payload))
        except ValidationError as exc:
            raise Rejected("invalid visit", field_errors(exc)) from None
        return [
            Contact(
                tenant=inbound.tenant,
                channel=self.channel,
                received_at=inbound.received_at,
                # The queue system's own id: a visit posted twice is one contact.
                source=Source(adapter=self.name, native_id=visit.visit_id),
                sender=Sender(name=visit.visitor_name) if visit.visitor_name else None,
                subject=visit.topic,
                body=visit.note,
                metadata={"counter.desk": visit.desk, "counter.follow_up": str(visit.follow_up).lower()},
            )
        ]

    # 4. The transport: an HTTP route. The shared path (submit_or_error) publishes with confirms.
    def routes(self) -> Sequence[web.RouteDef]:
        return [web.post("/v1/channels/counter/{tenant}/visits", self.handle)]

    # 5. How the route is documented in /v1/openapi.json (a test checks every route is).
    @classmethod
    def openapi(cls) -> ApiSpec:
        post = {
            "summary": "Counter visit from a queue-management system",
            "operationId": "submitCounterVisit",
            "security": AUTHED,
            "parameters": [TENANT],
            "requestBody": body(Visit),
            "responses": {
                "202": response(Accepted, "Accepted; body has id and reference"),
                **error_responses(400, 401, 403, 404, 413, 415, 422, 503),
            },
        }
        return ApiSpec({"/v1/channels/counter/{tenant}/visits": {"post": post}}, (Visit,), (Accepted,))

    @handler
    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = context(request)
        tenant = known_tenant(request)
        require_key(request, tenant)
        require_json(request)
        raw = await read_body(request, 64_000)
        inbound = Inbound(
            payload=raw, received_at=ctx.clock.now(), tenant=tenant, content_type=request.content_type
        )
        outcome = await submit_or_error(self, inbound, ctx)
        if isinstance(outcome, web.Response):
            return outcome
        contact = outcome.contacts[0]
        answer = Accepted(id=contact.cid, reference=contact.reference, status="accepted")
        return web.json_response(answer.model_dump(mode="json"), status=202)
