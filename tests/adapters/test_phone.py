"""Phone notes by agents: API key, E.164 numbers, outcome and team checks."""

from __future__ import annotations

from typing import Any

from router.core.contact import contact_id
from tests.adapters.conftest import Stack

URL = "/v1/channels/phone/ommen/notes"
KEY = {"X-API-Key": "ommen-key"}


def note(**extra: Any) -> dict[str, Any]:
    data = {
        "caller_name": "Piet Pietersen",
        "phone": "06 12345678",
        "topic": "Bouwvergunning dakkapel",
        "note": "Wil weten hoe lang de aanvraag duurt.",
        "outcome": "colleague_unavailable",
        "to_team": "vergunningen",
        "agent": "kcc-017",
        "call_id": "call-0001",
    }
    data.update(extra)
    return data


async def test_a_note_becomes_a_phone_contact_with_outcome_metadata(stack: Stack) -> None:
    resp = await stack.client.post(URL, json=note(), headers=KEY)
    assert resp.status == 202
    body = await resp.json()
    cid = contact_id("ommen", "phone", "call-0001")
    assert body["id"] == cid and body["reference"].startswith("OMM-")
    [contact] = stack.recorder.published
    assert contact.channel == "phone"
    assert contact.sender is not None and contact.sender.phone == "+31612345678"
    assert contact.metadata == {
        "phone.outcome": "colleague_unavailable",
        "phone.to_team": "vergunningen",
        "phone.agent": "kcc-017",
    }
    assert contact.subject == "Bouwvergunning dakkapel"
    await stack.wait_routed(cid)


async def test_api_key_is_required_and_limited_to_its_tenants(stack: Stack) -> None:
    assert (await stack.client.post(URL, json=note())).status == 401
    assert (await stack.client.post(URL, json=note(), headers={"X-API-Key": "wrong"})).status == 401
    other = await stack.client.post("/v1/channels/phone/coevorden/notes", json=note(), headers=KEY)
    assert other.status == 403
    assert stack.recorder.published == []


async def test_invalid_phone_number_and_team_are_422_naming_the_field(stack: Stack) -> None:
    resp = await stack.client.post(URL, json=note(phone="12345"), headers=KEY)
    assert resp.status == 422
    assert [f["field"] for f in (await resp.json())["fields"]] == ["phone"]
    resp = await stack.client.post(URL, json=note(to_team="brandweer"), headers=KEY)
    assert resp.status == 422
    assert (await resp.json())["fields"][0]["field"] == "to_team"
    resp = await stack.client.post(URL, json=note(outcome="transferred", to_team=None), headers=KEY)
    assert (await resp.json())["fields"] == [
        {"field": "to_team", "message": "required when outcome is transferred"}
    ]
    resp = await stack.client.post(URL, json=note(outcome="hung_up"), headers=KEY)
    assert resp.status == 422 and (await resp.json())["fields"][0]["field"] == "outcome"
    resp = await stack.client.post(URL, json=note(outcome="colleague_unavailable", phone=None), headers=KEY)
    assert (await resp.json())["fields"] == [
        {"field": "phone", "message": "required to call the resident back"}
    ]
    assert stack.recorder.published == []


async def test_an_answered_call_needs_no_team_or_number(stack: Stack) -> None:
    resp = await stack.client.post(
        URL,
        json={"topic": "Openingstijden", "note": "Uitgelegd.", "outcome": "answered", "agent": "kcc-002"},
        headers={"Authorization": "Bearer secret-key"},
    )
    assert resp.status == 202
    [contact] = stack.recorder.published
    assert contact.sender is None and contact.metadata == {
        "phone.outcome": "answered",
        "phone.agent": "kcc-002",
    }


async def test_the_agent_is_an_id_an_address_or_a_name_is_refused_naming_the_field(stack: Stack) -> None:
    for agent in ["jan.devries@ommen.nl", "Jan de Vries", "a" * 65]:
        resp = await stack.client.post(URL, json=note(agent=agent), headers=KEY)
        assert resp.status == 422
        assert [f["field"] for f in (await resp.json())["fields"]] == ["agent"]
        assert agent not in await resp.text()
    assert stack.recorder.published == []
    resp = await stack.client.post(URL, json=note(agent="  kcc-017 "), headers=KEY)  # spaces around: trimmed
    assert resp.status == 202
    assert stack.recorder.published[0].metadata["phone.agent"] == "kcc-017"


async def test_the_callers_address_is_kept_for_linking_their_contacts(stack: Stack) -> None:
    """Issue 19: a caller who mailed before gives their address; the note carries it as the sender's, so
    that it joins the open mail on the same topic."""
    resp = await stack.client.post(
        URL, json=note(email="Piet@Example.nl", call_id="call-0002", outcome="answered"), headers=KEY
    )
    assert resp.status == 202
    [contact] = stack.recorder.published
    assert contact.sender is not None and contact.sender.email == "Piet@example.nl"
    resp = await stack.client.post(URL, json=note(email="geen adres", call_id="call-0003"), headers=KEY)
    assert resp.status == 422 and [f["field"] for f in (await resp.json())["fields"]] == ["email"]
