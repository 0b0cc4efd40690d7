"""Whether a server accepts a TCP connection: the quick start's and the readiness checks' first question."""

from __future__ import annotations

import asyncio
import contextlib


async def reachable_at(host: str, port: int, wait: float = 1.0) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait)
    except (TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True
