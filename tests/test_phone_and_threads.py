"""Phone notes act on their outcome by themselves; replies join the contact they answer.

Each test runs on the embedded backend and on the real RabbitMQ and Redis (`backend`)."""

from __future__ import annotations

import json
from typing import Any

from tests.harness import ALL_KEY, Harness


async def send(backend: Harness, tenant: str, channel: str, body: str, **fields: Any) -> str:
    """A contact whose sender left a phone number only; its id once processed."""
    return await backend.send(tenant, channel, body, name=None, **fields)


async def test_phone_note_answered_is_logged_and_closed(backend: Harness) -> None:
    cid = await send(
        backend,
        "ommen",
        "phone",
        "Vraag over mijn aanslag",
        metadata={"phone.outcome": "answered", "phone.agent": "kcc-3"},
    )
    view = await backend.get(cid)
    assert view["status"] == "closed" and view["resolution"] == "answered on the phone"
    assert [e["event"] for e in view["history"]] == ["contact.routed", "contact.closed"]
    assert await backend.team_queue("ommen", "belastingen") == []


async def test_phone_note_transferred_counts_the_transfer(backend: Harness) -> None:
    cid = await send(
        backend,
        "ommen",
        "phone",
        "Algemene vraag",
        metadata={
            "phone.outcome": "transferred",
            "phone.to_team": "burgerzaken",
            "phone.agent": "kcc-3",
            "phone.note": "Wil paspoort aanvragen",
        },
    )
    view = await backend.get(cid)
    assert view["team"] == "burgerzaken" and view["transfers"] == 1
    msgs = await backend.team_queue("ommen", "burgerzaken")
    assert len(msgs) == 1
    hop = json.loads(msgs[0].body)["contact"]["hops"][-1]
    assert (hop["kind"], hop["from_team"], hop["note"]) == ("transferred", "kcc", "Wil paspoort aanvragen")
    # Ommen's limit is one: the next transfer becomes a callback request.
    status, body = await backend.transfer(cid, "vergunningen", "burgerzaken")
    assert status == 409 and body["callback_request"]["team"] == "vergunningen"


async def test_phone_note_colleague_unavailable_creates_a_callback(backend: Harness) -> None:
    cid = await send(
        backend,
        "ommen",
        "phone",
        "Vraag over bijstand",
        metadata={
            "phone.outcome": "colleague_unavailable",
            "phone.to_team": "sociaal_domein",
            "phone.agent": "kcc-1",
            "phone.note": "Wil weten of aanvraag binnen is",
        },
    )
    view = await backend.get(cid)
    cb = view["callback_requests"][0]
    # Wed 13 May 10:00 + 3 workdays (Hemelvaartsdag skipped) -> Tue 19 May 17:00.
    assert (cb["team"], cb["due"], cb["phone"], cb["origin"]) == (
        "sociaal_domein",
        "2026-05-19T17:00:00+02:00",
        "+31612345678",
        "phone_note",
    )
    items = await (
        await backend.client.get("/v1/tenants/ommen/teams/sociaal_domein/items", headers=ALL_KEY)
    ).json()
    assert items["items"][0]["id"] == cb["id"]
    msgs = await backend.team_queue("ommen", "sociaal_domein")
    assert json.loads(msgs[0].body)["callback_request"]["id"] == cb["id"]


async def test_reply_by_message_id_and_by_reference_joins_the_contact(backend: Harness) -> None:
    first = await send(
        backend,
        "ommen",
        "mail",
        "Mijn paspoort is verlopen",
        subject="Paspoort",
        metadata={
            "thread.message_id": "<q1@inwoner.example>",
            "thread.ack_message_id": "<ack1@ommen.example>",
        },
    )
    await backend.team_queue("ommen", "burgerzaken")
    reference = (await backend.get(first))["contact"]["reference"]

    reply = await send(
        backend,
        "ommen",
        "mail",
        "Ik heb nog een vraag over afval",
        subject="Re: Ontvangen",
        metadata={"thread.message_id": "<q2@inwoner.example>", "thread.in_reply_to": "<ack1@ommen.example>"},
    )
    by_ref = await send(backend, "ommen", "mail", "Aanvulling", subject=f"Aanvulling op {reference}")
    view = await backend.get(first)
    replies = [e for e in view["history"] if e["event"] == "contact.reply"]
    assert [r["reply_id"] for r in replies] == [reply, by_ref]
    # The follow-ups went to the team that has the contact, not to a newly classified one.
    msgs = await backend.team_queue("ommen", "burgerzaken")
    assert [json.loads(m.body)["routing"]["follow_up_of"] for m in msgs] == [first, first]
    assert await backend.team_queue("ommen", "openbare_ruimte") == []
    assert (await backend.get(reply))["status"] == "merged"
    # A reply to the reply threads as well.
    third = await send(
        backend, "ommen", "mail", "Nog iets", metadata={"thread.in_reply_to": "<q2@inwoner.example>"}
    )
    assert (await backend.get(third))["status"] == "merged"


async def test_reply_to_a_closed_contact_reopens_it(backend: Harness) -> None:
    first = await send(
        backend, "ommen", "mail", "Paspoort verlopen", metadata={"thread.message_id": "<c1@x.example>"}
    )
    resp = await backend.client.post(
        f"/v1/contacts/{first}/close", headers=ALL_KEY, json={"resolution": "beantwoord"}
    )
    assert resp.status == 200
    await send(
        backend, "ommen", "mail", "Toch nog een vraag", metadata={"thread.in_reply_to": "<c1@x.example>"}
    )
    view = await backend.get(first)
    assert view["status"] == "routed"
    items: dict[str, Any] = await (
        await backend.client.get("/v1/tenants/ommen/teams/burgerzaken/items", headers=ALL_KEY)
    ).json()
    assert first in [i["id"] for i in items["items"]]


async def test_reference_of_another_tenant_does_not_join(backend: Harness) -> None:
    first = await send(backend, "coevorden", "mail", "Paspoort verlopen")
    reference = (await backend.get(first))["contact"]["reference"]
    other = await send(backend, "ommen", "mail", "Vraag", subject=f"Over {reference}")
    assert (await backend.get(other))["status"] == "routed"
