"""Inbound SMTP (aiosmtpd) in the service's event loop.

A message is answered 250 only after the broker confirmed its contact(s) (or its dead letter); if the
broker does not confirm, 451 makes the sending server try again later — the mail is never lost and,
through the Message-ID idempotency key, never routed twice. Recipients outside MAIL_ROUTES are
refused at RCPT (550), so this is no open relay. Run it behind the MTA that receives the MX traffic.

Limits: SMTP_MAX_RECIPIENTS per message and SMTP_MAX_RECIPIENTS_PER_SESSION RCPT commands per
connection (452 past either); MAIL_MAX_BYTES per message, refused at MAIL when the client declares a
larger SIZE, else with 552 after DATA — nothing past the limit is kept. DATA is collected in one buffer
(`BoundedSMTP`), not a list of line objects. The banner names no software version.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from adapters.kit.base import ChannelAdapter, Inbound, PublishError, Rejected
from adapters.kit.context import AdapterContext
from adapters.mail.intake import take_in
from router import logs

log = logs.get("adapters.mail.smtp")

# aiosmtpd logs every MAIL FROM and RCPT TO address at INFO: personal data, so keep it to warnings.
logging.getLogger("mail.log").setLevel(logging.WARNING)

NULL_SENDER = "<>"
# What the greeting says after the host name: the service, no library or version.
IDENT = "ESMTP"
TOO_MANY_RCPT = (
    "452 4.5.3 Too many recipients for one message (limit {limit}); send the rest in another message"
)
TOO_MANY_RCPT_SESSION = (
    "452 4.5.3 Too many recipients in this session (limit {limit}); try again in a new session later"
)
TOO_LARGE = "552 5.3.4 Message too large (limit {limit} bytes)"


class BoundedSMTP(SMTP):
    """aiosmtpd's SMTP with DATA collected into one bytearray instead of one bytearray per line.

    aiosmtpd keeps every line as its own object and joins them at the end: for a 23 MB mail (300,000
    lines) that is ~45 MB of objects plus the joined copy. Here the lines go straight into one buffer
    (dot-unstuffed as they arrive) and become bytes once; past `data_size_limit` nothing more is kept
    and the answer is 552, after the end of the data as RFC 5321 wants. Data cut off by a lost
    connection never reaches the handler. The rest of the command (the checks before 354, the
    handler's hook, the state after it) is aiosmtpd's; `content` is bytes (no `decode_data`).
    """

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        buffer = bytearray()
        limit = self.data_size_limit
        size = 0
        too_much = too_long = False
        at_line_start = True
        complete = False
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                log.info("smtp_connection_lost", during="DATA")
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as exc:
                # A line longer than the stream's limit: take what is there and keep reading.
                too_long = True
                line = await self._reader.read(exc.consumed)
            if at_line_start and line == b".\r\n":
                complete = True
                break
            size += len(line)
            if limit and size > limit:
                too_much = True
            if too_much or too_long:
                if buffer:
                    buffer = bytearray()  # stop keeping anything; drain to the end of the data
            elif at_line_start and line.startswith(b"."):
                buffer += memoryview(line)[1:]  # RFC 5321 4.5.2: remove the transparency dot
            else:
                buffer += line
            at_line_start = line.endswith(b"\r\n")
            if at_line_start and not (too_much or too_long) and len(line) > self.line_length_limit:
                too_long = True
        if not complete:
            return  # the connection is gone: nothing to answer, nothing taken
        if too_much or too_long:
            # Too much wins: the sender's server tells the resident the mail was too large.
            await self.push(
                TOO_LARGE.format(limit=limit) if too_much else "500 Line too long (see RFC5321 4.5.3.1.6)"
            )
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        content = bytes(buffer)
        del buffer
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


class InboundHandler:
    def __init__(self, adapter: ChannelAdapter, ctx: AdapterContext):
        self.adapter = adapter
        self.ctx = ctx
        # RCPT commands per connection, accepted or refused; forgotten with the session.
        self._rcpt_counts: weakref.WeakKeyDictionary[Session, int] = weakref.WeakKeyDictionary()

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
        settings = self.ctx.settings
        count = self._rcpt_counts.get(session, 0) + 1
        self._rcpt_counts[session] = count
        if count > settings.smtp_max_recipients_per_session:
            log.info("smtp_recipients_refused", limit="session")
            return TOO_MANY_RCPT_SESSION.format(limit=settings.smtp_max_recipients_per_session)
        if len(envelope.rcpt_tos) >= settings.smtp_max_recipients:
            log.info("smtp_recipients_refused", limit="message")
            return TOO_MANY_RCPT.format(limit=settings.smtp_max_recipients)
        route = settings.route_for(address)
        if route is None or route.tenant not in self.ctx.tenants:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # The one copy of the mail (BoundedSMTP sets content and original_content to the same bytes);
        # the envelope lets go of it, so only the Inbound holds it while the mail is handled.
        raw = envelope.original_content or b""
        envelope.content = envelope.original_content = None
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
            intake = await take_in(self.adapter, inbound, self.ctx)
        except PublishError:
            log.warning("smtp_deferred", reason="broker did not confirm")
            return "451 4.3.0 Message not queued, please try again later"
        except Rejected as exc:
            return f"550 5.6.0 {exc.message}"
        except Exception as exc:
            # Never crash the session; the sender keeps the mail and retries.
            log.error("smtp_failed", error=type(exc).__name__)
            return "451 4.3.0 Temporary failure, please try again later"
        if intake.kind == "refused":
            log.info("smtp_refused", code=intake.smtp)
        return intake.smtp_reply


async def start_smtp_server(
    adapter: ChannelAdapter, ctx: AdapterContext, host: str, port: int, **smtp_kwargs: Any
) -> asyncio.Server:
    handler = InboundHandler(adapter, ctx)
    settings = ctx.settings

    def factory() -> SMTP:
        return BoundedSMTP(
            handler,
            hostname=settings.smtp_hostname,
            ident=IDENT,
            data_size_limit=settings.mail_max_bytes,
            enable_SMTPUTF8=True,
            **smtp_kwargs,
        )

    server = await asyncio.get_running_loop().create_server(factory, host, port)
    log.info("smtp_listening", host=host, port=server.sockets[0].getsockname()[1])
    return server
