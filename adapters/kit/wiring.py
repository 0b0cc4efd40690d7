"""Builds an AdapterContext, and starts / stops the adapters' long-running parts.

The service (`router.service`) builds the context for its runtime with the real publisher, rate limiter
and acknowledgement sender; tests and third-party adapters build one with `build_context` and the
in-memory defaults:

    ctx = build_context(publisher=..., tenants=..., clock=..., settings=AdapterSettings())
    await start_adapters(ctx)                          # SMTP server, IMAP poller (when configured)
    ...
    await stop_adapters(ctx)                           # drains acknowledgements in flight
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from adapters.kit.context import AckSender, AdapterContext, MemoryDeadLetters
from adapters.kit.publisher import ContactPublisher, DeadLetterSink
from adapters.kit.ratelimit import MemoryRateLimiter, RateLimiter
from adapters.kit.registry import load_adapters
from adapters.kit.settings import AdapterSettings
from router import logs
from router.core.clock import Clock
from router.core.tenants import Tenant

log = logs.get("adapters.kit.wiring")


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
    """A context for the enabled adapters. A publisher that can also dead-letter (the AMQP one) is the
    dead-letter sink unless another is given; otherwise dead letters are kept in memory."""
    if dead_letters is None:
        dead_letters = publisher if isinstance(publisher, DeadLetterSink) else MemoryDeadLetters()
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


def readiness_checks(ctx: AdapterContext) -> dict[str, Callable[[], Awaitable[str | None]]]:
    """The enabled adapters' checks for /readyz (e.g. the IMAP poller), by name."""
    checks: dict[str, Callable[[], Awaitable[str | None]]] = {}
    for adapter in ctx.adapters.values():
        checks.update(adapter.readiness_checks(ctx))
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
