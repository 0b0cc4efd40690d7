"""The residents' status page (issue 19, item 1): GET /status/<reference>?t=<token> as a page and as JSON,
with what a resident may see and nothing else; a wrong token answers exactly like an unknown reference;
limited per client. Runs on both backends (fixture `ws`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from router.core.clock import ManualClock
from router.core.dutch import long_date
from router.core.erasure import subject
from router.core.status import status_token
from router.service import status_secret
from router.settings import Settings
from tests.backends import BackendChoice
from tests.harness import wait_committed
from tests.workspace.conftest import Workspace, open_workspace

BODY = "Mijn paspoort is verlopen. Groet, Fenna Oosterhuis, BSN 123456782"
JSON = {"Accept": "application/json"}


async def get(ws: Workspace, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as s, s.get(ws.base + path, headers=headers or {}) as r:
        return r.status, await r.text(), r.headers


def link(ws: Workspace, cid: str, reference: str) -> str:
    return f"/status/{reference}?t={status_token(status_secret(ws.rt.settings), cid)}"


async def routed(ws: Workspace, channel: str = "mail") -> tuple[str, str]:
    cid = await ws.contact("ommen", channel, BODY)
    fields = await ws.fields(cid)
    return cid, json.loads(fields["contact"])["reference"]


async def test_the_page_shows_date_department_and_steps_and_nothing_personal(ws: Workspace) -> None:
    cid, reference = await routed(ws)
    fields = await ws.fields(cid)
    respond = next(d for d in json.loads(fields["deadlines"]) if d["kind"] == "respond")
    expected_date = long_date(datetime.fromisoformat(respond["due"]))

    status, page, headers = await get(ws, link(ws, cid, reference))
    assert status == 200, page
    assert f"Uw vraag {reference}" in page and "In behandeling" in page
    assert "per e-mail" in page and "De afdeling Burgerzaken" in page
    assert "U krijgt antwoord uiterlijk" in page and expected_date in page
    # Why that date: the norm's term, and the holiday in it (Ascension Day, Thursday 14 May 2026).
    assert "binnen 5 werkdagen" in page and "donderdag 14 mei 2026 (Hemelvaartsdag)" in page
    assert "Uw vraag is doorgestuurd naar de afdeling Burgerzaken." in page
    for personal in ("Fenna", "Oosterhuis", "123456782", "+31612345678", "paspoort is verlopen"):
        assert personal not in page
    assert headers["Referrer-Policy"] == "no-referrer" and headers["Cache-Control"] == "no-store"

    status, body, _ = await get(ws, link(ws, cid, reference), JSON)
    data = json.loads(body)
    assert status == 200 and data["reference"] == reference and data["status"] == "in behandeling"
    assert data["department"] == "Burgerzaken" and data["answer_by"] == respond["due"]
    assert data["answer_by_text"] == expected_date and data["channel"] == "per e-mail"
    assert [s["text"] for s in data["steps"]] == ["Uw vraag is doorgestuurd naar de afdeling Burgerzaken."]
    assert not any(p in body for p in ("Fenna", "123456782", "+31612345678", "Test Inwoner"))


async def test_what_agents_do_becomes_steps_in_plain_words_without_who(ws: Workspace) -> None:
    cid, reference = await routed(ws)
    bz = await ws.browser("demo-ommen-burgerzaken")
    await bz.get(f"/werkplek/contact/{cid}")
    await bz.post(f"/werkplek/contact/{cid}/oppakken")
    status, _, _ = await bz.post(
        f"/werkplek/contact/{cid}/overdragen", {"team": "belastingen", "notitie": "Gaat over de aanslag"}
    )
    assert status == 200
    bel = await ws.browser("demo-ommen-belastingen")
    await bel.get(f"/werkplek/contact/{cid}")
    status, _, _ = await bel.post(f"/werkplek/contact/{cid}/afsluiten", {"oplossing": "Uitgelegd per mail"})
    assert status == 200

    status, body, _ = await get(ws, link(ws, cid, reference), JSON)
    data = json.loads(body)
    assert data["status"] == "afgerond" and data["department"] == "Belastingen"
    assert [s["text"] for s in data["steps"]] == [
        "Uw vraag is doorgestuurd naar de afdeling Burgerzaken.",
        "Een medewerker is met uw vraag bezig.",
        "Uw vraag is doorgestuurd naar de afdeling Belastingen.",
        "Uw vraag is afgehandeld.",
    ]
    for hidden in ("aanslag", "Uitgelegd", "demo-ommen", "Demo medewerker"):
        assert hidden not in body
    _, page, _ = await get(ws, link(ws, cid, reference))
    assert "Afgehandeld" in page and "Uitgelegd" not in page and "Demo medewerker" not in page


async def test_a_wrong_token_answers_exactly_like_an_unknown_reference(ws: Workspace) -> None:
    cid, reference = await routed(ws)
    other_cid, other_reference = await routed(ws)
    good = link(ws, cid, reference)
    token = good.split("?t=")[1]
    others = link(ws, other_cid, other_reference).split("?t=")[1]
    tries = {
        "unknown reference": f"/status/OMM-AAAA-AAAA?t={token}",
        "wrong token": f"/status/{reference}?t={token[:-2]}xx",
        "no token": f"/status/{reference}",
        "empty token": f"/status/{reference}?t=",
        "another contact's token": f"/status/{reference}?t={others}",
        "not a reference": "/status/" + "x" * 300 + f"?t={token}",
    }
    for headers in ({}, JSON):
        answers = {}
        for what, path in tries.items():
            status, body, h = await get(ws, path, headers)
            answers[what] = (
                status,
                body,
                sorted((k, v) for k, v in h.items() if k not in ("Date", "Content-Length")),
            )
        assert len(set(map(repr, answers.values()))) == 1, answers
        status, body, _ = answers["wrong token"]
        assert status == 404 and reference not in body
    status, _, _ = await get(ws, good)
    assert status == 200


@pytest.fixture
async def real_ws(
    redis_client: Any, amqp: Any, settings: Settings, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Workspace]:
    """On RabbitMQ and Redis only: erasure (router/redis/privacy.py) has no embedded twin."""
    async with open_workspace("real", settings, clock, tmp_path / "history.sqlite") as workspace:
        yield workspace


async def test_an_erased_contacts_link_answers_404(real_ws: Workspace) -> None:
    ws = real_ws
    cid, reference = await routed(ws)
    assert (await get(ws, link(ws, cid, reference)))[0] == 200
    assert ws.rt.privacy is not None
    await ws.rt.privacy.erase(subject("ommen", contact_ids=[cid]))
    status, _, _ = await get(ws, link(ws, cid, reference))
    assert status == 404


@pytest.fixture
async def limited(
    backend_kind: BackendChoice,
    settings: Settings,
    clock: ManualClock,
    tmp_path: Path,
) -> AsyncIterator[Workspace]:
    settings = settings.model_copy(update={"status_rate_limit": 3, "status_rate_window_seconds": 600})
    settings = backend_kind.settings(settings)
    async with open_workspace(backend_kind.kind, settings, clock, tmp_path / "history.sqlite") as workspace:
        yield workspace


async def test_a_client_asking_too_often_is_slowed_down(limited: Workspace) -> None:
    ws = limited
    cid, reference = await routed(ws)
    for _ in range(3):
        assert (await get(ws, f"/status/{reference}?t=guess"))[0] == 404
    status, page, headers = await get(ws, link(ws, cid, reference))
    assert status == 429 and int(headers["Retry-After"]) > 0 and "te vaak" in page


async def test_a_reply_joined_to_the_question_leads_to_that_questions_page(ws: Workspace) -> None:
    cid, reference = await routed(ws)
    reply = ws.h.contact(
        "ommen", "mail", "Nog een foto erbij", subject=f"Re: Ontvangstbevestiging {reference}"
    )
    await ws.rt.publisher.publish(reply)
    fields = await wait_committed(ws.rt, reply.cid)
    assert fields["status"] == "merged" and fields["merged_into"] == cid
    status, body, _ = await get(ws, link(ws, reply.cid, reply.reference), JSON)
    data = json.loads(body)
    assert status == 200 and data["reference"] == reference and data["department"] == "Burgerzaken"
    assert "Uw aanvulling is bij uw vraag gevoegd." in [s["text"] for s in data["steps"]]
