"""IMAP polling against aioimaplib's own test server: unseen mail becomes contacts, and a message is
marked \\Seen only after the broker confirmed it."""

from __future__ import annotations

import asyncio
import datetime
import sys
import types
from collections.abc import AsyncIterator
from email import message_from_bytes
from typing import Any

import pytest

from adapters.kit.context import AdapterContext, MemoryDeadLetters
from adapters.kit.testing import START, RecordingAcks, RecordingPublisher
from adapters.kit.wiring import build_context
from adapters.mail import MailAdapter
from adapters.mail.imap import ImapPoller, literal_of, unseen_uids
from router.core.clock import ManualClock
from router.core.tenants import Tenant
from tests.adapters.conftest import adapter_settings
from tests.adapters.mails import resident_mail

# The test server imports pytz for one constant (utc); it is not a dependency of this project.
sys.modules.setdefault("pytz", types.SimpleNamespace(utc=datetime.UTC))  # type: ignore[arg-type]
from aioimaplib import aioimaplib, imap_testing_server  # type: ignore[import-untyped]  # noqa: E402

USER = "info"


class ImapFixture:
    def __init__(self, server: Any, port: int):
        self.server = server
        self.port = port

    def deliver(self, raw: bytes) -> int:
        mail = imap_testing_server.Mail(message_from_bytes(raw))
        [uid] = self.server.receive(mail, imap_user=USER)
        return int(uid)

    def flags(self) -> dict[int, list[str]]:
        box = self.server._server_state.get_mailbox_messages(USER, "INBOX")
        return {m.uid: list(m.flags) for m in box}


@pytest.fixture
async def imap() -> AsyncIterator[ImapFixture]:
    server = imap_testing_server.MockImapServer(loop=asyncio.get_running_loop())
    listener = await server.run_server(host="127.0.0.1", port=0)
    yield ImapFixture(server, listener.sockets[0].getsockname()[1])
    server.reset()
    listener.close()


def poller_for(imap: ImapFixture, tenants: dict[str, Tenant], publisher: RecordingPublisher) -> ImapPoller:
    ctx: AdapterContext = build_context(
        publisher=publisher,
        dead_letters=MemoryDeadLetters(),
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(
            adapters_enabled="mail",
            imap_host="127.0.0.1",
            imap_port=imap.port,
            imap_ssl=False,
            imap_user=USER,
            imap_password="secret",
            imap_address="info@ommen.nl",
        ),
        acks=RecordingAcks(),
    )
    return ImapPoller(
        MailAdapter(),
        ctx,
        client_factory=lambda: aioimaplib.IMAP4(host="127.0.0.1", port=imap.port, timeout=5),
    )


async def test_unseen_mail_becomes_contacts_and_is_marked_seen_after_the_confirm(
    imap: ImapFixture, tenants: dict[str, Tenant]
) -> None:
    question = imap.deliver(resident_mail(message_id="<imap-1@example.nl>").as_bytes())
    auto = imap.deliver(resident_mail(headers={"Auto-Submitted": "auto-replied"}).as_bytes())
    publisher = RecordingPublisher()
    poller = poller_for(imap, tenants, publisher)
    try:
        assert await poller.poll_once() == 2
        assert [c.source.native_id for c in publisher.published] == ["<imap-1@example.nl>"]
        assert publisher.published[0].tenant == "ommen"
        dead = poller.ctx.dead_letters
        assert isinstance(dead, MemoryDeadLetters) and dead.letters == []
        assert isinstance(poller.adapter, MailAdapter)
        assert dict(poller.adapter.ignored) == {("ommen", "Auto-Submitted: auto-replied"): 1}
        flags = imap.flags()
        assert "\\Seen" in flags[question] and "\\Seen" in flags[auto]
        # A second round finds nothing new.
        assert await poller.poll_once() == 0
        assert len(publisher.published) == 1
        await poller.ctx.drain(5)
        acks = poller.ctx.acks
        assert isinstance(acks, RecordingAcks) and len(acks.sent) == 1
    finally:
        await poller.close()


async def test_mail_stays_unseen_while_the_broker_does_not_confirm(
    imap: ImapFixture, tenants: dict[str, Tenant]
) -> None:
    uid = imap.deliver(resident_mail(message_id="<imap-2@example.nl>").as_bytes())
    publisher = RecordingPublisher(fail=True)
    poller = poller_for(imap, tenants, publisher)
    try:
        assert await poller.poll_once() == 0
        assert "\\Seen" not in imap.flags()[uid]
        publisher.fail = False
        assert await poller.poll_once() == 1
        assert "\\Seen" in imap.flags()[uid]
        assert [c.source.native_id for c in publisher.published] == ["<imap-2@example.nl>"]
    finally:
        await poller.close()


async def test_the_poller_survives_a_server_that_goes_away(
    imap: ImapFixture, tenants: dict[str, Tenant]
) -> None:
    poller = poller_for(imap, tenants, RecordingPublisher())
    poller.client_factory = lambda: aioimaplib.IMAP4(host="127.0.0.1", port=1, timeout=1)
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert poller.last_error is not None


def test_flag_and_literal_parsing() -> None:
    lines: list[bytes | bytearray] = [
        b"1 FETCH (UID 7 FLAGS (\\Seen))",
        b"2 FETCH (FLAGS () UID 9)",
        b"3 FETCH (UID 11 FLAGS (\\Deleted))",
        b"4 FETCH (UID 12 FLAGS (\\Flagged))",
    ]
    assert unseen_uids(lines) == [9, 12]
    assert literal_of([b"1 FETCH (UID 1 BODY[] {3}", bytearray(b"abc"), b")"]) == b"abc"


async def test_readiness_reports_a_failing_imap_poller(tenants: dict[str, Tenant]) -> None:
    from adapters.kit.wiring import readiness_checks, start_adapters, stop_adapters

    ctx = build_context(
        publisher=RecordingPublisher(),
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(
            adapters_enabled="mail", imap_host="127.0.0.1", imap_port=1, imap_ssl=False, imap_poll_seconds=30
        ),
    )
    checks = readiness_checks(ctx)
    assert set(checks) == {"imap"} and await checks["imap"]() is None
    await start_adapters(ctx)
    try:
        for _ in range(100):
            if await checks["imap"]() is not None:
                break
            await asyncio.sleep(0.05)
        assert (await checks["imap"]() or "").startswith("IMAP polling failing")
    finally:
        await stop_adapters(ctx, within=1)
