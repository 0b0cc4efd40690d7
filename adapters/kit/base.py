"""The public interface of a channel adapter. An integrator needs this module and nothing from router/.

An adapter is a thin translator: native input (`Inbound`) → zero or more `Contact`s. It never decides
routing and never talks to the broker itself: `submit` publishes through the shared path (publisher
confirms, idempotency key) and only then runs the adapter's `after_publish` hook (acknowledgements).

Two ways for input to fail, and the difference matters to the sender:
- `Rejected`: the input is bad and the sender is told so (HTTP 4xx, SMTP 5xx); nothing is published.
- `DeadLetter`: the input was taken from the sender but cannot become a contact (a malformed mail, an
  auto-reply); the raw input goes to `router.dead` with the reason, so nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web
from pydantic import ValidationError

from adapters.kit.openapi import ApiSpec
from adapters.kit.publisher import PublishError
from router import logs
from router.core.contact import Contact, admission_problems, summarise_errors

if TYPE_CHECKING:
    from adapters.kit.context import AdapterContext

__all__ = [
    "ChannelAdapter",
    "DeadLetter",
    "Inbound",
    "Outcome",
    "PublishError",
    "Rejected",
    "submit",
]

log = logs.get("adapters.kit.base")


class Rejected(Exception):
    """Bad input: the sender gets `status`, `message` and one entry per bad field; nothing is published."""

    def __init__(self, message: str, fields: Sequence[Mapping[str, str]] = (), *, status: int = 422):
        super().__init__(message)
        self.message = message
        self.fields = [dict(f) for f in fields]
        self.status = status

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.fields:
            out["fields"] = self.fields
        return out


class DeadLetter(Exception):
    """Input taken from the sender that cannot become a contact; it goes to `router.dead` with `reason`.

    `reason` is logged (`input_dead_lettered`), kept in the header `x-dead-reason` and shown by
    `contact-router dlq list`: name fields and say what is wrong in fixed words, never quote the input
    (a header's value, a key, an address). The input itself is the dead letter's body."""

    def __init__(self, reason: str, *, tenant: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.tenant = tenant


@dataclass(frozen=True)
class Inbound:
    """One native input, as it arrived.

    `payload` is the raw bytes (a mail, a JSON body); `meta` holds transport facts that are not in the
    payload (SMTP envelope recipients, the tenant from the URL, the platform). `received_at` is taken
    once, by the transport, so translating the same Inbound twice gives the same contacts.
    """

    payload: bytes
    received_at: datetime
    tenant: str | None = None
    content_type: str = ""
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What `submit` did: the contacts the broker confirmed, or the reason the input was dead-lettered."""

    contacts: list[Contact] = field(default_factory=list)
    dead_reason: str | None = None


class ChannelAdapter:
    """Base class with no-op defaults. Subclass it, set `name` and `channel`, implement `translate`.

    - `name` is `source.adapter` of every contact it makes: with the tenant and the native id it forms
      the idempotency key, so keep it stable forever.
    - `channel` is the contact's channel (mail, webform, social, phone, counter, ...): the rules and the
      service norms key on it.
    """

    name: ClassVar[str]
    channel: ClassVar[str]
    summary: ClassVar[str] = ""

    def translate(self, inbound: Inbound, ctx: AdapterContext) -> list[Contact]:
        """Native input → contacts. Pure: no I/O, no logging of content. Raise Rejected or DeadLetter."""
        raise NotImplementedError

    def routes(self) -> Sequence[web.RouteDef]:
        """HTTP routes this adapter serves (added by `adapters.kit.http.add_routes`)."""
        return ()

    @classmethod
    def openapi(cls) -> ApiSpec:
        """How `routes()` are documented in /v1/openapi.json (adapters.kit.openapi); a test checks that
        every served route is documented."""
        return ApiSpec()

    async def after_publish(self, contacts: list[Contact], inbound: Inbound, ctx: AdapterContext) -> None:
        """Runs after the broker confirmed every contact: send acknowledgements here."""
        return None

    def readiness_checks(self, ctx: AdapterContext) -> Mapping[str, Callable[[], Awaitable[str | None]]]:
        """Checks for /readyz by name: each returns None when fine, or the problem (no personal data)."""
        return {}

    async def start(self, ctx: AdapterContext) -> None:
        """Start long-running parts (a server, a poller)."""
        return None

    async def stop(self) -> None:
        return None


async def submit(adapter: ChannelAdapter, inbound: Inbound, ctx: AdapterContext) -> Outcome:
    """Translate and publish through the shared path. Raises Rejected (nothing published) or
    PublishError (the broker did not confirm: the caller must not tell the sender it was accepted)."""
    try:
        try:
            contacts = adapter.translate(inbound, ctx)
        except ValidationError as exc:
            # A contact the model refuses is the adapter's mistake, not the sender's: keep the input.
            # summarise_errors names fields only; the exception's own text would quote the sender's keys.
            raise DeadLetter(f"invalid contact: {summarise_errors(exc)}", tenant=inbound.tenant) from exc
    except DeadLetter as dead:
        await ctx.dead_letters.dead_letter(
            inbound.payload,
            dead.reason,
            routing_key=f"{dead.tenant or inbound.tenant or '-'}.{adapter.channel}",
        )
        log.info(
            "input_dead_lettered",
            adapter=adapter.name,
            tenant=dead.tenant or inbound.tenant,
            reason=dead.reason,
        )
        return Outcome(dead_reason=dead.reason)
    now = ctx.clock.now()
    for contact in contacts:
        if problems := admission_problems(contact, now):
            # Checked before anything is published: what is accepted is routed.
            raise Rejected("not accepted", problems)
    for contact in contacts:
        if contact.source.adapter != adapter.name:
            # Another adapter's name would let one channel overwrite another's contacts.
            raise ValueError(
                f"adapter {adapter.name!r} made a contact with source.adapter {contact.source.adapter!r}"
            )
    for contact in contacts:
        await ctx.publisher.publish(contact)
        log.info("contact_published", adapter=adapter.name, tenant=contact.tenant, contact_id=contact.cid)
    if contacts:
        try:
            await adapter.after_publish(contacts, inbound, ctx)
        except Exception as exc:
            # The contacts are confirmed; a failing hook must not make the sender retry them. Only the
            # exception's type is logged: messages of mail errors quote addresses.
            log.error(
                "after_publish_failed",
                adapter=adapter.name,
                contact_ids=[c.cid for c in contacts],
                error=type(exc).__name__,
            )
    return Outcome(contacts=contacts)
