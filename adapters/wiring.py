"""Builds the AdapterContext from the service's runtime, and starts / stops the long-running parts.

For `serve` / `api` (router/service.py):

    adapter_ctx = await context_for_runtime(runtime)           # AdapterSettings from the environment
    api_ctx = runtime.api_context()
    api_ctx.readiness.update(readiness_checks(adapter_ctx))    # IMAP state in /readyz
    app = create_app(api_ctx)
    app[ADAPTERS] = adapter_ctx
    add_routes(app)
    await start_adapters(adapter_ctx)                          # SMTP server, IMAP poller (when configured)
    ...
    await stop_adapters(adapter_ctx)                           # before runtime.close(): drains acks
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from adapters.context import AckSender, AdapterContext, MemoryDeadLetters
from adapters.mail import MailAdapter
from adapters.mail.ack import SmtpAckSender
from adapters.publisher import AmqpContactPublisher, ContactPublisher, DeadLetterSink
from adapters.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from adapters.registry import load_adapters
from adapters.settings import AdapterSettings
from router import logs
from router.clock import Clock
from router.tenants import Tenant

if TYPE_CHECKING:
    from router.service import Runtime

log = logs.get("adapters.wiring")


def build_context(
    *,
    publisher: ContactPublisher,
    tenants: Mapping[str, Tenant],
    clock: Clock,
    settings: AdapterSettings,
    dead_letters: DeadLetterSink | None = None,
    rate_limiter: RateLimiter | None = None,
    acks: AckSender | None = None,
) -> AdapterContext:
    if dead_letters is None:
        dead_letters = publisher if isinstance(publisher, AmqpContactPublisher) else MemoryDeadLetters()
    return AdapterContext(
        publisher=publisher,
        dead_letters=dead_letters,
        tenants=tenants,
        clock=clock,
        settings=settings,
        rate_limiter=rate_limiter
        or MemoryRateLimiter(settings.webform_rate_limit, settings.webform_rate_window_seconds),
        acks=acks,
        adapters=load_adapters(sorted(settings.enabled)),
    )


async def context_for_runtime(runtime: Runtime, settings: AdapterSettings | None = None) -> AdapterContext:
    settings = settings or AdapterSettings()
    limiter: RateLimiter | None = None
    client: aioredis.Redis | None = None
    if not runtime.embedded:
        client = aioredis.Redis.from_url(runtime.settings.redis_url)
        limiter = RedisRateLimiter(
            client,
            runtime.settings.namespace,
            settings.webform_rate_limit,
            settings.webform_rate_window_seconds,
        )
    ctx = build_context(
        publisher=runtime.publisher,
        tenants=runtime.tenants,
        clock=runtime.clock,
        settings=settings,
        rate_limiter=limiter,
        acks=SmtpAckSender(settings) if settings.ack_senders else None,
    )
    if client is not None:
        ctx.closers.append(client.aclose)
    return ctx


def readiness_checks(ctx: AdapterContext) -> dict[str, Callable[[], Awaitable[str | None]]]:
    """Checks for /readyz (ApiContext.readiness): the IMAP poller, when one runs."""
    checks: dict[str, Callable[[], Awaitable[str | None]]] = {}
    mail = ctx.adapters.get("mail")
    if isinstance(mail, MailAdapter) and ctx.settings.imap_host:

        async def imap() -> str | None:
            return mail.imap_problem()

        checks["imap"] = imap
    return checks


async def start_adapters(ctx: AdapterContext) -> None:
    for name, adapter in ctx.adapters.items():
        await adapter.start(ctx)
        log.info("adapter_started", adapter=name)


async def stop_adapters(ctx: AdapterContext, within: float = 30.0) -> None:
    for adapter in reversed(list(ctx.adapters.values())):
        await adapter.stop()
    await ctx.drain(within)
    for close in ctx.closers:
        await close()
    ctx.closers.clear()
