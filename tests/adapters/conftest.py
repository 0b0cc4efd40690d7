"""Fixtures for the adapter tests: the real router on RabbitMQ and Redis, the adapters wired as `serve`
wires them, and a local SMTP sink that receives the acknowledgements."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.kit import testing
from adapters.kit.acks import SmtpAckSender
from adapters.kit.context import AdapterContext
from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.settings import AdapterSettings
from adapters.kit.testing import START, RecordingPublisher
from adapters.kit.wiring import build_context, start_adapters, stop_adapters
from router.core.clock import ManualClock
from router.http.app import create_app
from router.redis.keys import Keys
from router.redis.ratelimit import RedisRateLimiter
from router.service import Runtime, StoreThreads, build, start
from router.settings import Settings
from tests.conftest import drain

# START (adapters.kit.testing) is Wednesday 13 May 2026, 10:00 in Ommen: mail is answered within 5
# workdays; Thursday 14 May is Hemelvaartsdag, so the answer is due Thursday 21 May 2026.
ANSWER_DATE_OMMEN_MAIL = "donderdag 21 mei 2026"
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
WA_PHONE_ID_OMMEN = "106540352242922"
WA_PHONE_ID_COEVORDEN = "106540352249999"

# What the adapter tests configure (mail routes, acknowledgement senders, Meta secrets, accounts).
ADAPTER_SETTINGS: dict[str, Any] = {
    "adapters_enabled": "mail,webform,social,phone,counter",
    "mail_routes": "info@ommen.nl:ommen,facturen@ommen.nl:ommen:facturen,@coevorden.nl:coevorden",
    "ack_from": "ommen:noreply@ommen.nl,coevorden:noreply@coevorden.nl",
    "meta_app_secret": APP_SECRET,
    "meta_verify_token": VERIFY_TOKEN,
    "social_accounts": f"{WA_PHONE_ID_OMMEN}:ommen,{WA_PHONE_ID_COEVORDEN}:coevorden",
    "tenant_form_url": "ommen:https://www.ommen.nl/contact",
}


def adapter_settings(**overrides: Any) -> AdapterSettings:
    return testing.adapter_settings(**{**ADAPTER_SETTINGS, **overrides})


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


class SinkHandler:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.arrived = asyncio.Event()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address or "<>"
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), content))
        self.arrived.set()
        return "250 OK"


@dataclass
class SmtpSink:
    """A local SMTP server standing in for the relay: what the adapters send arrives here."""

    handler: SinkHandler
    port: int

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        for _ in range(int(within / 0.05)):
            if len(self.messages) >= count:
                return self.messages
            await asyncio.sleep(0.05)
        raise AssertionError(f"expected {count} mail(s) at the SMTP sink, got {len(self.messages)}")


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    handler = SinkHandler()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="sink.test"), "127.0.0.1", 0
    )
    yield SmtpSink(handler, server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


@dataclass
class Stack:
    runtime: Runtime
    ctx: AdapterContext
    client: TestClient[web.Request, web.Application]
    recorder: RecordingPublisher
    sink: SmtpSink
    clock: ManualClock
    amqp: aio_pika.abc.AbstractConnection

    @property
    def smtp_port(self) -> int:
        from adapters.mail import MailAdapter

        mail = self.ctx.adapters["mail"]
        assert isinstance(mail, MailAdapter) and mail.smtp_port is not None
        return mail.smtp_port

    async def wait_routed(self, cid: str, within: float = 10.0) -> dict[str, str]:
        for _ in range(int(within / 0.05)):
            record = await self.runtime.store.get(cid)
            if record is not None and record.fields.get("status") == "routed":
                return record.fields
            await asyncio.sleep(0.05)
        raise AssertionError(f"contact {cid} was not routed within {within}s")

    async def team_messages(self, tenant: str, team: str) -> list[dict[str, Any]]:
        msgs = await drain(self.amqp, self.runtime.names.team_queue(tenant, team))
        return [json.loads(m.body) for m in msgs]

    async def dead_letters(self, settle: float = 0.3) -> list[aio_pika.abc.AbstractIncomingMessage]:
        return await drain(self.amqp, self.runtime.names("router.dead"), settle=settle)


async def make_stack(
    settings: Settings,
    amqp: aio_pika.abc.AbstractConnection,
    redis_client: aioredis.Redis,
    sink: SmtpSink,
    **overrides: Any,
) -> tuple[Stack, Any]:
    clock = ManualClock(START)
    runtime = await build(settings, with_router=True, embedded="never", clock=clock)
    await start(runtime)
    for _ in range(100):
        if runtime.router is not None and runtime.router.ready:
            break
        await asyncio.sleep(0.05)
    asettings = adapter_settings(smtp_port=0, smtp_relay_port=sink.port, **overrides)
    recorder = RecordingPublisher(runtime.publisher)
    ctx = build_context(
        publisher=recorder,
        dead_letters=runtime.publisher,  # type: ignore[arg-type]
        tenants=runtime.tenants,
        clock=clock,
        settings=asettings,
        rate_limiter=RedisRateLimiter(
            redis_client,
            Keys(settings.namespace),
            asettings.webform_rate_limit,
            asettings.webform_rate_window_seconds,
        ),
        acks=SmtpAckSender(asettings),
    )
    ctx.threads = StoreThreads(runtime.store)  # as context_for_runtime wires it
    await start_adapters(ctx)
    app = create_app(runtime.api_context())
    app[ADAPTERS] = ctx
    add_routes(app)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    stack = Stack(runtime, ctx, client, recorder, sink, clock, amqp)

    async def close() -> None:
        await client.close()
        await stop_adapters(ctx, within=5)
        await runtime.close()

    return stack, close


@pytest.fixture
async def stack(
    settings: Settings,
    amqp: aio_pika.abc.AbstractConnection,
    redis_client: aioredis.Redis,
    smtp_sink: SmtpSink,
) -> AsyncIterator[Stack]:
    s, close = await make_stack(settings, amqp, redis_client, smtp_sink)
    yield s
    await close()
