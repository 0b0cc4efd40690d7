"""The reconnect loop of the event consumers (history, Open Klant export): one session at a time until
stopped, a lost broker logged by its error's type and retried after a pause."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import aio_pika

from router import logs

log = logs.get("router.amqp.reconnect")


async def reconnecting(
    session: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    retry: float,
    *,
    lost_event: str,
    on_lost: Callable[[], None],
) -> None:
    """Run `session` until `stop` is set; after each end (the broker away), `on_lost`, then wait
    `retry` seconds or until stopped."""
    while not stop.is_set():
        try:
            await session()
        except (aio_pika.exceptions.AMQPError, ConnectionError, OSError) as exc:
            log.warning(lost_event, error=type(exc).__name__)
        on_lost()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), retry)
