"""The SMTP server's edges (issue 14, item 7): recipients per message and per session, the size limit
refused early and nothing past it kept, DATA taken byte for byte by the bounded reader, and a banner
that names no software version. Memory itself is measured by `python -m bench.smtp_memory`."""

from __future__ import annotations

import asyncio
import hashlib
import re
import smtplib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.kit.context import AdapterContext, MemoryDeadLetters
from adapters.kit.testing import START, RecordingAcks, RecordingPublisher, adapter_settings
from adapters.kit.wiring import build_context, start_adapters, stop_adapters
from adapters.mail import MailAdapter
from router.core.clock import ManualClock
from router.core.tenants import Tenant

LIMIT_BYTES = 20_000


@pytest.fixture
async def smtp(tenants: dict[str, Tenant]) -> AsyncIterator[tuple[AdapterContext, int]]:
    ctx = build_context(
        publisher=RecordingPublisher(),
        dead_letters=MemoryDeadLetters(),
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(
            adapters_enabled="mail",
            smtp_port=0,
            mail_routes="info@ommen.nl:ommen,@coevorden.nl:coevorden",
            mail_max_bytes=LIMIT_BYTES,
            smtp_max_recipients=3,
            smtp_max_recipients_per_session=5,
        ),
        acks=RecordingAcks(),
    )
    await start_adapters(ctx)
    mail = ctx.adapters["mail"]
    assert isinstance(mail, MailAdapter) and mail.smtp_port is not None
    yield ctx, mail.smtp_port
    await stop_adapters(ctx, within=1)


def published(ctx: AdapterContext) -> list[Any]:
    assert isinstance(ctx.publisher, RecordingPublisher)
    return ctx.publisher.published


async def session(port: int, talk: Callable[[smtplib.SMTP], Any]) -> Any:
    def run() -> Any:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("mx.example.nl")
            return talk(client)

    return await asyncio.to_thread(run)


def mail_bytes(body: str, *, subject: str = "Vraag", to: str = "a@coevorden.nl") -> bytes:
    # No Message-ID: the native id is then the sha256 of exactly the bytes the server took.
    text = f"From: Bewoner <bewoner@example.nl>\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}"
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


async def test_recipients_past_the_limit_of_one_message_get_452_and_the_rest_is_taken(
    smtp: tuple[AdapterContext, int],
) -> None:
    ctx, port = smtp

    def talk(client: smtplib.SMTP) -> tuple[list[tuple[int, bytes]], tuple[int, bytes]]:
        client.mail("bewoner@example.nl")
        replies = [client.rcpt(f"{n}@coevorden.nl") for n in "abcd"]
        return replies, client.data(mail_bytes("Vraag over de container."))

    replies, data = await session(port, talk)
    assert [code for code, _ in replies] == [250, 250, 250, 452]
    assert b"Too many recipients for one message (limit 3)" in replies[3][1]
    assert data[0] == 250
    [contact] = published(ctx)
    assert contact.tenant == "coevorden"


async def test_rcpt_commands_past_the_session_limit_get_452_refused_ones_counted_too(
    smtp: tuple[AdapterContext, int],
) -> None:
    def talk(client: smtplib.SMTP) -> list[int]:
        client.mail("bewoner@example.nl")
        codes = [client.rcpt(a)[0] for a in ("x@zwolle.nl", "y@zwolle.nl", "a@coevorden.nl")]
        client.rset()  # a new message, the same session
        client.mail("bewoner@example.nl")
        codes += [client.rcpt(a)[0] for a in ("b@coevorden.nl", "z@zwolle.nl", "c@coevorden.nl")]
        return codes

    _, port = smtp
    assert await session(port, talk) == [550, 550, 250, 250, 550, 452]

    def last(client: smtplib.SMTP) -> tuple[int, bytes]:
        client.mail("bewoner@example.nl")
        return client.rcpt("a@coevorden.nl")

    # A new connection starts counting again.
    assert (await session(port, last))[0] == 250

    def text(client: smtplib.SMTP) -> bytes:
        client.mail("bewoner@example.nl")
        for n in range(5):
            client.rcpt(f"r{n}@zwolle.nl")
        return client.rcpt("a@coevorden.nl")[1]

    assert b"Too many recipients in this session (limit 5)" in await session(port, text)


async def test_a_declared_size_over_the_limit_is_refused_at_mail_from(
    smtp: tuple[AdapterContext, int],
) -> None:
    def talk(client: smtplib.SMTP) -> tuple[int, bytes]:
        assert client.has_extn("size") and client.esmtp_features["size"] == str(LIMIT_BYTES)
        return client.mail("bewoner@example.nl", [f"SIZE={LIMIT_BYTES + 1}"])

    ctx, port = smtp
    code, _ = await session(port, talk)
    assert code == 552
    assert published(ctx) == []


async def test_too_much_data_is_552_after_the_data_and_nothing_is_kept(
    smtp: tuple[AdapterContext, int],
) -> None:
    ctx, port = smtp

    def talk(client: smtplib.SMTP) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        client.mail("bewoner@example.nl")  # no SIZE: the server learns the size while reading
        client.rcpt("a@coevorden.nl")
        too_large = client.data(mail_bytes("regel\r\n" * 4000))
        # The session goes on: the next message is taken.
        client.mail("bewoner@example.nl")
        client.rcpt("a@coevorden.nl")
        return too_large, client.data(mail_bytes("Een korte vraag."))

    too_large, small = await session(port, talk)
    assert too_large == (552, f"5.3.4 Message too large (limit {LIMIT_BYTES} bytes)".encode())
    assert small[0] == 250
    assert [c.body for c in published(ctx)] == ["Een korte vraag."]
    assert isinstance(ctx.dead_letters, MemoryDeadLetters) and ctx.dead_letters.letters == []


async def test_data_arrives_byte_for_byte_with_dot_lines_unstuffed(smtp: tuple[AdapterContext, int]) -> None:
    ctx, port = smtp
    body = ".begint met een punt\r\n..twee punten\r\n.\r\nmidden . punt\r\n" + "é" * 10 + "\r\n"
    raw = mail_bytes(body)

    def talk(client: smtplib.SMTP) -> dict[str, tuple[int, bytes]]:
        # smtplib adds the transparency dots; the server must take them off again.
        return client.sendmail("bewoner@example.nl", ["a@coevorden.nl"], raw)

    assert await session(port, talk) == {}
    [contact] = published(ctx)
    assert contact.source.native_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert contact.body.splitlines()[:3] == [".begint met een punt", "..twee punten", "."]


async def test_a_line_over_the_rfc_limit_is_refused(smtp: tuple[AdapterContext, int]) -> None:
    ctx, port = smtp

    def talk(client: smtplib.SMTP) -> tuple[int, bytes]:
        client.mail("bewoner@example.nl")
        client.rcpt("a@coevorden.nl")
        return client.data(mail_bytes("a" * 1500 + "\r\n"))

    code, _ = await session(port, talk)
    assert code == 500
    assert published(ctx) == []


async def test_the_banner_and_ehlo_name_no_software_or_version(smtp: tuple[AdapterContext, int]) -> None:
    _, port = smtp

    def talk() -> tuple[bytes, bytes, bytes]:
        client = smtplib.SMTP(timeout=10)
        code, banner = client.connect("127.0.0.1", port)
        assert code == 220
        _, ehlo = client.ehlo("mx.example.nl")
        _, help_text = client.docmd("HELP")
        client.quit()
        return banner, ehlo, help_text

    banner, ehlo, help_text = await asyncio.to_thread(talk)
    assert banner == b"contact-router.local ESMTP"
    for text in (banner, ehlo, help_text):
        assert not re.search(rb"python|aiosmtpd|\d+\.\d+\.\d+", text, re.IGNORECASE), text


async def test_data_cut_off_by_a_lost_connection_is_not_taken(smtp: tuple[AdapterContext, int]) -> None:
    ctx, port = smtp
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    for command in (b"EHLO mx.example.nl", b"MAIL FROM:<bewoner@example.nl>", b"RCPT TO:<a@coevorden.nl>"):
        writer.write(command + b"\r\n")
        await writer.drain()
        while (line := await reader.readline())[3:4] == b"-":
            pass
        assert line[:1] == b"2", line
    writer.write(b"DATA\r\n")
    await writer.drain()
    assert (await reader.readline()).startswith(b"354")
    writer.write(mail_bytes("Half een vraag, en dan"))
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.3)
    assert published(ctx) == []
