"""Acknowledgements that cannot be abused (issue 14, item 4): our fixed text, the reference and the
answer date, nothing the sender wrote; sent over STARTTLS when the relay offers it."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import ValidationError

from adapters.kit.acks import SmtpAckSender, build_ack
from adapters.kit.answers import answer_by
from adapters.kit.base import Inbound
from adapters.kit.context import AdapterContext
from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.testing import START, RecordingAcks, RecordingPublisher, adapter_settings
from adapters.kit.wiring import build_context
from adapters.mail import MailAdapter
from router.core.clock import ManualClock
from router.core.tenants import Tenant
from tests.adapters.mails import resident_mail

ANSWER_DATE = "donderdag 21 mei 2026"  # START + 5 workdays in Ommen (Hemelvaartsdag in between)
# What a spammer or a careless resident types; none of it may leave in the acknowledgement.
PLANTED_NAME = "Koop nu Goedkope Pillen"
PLANTED_SUBJECT = "Uw rekening is geblokkeerd, log in op http://phish.example BSN 111222333"
PLANTED_BODY = "Klik hier: http://phish.example/login en vul uw IBAN NL91ABNA0417164300 in"
PLANTED = (PLANTED_NAME, PLANTED_SUBJECT, "phish.example", "111222333", "NL91ABNA0417164300", "Pillen")

SETTINGS: dict[str, Any] = {
    "adapters_enabled": "mail,webform",
    "mail_routes": "info@ommen.nl:ommen",
    "ack_from": "ommen:noreply@ommen.nl",
}


def everything_of(mail: EmailMessage) -> str:
    """Every header and the decoded text: where an echo could hide."""
    headers = "\n".join(f"{k}: {v}" for k, v in mail.items())
    return headers + "\n" + str(mail.get_content())


def assert_fixed_text_only(mail: EmailMessage, reference: str) -> None:
    text = mail.get_content()
    assert str(mail["Subject"]) == f"Ontvangstbevestiging {reference}"
    assert f"Uw referentienummer is {reference}." in text
    assert f"U krijgt uiterlijk {ANSWER_DATE} antwoord." in text
    assert text.startswith("Beste meneer, mevrouw,\n")
    everything = everything_of(mail)
    for planted in PLANTED:
        assert planted not in everything


def ctx_for(tenants: dict[str, Tenant], **overrides: Any) -> AdapterContext:
    return build_context(
        publisher=RecordingPublisher(),
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(**{**SETTINGS, **overrides}),
        acks=RecordingAcks(),
    )


def test_a_mail_acknowledgement_repeats_neither_the_subject_nor_the_name_nor_the_body(
    tenants: dict[str, Tenant],
) -> None:
    ctx = ctx_for(tenants)
    msg = resident_mail(name=PLANTED_NAME, subject=PLANTED_SUBJECT, body=PLANTED_BODY, message_id="<p1@x.nl>")
    inbound = Inbound(payload=msg.as_bytes(), received_at=START, meta={"recipients": "info@ommen.nl"})
    [contact] = MailAdapter().translate(inbound, ctx)
    assert contact.subject == PLANTED_SUBJECT and contact.sender and contact.sender.name == PLANTED_NAME
    ack = build_ack(
        contact=contact,
        tenant_name="Gemeente Ommen",
        answer=answer_by(tenants["ommen"], contact),
        from_addr="noreply@ommen.nl",
        reply_to="info@ommen.nl",
        message_id=contact.metadata["thread.ack_message_id"],
        in_reply_to="<p1@x.nl>",
    )
    assert_fixed_text_only(ack, contact.reference)
    assert ack["In-Reply-To"] == "<p1@x.nl>"  # threading stays


async def test_a_web_form_acknowledgement_carries_only_our_text_the_reference_and_the_date(
    tenants: dict[str, Tenant],
) -> None:
    ctx = ctx_for(tenants)
    app = web.Application()
    app[ADAPTERS] = ctx
    add_routes(app)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post(
            "/v1/channels/webform/ommen",
            json={
                "name": PLANTED_NAME,
                "email": "slachtoffer@example.nl",
                "subject": PLANTED_SUBJECT,
                "message": PLANTED_BODY,
            },
        )
        assert resp.status == 202
        body = await resp.json()
    await ctx.drain(5)
    assert isinstance(ctx.acks, RecordingAcks)
    [ack] = ctx.acks.sent
    assert ack["To"] == "slachtoffer@example.nl"
    assert body["expected_answer_text"] == ANSWER_DATE
    assert_fixed_text_only(ack, body["reference"])
    # The web page's answer repeats nothing typed either.
    assert not any(planted in str(body) for planted in PLANTED)


# --- STARTTLS to the relay ---------------------------------------------------------------------------


@dataclass
class Relay:
    port: int
    tls: bool
    received: list[bool] = field(default_factory=list)  # per mail: did it arrive over TLS?


class RelayHandler:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.relay.received.append(session.ssl is not None)
        return "250 OK"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl; the cryptography package is not installed)."""
    where = tmp_path_factory.mktemp("relay-tls")
    cert, key = where / "cert.pem", where / "key.pem"
    key_options = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    names = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            *key_options,
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            *names,
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def start_relay(
    certificate: tuple[Path, Path],
) -> AsyncIterator[Callable[[bool], Any]]:
    servers: list[asyncio.Server] = []

    async def start(tls: bool) -> Relay:
        context = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*certificate)
        relay = Relay(0, tls)
        handler = RelayHandler(relay)
        server = await asyncio.get_running_loop().create_server(
            lambda: SMTP(handler, hostname="relay.test", tls_context=context), "127.0.0.1", 0
        )
        servers.append(server)
        relay.port = server.sockets[0].getsockname()[1]
        return relay

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def ack_mail() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Gemeente Ommen <noreply@ommen.nl>"
    msg["To"] = "j.jansen@example.nl"
    msg["Subject"] = "Ontvangstbevestiging OMM-TEST-0001"
    msg.set_content("Wij hebben uw bericht goed ontvangen.\n")
    return msg


def sender(relay: Relay, certificate: tuple[Path, Path], **values: Any) -> SmtpAckSender:
    return SmtpAckSender(
        adapter_settings(
            smtp_relay_host="127.0.0.1",
            smtp_relay_port=relay.port,
            smtp_relay_ca_file=str(certificate[0]),
            **values,
        )
    )


async def test_starttls_is_used_by_default_when_the_relay_offers_it(
    start_relay: Callable[[bool], Any], certificate: tuple[Path, Path]
) -> None:
    relay = await start_relay(True)
    await sender(relay, certificate).send(ack_mail())
    assert relay.received == [True]


async def test_no_starttls_is_forced_on_a_relay_that_does_not_offer_it(
    start_relay: Callable[[bool], Any], certificate: tuple[Path, Path]
) -> None:
    relay = await start_relay(False)
    await sender(relay, certificate).send(ack_mail())
    assert relay.received == [False]


async def test_required_starttls_refuses_a_relay_without_it(
    start_relay: Callable[[bool], Any], certificate: tuple[Path, Path]
) -> None:
    relay = await start_relay(False)
    with pytest.raises(aiosmtplib.SMTPException):
        await sender(relay, certificate, smtp_relay_starttls="require").send(ack_mail())
    assert relay.received == []


async def test_starttls_off_sends_in_plain_text_even_when_offered(
    start_relay: Callable[[bool], Any], certificate: tuple[Path, Path]
) -> None:
    relay = await start_relay(True)
    await sender(relay, certificate, smtp_relay_starttls="off").send(ack_mail())
    assert relay.received == [False]


async def test_a_relay_certificate_that_does_not_verify_fails_instead_of_falling_back(
    start_relay: Callable[[bool], Any], certificate: tuple[Path, Path]
) -> None:
    relay = await start_relay(True)
    plain = SmtpAckSender(adapter_settings(smtp_relay_host="127.0.0.1", smtp_relay_port=relay.port))
    with pytest.raises(ssl.SSLCertVerificationError):
        await plain.send(ack_mail())  # the system CAs do not know the self-signed certificate
    assert relay.received == []


@pytest.mark.parametrize(
    ("value", "mode"),
    [("auto", "auto"), ("REQUIRE", "require"), ("off", "off"), ("true", "require"), ("false", "off")],
)
def test_smtp_relay_starttls_reads_modes_and_the_old_booleans(
    value: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_RELAY_STARTTLS", value)
    assert adapter_settings().smtp_relay_starttls == mode


def test_the_default_is_auto_and_a_bad_mode_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMTP_RELAY_STARTTLS", raising=False)
    assert adapter_settings().smtp_relay_starttls == "auto"
    monkeypatch.setenv("SMTP_RELAY_STARTTLS", "sometimes")
    with pytest.raises(ValidationError, match="smtp_relay_starttls"):
        adapter_settings()
