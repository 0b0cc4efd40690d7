"""Inbound SMTP (aiosmtpd) in the service's event loop.

A message is answered 250 only after the broker confirmed its contact(s) (or its dead letter); if the
broker does not confirm, 451 makes the sending server try again later — the mail is never lost and,
through the Message-ID idempotency key, never routed twice. Recipients outside MAIL_ROUTES are
refused at RCPT (550), so this is no open relay. Run it behind the MTA that receives the MX traffic.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.kit.base import ChannelAdapter, Inbound, PublishError, Rejected, submit
from adapters.kit.context import AdapterContext
from router import logs

log = logs.get("adapters.mail.smtp")

# aiosmtpd logs every MAIL FROM and RCPT TO address at INFO: personal data, so keep it to warnings.
logging.getLogger("mail.log").setLevel(logging.WARNING)

NULL_SENDER = "<>"


class InboundHandler:
    def __init__(self, adapter: ChannelAdapter, ctx: AdapterContext):
        self.adapter = adapter
        self.ctx = ctx

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        # aiosmtpd treats an empty MAIL FROM:<> as "no MAIL yet" and refuses RCPT; bounces use exactly
        # that, and they must be taken (and dead-lettered), not refused. Keep a marker instead.
        envelope.mail_from = address or NULL_SENDER
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        route = self.ctx.settings.route_for(address)
        if route is None or route.tenant not in self.ctx.tenants:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="surrogateescape")
        mail_from = envelope.mail_from or ""
        inbound = Inbound(
            payload=raw,
            received_at=self.ctx.clock.now(),
            meta={
                "recipients": " ".join(envelope.rcpt_tos),
                "envelope_from": "" if mail_from == NULL_SENDER else mail_from,
            },
        )
        try:
            outcome = await submit(self.adapter, inbound, self.ctx)
        except PublishError:
            log.warning("smtp_deferred", reason="broker did not confirm")
            return "451 4.3.0 Message not queued, please try again later"
        except Rejected as exc:
            return f"550 5.6.0 {exc.message}"
        except Exception as exc:
            # Never crash the session; the sender keeps the mail and retries.
            log.error("smtp_failed", error=type(exc).__name__)
            return "451 4.3.0 Temporary failure, please try again later"
        if outcome.contacts:
            refs = " ".join(c.reference for c in outcome.contacts)
            return f"250 2.0.0 Accepted, reference {refs}"
        return "250 2.0.0 Accepted"


async def start_smtp_server(
    adapter: ChannelAdapter, ctx: AdapterContext, host: str, port: int, **smtp_kwargs: Any
) -> asyncio.Server:
    handler = InboundHandler(adapter, ctx)
    settings = ctx.settings

    def factory() -> SMTP:
        return SMTP(
            handler,
            hostname=settings.smtp_hostname,
            ident="contact-router",
            data_size_limit=settings.mail_max_bytes,
            enable_SMTPUTF8=True,
            **smtp_kwargs,
        )

    server = await asyncio.get_running_loop().create_server(factory, host, port)
    log.info("smtp_listening", host=host, port=server.sockets[0].getsockname()[1])
    return server
