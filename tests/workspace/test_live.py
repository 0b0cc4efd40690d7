"""Live updates: a signed-in agent's event stream (GET /werkplek/live) says within a second that a new
item reached their team, fed by the `events` exchange (both backends); another team hears nothing."""

from __future__ import annotations

import asyncio
import json
import time

from tests.workspace.conftest import Browser, Workspace


async def read_stream(
    browser: Browser, within: float, *, last_id: str | None = None, first_only: bool = True
) -> tuple[list[dict[str, object]], str]:
    """The `werk` events on the stream within `within` seconds (only the first, with `first_only`), and
    the raw text read. `last_id`: as a reconnecting EventSource sends it."""
    raw = ""
    events: list[dict[str, object]] = []
    headers = {"Last-Event-ID": last_id} if last_id else {}
    async with browser.session.get(browser.base + "/werkplek/live", headers=headers) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        deadline = time.monotonic() + within
        buffer = ""
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(r.content.readany(), deadline - time.monotonic())
            except TimeoutError:
                break
            if not chunk:
                break
            buffer += chunk.decode()
            raw += chunk.decode()
            while "\n\n" in buffer:
                frame, buffer = buffer.split("\n\n", 1)
                lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
                if lines.get("event") == "werk":
                    events.append(json.loads(lines["data"]))
                    if first_only:
                        return events, raw
    return events, raw


async def next_event(browser: Browser, within: float) -> tuple[dict[str, object] | None, str]:
    """The first `werk` event on the stream within `within` seconds, and the raw text read."""
    events, raw = await read_stream(browser, within)
    return (events[0] if events else None), raw


async def test_a_new_item_reaches_the_teams_stream_within_a_second(ws: Workspace) -> None:
    agent = await ws.browser("demo-ommen-burgerzaken")
    other = await ws.browser("demo-ommen-belastingen")
    mine = asyncio.create_task(next_event(agent, 5))
    theirs = asyncio.create_task(next_event(other, 2.5))
    await asyncio.sleep(0.3)  # both streams are open
    started = time.monotonic()
    contact = ws.h.contact("ommen", "phone", "Mijn paspoort is verlopen")
    await ws.rt.publisher.publish(contact)
    event, raw = await mine
    assert event is not None, raw
    assert time.monotonic() - started < 1.0 + 0.5  # routing included; the feed itself is faster
    assert event["contact_id"] == contact.cid and event["team"] == "burgerzaken"
    assert "retry: " in raw and "id: " in raw  # the browser reconnects by itself, with the last id
    assert "paspoort" not in raw and "+316" not in raw  # ids and codes only
    not_mine, _ = await theirs
    assert not_mine is None


async def test_the_stream_needs_a_session(ws: Workspace) -> None:
    b = await ws.browser()
    async with b.session.get(ws.base + "/werkplek/live", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/werkplek/aanmelden"


async def test_a_page_that_reconnects_gets_what_it_missed_first(ws: Workspace) -> None:
    """EventSource sends the last id it had (Last-Event-ID); the events since come before the live ones,
    of the agent's own teams only."""
    agent = await ws.browser("demo-ommen-burgerzaken")
    (first, _), _ = await asyncio.gather(next_event(agent, 5), publish_after(ws, "Mijn paspoort is verlopen"))
    assert first is not None
    # Offline: two items for the team, one for another team (three residents: none joins another).
    missed = [
        await publish_routed(ws, "Paspoort kwijt", 1),
        await publish_routed(ws, "Rijbewijs verlopen", 2),
    ]
    await publish_routed(ws, "Vraag over mijn aanslag", 3)  # belastingen
    await asyncio.sleep(0.3)
    frames, _ = await read_stream(agent, 1.0, last_id=str(first["event_id"]), first_only=False)
    assert [f["contact_id"] for f in frames] == missed


async def publish_after(ws: Workspace, body: str) -> None:
    await asyncio.sleep(0.3)  # the stream is open
    await ws.rt.publisher.publish(ws.h.contact("ommen", "phone", body))


async def publish_routed(ws: Workspace, body: str, resident: int) -> str:
    return await ws.contact("ommen", "phone", body, phone=f"+3161234500{resident}")
