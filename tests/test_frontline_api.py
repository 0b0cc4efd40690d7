"""Case work as frontline agents live it (issue 16), through the HTTP API on both backends: work lists by
the soonest open deadline with what the agent needs, phone notes counted from the call, callbacks that
end, the coordinating team's final assignment, extensions, and the edges (415, paging, met once)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.kit.acks import MailNotifier
from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.testing import RecordingAcks, adapter_settings
from adapters.kit.wiring import build_context
from router.core.contact import Sender
from router.http.app import create_app
from router.service import context_for_runtime
from tests.harness import ALL_KEY, AMS, Harness, wait_routed


async def items(backend: Harness, tenant: str, team: str, **params: Any) -> dict[str, Any]:
    resp = await backend.client.get(
        f"/v1/tenants/{tenant}/teams/{team}/items", headers=ALL_KEY, params=params
    )
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


def item_of(listing: dict[str, Any], member: str) -> dict[str, Any]:
    return next(i for i in listing["items"] if i["id"] == member)


# -- 1. the soonest open deadline, on its own clock ------------------------------------------------


async def test_items_sort_by_the_soonest_open_deadline_of_any_kind(backend: Harness) -> None:
    # Coevorden mail: acknowledgement within one day, reaction within five workdays.
    mail = await backend.route("coevorden", "mail", "Algemene vraag")
    # Ommen letter: an acknowledgement within five workdays, no reaction norm (it showed due: null).
    letter = await backend.route("ommen", "post", "Algemene vraag")
    coevorden = item_of(await items(backend, "coevorden", "kcc"), mail)
    assert (coevorden["deadline_kind"], coevorden["term"]) == ("acknowledge", "1 day")
    view = await backend.get(mail)
    ack = next(d for d in view["deadlines"] if d["kind"] == "acknowledge")
    assert datetime.fromisoformat(coevorden["due"]) == datetime.fromisoformat(ack["due"])
    ommen = item_of(await items(backend, "ommen", "kcc"), letter)
    assert (ommen["deadline_kind"], ommen["term"]) == ("acknowledge", "5 workdays")
    assert ommen["due"] is not None
    # Once acknowledged, the item is listed by its reaction.
    resp = await backend.client.post(
        f"/v1/contacts/{mail}/responses", headers=ALL_KEY, json={"kind": "acknowledge"}
    )
    assert resp.status == 200
    coevorden = item_of(await items(backend, "coevorden", "kcc"), mail)
    assert (coevorden["deadline_kind"], coevorden["term"]) == ("respond", "5 workdays")


async def test_an_hour_term_shows_clock_time_left_at_night(backend: Harness) -> None:
    backend.clock.set(datetime(2026, 5, 13, 19, 0, tzinfo=AMS))
    cid = await backend.route("ommen", "mail", "Gevaarlijke situatie: een omgevallen boom op de weg")
    backend.clock.set(datetime(2026, 5, 13, 21, 59, tzinfo=AMS))  # 60 s of its 3 hours left
    danger = item_of(await items(backend, "ommen", "openbare_ruimte"), cid)
    assert (danger["deadline_kind"], danger["term"]) == ("respond", "3 hours")
    assert danger["working_time_left_seconds"] == 60 and danger["overdue"] is False


async def test_items_carry_what_the_agent_needs_and_numbers_in_e164(backend: Harness) -> None:
    cid = await backend.route("ommen", "mail", "Vraag over mijn aanslag")
    status, _ = await backend.transfer(cid, "burgerzaken", "belastingen")  # note: "Inwoner vraagt naar ..."
    assert status == 200
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/callback-requests",
        headers=ALL_KEY,
        json={"reason": "Even bellen", "phone": "06 12345678", "preferred_time": "na 15:00"},
    )
    assert resp.status == 201
    cb = await resp.json()
    assert cb["phone"] == "+31612345678"
    listing = await items(backend, "ommen", "burgerzaken")
    contact, callback = item_of(listing, cid), item_of(listing, cb["id"])
    view = await backend.get(cid)
    for item in (contact, callback):
        assert item["reference"] == view["contact"]["reference"]
        assert (item["channel"], item["sender_name"], item["subject"]) == ("mail", "Test Inwoner", "Vraag")
        assert datetime.fromisoformat(item["received_at"]) == datetime.fromisoformat(view["received_at"])
        assert item["last_note"] == "Inwoner vraagt naar burgerzaken"
        assert item["contact_id"] == cid
    assert (callback["phone"], callback["preferred_time"], callback["reason"]) == (
        "+31612345678",
        "na 15:00",
        "Even bellen",
    )
    assert (callback["deadline_kind"], callback["term"]) == ("callback", "3 workdays")
    # a number that is no phone number is refused naming the field
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/callback-requests", headers=ALL_KEY, json={"reason": "r", "phone": "12"}
    )
    assert resp.status == 422 and (await resp.json())["fields"][0]["field"] == "phone"


# -- 2. a phone note through the phone adapter: its terms count from the call -----------------------


async def test_coevorden_call_monday_1630_logged_tuesday_2000_callback_due_wednesday(
    backend: Harness,
) -> None:
    backend.clock.set(datetime(2026, 5, 12, 20, 0, tzinfo=AMS))  # Tuesday evening: the note is logged
    app = create_app(backend.rt.api_context())
    app[ADAPTERS] = await context_for_runtime(backend.rt)
    add_routes(app)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.post(
            "/v1/channels/phone/coevorden/notes",
            headers={"X-API-Key": "secret-key"},
            json={
                "topic": "Vergunning dakkapel",
                "note": "Collega niet bereikbaar",
                "outcome": "colleague_unavailable",
                "to_team": "vergunningen",
                "agent": "kcc-017",
                "phone": "06 12345678",
                "call_id": "call-mon-1630",
                "called_at": "2026-05-11T16:30:00+02:00",
            },
        )
        assert resp.status == 202, await resp.text()
        cid = (await resp.json())["id"]
    finally:
        await client.close()
    await wait_routed(backend.rt, cid)
    view = await backend.get(cid)
    [cb] = view["callback_requests"]
    assert cb["due"] == "2026-05-13T17:00:00+02:00"  # Wednesday at closing time
    assert cb["counted_from"] == "2026-05-11T16:30:00+02:00"
    logged = datetime.fromisoformat(view["contact"]["metadata"]["phone.logged_at"])
    assert logged == datetime(2026, 5, 12, 20, 0, tzinfo=AMS)


# -- 3. callback requests -----------------------------------------------------------------------------


async def test_three_agents_refusing_one_transfer_at_once_create_one_callback_request(
    backend: Harness,
) -> None:
    cid = await backend.route("ommen", "phone", "Vraag over mijn aanslag")
    assert (await backend.transfer(cid, "burgerzaken", "belastingen"))[0] == 200
    results = await asyncio.gather(
        *(
            backend.transfer(
                cid, "vergunningen", "burgerzaken", headers={**ALL_KEY, "X-Agent-Id": f"kcc-{n}"}
            )
            for n in range(3)
        )
    )
    assert [status for status, _ in results] == [409, 409, 409]
    assert len({body["callback_request"]["id"] for _, body in results}) == 1
    view = await backend.get(cid)
    assert len(view["callback_requests"]) == 1
    history = [e["event"] for e in view["history"]]
    assert history.count("transfer.refused") == 3 and history.count("callback.requested") == 1
    # asked again by hand: the open one, 200 instead of 201
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/callback-requests", headers=ALL_KEY, json={"team": "vergunningen", "reason": "r"}
    )
    assert resp.status == 200 and (await resp.json())["id"] == results[0][1]["callback_request"]["id"]


async def test_a_callback_request_closes_with_a_reason(backend: Harness) -> None:
    cid = await backend.route("ommen", "phone", "Vraag over mijn aanslag")
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/callback-requests", headers=ALL_KEY, json={"reason": "r"}
    )
    cb = await resp.json()
    resp = await backend.client.post(
        f"/v1/callback-requests/{cb['id']}/attempts", headers=ALL_KEY, json={"outcome": "wrong_number"}
    )
    assert (await resp.json())["status"] == "open"
    resp = await backend.client.post(
        f"/v1/callback-requests/{cb['id']}/close",
        headers=ALL_KEY,
        json={"reason": "wrong_number", "note": "n"},
    )
    assert resp.status == 200
    closed = await resp.json()
    assert (closed["status"], closed["closed_reason"]) == ("closed", "wrong_number")
    assert cb["id"] not in [i["id"] for i in (await items(backend, "ommen", "belastingen"))["items"]]
    again = await backend.client.post(
        f"/v1/callback-requests/{cb['id']}/close", headers=ALL_KEY, json={"reason": "reached"}
    )
    assert again.status == 409
    bad = await backend.client.post(
        f"/v1/callback-requests/{cb['id']}/close", headers=ALL_KEY, json={"reason": "maybe"}
    )
    assert bad.status == 422 and (await bad.json())["fields"][0]["field"] == "reason"
    missing = await backend.client.post(
        f"/v1/callback-requests/{cid}-cb9/close", headers=ALL_KEY, json={"reason": "reached"}
    )
    assert missing.status == 404
    assert "callback.closed" in await backend.event_names()
    # the scheduler has nothing to escalate for it
    backend.clock.advance(timedelta(days=30))
    assert backend.rt.scheduler is not None
    await backend.rt.scheduler.tick()
    assert [json.loads(m.body).get("callback_id") for m in await backend.escalations("ommen")] == []


# -- 6. extensions ------------------------------------------------------------------------------------


async def test_an_objection_is_extended_and_the_resident_is_mailed_in_plain_dutch(backend: Harness) -> None:
    acks = RecordingAcks()
    ctx = build_context(
        publisher=backend.rt.publisher,
        tenants=backend.rt.tenants,
        clock=backend.clock,
        settings=adapter_settings(ack_from="ommen:noreply@ommen.nl"),
        acks=acks,
    )
    backend.rt.casework.notifier = MailNotifier(ctx)
    contact = backend.contact("ommen", "mail", "Ik maak bezwaar tegen de aanslag", subject="Bezwaar")
    contact = contact.model_copy(update={"sender": Sender(name="Test Inwoner", email="inwoner@example.nl")})
    await backend.rt.publisher.publish(contact)
    await wait_routed(backend.rt, contact.cid)
    view = await backend.get(contact.cid)
    resolve = next(d for d in view["deadlines"] if d["kind"] == "resolve")
    resp = await backend.client.post(
        f"/v1/contacts/{contact.cid}/extensions",
        headers=ALL_KEY,
        json={"kind": "resolve", "reason": "advies nodig"},
    )
    assert resp.status == 201, await resp.text()
    out = await resp.json()
    assert out["original_due"] == resolve["due"] and out["extension"] == "6 weeks"
    assert out["notice"]["channel"] == "email" and out["notice"]["sent_by_service"] is True
    await ctx.drain()
    [mail] = acks.sent
    assert str(mail["To"]) == "inwoner@example.nl" and contact.reference in str(mail["Subject"])
    text = mail.get_content()
    assert "uw bezwaar" in text and "6 weken" in text and "advies" not in text
    view = await backend.get(contact.cid)
    extended = next(d for d in view["deadlines"] if d["kind"] == "resolve")
    assert (extended["due"], extended["original_due"]) == (out["due"], resolve["due"])
    assert view["history"][-1]["event"] == "deadline.extended"
    events = [json.loads(m.body) for m in await backend.events()]
    [ev] = [e for e in events if e["event"] == "deadline.extended"]
    assert "advies" not in json.dumps(ev) and "inwoner@example.nl" not in json.dumps(ev)
    again = await backend.client.post(
        f"/v1/contacts/{contact.cid}/extensions", headers=ALL_KEY, json={"kind": "resolve", "reason": "r"}
    )
    assert again.status == 409
    no_norm = await backend.client.post(
        f"/v1/contacts/{contact.cid}/extensions", headers=ALL_KEY, json={"kind": "acknowledge", "reason": "r"}
    )
    assert no_norm.status == 409 and (await no_norm.json())["fields"][0]["field"] == "kind"


async def test_without_a_mail_sender_the_team_gets_the_notice_to_send(backend: Harness) -> None:
    cid = await backend.route("ommen", "post", "Klacht over de behandeling")  # resolve: 6 weeks + 4 weeks
    await backend.team_queue("ommen", "juridische_zaken")
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/extensions", headers=ALL_KEY, json={"kind": "resolve", "reason": "r"}
    )
    assert resp.status == 201
    notice = (await resp.json())["notice"]
    assert (notice["channel"], notice["sent_by_service"]) == ("letter", False)
    [item] = [json.loads(m.body) for m in await backend.team_queue("ommen", "juridische_zaken")]
    assert item["notice"]["text"] == notice["text"] and "uw klacht" in notice["text"]


# -- 7. edges -------------------------------------------------------------------------------------------


JSON_ROUTES = [
    "/v1/contacts",
    "/v1/contacts/{cid}/transfer",
    "/v1/contacts/{cid}/callback-requests",
    "/v1/callback-requests/{cid}-cb1/attempts",
    "/v1/callback-requests/{cid}-cb1/close",
    "/v1/contacts/{cid}/responses",
    "/v1/contacts/{cid}/extensions",
    "/v1/contacts/{cid}/close",
]


@pytest.mark.parametrize("route", JSON_ROUTES)
async def test_a_json_route_refuses_a_body_that_is_not_sent_as_json(backend: Harness, route: str) -> None:
    cid = await backend.route("ommen", "mail", "Vraag")
    body = json.dumps(
        {"resolution": "x", "to_team": "kcc", "from_team": "kcc", "reason": "r", "kind": "respond"}
    )
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**ALL_KEY, **({"Content-Type": content_type} if content_type else {})}
        resp = await backend.client.post(route.format(cid=cid), data=body.encode(), headers=headers)
        assert resp.status == 415, (content_type, await resp.text())
        assert "application/json" in (await resp.json())["error"]
    # nothing was changed
    assert [e["event"] for e in (await backend.get(cid))["history"]] == ["contact.routed"]


async def test_paging_is_bounded_and_each_error_names_its_field(backend: Harness) -> None:
    url = "/v1/tenants/ommen/teams/kcc/items"
    cases = {
        "offset=99999999999999999999": "offset",
        "offset=-1": "offset",
        "offset=100001": "offset",
        "limit=0": "limit",
        "limit=1001": "limit",
        "limit=abc": "limit",
    }
    for query, field in cases.items():
        resp = await backend.client.get(f"{url}?{query}", headers=ALL_KEY)
        assert resp.status == 422, (query, await resp.text())
        assert [f["field"] for f in (await resp.json())["fields"]] == [field], query
    resp = await backend.client.get(f"{url}?offset=100000&limit=1000", headers=ALL_KEY)
    assert resp.status == 200 and (await resp.json())["items"] == []


async def test_a_met_time_is_written_once(backend: Harness) -> None:
    cid = await backend.route("ommen", "mail", "Vraag")
    first = await backend.client.post(
        f"/v1/contacts/{cid}/responses", headers=ALL_KEY, json={"kind": "respond"}
    )
    met = (await first.json())["met_at"]
    version = (await backend.get(cid))["version"]
    backend.clock.advance(timedelta(days=30))  # a second answer, long after the deadline
    second = await backend.client.post(
        f"/v1/contacts/{cid}/responses", headers=ALL_KEY, json={"kind": "respond"}
    )
    assert second.status == 200
    assert (await second.json())["met_at"] == met and (await second.json())["on_time"] is True
    view = await backend.get(cid)
    assert view["met"]["respond"] == met and view["version"] == version


async def test_an_unknown_team_is_named_with_the_tenants_teams(backend: Harness) -> None:
    cid = await backend.route("ommen", "mail", "Vraag")
    status, body = await backend.transfer(cid, "Burgerzaken", "kcc")
    assert status == 422
    assert body["fields"][0]["message"].startswith("team 'Burgerzaken' is unknown; teams of ommen: kcc, ")
    assert "^" not in json.dumps(body)  # no regular expression
    resp = await backend.client.get("/v1/tenants/ommen/teams/Burgerzaken/items", headers=ALL_KEY)
    assert resp.status == 404 and "teams of ommen: kcc" in (await resp.json())["error"]
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/close",
        headers={**ALL_KEY, "X-Agent-Id": "jan@ommen.nl"},
        json={"resolution": "x"},
    )
    assert resp.status == 422 and "^" not in (await resp.text())
