"""Transfers with the tenant's limit, callback requests with workday deadlines, timers that escalate.

Each test runs on the embedded backend and on the real RabbitMQ and Redis (`backend`), with a manual
clock so that tests cross days without sleeping; the scheduler's timers fire when a test ticks it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from router.redis.keys import Keys
from router.redis.scheduler import CLAIM, Scheduler
from tests.harness import ALL_KEY, AMS, OMMEN_KEY, PHONE, Harness


async def test_ommen_second_transfer_is_refused_with_a_callback_due_in_three_workdays(
    backend: Harness,
) -> None:
    cid = await backend.route("ommen", "phone", "Vraag over mijn aanslag", phone=PHONE)  # belastingen
    assert (await backend.get(cid))["team"] == "belastingen"
    status, body = await backend.transfer(cid, "burgerzaken", "belastingen", headers=OMMEN_KEY)
    assert status == 200 and body["transfers"] == 1 and body["team"] == "burgerzaken"

    status, body = await backend.transfer(cid, "vergunningen", "burgerzaken", headers=OMMEN_KEY)
    assert status == 409
    assert "at most 1 time(s)" in body["error"]
    cb = body["callback_request"]
    assert cb["team"] == "vergunningen" and cb["status"] == "open"
    # Wed 13 May 10:00, 3 workdays: Thu 14 is Hemelvaartsdag -> Fri 15, Mon 18, Tue 19 -> Tue 19 May 17:00.
    assert cb["due"] == "2026-05-19T17:00:00+02:00"
    assert cb["phone"] == "+31612345678"

    view = await backend.get(cid)
    assert view["team"] == "burgerzaken" and view["transfers"] == 1
    assert [c["id"] for c in view["callback_requests"]] == [cb["id"]]
    events = [e["event"] for e in view["history"]]
    assert events == ["contact.routed", "contact.transferred", "transfer.refused", "callback.requested"]


async def test_team_queue_receives_transferred_contact_with_notes(backend: Harness) -> None:
    cid = await backend.route("ommen", "phone", "Vraag over mijn aanslag")
    await backend.team_queue("ommen", "belastingen")
    status, _ = await backend.transfer(cid, "burgerzaken", "belastingen")
    assert status == 200
    msgs = await backend.team_queue("ommen", "burgerzaken")
    assert len(msgs) == 1
    item = json.loads(msgs[0].body)
    hop = item["contact"]["hops"][-1]
    assert (hop["kind"], hop["from_team"], hop["team"], hop["agent"]) == (
        "transferred",
        "belastingen",
        "burgerzaken",
        "agent-1",
    )
    assert hop["note"] == "Inwoner vraagt naar burgerzaken"
    assert item["routing"]["transfers"] == 1


async def test_coevorden_third_transfer_is_refused_callback_due_in_two_workdays(backend: Harness) -> None:
    backend.clock.set(datetime(2026, 4, 24, 16, 0, tzinfo=AMS))  # Friday before Koningsdag
    cid = await backend.route("coevorden", "phone", "Algemene vraag")
    assert (await backend.get(cid))["team"] == "kcc"
    assert (await backend.transfer(cid, "burgerzaken", "kcc"))[0] == 200
    status, body = await backend.transfer(cid, "belastingen", "burgerzaken")
    assert status == 200 and body["transfers"] == 2
    status, body = await backend.transfer(cid, "sociaal_domein", "belastingen")
    assert status == 409 and body["transfer_limit"] == 2 and body["transfers"] == 2
    # Fri 24 Apr 16:00 is day 0; Mon 27 Apr is Koningsdag -> Tue 28, Wed 29 -> Wed 29 Apr 17:00.
    assert body["callback_request"]["due"] == "2026-04-29T17:00:00+02:00"
    assert (await backend.get(cid))["team"] == "belastingen"


async def test_written_contact_past_the_limit_goes_to_the_coordinating_team(backend: Harness) -> None:
    cid = await backend.route("ommen", "mail", "Vraag over mijn aanslag")
    assert (await backend.transfer(cid, "burgerzaken", "belastingen"))[0] == 200
    status, body = await backend.transfer(cid, "vergunningen", "burgerzaken")
    # A success: "sent to the coordinating team", which gives it to the right desk.
    assert status == 200, body
    assert (body["outcome"], body["team"], body["intended_team"]) == (
        "sent_to_coordinating_team",
        "kcc",
        "vergunningen",
    )
    assert "sent to the coordinating team 'kcc'" in body["message"]
    view = await backend.get(cid)
    assert view["team"] == "kcc" and view["transfers"] == 1
    assert view["callback_requests"] == []
    # The coordinating team makes one final assignment to the right desk...
    status, body = await backend.transfer(cid, "vergunningen", "kcc")
    assert status == 200 and (body["outcome"], body["team"]) == ("assigned", "vergunningen")
    view = await backend.get(cid)
    assert (view["team"], view["transfers"]) == ("vergunningen", 1)
    # ...after which it stays.
    status, body = await backend.transfer(cid, "burgerzaken", "vergunningen")
    assert status == 409 and body["team"] == "vergunningen" and "it stays with" in body["error"]


async def test_two_concurrent_transfers_exactly_one_wins(backend: Harness) -> None:
    backend.clock.set(datetime(2026, 4, 24, 10, 0, tzinfo=AMS))
    cid = await backend.route("coevorden", "phone", "Algemene vraag")
    results = await asyncio.gather(
        backend.transfer(cid, "burgerzaken", "kcc"),
        backend.transfer(cid, "belastingen", "kcc"),
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 409], results
    view = await backend.get(cid)
    assert view["transfers"] == 1
    winner = next(body for status, body in results if status == 200)
    assert view["team"] == winner["team"]


async def test_transfer_preconditions_and_validation(backend: Harness) -> None:
    cid = await backend.route("ommen", "phone", "Vraag over mijn aanslag")
    status, body = await backend.transfer(cid, "burgerzaken", None)
    assert status == 428 and "from_team" in body["error"]
    version = (await backend.get(cid))["version"]
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/transfer",
        json={"to_team": "burgerzaken"},
        headers={**ALL_KEY, "If-Match": '"999"'},
    )
    assert resp.status == 412
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/transfer",
        json={"to_team": "burgerzaken"},
        headers={**ALL_KEY, "If-Match": f'"{version}"'},
    )
    assert resp.status == 200
    status, body = await backend.transfer(cid, "nergens", "burgerzaken")
    assert status == 422 and body["fields"][0]["field"] == "to_team"
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/transfer",
        json={"to_team": "kcc", "from_team": "burgerzaken"},
        headers={"X-API-Key": "secret-key"},
    )
    assert resp.status == 422 and (await resp.json())["fields"][0]["field"] == "agent"
    # Another tenant's key: the contact does not exist for it.
    other = await backend.route("coevorden", "phone", "Algemene vraag")
    status, _ = await backend.transfer(other, "burgerzaken", "kcc", headers=OMMEN_KEY)
    assert status == 404


async def test_callback_attempts_and_items_list(backend: Harness) -> None:
    cid = await backend.route("ommen", "phone", "Vraag over mijn aanslag")
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/callback-requests",
        headers=ALL_KEY,
        json={"reason": "Collega niet bereikbaar", "preferred_time": "na 14:00"},
    )
    assert resp.status == 201
    cb = await resp.json()
    assert cb["team"] == "belastingen" and cb["due"] == "2026-05-19T17:00:00+02:00"

    items = await (
        await backend.client.get("/v1/tenants/ommen/teams/belastingen/items", headers=ALL_KEY)
    ).json()
    kinds = [(i["kind"], i["id"]) for i in items["items"]]
    # The callback (due Tue 19 May) comes before the phone contact, which has no respond norm.
    assert kinds[0] == ("callback_request", cb["id"])
    assert ("contact", cid) in kinds
    # Wed 13 May 10:00 -> Tue 19 May 17:00: 7h left today, 3 working days (Fri, Mon, Tue) of 8.5h.
    assert items["items"][0]["working_time_left_seconds"] == (7 * 3600) + 3 * int(8.5 * 3600)

    for outcome, closed in (("no_answer", False), ("wrong_number", False), ("reached", True)):
        resp = await backend.client.post(
            f"/v1/callback-requests/{cb['id']}/attempts",
            headers=ALL_KEY,
            json={"outcome": outcome, "note": "poging"},
        )
        assert resp.status == 200
        assert ((await resp.json())["status"] == "closed") is closed
    resp = await backend.client.post(
        f"/v1/callback-requests/{cb['id']}/attempts", headers=ALL_KEY, json={"outcome": "reached"}
    )
    assert resp.status == 409
    items = await (
        await backend.client.get("/v1/tenants/ommen/teams/belastingen/items", headers=ALL_KEY)
    ).json()
    assert cb["id"] not in [i["id"] for i in items["items"]]
    resp = await backend.client.post(
        f"/v1/callback-requests/{cb['id']}/attempts", headers=ALL_KEY, json={"outcome": "maybe"}
    )
    assert resp.status == 422 and (await resp.json())["fields"][0]["field"] == "outcome"
    assert (
        await backend.client.post(
            "/v1/callback-requests/nope-cb1/attempts", headers=ALL_KEY, json={"outcome": "reached"}
        )
    ).status == 404
    assert (
        await backend.client.get(
            "/v1/tenants/ommen/teams/belastingen/items", headers={"X-API-Key": "ommen-key"}
        )
    ).status == 200
    assert (
        await backend.client.get("/v1/tenants/coevorden/teams/kcc/items", headers={"X-API-Key": "ommen-key"})
    ).status == 404


async def test_breached_callback_escalates_exactly_once_with_two_schedulers(backend: Harness) -> None:
    cid = await backend.route("ommen", "phone", "Vraag over mijn aanslag")
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/callback-requests", headers=ALL_KEY, json={"reason": "terugbellen"}
    )
    cb = await resp.json()
    await backend.event_names()  # forget the events so far
    rt = backend.rt
    second = Scheduler(
        rt.casework.store.r, Keys(rt.settings.namespace), rt.names, rt.casework, rt.outbound, backend.clock
    )
    assert rt.scheduler is not None
    # Before the warning point nothing fires.
    assert await asyncio.gather(rt.scheduler.tick(), second.tick()) == [0, 0]
    backend.clock.set(datetime(2026, 5, 19, 16, 0, tzinfo=AMS))  # past the 80 % warning point, before 17:00
    fired = await asyncio.gather(rt.scheduler.tick(), second.tick())
    assert sum(fired) == 1
    backend.clock.set(datetime(2026, 5, 19, 17, 1, tzinfo=AMS))
    fired = await asyncio.gather(rt.scheduler.tick(), second.tick(), rt.scheduler.tick())
    assert sum(fired) == 1
    names = await backend.event_names()
    assert names.count("deadline.warning") == 1 and names.count("deadline.breached") == 1
    esc = await backend.escalations("ommen")
    assert len(esc) == 1
    body = json.loads(esc[0].body)
    assert (body["callback_id"], body["kind"], body["team"]) == (cb["id"], "callback", "belastingen")
    assert body["due"] == "2026-05-19T15:00:00+00:00"
    # Nothing more fires later.
    backend.clock.advance(timedelta(days=30))
    assert await rt.scheduler.tick() == 0
    history = [e["event"] for e in (await backend.get(cid))["history"]]
    assert history.count("deadline.breached") == 1


async def test_timer_survives_a_scheduler_restart_and_a_crash_mid_fire(backend: Harness) -> None:
    cid = await backend.route("ommen", "phone", "Vraag over mijn aanslag")
    await backend.client.post(
        f"/v1/contacts/{cid}/callback-requests", headers=ALL_KEY, json={"reason": "terugbellen"}
    )
    rt = backend.rt
    keys = Keys(rt.settings.namespace)
    # The first scheduler is gone before the deadline; a new one (a restart) fires it.
    assert rt.scheduler is not None
    rt.scheduler.stop()
    backend.clock.set(datetime(2026, 5, 20, 9, 0, tzinfo=AMS))
    # A scheduler claims both timers and dies before publishing: its claim is never completed. The
    # lease is long (60 s by the store's clock), so that "not lapsed yet" holds however long this
    # machine stalls between the claim and the next tick.
    r = rt.casework.store.r
    claim = r.register_script(CLAIM)
    claimed = await claim(
        keys=[keys.timers(), keys.timer_claims(), f"{keys.timer_claims()}:due"],
        args=[int(backend.clock.now().timestamp() * 1000), 60_000, 10],
    )
    assert len(claimed) == 2
    restarted = Scheduler(r, keys, rt.names, rt.casework, rt.outbound, backend.clock)
    assert await restarted.tick() == 0  # the dead scheduler's claim has not lapsed yet
    # Its lease runs out (as 60 s later): the claims are due back by the store's clock, no waiting.
    await r.zadd(keys.timer_claims(), {member: 0 for member in claimed})
    assert await restarted.tick() == 2  # warning and breach, fired by the new scheduler
    assert await restarted.tick() == 0  # and only once
    assert len(await backend.escalations("ommen")) == 1


async def test_closing_removes_the_timers_of_its_open_deadlines_itself(backend: Harness) -> None:
    """Pins router/core/casework.py `close`: `change.timers_remove += timer_members(state.cid, d["kind"])`
    for each of the contact's deadlines. Closed with its deadlines still open, the contact's timers are
    gone from Redis at once. The scheduler would skip them as moot once due (the contact is closed), so
    only the timers themselves show a close that forgot them."""
    cid = await backend.route("ommen", "mail", "Losse stoeptegel voor de deur")
    r, timers = backend.rt.casework.store.r, Keys(backend.rt.settings.namespace).timers()

    async def of_contact() -> list[str]:
        members = [m.decode() if isinstance(m, bytes) else m for m in await r.zrange(timers, 0, -1)]
        return [m for m in members if m.startswith(cid)]

    assert await of_contact()  # the control: routed, the contact has its deadlines' timers
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/close", headers=ALL_KEY, json={"resolution": "Opgelost"}
    )
    assert resp.status == 200
    assert await of_contact() == []


async def test_closing_drops_timers_and_open_callbacks(backend: Harness) -> None:
    cid = await backend.route("ommen", "mail", "Losse stoeptegel voor de deur")
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/callback-requests",
        headers=ALL_KEY,
        json={"reason": "even bellen", "phone": "06 12345678"},
    )
    assert resp.status == 201
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/responses", headers=ALL_KEY, json={"kind": "respond", "note": "beantwoord"}
    )
    assert resp.status == 200 and (await resp.json())["on_time"] is True
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/close", headers=ALL_KEY, json={"resolution": "Opgelost"}
    )
    assert resp.status == 200
    view = await backend.get(cid)
    assert view["status"] == "closed" and view["callback_requests"][0]["status"] == "closed"
    assert (
        await backend.client.post(f"/v1/contacts/{cid}/close", headers=ALL_KEY, json={"resolution": "x"})
    ).status == 409
    backend.clock.advance(timedelta(days=60))
    assert backend.rt.scheduler is not None
    assert await backend.rt.scheduler.tick() == 0
    names = await backend.event_names()
    assert "deadline.breached" not in names and "contact.closed" in names
    items = await (
        await backend.client.get("/v1/tenants/ommen/teams/openbare_ruimte/items", headers=ALL_KEY)
    ).json()
    assert cid not in [i["id"] for i in items["items"]]


async def test_outbox_is_relayed_when_the_broker_was_away(
    backend: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = await backend.route("ommen", "phone", "Vraag over mijn aanslag")
    await backend.team_queue("ommen", "burgerzaken")

    async def broker_away(msg: Any) -> None:
        raise ConnectionError("broker away")

    real_publish = backend.rt.outbound.publish
    monkeypatch.setattr(backend.rt.outbound, "publish", broker_away)
    status, _ = await backend.transfer(cid, "burgerzaken", "belastingen")
    assert status == 200  # the state change is committed; its messages wait in the outbox
    assert await backend.team_queue("ommen", "burgerzaken") == []
    monkeypatch.setattr(backend.rt.outbound, "publish", real_publish)
    assert backend.rt.scheduler is not None
    backend.rt.scheduler.relay_after_ms = 0
    assert await backend.rt.scheduler.relay_outbox() == 2  # team item and event
    assert len(await backend.team_queue("ommen", "burgerzaken")) == 1
    assert await backend.rt.scheduler.relay_outbox() == 0
