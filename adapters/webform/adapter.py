"""Web form: `POST /v1/channels/webform/{tenant}`, JSON or application/x-www-form-urlencoded.

Answers 202 with the reference number and the date by which the resident gets an answer, and mails an
acknowledgement when an address was given. Guards, in order: body size (413), a token bucket per
client address (429 + Retry-After), a honeypot field (a filled one gets a normal-looking 202 and
nothing is published: bots learn nothing), then validation (422, one entry per field).

The acknowledgement mail repeats nothing the resident typed (`adapters.kit.acks`): the address is
unverified. Browsers on the tenant's own websites may post it from a script (CORS, `cors.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import parse_qsl

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

from adapters.kit.acks import planned_ack_id, schedule_ack
from adapters.kit.base import ChannelAdapter, Inbound, Rejected
from adapters.kit.context import AdapterContext
from adapters.kit.http import context, handler, json_object, known_tenant, read_body, receipt, submit_or_error
from adapters.kit.openapi import (
    PUBLIC,
    TENANT,
    ApiSpec,
    Error,
    Receipt,
    body,
    error_responses,
    response,
)
from adapters.kit.phones import to_e164
from adapters.kit.ratelimit import bucket_key
from adapters.webform.cors import add_cors_headers, allowed_origin, preflight
from router import logs
from router.core.contact import Contact, Sender, Source, contact_id, field_errors, reference_for

log = logs.get("adapters.webform")

NAME = "webform"
# A field a person never sees (hidden with CSS) and a bot fills in.
HONEYPOT = "website"
MAX_FIELDS = 30

Text = Annotated[str, StringConstraints(strip_whitespace=True)]


class WebformSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    message: Annotated[Text, StringConstraints(min_length=1, max_length=10_000, pattern=r"\S")]
    name: Annotated[Text, StringConstraints(max_length=200)] | None = None
    email: EmailStr | None = None
    phone: Annotated[str, Field(json_schema_extra={"format": "phone"})] | None = None
    subject: Annotated[Text, StringConstraints(max_length=200)] | None = None
    # Which form on the website (rules route on it, e.g. melding-openbare-ruimte).
    form: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")] | None = None
    # Idempotency: a site that retries a submission sends the same id and gets the same contact.
    submission_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,100}$")] | None = None
    website: str | None = Field(default=None, description="honeypot; must stay empty")

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        # An HTML form sends every field, filled or not.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return to_e164(value) if value is not None else None


def decode(raw: bytes, content_type: str) -> dict[str, Any]:
    if content_type == "application/json":
        return json_object(raw)
    if content_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
        except UnicodeDecodeError as exc:
            raise Rejected(f"body is not valid UTF-8 (byte {exc.start})", status=400) from exc
        except ValueError as exc:
            raise Rejected(f"too many fields (limit {MAX_FIELDS})", status=400) from exc
        data: dict[str, Any] = {}
        repeated = []
        for key, value in pairs:
            if key in data:
                repeated.append({"field": key, "message": "given more than once"})
            data[key] = value
        if repeated:
            raise Rejected("invalid submission", repeated)
        return data
    raise Rejected("send application/json or application/x-www-form-urlencoded", status=415)


def client_address(request: web.Request, trust_forwarded: bool) -> str:
    if trust_forwarded:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.remote or "unknown"


class WebformAdapter(ChannelAdapter):
    name = NAME
    channel = "webform"
    summary = "Contact form on the municipality's website: POST /v1/channels/webform/{tenant}."

    def translate(self, inbound: Inbound, ctx: AdapterContext) -> list[Contact]:
        assert inbound.tenant is not None
        data = decode(inbound.payload, inbound.content_type)
        try:
            form = WebformSubmission.model_validate(data)
        except ValidationError as exc:
            raise Rejected("invalid submission", field_errors(exc)) from None
        if form.website:
            raise Rejected("invalid submission", [{"field": HONEYPOT, "message": "must be empty"}])
        native_id = form.submission_id or str(uuid.uuid4())
        metadata: dict[str, str] = {}
        if form.form:
            metadata["form"] = form.form
        if form.email:
            ack_id = planned_ack_id(ctx, inbound.tenant, contact_id(inbound.tenant, self.name, native_id))
            if ack_id:
                metadata["thread.ack_message_id"] = ack_id
        sender = None
        if form.name or form.email or form.phone:
            sender = Sender(name=form.name, email=form.email, phone=form.phone)
        return [
            Contact(
                tenant=inbound.tenant,
                channel=self.channel,
                received_at=inbound.received_at,
                source=Source(adapter=self.name, native_id=native_id),
                sender=sender,
                subject=form.subject,
                body=form.message,
                metadata=metadata,
            )
        ]

    async def after_publish(self, contacts: list[Contact], inbound: Inbound, ctx: AdapterContext) -> None:
        for contact in contacts:
            if contact.sender and contact.sender.email and not await self._may_mail(ctx, contact):
                continue
            schedule_ack(ctx, contact, reply_to=None, in_reply_to=None)

    @staticmethod
    async def _may_mail(ctx: AdapterContext, contact: Contact) -> bool:
        """Nobody verified the address a form names: without a bucket per recipient, forms posted from
        many clients could have the municipality mail one address without end. Past the limit the
        contact is accepted and routed as ever, without acknowledgement; so too while the limiter is
        away (the contact is already accepted: its answer must not fail now)."""
        assert contact.sender is not None and contact.sender.email is not None
        # One mailbox, however it is tagged: victim+1@, victim+2@ share the bucket.
        local, _, domain = contact.sender.email.lower().rpartition("@")
        recipient = "ack-to\x1f" + local.split("+", 1)[0] + "@" + domain
        try:
            verdict = await ctx.rate_limiter.take(bucket_key(contact.tenant, recipient))
        except Exception as exc:
            log.warning(
                "ack_skipped", contact_id=contact.cid, reason="rate_limiter_failed", error=type(exc).__name__
            )
            return False
        if not verdict.allowed:
            log.info(
                "ack_skipped", contact_id=contact.cid, tenant=contact.tenant, reason="recipient_rate_limited"
            )
        return verdict.allowed

    def routes(self) -> Sequence[web.RouteDef]:
        return [
            web.post("/v1/channels/webform/{tenant}", self.handle),
            web.options("/v1/channels/webform/{tenant}", self.handle_preflight),
        ]

    @classmethod
    def openapi(cls) -> ApiSpec:
        post = {
            "summary": "Web form: a contact; answers the reference number and expected answer date",
            "operationId": "submitWebform",
            "security": PUBLIC,
            "parameters": [TENANT],
            "requestBody": body(WebformSubmission, "application/json", "application/x-www-form-urlencoded"),
            "responses": {
                "202": response(Receipt, "Accepted; body has reference and expected_answer_by"),
                "429": response(Error, "Too many submissions from this address; see Retry-After"),
                **error_responses(400, 404, 413, 415, 422, 503),
            },
        }
        options = {
            "summary": "CORS preflight of the web form (browsers send it for a script on the tenant's site)",
            "operationId": "preflightWebform",
            "security": PUBLIC,
            "parameters": [TENANT],
            "responses": {
                "204": {
                    "description": "One of the tenant's websites (WEBFORM_ALLOWED_ORIGINS) asking for POST: "
                    "Access-Control-Allow-Origin (that origin, never *), -Methods, -Headers, -Max-Age; "
                    "without an Origin, a plain answer with Allow"
                },
                "403": response(Error, "Origin, method or headers not allowed; no CORS headers"),
                **error_responses(404),
            },
        }
        return ApiSpec(
            {"/v1/channels/webform/{tenant}": {"post": post, "options": options}},
            (WebformSubmission,),
            (Receipt,),
        )

    @handler
    async def handle_preflight(self, request: web.Request) -> web.StreamResponse:
        ctx = context(request)
        tenant = known_tenant(request)
        return preflight(ctx.settings, tenant, request)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await self._submit(request)
        # On every answer (202 and errors alike), so the site's script can show the resident why.
        tenant = request.match_info["tenant"]
        add_cors_headers(response, allowed_origin(context(request).settings, tenant, request))
        return response

    @handler
    async def _submit(self, request: web.Request) -> web.StreamResponse:
        ctx = context(request)
        tenant = known_tenant(request)
        raw = await read_body(request, ctx.settings.webform_max_bytes)
        address = client_address(request, ctx.settings.webform_trust_forwarded)
        verdict = await ctx.rate_limiter.take(bucket_key(tenant, address))
        if not verdict.allowed:
            log.info("webform_rate_limited", tenant=tenant)
            return web.json_response(
                {"error": f"too many submissions; try again in {verdict.retry_after} seconds"},
                status=429,
                headers={"Retry-After": str(verdict.retry_after)},
            )
        inbound = Inbound(
            payload=raw, received_at=ctx.clock.now(), tenant=tenant, content_type=request.content_type
        )
        if self._honeypot_filled(inbound):
            return self._decoy(ctx, inbound)
        outcome = await submit_or_error(self, inbound, ctx)
        if isinstance(outcome, web.Response):
            return outcome
        contact = outcome.contacts[0]
        body = receipt(ctx, contact)
        body["message"] = thanks(body["reference"], body["expected_answer_text"])
        return web.json_response(Receipt.model_validate(body).model_dump(mode="json"), status=202)

    def _honeypot_filled(self, inbound: Inbound) -> bool:
        """A filled honeypot on an otherwise valid submission: a bot. (An invalid one is answered by
        the real pass, with its errors, like anyone's.)"""
        try:
            data = decode(inbound.payload, inbound.content_type)
        except Rejected:
            return False  # the real pass reports it
        value = data.get(HONEYPOT)
        if value is None or str(value).strip() == "":
            return False
        try:
            WebformSubmission.model_validate({**data, HONEYPOT: None})
        except ValidationError:
            return False
        return True

    def _decoy(self, ctx: AdapterContext, inbound: Inbound) -> web.Response:
        """Looks like a real 202; nothing is published and no mail is sent."""
        assert inbound.tenant is not None
        log.info("webform_honeypot", tenant=inbound.tenant)
        fake = Contact(
            tenant=inbound.tenant,
            channel=self.channel,
            received_at=inbound.received_at,
            source=Source(adapter=self.name, native_id=str(uuid.uuid4())),
        )
        body = receipt(ctx, fake)
        body["reference"] = reference_for(inbound.tenant, fake.cid)
        body["message"] = thanks(body["reference"], body["expected_answer_text"])
        return web.json_response(Receipt.model_validate(body).model_dump(mode="json"), status=202)


def thanks(reference: str, answer_text: str | None) -> str:
    """What the website shows the resident, in plain Dutch."""
    when = (
        f"U krijgt uiterlijk {answer_text} antwoord."
        if answer_text
        else "Wij laten u zo snel mogelijk weten wanneer u antwoord krijgt."
    )
    return f"Bedankt voor uw bericht. Uw referentienummer is {reference}. {when}"
