"""Our own corpus (tests/adapters/mail_corpus.py) through real SMTP (smtplib → the adapter's aiosmtpd
server) and through IMAP (aioimaplib's test server → the poller): the same decision for every mail on
both paths, nothing answered 250 and then dead-lettered, no automatic mail acknowledged."""

from __future__ import annotations

import asyncio
import datetime
import smtplib
import sys
import types
from dataclasses import dataclass, field
from email import message_from_bytes

import pytest

# test_mail_imap.py put a stand-in for pytz (which the test server imports) in place above.
# The test server imports pytz (test_mail_imap.py stands in for it before this import).
from adapters.kit.context import AdapterContext, MemoryDeadLetters
from adapters.kit.testing import START, RecordingAcks, RecordingPublisher
from adapters.kit.wiring import build_context
from adapters.mail import MailAdapter
from adapters.mail.imap import ImapPoller
from adapters.mail.smtp_server import start_smtp_server
from router.core.clock import ManualClock
from router.core.contact import Contact
from router.core.tenants import Tenant
from tests.adapters.conftest import adapter_settings
from tests.adapters.mail_corpus import CASES, KNOWN_IDS, Case
from tests.adapters.test_mail_imap import USER, ImapFixture, imap

# The test server imports pytz for one constant (utc), as in test_mail_imap.py.
sys.modules.setdefault("pytz", types.SimpleNamespace(utc=datetime.UTC))  # type: ignore[arg-type]
from aioimaplib import aioimaplib, imap_testing_server  # type: ignore[import-untyped]  # noqa: E402

__all__ = ["imap"]  # the IMAP server fixture, shared with test_mail_imap.py


class KnownThreads:
    """The router's threads as the test knows them: a reply to one of KNOWN_IDS joins its contact."""

    async def joins(self, contact: Contact) -> bool:
        return any(mid in KNOWN_IDS for mid in contact.metadata.get("thread.in_reply_to", "").split())


@dataclass
class Result:
    kind: str  # contact, ignored, refused
    smtp: str = ""
    contacts: list[Contact] = field(default_factory=list)
    acks: int = 0
    ignored: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)


def context(tenants: dict[str, Tenant], **settings: object) -> AdapterContext:
    ctx = build_context(
        publisher=RecordingPublisher(),
        dead_letters=MemoryDeadLetters(),
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(adapters_enabled="mail", **settings),
        acks=RecordingAcks(),
    )
    ctx.threads = KnownThreads()
    return ctx


async def collect(ctx: AdapterContext, adapter: MailAdapter, kind: str, smtp: str = "") -> Result:
    await ctx.drain(5)
    assert isinstance(ctx.publisher, RecordingPublisher) and isinstance(ctx.acks, RecordingAcks)
    assert isinstance(ctx.dead_letters, MemoryDeadLetters)
    return Result(
        kind=kind,
        smtp=smtp,
        contacts=list(ctx.publisher.published),
        acks=len(ctx.acks.sent),
        ignored=[reason for (_tenant, reason) in adapter.ignored.elements()],
        dead=[reason for _, reason, _ in ctx.dead_letters.letters],
    )


def check(case: Case, result: Result, path: str) -> None:
    where = f"{case.name} over {path}"
    if case.outcome == "contact":
        assert result.kind == "contact", (where, result)
        assert len(result.contacts) == 1, where
        contact = result.contacts[0]
        if case.ack is not None:
            assert result.acks == (1 if case.ack else 0), where
        if case.sender_name is not None:
            assert contact.sender is not None and contact.sender.name == case.sender_name, where
        if case.sender_email is not None:
            assert contact.sender is not None and contact.sender.email == case.sender_email, where
        if case.subject is not None:
            assert contact.subject == case.subject, where
        for text in case.body_has:
            assert text in contact.body, (where, contact.body)
        for text in case.body_lacks:
            assert text not in contact.body, (where, contact.body)
        for key, value in case.metadata.items():
            assert contact.metadata.get(key) == value, (where, key)
        texts = [contact.subject or "", contact.body, (contact.sender.name if contact.sender else None) or ""]
        for text in texts:
            assert not any("\udc80" <= ch <= "\udcff" for ch in text), where
    else:
        assert result.contacts == [] and result.acks == 0, where
    if case.outcome == "ignored":
        assert result.kind == "ignored", (where, result)
        assert len(result.ignored) == 1 and case.reason in result.ignored[0], (where, result.ignored)
    else:
        assert result.ignored == [], where
    if case.outcome == "refused":
        assert result.kind == "refused", (where, result)
    # Nothing is taken and then dead-lettered; IMAP keeps what SMTP would refuse, with the same reason.
    expected_dead = 1 if case.outcome == "refused" and path == "IMAP" else 0
    assert len(result.dead) == expected_dead, (where, result.dead)


def smtp_send(port: int, case: Case) -> str:
    """The server's final answer: "250 …" or the refusal's code and text."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        try:
            client.sendmail(case.envelope, ["info@ommen.nl"], case.raw)
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error
            return f"{exc.smtp_code} {error.decode() if isinstance(error, bytes) else error}"
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return f"{code} {text.decode() if isinstance(text, bytes) else text}"
    return "250"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_smtp(case: Case, tenants: dict[str, Tenant]) -> None:
    ctx = context(tenants)
    adapter = MailAdapter()
    server = await start_smtp_server(adapter, ctx, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        answer = await asyncio.to_thread(smtp_send, port, case)
    finally:
        server.close()
        await server.wait_closed()
    kind = "refused" if not answer.startswith("250") else ("contact" if adapter_published(ctx) else "ignored")
    result = await collect(ctx, adapter, kind, answer)
    check(case, result, "SMTP")
    if case.outcome == "refused":
        assert answer.startswith(case.smtp) and case.reason in answer, answer


def adapter_published(ctx: AdapterContext) -> bool:
    assert isinstance(ctx.publisher, RecordingPublisher)
    return bool(ctx.publisher.published)


class RawMail(imap_testing_server.Mail):  # type: ignore[misc]
    """The test server's mail with the bytes exactly as delivered (it would re-serialise them)."""

    def __init__(self, raw: bytes):
        super().__init__(message_from_bytes(raw))
        self.raw = raw

    def as_bytes(self) -> bytes:
        return self.raw


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_imap(case: Case, tenants: dict[str, Tenant], imap: ImapFixture) -> None:
    # The delivering server writes the envelope sender as Return-Path.
    raw = b"Return-Path: <" + case.envelope.encode() + b">\r\n" + case.raw
    [uid] = imap.server.receive(RawMail(raw), imap_user=USER)
    ctx = context(
        tenants,
        imap_host="127.0.0.1",
        imap_port=imap.port,
        imap_ssl=False,
        imap_user=USER,
        imap_password="secret",
        imap_address="info@ommen.nl",
    )
    adapter = MailAdapter()
    poller = ImapPoller(
        adapter, ctx, client_factory=lambda: aioimaplib.IMAP4(host="127.0.0.1", port=imap.port, timeout=5)
    )
    try:
        assert await poller.poll_once() == 1
    finally:
        await poller.close()
    assert "\\Seen" in imap.flags()[int(uid)]
    assert isinstance(ctx.dead_letters, MemoryDeadLetters)
    kind = (
        "contact"
        if adapter_published(ctx)
        else (
            "refused"
            if any(r.startswith("refused mail: ") for _, r, _ in ctx.dead_letters.letters)
            else "ignored"
        )
    )
    result = await collect(ctx, adapter, kind)
    check(case, result, "IMAP")
    if case.outcome == "refused":
        assert case.reason in result.dead[0], result.dead


def test_the_corpus_covers_every_kind_of_the_issue() -> None:
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
    outcomes = {c.outcome for c in CASES}
    assert outcomes == {"contact", "ignored", "refused"}
    assert sum(c.new for c in CASES) >= 7
