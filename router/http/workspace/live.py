"""Live updates of the pages: server-sent events fed by the `events` exchange.

One `LiveHub` per process takes every event of the process's tenants (the service feeds it: an
exclusive auto-delete queue on RabbitMQ, the embedded broker's record otherwise) and hands each to the
pages open for that tenant whose agent works in the event's team. What goes to the browser is ids and
codes only ("this list changed"); the page then fetches its list again. A browser that lost the
connection reconnects by itself (EventSource, after `retry`), sending the id of the last event it had
(`Last-Event-ID`): what the hub delivered since, of the last REPLAY events, comes first, then the live
ones; the page fetches its list once it is back as well.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from router import logs
from router.http.workspace.session import SignedInAgent

log = logs.get("router.http.workspace.live")

# The events that change what a work list or a contact page shows.
LIVE_EVENTS = frozenset(
    {
        "contact.routed",
        "contact.transferred",
        "contact.taken",
        "contact.closed",
        "contact.reply",
        "transfer.refused",
        "callback.requested",
        "callback.attempted",
        "callback.closed",
        "deadline.warning",
        "deadline.breached",
        "deadline.extended",
        "response.recorded",
    }
)
RETRY_MS = 2000
KEEPALIVE_SECONDS = 15.0
# A page that does not keep up (its connection stalls) is dropped; its browser reconnects.
QUEUE_LIMIT = 256
# Recent events kept for pages that reconnect (Last-Event-ID).
REPLAY = 1000


@dataclass(eq=False)
class Listener:
    agent: SignedInAgent
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    dropped: bool = False

    def wants(self, event: dict[str, Any]) -> bool:
        if event.get("tenant") != self.agent.tenant:
            return False
        teams = {event.get(k) for k in ("team", "from_team", "to_team")} - {None}
        return bool(teams & self.agent.teams)


class LiveHub:
    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.delivered = 0
        # (the event as published, what pages get of it), oldest first.
        self.recent: collections.deque[tuple[dict[str, Any], dict[str, Any]]] = collections.deque(
            maxlen=REPLAY
        )

    def since(self, event_id: str, agent: SignedInAgent) -> list[dict[str, Any]]:
        """What the agent's pages got after `event_id`; nothing when that id is no longer kept."""
        ids = [out.get("event_id") for _, out in self.recent]
        if event_id not in ids:
            return []
        probe = Listener(agent)
        after = list(self.recent)[ids.index(event_id) + 1 :]
        return [out for event, out in after if probe.wants(event)]

    def deliver(self, body: bytes | str | dict[str, Any]) -> None:
        """One event as published on `events` (its JSON), to every page that shows it."""
        try:
            event = body if isinstance(body, dict) else json.loads(body)
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("event") not in LIVE_EVENTS:
            return
        # Ids and codes only: never a subject, a name or a note.
        out = {
            k: event.get(k)
            for k in ("event", "event_id", "tenant", "team", "from_team", "contact_id", "callback_id")
        }
        self.recent.append((event, out))
        for listener in list(self.listeners):
            if listener.dropped or not listener.wants(event):
                continue
            try:
                listener.queue.put_nowait(out)
                self.delivered += 1
            except asyncio.QueueFull:
                listener.dropped = True

    @contextlib.contextmanager
    def listen(self, agent: SignedInAgent) -> Any:
        listener = Listener(agent)
        self.listeners.add(listener)
        try:
            yield listener
        finally:
            self.listeners.discard(listener)


LIVE = web.AppKey("workspace_live", LiveHub)


def _frame(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event.get('event_id') or ''}\nevent: werk\ndata: {data}\n\n".encode()


async def stream(request: web.Request, agent: SignedInAgent) -> web.StreamResponse:
    """GET /werkplek/live: the event stream of the signed-in agent's teams."""
    hub = request.app[LIVE]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a proxy in front must not hold the stream back
        }
    )
    await response.prepare(request)
    with hub.listen(agent) as listener:
        await response.write(f"retry: {RETRY_MS}\n: verbonden\n\n".encode())
        if last := request.headers.get("Last-Event-ID"):
            for event in hub.since(last, agent):
                await response.write(_frame(event))
        while not listener.dropped and agent.expires_at.timestamp() > time.time():
            try:
                event = await asyncio.wait_for(listener.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": nog verbonden\n\n")
                continue
            try:
                await response.write(_frame(event))
            except (ConnectionResetError, RuntimeError):
                break
    return response
