"""Mail over real SMTP (smtplib → the aiosmtpd adapter), the real router, and acknowledgements that
arrive at a local SMTP sink."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import structlog

from adapters.kit.context import AdapterContext, MemoryDeadLetters
from adapters.kit.testing import START, RecordingAcks, RecordingPublisher
from adapters.kit.wiring import build_context, start_adapters, stop_adapters
from adapters.mail import MailAdapter
from router.core.clock import ManualClock
from router.core.contact import contact_id
from router.core.tenants import Tenant
from tests.adapters.conftest import ANSWER_DATE_OMMEN_MAIL, Stack, adapter_settings
from tests.adapters.mails import RESIDENT, resident_mail


def send(port: int, msg: EmailMessage, *, sender: str | None = None, to: list[str] | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(msg, from_addr=sender, to_addrs=to)


async def smtp_send(port: int, msg: EmailMessage, **kw: Any) -> None:
    await asyncio.to_thread(send, port, msg, **kw)


def ignored(stack: Stack) -> dict[tuple[str, str], int]:
    mail = stack.ctx.adapters["mail"]
    assert isinstance(mail, MailAdapter)
    return dict(mail.ignored)


async def test_mail_lands_in_the_team_queue_and_the_acknowledgement_reaches_the_resident(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    msg = resident_mail(message_id="<vraag-1@example.nl>")
    with structlog.testing.capture_logs() as logs:
        await smtp_send(stack.smtp_port, msg)
        cid = contact_id("ommen", "mail", "<vraag-1@example.nl>")
        fields = await stack.wait_routed(cid)
        [ack] = await stack.sink.wait_for(1)

    assert fields["team"] == "burgerzaken"
    [envelope] = await stack.team_messages("ommen", "burgerzaken")
    contact = envelope["contact"]
    assert contact["id"] == cid and contact["sender"]["email"] == RESIDENT
    assert contact["metadata"]["thread.message_id"] == "<vraag-1@example.nl>"
    respond = [d for d in envelope["routing"]["deadlines"] if d["kind"] == "respond"]
    assert respond[0]["due"] == "2026-05-21T17:00:00+02:00"

    # The acknowledgement: null envelope sender, to the resident, with reference and answer date.
    assert ack.mail_from == "<>" and ack.rcpt_tos == [RESIDENT]
    mail = message_from_bytes(ack.content, policy=policy.default)
    reference = contact["reference"]
    assert reference in str(mail["Subject"])
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert f"Uw referentienummer is {reference}." in text
    assert f"U krijgt uiterlijk {ANSWER_DATE_OMMEN_MAIL} antwoord." in text
    assert mail["Message-ID"] == contact["metadata"]["thread.ack_message_id"]
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["In-Reply-To"] == "<vraag-1@example.nl>"
    assert mail["Reply-To"] == "info@ommen.nl"

    # Personal data stays out of every log, structlog's and the mail libraries' alike.
    for secret in (RESIDENT, "06 12345678", "Jan Jansen", "paspoort is verlopen"):
        assert secret not in repr(logs) and secret not in caplog.text


async def send_first_and_wait_for_ack(stack: Stack) -> tuple[str, str, str]:
    await smtp_send(stack.smtp_port, resident_mail(message_id="<vraag-2@example.nl>"))
    cid = contact_id("ommen", "mail", "<vraag-2@example.nl>")
    await stack.wait_routed(cid)
    [ack] = await stack.sink.wait_for(1)
    mail = message_from_bytes(ack.content, policy=policy.default)
    return cid, str(mail["Message-ID"]), str(mail["Subject"])


async def test_an_auto_reply_to_the_acknowledgement_creates_nothing(stack: Stack) -> None:
    cid, ack_id, ack_subject = await send_first_and_wait_for_ack(stack)
    out_of_office = resident_mail(
        subject=f"Automatisch antwoord: {ack_subject}",
        body="Ik ben afwezig tot maandag.",
        message_id="<ooo-1@example.nl>",
        in_reply_to=ack_id,
        headers={"Auto-Submitted": "auto-replied"},
    )
    await smtp_send(stack.smtp_port, out_of_office)

    # Ignored, counted with its reason class, not one of router.dead's real dead letters.
    assert await stack.dead_letters(settle=0.5) == []
    assert ignored(stack) == {("ommen", "Auto-Submitted: auto-replied"): 1}
    assert await stack.runtime.store.get(contact_id("ommen", "mail", "<ooo-1@example.nl>")) is None
    assert [m["contact"]["id"] for m in await stack.team_messages("ommen", "burgerzaken")] == [cid]
    assert len(stack.sink.messages) == 1  # no acknowledgement of the auto-reply: no loop
    assert [c.cid for c in stack.recorder.published] == [cid]


async def test_a_reply_to_the_acknowledgement_joins_the_same_contact(stack: Stack) -> None:
    cid, ack_id, ack_subject = await send_first_and_wait_for_ack(stack)
    reply = resident_mail(
        subject=f"Re: {ack_subject}",
        body="Ik heb ook nog een vraag over mijn rijbewijs.",
        message_id="<reply-1@example.nl>",
        in_reply_to=ack_id,
    )
    await smtp_send(stack.smtp_port, reply)
    # The adapter passes the hints and does not acknowledge a follow-up with a new number.
    [published_reply] = [c for c in stack.recorder.published if c.source.native_id == "<reply-1@example.nl>"]
    assert ack_id in published_reply.metadata["thread.in_reply_to"]
    assert "thread.ack_message_id" not in published_reply.metadata

    headers = {"X-API-Key": "secret-key"}
    events: list[str] = []
    for _ in range(100):
        resp = await stack.client.get(f"/v1/contacts/{cid}", headers=headers)
        events = [e["event"] for e in (await resp.json())["history"]]
        if "contact.reply" in events:
            break
        await asyncio.sleep(0.05)
    assert "contact.reply" in events
    # No second contact: the reply's own record only points at the first. The join shows in the first
    # contact's history before the broker's commit; the reply's own record is final right after it.
    reply_id = contact_id("ommen", "mail", "<reply-1@example.nl>")
    for _ in range(100):
        record = await stack.runtime.store.get(reply_id)
        if record is not None and record.fields["status"] != "routing":
            break
        await asyncio.sleep(0.05)
    assert record is not None
    assert (record.fields["status"], record.fields["merged_into"]) == ("merged", cid)
    await asyncio.sleep(0.3)
    assert len(stack.sink.messages) == 1


async def test_a_bounce_with_a_null_sender_is_taken_and_ignored(stack: Stack) -> None:
    bounce = resident_mail(
        sender="mailer-daemon@mx.example.nl",
        name="Mail Delivery System",
        subject="Undelivered Mail Returned to Sender",
        body="This is the mail system at host mx.example.nl.",
    )
    await smtp_send(stack.smtp_port, bounce, sender="", to=["info@ommen.nl"])
    assert await stack.dead_letters(settle=0.5) == []
    assert ignored(stack) == {("ommen", "empty return path (bounce)"): 1}
    assert stack.recorder.published == [] and stack.sink.messages == []


# --- without the router: broker refusal and SMTP-level refusals ------------------------------------


@pytest.fixture
async def failing_mail(tenants: dict[str, Tenant]) -> AsyncIterator[tuple[AdapterContext, int]]:
    ctx = build_context(
        publisher=RecordingPublisher(fail=True),
        dead_letters=MemoryDeadLetters(),
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(adapters_enabled="mail", smtp_port=0),
        acks=RecordingAcks(),
    )
    await start_adapters(ctx)
    mail = ctx.adapters["mail"]
    assert isinstance(mail, MailAdapter) and mail.smtp_port is not None
    yield ctx, mail.smtp_port
    await stop_adapters(ctx, within=1)


async def test_an_unconfirmed_publish_answers_451_so_the_sender_retries(
    failing_mail: tuple[AdapterContext, int],
) -> None:
    ctx, port = failing_mail
    msg = resident_mail(message_id="<retry-1@example.nl>")
    with pytest.raises(smtplib.SMTPDataError) as info:
        await smtp_send(port, msg)
    assert info.value.smtp_code == 451
    assert isinstance(ctx.acks, RecordingAcks) and ctx.acks.sent == []  # never acknowledged

    # The broker is back: the sending server retries the same mail and it is taken, once.
    recorder = ctx.publisher
    assert isinstance(recorder, RecordingPublisher)
    recorder.fail = False
    await smtp_send(port, msg)
    await ctx.drain(5)
    assert [c.source.native_id for c in recorder.published] == ["<retry-1@example.nl>"]
    assert len(ctx.acks.sent) == 1


async def test_recipients_outside_the_mail_routes_are_refused(
    failing_mail: tuple[AdapterContext, int],
) -> None:
    _, port = failing_mail
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await smtp_send(port, resident_mail(to="info@zwolle.nl"))
    assert info.value.recipients["info@zwolle.nl"][0] == 550


async def test_a_reply_to_the_residents_own_mail_joins_without_a_second_acknowledgement(stack: Stack) -> None:
    """In-Reply-To the resident's first mail (not our acknowledgement): the router joins it, and the
    adapter, asking the store's threads first, sends no acknowledgement with a fresh promise."""
    cid, _ack_id, _subject = await send_first_and_wait_for_ack(stack)
    reply = resident_mail(
        subject="Re: Paspoort verlopen",
        body="Nog een aanvulling.",
        message_id="<aanvulling-1@example.nl>",
        in_reply_to="<vraag-2@example.nl>",
    )
    await smtp_send(stack.smtp_port, reply)
    reply_id = contact_id("ommen", "mail", "<aanvulling-1@example.nl>")
    for _ in range(100):
        record = await stack.runtime.store.get(reply_id)
        if record is not None and record.fields["status"] != "routing":
            break
        await asyncio.sleep(0.05)
    assert record is not None and record.fields.get("merged_into") == cid
    await stack.ctx.drain(5)
    assert len(stack.sink.messages) == 1  # the first mail's acknowledgement only
