"""What adapters get from the service: the shared publishing path, tenants, clock, settings, and helpers.

Built once per process (`adapters.kit.wiring`), stored on the aiohttp app under `adapters.kit.http.ADAPTERS`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

from adapters.kit.publisher import ContactPublisher, DeadLetterSink
from adapters.kit.settings import AdapterSettings
from router import logs
from router.core.clock import Clock
from router.core.contact import Contact
from router.core.tenants import Tenant

if TYPE_CHECKING:
    from adapters.kit.base import ChannelAdapter
    from adapters.kit.ratelimit import RateLimiter

log = logs.get("adapters.kit.context")


class AckSender(Protocol):
    """Sends one acknowledgement mail (an outgoing message, addressed). Raises on failure."""

    async def send(self, message: EmailMessage) -> None: ...


class ThreadLookup(Protocol):
    """Whether the router will join a contact to an earlier one (a quoted reference number, a known
    Message-ID), asked before an acknowledgement goes out: a reply gets none. Raises when it cannot
    tell; the service supplies it on the state store."""

    async def joins(self, contact: Contact) -> bool: ...


# The address of a contact's status page (…/status/<reference>?t=<token>), for its acknowledgement and
# the web form's answer; the service derives it (router/core/status.py). None: no links.
StatusLinks = Callable[[Contact], str]


@dataclass
class MemoryDeadLetters:
    """Dead letters kept in memory: for the embedded mode and fast tests."""

    letters: list[tuple[bytes, str, str]] = field(default_factory=list)

    async def dead_letter(self, body: bytes, reason: str, *, routing_key: str) -> None:
        self.letters.append((body, reason, routing_key))


@dataclass
class AdapterContext:
    publisher: ContactPublisher
    dead_letters: DeadLetterSink
    tenants: Mapping[str, Tenant]
    clock: Clock
    settings: AdapterSettings
    rate_limiter: RateLimiter
    acks: AckSender | None = None
    # The router's threads, so that a reply it will join is not acknowledged again (None: not known).
    threads: ThreadLookup | None = None
    status_links: StatusLinks | None = None
    # The enabled adapters, by name: their routes are served and their long-running parts started.
    adapters: dict[str, ChannelAdapter] = field(default_factory=dict)
    # Closed by stop_adapters (a Redis client, ...).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Work started after a confirm (acknowledgement mails); awaited on shutdown.
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        # Strong reference: the event loop keeps only weak ones, and a collected task is a lost mail.
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def drain(self, within: float = 30.0) -> None:
        """Wait for background work (acknowledgements in flight) before the process stops."""
        pending = list(self.background)
        if not pending:
            return
        _, not_done = await asyncio.wait(pending, timeout=within)
        for task in not_done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not_done:
            log.warning("background_cancelled", count=len(not_done))
