"""IMAP polling (aioimaplib): unseen mail in one mailbox → contacts; \\Seen only after the confirm.

Each round lists the mailbox's flags (`UID FETCH 1:* (FLAGS)`, which every server supports), fetches
each unseen message with BODY.PEEK[] (so fetching does not mark it seen), submits it, and marks it
\\Seen only once the broker confirmed its contact or its dead letter. If the broker is down the round
stops and the mail stays unseen for the next round. Keep the polled mailbox small: move handled mail
to an archive folder with a server-side rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable

from aioimaplib import aioimaplib  # type: ignore[import-untyped]

from adapters.kit.base import ChannelAdapter, Inbound, PublishError
from adapters.kit.context import AdapterContext
from adapters.mail.intake import take_in
from router import logs

log = logs.get("adapters.mail.imap")

# aioimaplib logs every byte received at DEBUG and stray lines at INFO: mail content, so warnings only.
logging.getLogger("aioimaplib.aioimaplib").setLevel(logging.WARNING)

_FLAGS_LINE = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)")

ClientFactory = Callable[[], aioimaplib.IMAP4]


class ImapError(Exception):
    pass


def unseen_uids(lines: list[bytes | bytearray]) -> list[int]:
    out = []
    for line in lines:
        match = _FLAGS_LINE.search(bytes(line))
        if match is None:
            continue
        uid = int(match.group(1) or match.group(4))
        flags = (match.group(2) if match.group(1) else match.group(3)).lower().split()
        if b"\\seen" not in flags and b"\\deleted" not in flags:
            out.append(uid)
    return sorted(out)


def literal_of(lines: list[bytes | bytearray]) -> bytes | None:
    """The message bytes of a BODY[] fetch: aioimaplib returns the literal as a bytearray line."""
    for line in lines:
        if isinstance(line, bytearray):
            return bytes(line)
    return None


class ImapPoller:
    def __init__(
        self, adapter: ChannelAdapter, ctx: AdapterContext, client_factory: ClientFactory | None = None
    ):
        self.adapter = adapter
        self.ctx = ctx
        self.client_factory = client_factory or self._default_client
        self._client: aioimaplib.IMAP4 | None = None
        self.last_error: str | None = None

    def _default_client(self) -> aioimaplib.IMAP4:
        s = self.ctx.settings
        assert s.imap_host is not None
        if s.imap_ssl:
            return aioimaplib.IMAP4_SSL(host=s.imap_host, port=s.imap_port, timeout=30)
        return aioimaplib.IMAP4(host=s.imap_host, port=s.imap_port, timeout=30)

    async def _connect(self) -> aioimaplib.IMAP4:
        if self._client is not None:
            return self._client
        s = self.ctx.settings
        client = self.client_factory()
        await client.wait_hello_from_server()
        response = await client.login(s.imap_user, s.imap_password.get_secret_value())
        if response.result != "OK":
            raise ImapError("login refused")
        response = await client.select(s.imap_mailbox)
        if response.result != "OK":
            raise ImapError("mailbox could not be selected")
        self._client = client
        return client

    def _tenant(self) -> str:
        route = self.ctx.settings.route_for(self.ctx.settings.imap_address or "")
        return route.tenant if route is not None else "-"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.logout(), 5)

    async def poll_once(self) -> int:
        """One round; returns how many messages were handled (and marked seen)."""
        client = await self._connect()
        listing = await client.uid("fetch", "1:*", "(FLAGS)")
        if listing.result != "OK":
            raise ImapError("flag listing failed")
        handled = 0
        for uid in unseen_uids(listing.lines):
            fetched = await client.uid("fetch", str(uid), "(BODY.PEEK[])")
            raw = literal_of(fetched.lines) if fetched.result == "OK" else None
            if raw is None:
                log.warning("imap_fetch_failed", uid=uid)
                continue
            recipients = self.ctx.settings.imap_address
            inbound = Inbound(
                payload=raw,
                received_at=self.ctx.clock.now(),
                meta={"recipients": recipients} if recipients else {},
            )
            try:
                intake = await take_in(self.adapter, inbound, self.ctx)
                if intake.kind == "refused":
                    # The mailbox took it already; what SMTP would refuse is kept as a dead letter
                    # with the same reason (fixed text), visible to `dlq list`, and marked seen.
                    await self.ctx.dead_letters.dead_letter(
                        raw, f"refused mail: {intake.reason}", routing_key=f"{self._tenant()}.mail"
                    )
                    log.info("imap_refused", uid=uid, code=intake.smtp)
            except PublishError:
                # Broker down: leave this and the rest unseen; the next round tries again.
                log.warning("imap_deferred", uid=uid)
                break
            stored = await client.uid("store", str(uid), "+FLAGS", "(\\Seen)")
            if stored.result != "OK":
                # Published but not marked: the next round re-submits it, and the idempotency key
                # (the Message-ID) keeps the router from routing it twice.
                log.warning("imap_mark_seen_failed", uid=uid)
            handled += 1
        return handled

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.ctx.settings.imap_poll_seconds
        while not stop.is_set():
            try:
                handled = await self.poll_once()
                self.last_error = None
                if handled:
                    log.info("imap_polled", handled=handled)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = type(exc).__name__
                log.warning("imap_poll_failed", error=type(exc).__name__)
                await self.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
        await self.close()
