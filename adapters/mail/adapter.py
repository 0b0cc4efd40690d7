"""The mail adapter: one mail (raw RFC 5322 bytes plus envelope recipients) → one contact per tenant.

The transports (SMTP server, IMAP poller) hand raw mail to `adapters.mail.intake.take_in`; `translate`
decides what the mail becomes, all of it before the SMTP answer: refused (`MailRefused`, with its SMTP
code), ignored (`IgnoredMail`: automatic mail, counted, never a contact) or contacts. Threading is the
router's decision: the adapter only passes hints in the metadata — `thread.message_id`,
`thread.in_reply_to`, `thread.ack_message_id` — and the subject keeps any reference number.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence

from pydantic import ValidationError

from adapters.kit.acks import is_ack_id, planned_ack_id, schedule_ack
from adapters.kit.base import ChannelAdapter, DeadLetter, Inbound
from adapters.kit.context import AdapterContext
from adapters.kit.settings import AdapterSettings, MailRoute
from adapters.mail.imap import ImapPoller
from adapters.mail.intake import IgnoredMail, MailRefused
from adapters.mail.parse import Limits, MailTooComplex, MalformedMail, ParsedMail, parse_mail
from adapters.mail.smtp_server import start_smtp_server
from router import logs
from router.core.contact import Contact, Sender, Source, contact_id, find_reference

NAME = "mail"

log = logs.get("adapters.mail")


def limits_for(settings: AdapterSettings) -> Limits:
    return Limits(
        max_parts=settings.mail_max_mime_parts,
        max_depth=settings.mail_max_mime_depth,
        max_decoded_bytes=settings.mail_max_bytes,
    )


def _address(value: str | None) -> str | None:
    """A valid envelope address (`<a@b>` or `a@b`), or None."""
    address = (value or "").strip().strip("<>").strip()
    if not address:
        return None
    try:
        return Sender(email=address).email
    except ValidationError:
        return None


def native_id_for(parsed: ParsedMail, raw: bytes) -> str:
    # Message-ID is what every retry (SMTP 451, an IMAP re-poll) keeps; without one, the bytes.
    if parsed.message_id and len(parsed.message_id) <= 500:
        return parsed.message_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def recipients_of(inbound: Inbound, parsed: ParsedMail | None) -> list[str]:
    listed = inbound.meta.get("recipients", "").split()
    return listed or (parsed.header_recipients if parsed else [])


def routes_by_tenant(ctx: AdapterContext, recipients: Sequence[str]) -> dict[str, tuple[MailRoute, str]]:
    """tenant → (first matching route, the recipient it matched). A mail to two municipalities is a
    contact for each; to two mailboxes of one municipality, one contact (the first mailbox counts)."""
    out: dict[str, tuple[MailRoute, str]] = {}
    for address in recipients:
        route = ctx.settings.route_for(address)
        if route is not None and route.tenant in ctx.tenants and route.tenant not in out:
            out[route.tenant] = (route, address)
    return out


def is_followup(parsed: ParsedMail, tenant: str) -> bool:
    """A reply in a conversation we started (our acknowledgement, or our reference in the subject)."""
    if any(is_ack_id(mid) for mid in parsed.thread_ids):
        return True
    reference = find_reference(parsed.subject)
    return reference is not None and reference.startswith(tenant[:3].upper() + "-")


class MailAdapter(ChannelAdapter):
    name = NAME
    channel = "mail"
    summary = "E-mail by SMTP (aiosmtpd) or IMAP polling; acknowledgements of receipt by SMTP."

    def __init__(self) -> None:
        # Automatic mail taken and not routed, by (tenant, reason): a counter, not a queue (README).
        self.ignored: Counter[tuple[str, str]] = Counter()
        self._server: asyncio.Server | None = None
        self._poller: ImapPoller | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def smtp_port(self) -> int | None:
        """The port the SMTP server listens on (useful with SMTP_PORT=0), or None."""
        if self._server is None or not self._server.sockets:
            return None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def imap_problem(self) -> str | None:
        """Why the last IMAP round failed (error type), or None; for the readiness check."""
        if self._poller is None or self._poller.last_error is None:
            return None
        return f"IMAP polling failing ({self._poller.last_error})"

    def readiness_checks(self, ctx: AdapterContext) -> Mapping[str, Callable[[], Awaitable[str | None]]]:
        if not ctx.settings.imap_host:
            return {}

        async def imap() -> str | None:
            return self.imap_problem()

        return {"imap": imap}

    async def start(self, ctx: AdapterContext) -> None:
        s = ctx.settings
        if s.smtp_port is not None:
            self._server = await start_smtp_server(self, ctx, s.smtp_host, s.smtp_port)
        if s.imap_host:
            self._stop.clear()
            self._poller = ImapPoller(self, ctx)
            self._poll_task = asyncio.create_task(self._poller.run(self._stop), name="imap-poller")

    async def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._poll_task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._poll_task, 10)
            self._poll_task = None

    def translate(self, inbound: Inbound, ctx: AdapterContext) -> list[Contact]:
        """The one decision for SMTP and IMAP, made before anything is answered or published."""
        raw = inbound.payload
        s = ctx.settings
        if len(raw) > s.mail_max_bytes:
            raise MailRefused("552 5.3.4", f"Message too large (limit {s.mail_max_bytes} bytes)")
        # SMTP gives the envelope sender ("" for MAIL FROM:<>); IMAP has the delivering server's
        # Return-Path, which parse_mail reads.
        envelope_from = inbound.meta.get("envelope_from")
        try:
            parsed = parse_mail(
                raw,
                max_attachment_bytes=s.mail_max_attachment_bytes,
                envelope_from=envelope_from,
                limits=limits_for(s),
                auto_subjects=s.auto_subjects,
                own_addresses=s.own_mail_addresses,
            )
        except MailTooComplex as exc:
            raise MailRefused("554 5.6.0", f"Message refused: {exc.reason}") from exc
        except MalformedMail as exc:
            raise MailRefused("554 5.6.0", f"Message refused: {exc.reason}") from exc
        except RecursionError as exc:
            raise MailRefused("554 5.6.0", "Message refused: MIME parts nested too deeply") from exc
        except Exception as exc:
            # Not knowable: a parser bug. The mail is kept in router.dead for a replay after the fix.
            raise DeadLetter(f"unparseable mail: {type(exc).__name__}") from exc
        targets = routes_by_tenant(ctx, recipients_of(inbound, parsed))
        if not targets:
            raise MailRefused("550 5.1.1", "No such mailbox here (no municipality for the recipients)")
        if parsed.automatic is not None:
            # Never a new question, a follow-up or acknowledged: that is what stops mail loops.
            raise IgnoredMail(parsed.automatic, next(iter(targets)))
        self._choose_sender(parsed, inbound, envelope_from)
        native_id = native_id_for(parsed, raw)
        return [
            self._contact(ctx, inbound, parsed, native_id, tenant, route)
            for tenant, (route, _) in targets.items()
        ]

    @staticmethod
    def _choose_sender(parsed: ParsedMail, inbound: Inbound, envelope_from: str | None) -> None:
        """The From address when valid, else the envelope sender when valid (its name kept), else
        refused: a contact nobody can answer is no contact."""
        if parsed.sender is not None and parsed.sender.email is not None:
            return
        envelope = _address(envelope_from if envelope_from is not None else parsed.return_path)
        if envelope is None:
            raise MailRefused(
                "550 5.1.7", "No valid sender address (From or envelope sender); nobody could be answered"
            )
        name = parsed.sender.name if parsed.sender is not None else None
        parsed.sender = Sender(name=name, email=envelope)
        parsed.sender_address = envelope.lower()
        parsed.from_envelope = True

    def _contact(
        self,
        ctx: AdapterContext,
        inbound: Inbound,
        parsed: ParsedMail,
        native_id: str,
        tenant: str,
        route: MailRoute,
    ) -> Contact:
        metadata: dict[str, str] = {}
        if parsed.message_id:
            metadata["thread.message_id"] = parsed.message_id
        if parsed.thread_ids:
            metadata["thread.in_reply_to"] = " ".join(parsed.thread_ids)
        followup = is_followup(parsed, tenant)
        can_ack = (
            not followup
            and not parsed.suppress_ack
            and parsed.sender is not None
            and parsed.sender.email is not None
        )
        if can_ack:
            ack_id = planned_ack_id(ctx, tenant, contact_id(tenant, self.name, native_id))
            if ack_id:
                metadata["thread.ack_message_id"] = ack_id
        if followup:
            metadata["mail.followup"] = "true"
        if route.mailbox:
            metadata["mailbox"] = route.mailbox
        if parsed.sender_invalid:
            metadata["mail.sender_invalid"] = "true"
        if parsed.from_envelope:
            metadata["mail.sender_from_envelope"] = "true"
        if parsed.body_damaged:
            metadata["mail.body_damaged"] = "true"
        if parsed.body_unreadable:
            metadata["mail.body_unreadable"] = "true"
        if parsed.body_truncated:
            metadata["mail.body_truncated"] = "true"
        if parsed.attachments_omitted:
            metadata["mail.attachments_omitted"] = str(parsed.attachments_omitted)
        if parsed.attachments_over_limit:
            metadata["mail.attachments_over_limit"] = str(parsed.attachments_over_limit)
        return Contact(
            tenant=tenant,
            channel=self.channel,
            received_at=inbound.received_at,
            source=Source(adapter=self.name, native_id=native_id),
            sender=parsed.sender,
            subject=parsed.subject or None,
            body=parsed.body,
            attachments=parsed.attachments,
            metadata=metadata,
        )

    async def after_publish(self, contacts: list[Contact], inbound: Inbound, ctx: AdapterContext) -> None:
        targets = routes_by_tenant(ctx, recipients_of(inbound, None) or [])
        for contact in contacts:
            if "thread.ack_message_id" not in contact.metadata:
                continue
            if await self._joins(ctx, contact):
                # A reply the router joins to its contact (In-Reply-To, References): that contact was
                # acknowledged once, with its reference and its date; a second one would promise anew.
                continue
            # Replies go to the address the resident wrote to, where this adapter reads them.
            reply_to = targets[contact.tenant][1] if contact.tenant in targets else None
            schedule_ack(
                ctx, contact, reply_to=reply_to, in_reply_to=contact.metadata.get("thread.message_id")
            )

    @staticmethod
    async def _joins(ctx: AdapterContext, contact: Contact) -> bool:
        if ctx.threads is None or not contact.metadata.get("thread.in_reply_to"):
            return False
        try:
            return await ctx.threads.joins(contact)
        except Exception as exc:
            # Cannot tell: acknowledge, as before there was a look-up (a missing one is the worse harm).
            log.warning("mail_thread_lookup_failed", contact_id=contact.cid, error=type(exc).__name__)
            return False

    def count_ignored(self, tenant: str | None, reason: str) -> None:
        self.ignored[(tenant or "-", reason)] += 1
        log.info("mail_ignored", tenant=tenant, reason=reason)
