"""The Open Klant client against the contract stub on a loopback port: what it retries, what it
refuses, and that it stops when told."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from router.export.openklant.client import OpenKlantClient, Refused, Stopped
from tests.openklant.stub import OpenKlantStub

KC = {"kanaal": "E-mail", "onderwerp": "Vraag", "taal": "nld", "vertrouwelijk": False}


@pytest.fixture
async def stub() -> AsyncIterator[OpenKlantStub]:
    async with OpenKlantStub(token="good") as s:
        yield s


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client(
    session: aiohttp.ClientSession, stub: OpenKlantStub, token: str = "good", **kw: object
) -> OpenKlantClient:
    return OpenKlantClient(session, "ommen", stub.url, token, first_delay=0.05, max_delay=0.2, **kw)  # type: ignore[arg-type]


async def test_an_outage_is_waited_out_with_backoff_and_the_request_then_succeeds(
    stub: OpenKlantStub, session: aiohttp.ClientSession
) -> None:
    c = client(session, stub)
    stub.outage(1.0)
    started = time.monotonic()
    made = await c.post("/klantcontacten", KC)
    assert made["kanaal"] == "E-mail" and time.monotonic() - started >= 1.0
    assert c.retries >= 3 and stub.statuses[503] == c.retries
    assert len(stub.objects["klantcontacten"]) == 1


async def test_a_400_is_refused_with_the_field_and_code_and_not_retried(
    stub: OpenKlantStub, session: aiohttp.ClientSession
) -> None:
    c = client(session, stub)
    with pytest.raises(Refused) as refused:
        await c.post("/klantcontacten", {**KC, "onderwerp": "x" * 201})
    assert refused.value.reason == "openklant 400 on POST /klantcontacten: onderwerp (max_length)"
    assert c.retries == 0


async def test_a_wrong_token_is_retried_until_it_is_fixed_and_a_stop_ends_the_wait(
    stub: OpenKlantStub, session: aiohttp.ClientSession
) -> None:
    stop = asyncio.Event()
    c = client(session, stub, token="wrong", stop=stop)
    waiting = asyncio.create_task(c.get("/actoren", {}))
    await asyncio.sleep(0.5)
    assert not waiting.done() and stub.statuses[401] >= 2  # nothing lost: it keeps trying
    stop.set()
    with pytest.raises(Stopped):
        await asyncio.wait_for(waiting, 2)


async def test_at_most_concurrency_requests_are_in_flight(
    stub: OpenKlantStub, session: aiohttp.ClientSession
) -> None:
    c = client(session, stub, concurrency=3)
    stub.delay = 0.05
    in_flight = 0
    most = 0
    original = stub._guard

    async def counting(request: object) -> object:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await original(request)  # type: ignore[arg-type]
        finally:
            in_flight -= 1

    stub._guard = counting  # type: ignore[method-assign]
    await asyncio.gather(*(c.get("/actoren", {}) for _ in range(12)))
    assert most == 3
