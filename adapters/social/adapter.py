"""Social media (Meta: WhatsApp Cloud API, Messenger, Instagram) → one contact per inbound message.

`GET  /v1/channels/social/{tenant}/webhook`: Meta's verification handshake.
`POST /v1/channels/social/{tenant}/webhook`: signed events; 401 without a valid X-Hub-Signature-256.

Social media is no place for confidential data or public-space reports (the municipalities' charters).
A BSN is masked before the text enters the contact, and the contact is flagged; a likely public-space
report is flagged too. Either way a plain-Dutch reply text pointing to the right channel is kept in
`metadata["social.reply_text"]` (and in the webhook's answer): this service cannot write to Meta, the
integrator's sender does (docs/adapters.md).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from adapters.kit.answers import answer_by
from adapters.kit.base import ChannelAdapter, DeadLetter, Inbound, Rejected
from adapters.kit.context import AdapterContext
from adapters.kit.http import context, handler, known_tenant, read_body, submit_or_error
from adapters.kit.openapi import OBJECT, PUBLIC, TENANT, ApiSpec, Error, error_responses, response
from adapters.social.meta import PayloadError, SocialMessage, parse, signature_valid
from adapters.social.privacy import mask_bsn
from adapters.social.replies import reply_text
from router import logs
from router.core.contact import Contact, Sender, Source, contact_id, reference_for
from router.core.jsonbody import BodyError, parse_json

log = logs.get("adapters.social")

NAME = "social"
MAX_BODY_BYTES = 1_000_000
MAX_CHALLENGE = 200


class SocialContact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    reference: str
    reply_text: str | None = Field(description="What to answer the resident on the platform (plain Dutch)")


class WebhookReceived(BaseModel):
    """The webhook's answer: the contacts made of it (one per message)."""

    model_config = ConfigDict(extra="forbid")
    received: int = Field(ge=0)
    contacts: list[SocialContact]
    dead_lettered: str | None = Field(default=None, description="Why part of it went to router.dead")


class SocialAdapter(ChannelAdapter):
    name = NAME
    channel = "social"
    summary = (
        "Meta webhooks (WhatsApp Cloud API, Messenger, Instagram): /v1/channels/social/{tenant}/webhook."
    )

    def translate(self, inbound: Inbound, ctx: AdapterContext) -> list[Contact]:
        assert inbound.tenant is not None
        try:
            messages, _ignored = parse(parse_json(inbound.payload))
        except BodyError as exc:
            # Signed by Meta but unreadable: keep it (router.dead) rather than make Meta retry for days.
            reason = exc.message.removeprefix("malformed JSON: ")
            raise DeadLetter(f"malformed webhook JSON: {reason}", tenant=inbound.tenant) from exc
        except PayloadError as exc:
            raise DeadLetter(f"unexpected webhook payload: {exc}", tenant=inbound.tenant) from exc
        return [self._contact(ctx, inbound, m) for m in messages]

    def tenant_for(self, ctx: AdapterContext, url_tenant: str, message: SocialMessage) -> str:
        # The account the message was sent to decides (SOCIAL_ACCOUNTS); the URL is the fallback.
        mapped = ctx.settings.accounts.get(message.account_id)
        return mapped if mapped is not None and mapped in ctx.tenants else url_tenant

    def _contact(self, ctx: AdapterContext, inbound: Inbound, message: SocialMessage) -> Contact:
        assert inbound.tenant is not None
        tenant = self.tenant_for(ctx, inbound.tenant, message)
        text, masked = mask_bsn(message.text)
        native_id = f"{message.platform}:{message.message_id}"
        metadata = {
            "social.platform": message.platform,
            "social.account_id": message.account_id,
            "social.message_type": message.kind,
        }
        if message.media_id:
            metadata["social.media_id"] = message.media_id
        if masked:
            metadata["social.bsn_masked"] = "true"
        contact = Contact(
            tenant=tenant,
            channel=self.channel,
            received_at=inbound.received_at,
            source=Source(adapter=self.name, native_id=native_id[:500]),
            sender=Sender(
                name=message.sender_name,
                phone=message.sender_phone,
                handle=f"{message.platform}:{message.sender_id}"[:500],
            ),
            body=text[:100_000],
            confidential=bool(masked),
            metadata=metadata,
        )
        tenant_rules = ctx.tenants[tenant]
        category = tenant_rules.classifier.classify(contact).category
        public_space = category in ctx.settings.public_space_categories
        if public_space:
            metadata["social.public_space_report"] = "true"
        answer = answer_by(tenant_rules, contact)
        # The rules file's contact details win over the TENANT_PHONE / TENANT_FORM_URL settings.
        details = tenant_rules.loaded.rules.contact_details
        metadata["social.reply_text"] = reply_text(
            reference=reference_for(tenant, contact_id(tenant, self.name, native_id[:500])),
            answer_text=answer.text if answer else None,
            phone=details.phone or ctx.settings.phones.get(tenant),
            form_url=details.form_url or ctx.settings.form_urls.get(tenant),
            bsn=bool(masked),
            public_space=public_space,
            danger=category == "gevaar",
        )
        return contact.model_copy(update={"metadata": metadata})

    def routes(self) -> Sequence[web.RouteDef]:
        path = "/v1/channels/social/{tenant}/webhook"
        return [web.get(path, self.verify), web.post(path, self.receive)]

    @classmethod
    def openapi(cls) -> ApiSpec:
        hub = [
            {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
            for n in ("hub.mode", "hub.verify_token", "hub.challenge")
        ]
        signature = {
            "name": "X-Hub-Signature-256",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
        }
        get = {
            "summary": "Meta webhook verification handshake",
            "operationId": "verifySocialWebhook",
            "security": PUBLIC,
            "parameters": [TENANT, *hub],
            "responses": {
                "200": {
                    "description": "The challenge, echoed",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "403": response(Error, "Verification failed"),
                **error_responses(404),
            },
        }
        post = {
            "summary": "Meta webhook (WhatsApp, Messenger, Instagram), signed",
            "operationId": "receiveSocialWebhook",
            "security": PUBLIC,
            "parameters": [TENANT, signature],
            "requestBody": {"required": True, "content": {"application/json": {"schema": OBJECT}}},
            "responses": {
                "200": response(WebhookReceived, "Received; one contact per inbound message"),
                **error_responses(400, 401, 404, 413, 422, 503),
            },
        }
        return ApiSpec(
            {"/v1/channels/social/{tenant}/webhook": {"get": get, "post": post}}, responses=(WebhookReceived,)
        )

    @handler
    async def verify(self, request: web.Request) -> web.StreamResponse:
        """Meta's subscription handshake: echo hub.challenge when the verify token matches."""
        ctx = context(request)
        known_tenant(request)
        token = ctx.settings.meta_verify_token.get_secret_value()
        q = request.query
        given = q.get("hub.verify_token", "")
        challenge = q.get("hub.challenge", "")
        if (
            token
            and q.get("hub.mode") == "subscribe"
            and hmac.compare_digest(given.encode(), token.encode())
            and 0 < len(challenge) <= MAX_CHALLENGE
        ):
            return web.Response(text=challenge, content_type="text/plain")
        log.warning("social_verify_refused", tenant=request.match_info["tenant"])
        return web.json_response({"error": "verification failed"}, status=403)

    @handler
    async def receive(self, request: web.Request) -> web.StreamResponse:
        ctx = context(request)
        tenant = known_tenant(request)
        secret = ctx.settings.meta_app_secret.get_secret_value()
        if not secret:
            # Meta retries on an error, so nothing is lost while the secret is being configured.
            raise Rejected("social channel not configured (META_APP_SECRET)", status=503)
        raw = await read_body(request, MAX_BODY_BYTES)
        if not signature_valid(secret, raw, request.headers.get("X-Hub-Signature-256")):
            log.warning("social_bad_signature", tenant=tenant)
            return web.json_response({"error": "invalid or missing X-Hub-Signature-256"}, status=401)
        inbound = Inbound(
            payload=raw, received_at=ctx.clock.now(), tenant=tenant, content_type="application/json"
        )
        outcome = await submit_or_error(self, inbound, ctx, dead_letter_ok=True)
        if isinstance(outcome, web.Response):
            return outcome
        body: dict[str, Any] = {
            "received": len(outcome.contacts),
            "contacts": [
                {"id": c.cid, "reference": c.reference, "reply_text": c.metadata.get("social.reply_text")}
                for c in outcome.contacts
            ],
        }
        if outcome.dead_reason:
            body["dead_lettered"] = outcome.dead_reason
        # Through its model: what the document promises is what is sent.
        return web.json_response(WebhookReceived.model_validate(body).model_dump(mode="json"), status=200)
