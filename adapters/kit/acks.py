"""Acknowledgements of receipt: a plain-Dutch mail with the reference number and the answer date.

Sent only after the broker confirmed the contact, from the tenant's ACK_FROM address, with the
Message-ID the adapter put in `thread.ack_message_id` before publishing (so a reply to it threads),
`Auto-Submitted: auto-replied` and a null envelope sender (RFC 3834), so that no mail system answers
it and a bounce of it cannot start a loop.

Nothing the sender wrote is echoed, in the subject or the text: for a web form the address is whatever
was typed into the form, and a mail's From is no better proof. Through the relay with STARTTLS when it
offers it (SMTP_RELAY_STARTTLS=auto), or only with it (require).
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from adapters.kit.answers import AnswerBy, answer_by
from adapters.kit.context import AckSender, AdapterContext
from adapters.kit.settings import AdapterSettings
from router import logs
from router.core.contact import Contact
from router.core.notices import Notice

log = logs.get("adapters.kit.acks")

ACK_PREFIX = "ack."
RETRY_DELAYS = (2.0, 10.0, 60.0)


def ack_message_id(contact_id: str, domain: str) -> str:
    """Deterministic, so a re-delivered mail gets the same acknowledgement id (and the router one hint)."""
    return f"<{ACK_PREFIX}{contact_id}@{domain}>"


def is_ack_id(message_id: str) -> bool:
    return message_id.startswith(f"<{ACK_PREFIX}")


def ack_domain(ack_from: str | None, fallback: str) -> str:
    if ack_from and "@" in ack_from:
        return ack_from.rsplit("@", 1)[1].strip(" >").lower()
    return fallback


def ack_text(
    *,
    tenant_name: str,
    reference: str,
    answer: AnswerBy | None,
    can_reply: bool,
    status_link: str | None = None,
) -> str:
    """Our fixed text with the reference and the answer date only. Nothing the sender wrote (name,
    subject, message) is repeated: the address an acknowledgement goes to is not verified (a form
    field, a From header), so an echo would let anyone mail their text from the municipality's domain
    to anyone, and send a BSN typed into a subject out in clear."""
    lines = [
        "Beste meneer, mevrouw,",
        "",
        "Wij hebben uw bericht goed ontvangen. Dank u wel.",
        "",
        f"Uw referentienummer is {reference}. Noem dit nummer als u ons over deze vraag mailt of belt.",
        "",
    ]
    if answer is not None:
        lines += [
            f"U krijgt uiterlijk {answer.text} antwoord. Lukt dat niet? Dan laten wij u vóór die tijd weten "
            "wanneer u het antwoord krijgt.",
            "",
        ]
    else:
        lines += ["Wij laten u zo snel mogelijk weten wanneer u antwoord krijgt.", ""]
    if status_link:
        lines += ["Op deze pagina ziet u hoe het met uw vraag staat:", status_link, ""]
    if can_reply:
        lines += [
            "Wilt u nog iets aanvullen? Beantwoord dan deze e-mail. Wij voegen het toe aan uw vraag.",
            "",
        ]
    lines += [
        "Heeft u ons geen bericht gestuurd? Dan kunt u deze e-mail negeren.",
        "",
        "Met vriendelijke groet,",
        "",
        tenant_name,
        "",
        "Dit is een automatisch bericht.",
    ]
    return "\n".join(lines) + "\n"


def build_ack(
    *,
    contact: Contact,
    tenant_name: str,
    answer: AnswerBy | None,
    from_addr: str,
    reply_to: str | None,
    message_id: str,
    in_reply_to: str | None,
    status_link: str | None = None,
) -> EmailMessage:
    """The acknowledgement of `contact`. Of the contact it uses the reference, the time it was received
    and the address to send to; every other word is ours (see `ack_text`)."""
    assert contact.sender is not None and contact.sender.email is not None
    msg = EmailMessage()
    msg["From"] = f"{tenant_name} <{from_addr}>"
    msg["To"] = contact.sender.email
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = f"Ontvangstbevestiging {contact.reference}"
    msg["Date"] = format_datetime(contact.received_at)
    msg["Message-ID"] = message_id
    if in_reply_to:
        # Threading only: the resident's mail program shows this under their own mail.
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg["Auto-Submitted"] = "auto-replied"
    # Ask the resident's mail system not to answer this automatic mail (Exchange, Outlook).
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(
        ack_text(
            tenant_name=tenant_name,
            reference=contact.reference,
            answer=answer,
            can_reply=bool(reply_to),
            status_link=status_link,
        )
    )
    return msg


# SMTP_RELAY_STARTTLS → aiosmtplib's start_tls: None upgrades when the relay offers STARTTLS.
START_TLS: dict[str, bool | None] = {"auto": None, "require": True, "off": False}


class SmtpAckSender:
    """Sends through the relay in SMTP_RELAY_HOST/PORT with a null envelope sender (MAIL FROM:<>),
    over STARTTLS when the relay offers it (SMTP_RELAY_STARTTLS)."""

    def __init__(self, settings: AdapterSettings):
        self.settings = settings

    def client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_relay_host,
            port=s.smtp_relay_port,
            timeout=s.smtp_relay_timeout,
            start_tls=START_TLS[s.smtp_relay_starttls],
            # Verified whenever TLS is used; an unverifiable certificate fails the send (and its
            # retries) instead of sending in clear to whoever answered.
            validate_certs=True,
            cert_bundle=s.smtp_relay_ca_file or None,
            username=s.smtp_relay_username or None,
            password=s.smtp_relay_password.get_secret_value() or None,
        )

    async def send(self, message: EmailMessage) -> None:
        client = self.client()
        recipients = [str(message["To"])]
        async with client:
            await client.sendmail("", recipients, message.as_bytes())


def planned_ack_id(ctx: AdapterContext, tenant: str, contact_id: str) -> str | None:
    """The Message-ID the acknowledgement of this contact will get, or None when none will be sent."""
    if ctx.acks is None or tenant not in ctx.settings.ack_senders:
        return None
    return ack_message_id(
        contact_id, ack_domain(ctx.settings.ack_senders[tenant], ctx.settings.smtp_hostname)
    )


def schedule_ack(
    ctx: AdapterContext, contact: Contact, *, reply_to: str | None, in_reply_to: str | None
) -> bool:
    """Send the acknowledgement in the background (the contact is already confirmed). False: none due."""
    message_id = contact.metadata.get("thread.ack_message_id")
    from_addr = ctx.settings.ack_senders.get(contact.tenant)
    tenant = ctx.tenants.get(contact.tenant)
    if ctx.acks is None or not message_id or not from_addr or tenant is None:
        return False
    if contact.sender is None or contact.sender.email is None:
        return False
    message = build_ack(
        contact=contact,
        tenant_name=tenant.loaded.rules.name,
        answer=answer_by(tenant, contact),
        from_addr=from_addr,
        reply_to=reply_to,
        message_id=message_id,
        in_reply_to=in_reply_to,
        status_link=ctx.status_links(contact) if ctx.status_links is not None else None,
    )
    ctx.spawn(send_with_retry(ctx.acks, message, contact.cid), name=f"ack:{contact.cid}")
    return True


async def send_with_retry(
    sender: AckSender, message: EmailMessage, contact_id: str, delays: tuple[float, ...] = RETRY_DELAYS
) -> bool:
    """Try, then retry after each delay. Logs the contact id and the error type only: SMTP errors quote
    the recipient address."""
    for attempt, delay in enumerate((0.0, *delays)):
        if delay:
            await asyncio.sleep(delay)
        try:
            await sender.send(message)
        except Exception as exc:
            log.warning(
                "ack_send_failed", contact_id=contact_id, attempt=attempt + 1, error=type(exc).__name__
            )
            continue
        log.info("ack_sent", contact_id=contact_id, attempt=attempt + 1)
        return True
    log.error("ack_given_up", contact_id=contact_id)
    return False


class MailNotifier:
    """The service's `Notifier` (router/core/ports.py): notices to residents (an extended term, a
    callback that could not reach them) as mails from the tenant's ACK_FROM address, sent like the
    acknowledgements: after the change is committed, in the background, with retries, best effort."""

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx

    def can_mail(self, tenant: str) -> bool:
        return self.ctx.acks is not None and tenant in self.ctx.settings.ack_senders

    def send(self, notice: Notice) -> None:
        tenant = self.ctx.tenants.get(notice.tenant)
        from_addr = self.ctx.settings.ack_senders.get(notice.tenant)
        if self.ctx.acks is None or tenant is None or not from_addr or not notice.to:
            return
        msg = EmailMessage()
        msg["From"] = f"{tenant.loaded.rules.name} <{from_addr}>"
        msg["To"] = notice.to
        msg["Subject"] = notice.subject
        msg["Date"] = format_datetime(self.ctx.clock.now())
        msg["Message-ID"] = make_msgid(domain=ack_domain(from_addr, self.ctx.settings.smtp_hostname))
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"
        msg.set_content(notice.text)
        self.ctx.spawn(
            send_with_retry(self.ctx.acks, msg, notice.contact_id), name=f"notice:{notice.contact_id}"
        )
