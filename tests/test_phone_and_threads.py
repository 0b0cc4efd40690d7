"""Phone notes act on their outcome by themselves; replies join the contact they answer.

Each test runs on the embedded backend and on the real RabbitMQ and Redis (`backend`, or `twins`: the
same with a rules dir of two tenants whose names share their first three letters)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from router.core.clock import ManualClock
from router.core.contact import Contact, reference_for
from router.core.routing import thread_hints
from router.redis.keys import Keys
from router.settings import Settings
from tests.backends import BackendChoice, open_harness
from tests.conftest import RULES
from tests.harness import ALL_KEY, PHONE, Harness

# Shares "OMM" with ommen: its reference numbers look like Ommen's (reference_for: tenant[:3]).
TWIN = "ommendorp"


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
        phone=PHONE,
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
    # The Message-IDs (the sender's address, often) are in no key name, only their keyed hashes.
    client = backend.rt.store.r  # type: ignore[attr-defined]
    names = [k.decode() async for k in client.scan_iter(match=f"{backend.rt.settings.namespace}*")]
    assert any(n.startswith(f"{backend.rt.settings.namespace}thread:ommen:") for n in names)
    assert not [n for n in names if "inwoner.example" in n or "ommen.example" in n]


def test_thread_keys_are_keyed_hashes_of_the_message_id() -> None:
    mid = "<CAF=jan.jansen@inwoner.example>"
    key = Keys("ns:").thread("ommen", mid)
    assert key.startswith("ns:thread:ommen:") and "jansen" not in key
    assert key == Keys("ns:").thread("ommen", mid)  # stable: a reply finds it again
    assert Keys("ns:", b"another deployment").thread("ommen", mid) != key
    assert Keys("ns:").thread("coevorden", mid) != key.replace(":ommen:", ":coevorden:")


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


async def test_reference_of_another_tenant_is_not_even_looked_up(backend: Harness) -> None:
    """Pins router/core/routing.py `thread_hints`: `and ref.startswith(contact.tenant[:3].upper())`.
    An Ommen mail quoting Coevorden's reference has no thread hints, so the store is never asked for
    that reference. Without the prefix filter the reference is looked up (the store's tenant check in
    `find_threads` still refuses the join, so only the lookup shows the filter;
    test_reference_of_a_tenant_with_the_same_prefix_does_not_join pins that check)."""
    asked: list[tuple[str, list[str], list[str]]] = []
    find_threads = backend.rt.store.find_threads

    async def recording(queries: list[tuple[str, list[str], list[str]]]) -> list[dict[str, str] | None]:
        asked.extend(queries)
        return await find_threads(queries)

    backend.rt.store.find_threads = recording  # type: ignore[method-assign]
    first = await send(backend, "coevorden", "mail", "Paspoort verlopen")
    reference = (await backend.get(first))["contact"]["reference"]
    assert reference.startswith("COE-")
    other = await send(backend, "ommen", "mail", "Vraag", subject=f"Over {reference}")
    assert (await backend.get(other))["status"] == "routed"
    assert [q for q in asked if reference in q[1]] == []
    # The control: a reference of Ommen's own is looked up, and joins.
    own = (await backend.get(other))["contact"]["reference"]
    reply = await send(backend, "ommen", "mail", "Aanvulling", subject=f"Re: {own}")
    assert ("ommen", [own], []) in asked
    assert (await backend.get(reply))["status"] == "merged"


def test_thread_hints_keep_only_references_with_the_tenants_prefix() -> None:
    """Pins router/core/routing.py `thread_hints`: `and ref.startswith(contact.tenant[:3].upper())`:
    a reference of another municipality in the subject is no thread hint; one of the tenant's own is."""
    coevorden_ref = reference_for("coevorden", "0ab98c26-879b-5bcd-aade-a86b86e22397")
    ommen_ref = reference_for("ommen", "0ab98c26-879b-5bcd-aade-a86b86e22397")

    def mail(subject: str) -> Contact:
        return Contact.model_validate(
            {
                "tenant": "ommen",
                "channel": "mail",
                "received_at": "2026-05-13T10:00:00+02:00",
                "source": {"adapter": "test", "native_id": subject},
                "subject": subject,
                "body": "Vraag",
            }
        )

    assert thread_hints(mail(f"Re: {coevorden_ref}")) == ([], [])
    assert thread_hints(mail(f"Re: {ommen_ref.lower()}")) == ([ommen_ref], [])


def twin_rules(tmp_path: Path) -> Path:
    """rules/ommen.yaml twice: as ommen and as ommendorp (same teams, same prefix "OMM")."""
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (RULES / "ommen.yaml").read_text()
    (rules / "ommen.yaml").write_text(text)
    twin = text.replace("\ntenant: ommen\n", f"\ntenant: {TWIN}\n", 1)
    assert twin != text
    (rules / f"{TWIN}.yaml").write_text(twin.replace("name: Gemeente Ommen", "name: Gemeente Ommendorp"))
    return rules


@pytest.fixture
async def twins(
    backend_kind: BackendChoice,
    settings: Settings,
    clock: ManualClock,
    tmp_path: Path,
) -> AsyncIterator[Harness]:
    """`backend` with tenants ommen and ommendorp. The namespace clean-up (tests/conftest.py) knows
    the tenants of rules/ only: the twin's queues are deleted here."""
    kind, amqp, _ = backend_kind
    settings = backend_kind.settings(settings)
    twin_settings = settings.model_copy(update={"rules_dir": twin_rules(tmp_path)})
    async with open_harness(kind, twin_settings, clock, amqp) as harness:
        yield harness
    if amqp is not None:
        channel = await amqp.channel()
        teams = harness.rt.tenants[TWIN].loaded.rules.team_ids()
        for queue in [harness.names.team_queue(TWIN, t) for t in teams] + [
            harness.names.escalation_queue(TWIN)
        ]:
            await channel.queue_delete(queue)
        await channel.close()


async def test_reference_of_a_tenant_with_the_same_prefix_does_not_join(twins: Harness) -> None:
    """Pins router/redis/store.py `RedisStore.find_threads`:
    `out.append(info if info["tenant"] == tenant and info["committed"] == "1" else None)` (the
    `info["tenant"] == tenant` part). Ommen's reference OMM-... quoted in a mail to Ommendorp passes the
    prefix filter of `thread_hints` (both "OMM"), and reference numbers are one key space for all
    tenants: only the store's tenant check keeps the reply from joining Ommen's contact. Without it the
    Ommendorp mail is merged into Ommen's contact and lands in Ommen's team queue."""
    first = await send(twins, "ommen", "mail", "Mijn paspoort is verlopen", subject="Paspoort")
    await twins.team_queue("ommen", "burgerzaken")
    reference = (await twins.get(first))["contact"]["reference"]
    assert reference.startswith("OMM-")
    other = await send(twins, TWIN, "mail", "Ik heb een vraag over afval", subject=f"Re: {reference}")
    view = await twins.get(other)
    assert (view["status"], view["contact"]["tenant"], view["team"]) == ("routed", TWIN, "openbare_ruimte")
    assert [e["event"] for e in (await twins.get(first))["history"]] == ["contact.routed"]
    assert await twins.team_queue("ommen", "burgerzaken") == []
    [item] = await twins.team_queue(TWIN, "openbare_ruimte")
    assert json.loads(item.body)["routing"].get("follow_up_of") is None
    # The control: the same quote within Ommen joins.
    reply = await send(twins, "ommen", "mail", "Aanvulling", subject=f"Re: {reference}")
    assert (await twins.get(reply))["status"] == "merged"
