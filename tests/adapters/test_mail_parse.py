"""Mail parsing and translation, without servers: bodies, charsets, attachments, loops, threading hints."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from typing import Any

import pytest

from adapters.kit.acks import ack_message_id, build_ack
from adapters.kit.base import Inbound
from adapters.kit.context import AdapterContext, MemoryDeadLetters
from adapters.kit.testing import START, RecordingAcks, RecordingPublisher
from adapters.kit.wiring import build_context
from adapters.mail import MailAdapter
from adapters.mail.intake import IgnoredMail, MailRefused
from adapters.mail.parse import MalformedMail, html_to_text, parse_mail
from router.core.clock import ManualClock
from router.core.contact import contact_id
from router.core.tenants import Tenant
from tests.adapters.conftest import adapter_settings
from tests.adapters.mails import RESIDENT, resident_mail

LIMIT = 1_000_000


def parse(msg: EmailMessage | bytes, **kw: Any) -> Any:
    raw = msg if isinstance(msg, bytes) else msg.as_bytes()
    return parse_mail(raw, max_attachment_bytes=kw.pop("limit", LIMIT), **kw)


@pytest.fixture
def ctx(tenants: dict[str, Tenant]) -> AdapterContext:
    return build_context(
        publisher=RecordingPublisher(),
        dead_letters=MemoryDeadLetters(),
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(),
        acks=RecordingAcks(),
    )


def inbound(msg: EmailMessage | bytes, to: str = "info@ommen.nl", **meta: str) -> Inbound:
    raw = msg if isinstance(msg, bytes) else msg.as_bytes()
    return Inbound(payload=raw, received_at=START, meta={"recipients": to, **meta})


def test_plain_text_is_preferred_over_html() -> None:
    parsed = parse(resident_mail(body="Platte tekst.", html="<p>HTML-tekst</p>"))
    assert parsed.body == "Platte tekst."
    assert parsed.attachments == []


def test_html_only_goes_through_the_sanitiser_to_text() -> None:
    html = (
        "<html><head><title>t</title><style>p {color: red}</style></head><body>"
        "<p>Beste gemeente,</p><p>De lantaarnpaal &amp; de stoep<br>zijn kapot.</p>"
        "<script>alert('x')</script><img src=x onerror=alert(1)></body></html>"
    )
    msg = EmailMessage()
    msg["From"] = RESIDENT
    msg["To"] = "info@ommen.nl"
    msg.set_content(html, subtype="html")
    parsed = parse(msg)
    assert parsed.body == "Beste gemeente,\n\nDe lantaarnpaal & de stoep\nzijn kapot."
    assert "alert" not in parsed.body and "<" not in parsed.body


def test_html_to_text_keeps_text_that_looks_like_markup_once_escaped() -> None:
    assert html_to_text("a &lt;b&gt; c") == "a <b> c"


def test_encoded_headers_and_legacy_charsets_are_decoded() -> None:
    raw = (
        b"From: =?iso-8859-1?q?Jos=E9_M=FCller?= <jose@example.nl>\r\n"
        b"To: info@ommen.nl\r\n"
        b"Subject: =?utf-8?b?Q2Fmw6kgb3AgaGV0IHBsZWlu?=\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Het caf=E9 op de hoek heeft geen vergunning.\r\n"
    )
    parsed = parse(raw)
    assert parsed.subject == "Café op het plein"
    assert parsed.sender.name == "José Müller"
    assert parsed.body == "Het café op de hoek heeft geen vergunning."


def test_unknown_charset_is_decoded_with_replacement_not_a_crash() -> None:
    raw = (
        b"From: a@example.nl\r\nTo: info@ommen.nl\r\nSubject: x\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nGr\xfc\xdfe\r\n"
    )
    parsed = parse(raw)
    assert parsed.body.startswith("Gr")


def test_attachments_are_metadata_with_size_and_hash() -> None:
    msg = resident_mail(body="Zie bijlage.")
    msg.add_attachment(b"%PDF-1.4 " + b"x" * 100, maintype="application", subtype="pdf", filename="brief.pdf")
    msg.add_attachment(b"y" * 5000, maintype="image", subtype="jpeg", filename="foto.jpg")
    parsed = parse(msg, limit=1000)
    assert parsed.body == "Zie bijlage."
    assert [(a.filename, a.content_type, a.size) for a in parsed.attachments] == [
        ("brief.pdf", "application/pdf", 109),
        ("foto.jpg", "image/jpeg", 5000),
    ]
    assert all(a.sha256 and len(a.sha256) == 64 for a in parsed.attachments)
    assert parsed.attachments_over_limit == 1


def test_more_than_a_hundred_attachments_are_counted_not_listed() -> None:
    msg = resident_mail(body="Veel bijlagen.")
    for i in range(103):
        msg.add_attachment(b"z", maintype="application", subtype="octet-stream", filename=f"f{i}.bin")
    parsed = parse(msg)
    assert len(parsed.attachments) == 100
    assert parsed.attachments_omitted == 3


@pytest.mark.parametrize(
    ("headers", "envelope_from", "why"),
    [
        ({"Auto-Submitted": "auto-replied"}, None, "Auto-Submitted: auto-replied"),
        ({"Auto-Submitted": "auto-generated; owner-email=x@y"}, None, "Auto-Submitted: auto-generated"),
        # A value of the sender's own is not quoted: the reason is logged and shown by `dlq list`.
        ({"Auto-Submitted": "jan@example.nl"}, None, "Auto-Submitted: a value other than no"),
        ({"Precedence": "bulk"}, None, "Precedence: bulk"),
        ({"Precedence": "junk"}, None, "Precedence: junk"),
        ({"Precedence": "list"}, None, "Precedence: list"),
        ({"X-Autoreply": "yes"}, None, "x-autoreply"),
        ({"X-Autorespond": "Out of office"}, None, "x-autorespond"),
        ({"List-Id": "<nieuws.example.nl>"}, None, "List-Id"),
        ({"Return-Path": "<>"}, None, "empty return path"),
        ({}, "", "empty return path"),
        ({}, "MAILER-DAEMON@mx.example.nl", "mailer-daemon"),
    ],
)
def test_automatic_mail_is_recognised(headers: dict[str, str], envelope_from: str | None, why: str) -> None:
    parsed = parse(resident_mail(headers=headers), envelope_from=envelope_from)
    assert parsed.automatic is not None and why in parsed.automatic


def test_postmaster_sender_and_delivery_reports_are_automatic() -> None:
    assert parse(resident_mail(sender="postmaster@example.nl")).automatic
    report = EmailMessage()
    report["From"] = "Mail Delivery System <bounces@example.nl>"
    report["To"] = "info@ommen.nl"
    report.set_content("Delivery failed.")
    report.add_attachment("Reporting-MTA: dns; mx.example.nl\n", subtype="delivery-status")
    report.replace_header("Content-Type", 'multipart/report; report-type=delivery-status; boundary="b"')
    raw = report.as_bytes()
    assert parse(raw).automatic is not None


def test_auto_submitted_no_is_a_person() -> None:
    assert parse(resident_mail(headers={"Auto-Submitted": "no"})).automatic is None


def test_malformed_from_keeps_the_question_and_flags_the_sender() -> None:
    raw = b"From: Jan <<<nope@@example>>\r\nTo: info@ommen.nl\r\nSubject: Vraag\r\n\r\nMijn vraag.\r\n"
    parsed = parse(raw)
    assert parsed.body == "Mijn vraag."
    assert parsed.sender is None or parsed.sender.email is None
    assert parsed.sender_invalid


def test_thread_ids_in_reply_to_first_then_references_newest_first() -> None:
    msg = resident_mail(headers={"In-Reply-To": "<c@x>", "References": "<a@x> <b@x> <c@x>"})
    assert parse(msg).thread_ids == ["<c@x>", "<b@x>", "<a@x>"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"", "empty message"), (b"   \r\n", "empty message"), (b"\r\nonly a body\r\n", "no header fields")],
)
def test_no_message_at_all_is_malformed(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedMail, match=reason):
        parse(raw)


# --- translation into contacts ---------------------------------------------------------------------


def test_mail_becomes_a_contact_with_threading_hints(ctx: AdapterContext) -> None:
    msg = resident_mail(message_id="<m1@example.nl>", in_reply_to="<earlier@example.nl>")
    [contact] = MailAdapter().translate(inbound(msg), ctx)
    assert (contact.tenant, contact.channel, contact.source.native_id) == ("ommen", "mail", "<m1@example.nl>")
    assert contact.sender is not None and contact.sender.email == RESIDENT
    assert contact.metadata["thread.message_id"] == "<m1@example.nl>"
    assert contact.metadata["thread.in_reply_to"] == "<earlier@example.nl>"
    assert contact.metadata["thread.ack_message_id"] == ack_message_id(contact.cid, "ommen.nl")
    assert contact.received_at == START


def test_mailbox_from_the_route_and_one_contact_per_tenant(ctx: AdapterContext) -> None:
    msg = resident_mail(to="facturen@ommen.nl, info@coevorden.nl")
    contacts = MailAdapter().translate(inbound(msg, to="facturen@ommen.nl info@coevorden.nl"), ctx)
    assert {(c.tenant, c.metadata.get("mailbox")) for c in contacts} == {
        ("ommen", "facturen"),
        ("coevorden", None),
    }
    assert len({c.cid for c in contacts}) == 2


def test_reply_to_our_acknowledgement_is_a_followup_without_a_new_acknowledgement(
    ctx: AdapterContext,
) -> None:
    ack_id = ack_message_id(contact_id("ommen", "mail", "<m1@example.nl>"), "ommen.nl")
    [contact] = MailAdapter().translate(inbound(resident_mail(in_reply_to=ack_id)), ctx)
    assert contact.metadata["mail.followup"] == "true"
    assert "thread.ack_message_id" not in contact.metadata
    assert ack_id in contact.metadata["thread.in_reply_to"]


def test_reference_in_the_subject_is_a_followup(ctx: AdapterContext) -> None:
    [contact] = MailAdapter().translate(inbound(resident_mail(subject="Re: vraag OMM-5KQ3-ZP7A")), ctx)
    assert contact.metadata["mail.followup"] == "true"
    assert contact.subject == "Re: vraag OMM-5KQ3-ZP7A"


@pytest.mark.parametrize(
    "msg",
    [
        resident_mail(headers={"X-Auto-Response-Suppress": "DR, RN"}),
        resident_mail(sender="no-reply@example.nl"),
    ],
)
def test_no_acknowledgement_when_the_sender_suppresses_it(ctx: AdapterContext, msg: EmailMessage) -> None:
    [contact] = MailAdapter().translate(inbound(msg), ctx)
    assert "thread.ack_message_id" not in contact.metadata


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (resident_mail(headers={"Auto-Submitted": "auto-replied"}), "Auto-Submitted: auto-replied"),
        (resident_mail(sender="noreply@ommen.nl"), "sent by this service"),
        (resident_mail(headers={"X-Auto-Response-Suppress": "All"}), "X-Auto-Response-Suppress"),
    ],
)
def test_automatic_mail_is_ignored_not_dead_lettered(ctx: AdapterContext, msg: Any, reason: str) -> None:
    with pytest.raises(IgnoredMail, match=reason) as raised:
        MailAdapter().translate(inbound(msg), ctx)
    assert raised.value.tenant == "ommen"


def test_an_empty_message_is_refused(ctx: AdapterContext) -> None:
    with pytest.raises(MailRefused, match="empty message") as raised:
        MailAdapter().translate(inbound(b""), ctx)
    assert raised.value.smtp == "554 5.6.0"


def test_unrouted_recipient_is_refused(ctx: AdapterContext) -> None:
    with pytest.raises(MailRefused, match="No such mailbox") as raised:
        MailAdapter().translate(inbound(resident_mail(to="info@zwolle.nl"), to="info@zwolle.nl"), ctx)
    assert raised.value.smtp == "550 5.1.1"


def test_without_message_id_the_bytes_are_the_stable_native_id(ctx: AdapterContext) -> None:
    msg = resident_mail()
    del msg["Message-ID"]
    a = MailAdapter().translate(inbound(msg), ctx)
    b = MailAdapter().translate(inbound(msg), ctx)
    assert a[0].cid == b[0].cid and a[0].source.native_id.startswith("sha256:")


def test_acknowledgement_is_plain_dutch_with_reference_and_loop_headers(
    ctx: AdapterContext, tenants: dict[str, Tenant]
) -> None:
    from adapters.kit.answers import answer_by

    [contact] = MailAdapter().translate(inbound(resident_mail(message_id="<m1@example.nl>")), ctx)
    ack = build_ack(
        contact=contact,
        tenant_name="Gemeente Ommen",
        answer=answer_by(tenants["ommen"], contact),
        from_addr="noreply@ommen.nl",
        reply_to="info@ommen.nl",
        message_id=contact.metadata["thread.ack_message_id"],
        in_reply_to="<m1@example.nl>",
    )
    text = ack.get_content()
    assert contact.reference in str(ack["Subject"])
    assert f"Uw referentienummer is {contact.reference}." in text
    assert "U krijgt uiterlijk donderdag 21 mei 2026 antwoord." in text
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<m1@example.nl>"
    assert ack["Message-ID"] == contact.metadata["thread.ack_message_id"]
    assert ack["Reply-To"] == "info@ommen.nl"


def test_large_base64_attachments_are_read_from_the_raw_mail_with_the_same_size_and_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from adapters.mail import parse as parse_module

    msg = resident_mail()
    big, small = os.urandom(300_000), os.urandom(1000)
    msg.add_attachment(big, maintype="application", subtype="pdf", filename="scan.pdf")
    msg.add_attachment(small, maintype="image", subtype="png", filename="foto.png")
    # A sender cannot make the parser trust a marker of their own.
    msg.add_attachment(
        b"x" * 50_000,
        maintype="application",
        subtype="octet-stream",
        filename="nep.bin",
        headers=["X-Contact-Router-Extracted: 0-0"],
    )
    raw = msg.as_bytes()
    pieces, extracted = parse_module._split_large_parts(raw, "tok")
    assert len(extracted) == 2 and sum(len(p) for p in pieces) < 10_000
    streamed = [(a.filename, a.size, a.sha256) for a in parse(raw).attachments]
    monkeypatch.setattr(parse_module, "LARGE_PART_BYTES", 10**9)
    whole = [(a.filename, a.size, a.sha256) for a in parse(raw).attachments]
    assert streamed == whole
    assert streamed[0][1:] == (300_000, hashlib.sha256(big).hexdigest())
    assert streamed[2][1] == 50_000
