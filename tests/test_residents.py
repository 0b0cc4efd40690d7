"""One resident across channels (issue 19): a contact of the same resident on the same category as an
open contact of theirs joins it as a follow-up; the contact page and GET /v1/contacts/{id}/related show
the resident's other contacts.

Each behaviour test runs on the embedded backend and on the real RabbitMQ and Redis (`backend`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from router.core.clock import ManualClock
from router.core.contact import Contact
from router.settings import Settings
from tests.backends import BackendChoice, open_harness
from tests.conftest import ROOT, RULES
from tests.harness import ALL_KEY, OMMEN_KEY, Harness, wait_committed

EMAIL = "Jan.Jansen@Inwoner.example"
PHONE = "+31687654321"


def contact(
    h: Harness,
    tenant: str,
    channel: str,
    body: str,
    *,
    subject: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    handle: str | None = None,
    metadata: dict[str, str] | None = None,
) -> Contact:
    sender = {k: v for k, v in (("email", email), ("phone", phone), ("handle", handle)) if v}
    return Contact.model_validate(
        {
            "tenant": tenant,
            "channel": channel,
            "received_at": h.clock.now().isoformat(),
            "source": {"adapter": "test", "native_id": uuid.uuid4().hex},
            "subject": subject,
            "body": body,
            "sender": {"name": "Jan Jansen", **sender},
            "metadata": metadata or {},
        }
    )


async def send(h: Harness, c: Contact) -> str:
    await h.rt.publisher.publish(c)
    await wait_committed(h.rt, c.cid)
    return c.cid


def mail(h: Harness, body: str, tenant: str = "ommen", **kw: Any) -> Contact:
    """A mail as the mail adapter writes it: the sender's address (as they typed it)."""
    return contact(h, tenant, "mail", body, subject="Vraag", email=EMAIL, **kw)


def phone_note(h: Harness, body: str, outcome: str = "answered", **meta: str) -> Contact:
    """A KCC phone note as the phone adapter writes it: the caller's number and the address they gave
    on the line, the outcome, the agent."""
    metadata = {"phone.outcome": outcome, "phone.agent": "kcc-1", **meta}
    return contact(h, "ommen", "phone", body, email=EMAIL.lower(), phone=PHONE, metadata=metadata)


async def open_items(h: Harness, team: str) -> list[str]:
    resp = await h.client.get(f"/v1/tenants/ommen/teams/{team}/items", headers=ALL_KEY)
    assert resp.status == 200
    return [i["id"] for i in (await resp.json())["items"]]


async def related(h: Harness, cid: str, headers: dict[str, str] = ALL_KEY) -> list[dict[str, Any]]:
    resp = await h.client.get(f"/v1/contacts/{cid}/related", headers=headers)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert body["id"] == cid and body["months"] == 6
    out: list[dict[str, Any]] = body["related"]
    return out


async def test_mail_then_phone_on_the_same_topic_is_one_open_item_at_the_first_team(
    backend: Harness,
) -> None:
    """The issue's "done when": a resident mails, then phones about the same topic: one open item, at
    the first team, the phone note attached, and the agent sees both; a different topic opens a second
    item."""
    first = await send(backend, mail(backend, "Mijn paspoort is verlopen. Hoe vraag ik een nieuw aan?"))
    before = await backend.get(first)
    assert (before["team"], before["category"], before["status"]) == ("burgerzaken", "reisdocument", "routed")
    assert len(await backend.team_queue("ommen", "burgerzaken")) == 1

    # The KCC answered part of it on the line and logs the note.
    note = await send(backend, phone_note(backend, "Belt over de aanvraag van zijn paspoort"))
    view = await backend.get(note)
    assert (view["status"], view["team"], view["rule"], view["category"]) == (
        "merged",
        "burgerzaken",
        "same-resident",
        "reisdocument",
    )
    # One open item, at the first team, with its own deadlines unchanged.
    assert await open_items(backend, "burgerzaken") == [first]
    assert await open_items(backend, "kcc") == []
    after = await backend.get(first)
    assert after["status"] == "routed" and after["deadlines"] == before["deadlines"]
    # The note is in the open contact's history, with what the KCC already did on the line.
    [reply] = [e for e in after["history"] if e["event"] == "contact.reply"]
    assert (reply["reply_id"], reply["channel"], reply["rule"], reply["phone_outcome"]) == (
        note,
        "phone",
        "same-resident",
        "answered",
    )
    # The team is notified: a follow-up item on its queue, naming the contact it belongs to.
    [item] = await backend.team_queue("ommen", "burgerzaken")
    routing = json.loads(item.body)["routing"]
    assert (routing["follow_up_of"], routing["rule"], routing["category"]) == (
        first,
        "same-resident",
        "reisdocument",
    )
    assert "contact.reply" in await backend.event_names()
    # The agent sees both: each lists the other.
    assert [r["id"] for r in await related(backend, first)] == [note]
    [seen] = await related(backend, note)
    assert (seen["id"], seen["channel"], seen["status"], seen["team"]) == (
        first,
        "mail",
        "routed",
        "burgerzaken",
    )
    assert seen["reference"] == before["contact"]["reference"]

    # A different topic, the same resident: a second item, at its own team.
    backend.clock.advance(timedelta(minutes=5))
    other = await send(backend, phone_note(backend, "Mijn container is niet geleegd", outcome="routed"))
    second = await backend.get(other)
    assert (second["status"], second["team"], second["category"]) == ("routed", "openbare_ruimte", "afval")
    assert await open_items(backend, "openbare_ruimte") == [other]
    assert await open_items(backend, "burgerzaken") == [first]
    assert [r["id"] for r in await related(backend, first)] == [other, note]


async def test_the_link_is_explained_with_ids_and_the_category_only(backend: Harness) -> None:
    first = await send(backend, mail(backend, "Vraag over mijn paspoort"))
    note = await send(backend, phone_note(backend, "Nogmaals over het paspoort", outcome="routed"))
    view = await backend.get(note)
    routed = view["history"][0]
    assert (routed["event"], routed["rule"], routed["rule_at"]) == (
        "contact.routed",
        "same-resident",
        "(resident)",
    )
    assert f"same resident as open contact {first}" in routed["reasons"]
    assert "same category: reisdocument" in routed["reasons"]
    text = json.dumps(routed).lower()
    assert "jansen" not in text and "87654321" not in text and "inwoner.example" not in text
    assert view["history"][1] == {**view["history"][1], "event": "contact.merged", "into": first}


async def test_another_category_closed_or_another_tenant_opens_a_new_item(backend: Harness) -> None:
    # Another tenant, the same address: never linked, never listed.
    elsewhere = await send(backend, mail(backend, "Vraag over mijn paspoort", tenant="coevorden"))
    assert (await backend.get(elsewhere))["status"] == "routed"
    first = await send(backend, mail(backend, "Vraag over mijn paspoort"))
    assert (await backend.get(first))["status"] == "routed"
    assert await related(backend, first) == []
    assert [r["id"] for r in await related(backend, elsewhere)] == []
    # An Ommen key does not see Coevorden's contact, related or not.
    resp = await backend.client.get(f"/v1/contacts/{elsewhere}/related", headers=OMMEN_KEY)
    assert resp.status == 404

    # The earlier contact closed: a new item.
    resp = await backend.client.post(
        f"/v1/contacts/{first}/close", headers=ALL_KEY, json={"resolution": "klaar"}
    )
    assert resp.status == 200
    again = await send(backend, mail(backend, "Nog een vraag over mijn paspoort"))
    assert (await backend.get(again))["status"] == "routed"
    assert await open_items(backend, "burgerzaken") == [again]
    # Listed all the same, with its state.
    assert [(r["id"], r["status"]) for r in await related(backend, again)] == [(first, "closed")]


async def test_a_phone_note_asking_for_a_callback_keeps_its_own_item(backend: Harness) -> None:
    """A callback request has a deadline of its own and a team that must call: joining would lose it."""
    first = await send(backend, mail(backend, "Vraag over mijn paspoort"))
    note = await send(
        backend,
        phone_note(backend, "Wil teruggebeld worden over paspoort", outcome="colleague_unavailable"),
    )
    view = await backend.get(note)
    assert view["status"] == "routed" and view["rule"] != "same-resident"
    assert len(view["callback_requests"]) == 1
    assert [r["id"] for r in await related(backend, first)] == [note]


async def test_an_open_contact_older_than_the_window_is_not_joined(backend: Harness) -> None:
    first = await send(backend, mail(backend, "Vraag over mijn paspoort"))
    backend.clock.advance(timedelta(days=200))  # more than the default six months
    later = await send(backend, mail(backend, "Weer een vraag over mijn paspoort"))
    assert (await backend.get(later))["status"] == "routed"
    assert await related(backend, later) == []  # and out of the list's window too
    assert first != later


async def test_social_handles_link_too(backend: Harness) -> None:
    handle = "whatsapp:31687654321"
    first = await send(backend, contact(backend, "ommen", "social", "Mijn paspoort is kwijt", handle=handle))
    again = await send(backend, contact(backend, "ommen", "social", "Paspoort: nog een vraag", handle=handle))
    assert (await backend.get(again))["status"] == "merged"
    other_platform = contact(backend, "ommen", "social", "Paspoort kwijt", handle="messenger:31687654321")
    assert (await backend.get(await send(backend, other_platform)))["status"] == "routed"
    assert [r["id"] for r in await related(backend, first)] == [again]


def rules_without_linking(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("ommen.yaml", "coevorden.yaml"):
        (rules / name).write_text((RULES / name).read_text())
    with (rules / "ommen.yaml").open("a") as f:
        f.write("\nresidents:\n  link_open_same_category: false\n  related_months: 3\n")
    return rules


@pytest.fixture
async def unlinked(
    backend_kind: BackendChoice,
    settings: Settings,
    clock: ManualClock,
    tmp_path: Path,
) -> AsyncIterator[Harness]:
    kind, amqp, _ = backend_kind
    settings = backend_kind.settings(settings)
    off = settings.model_copy(update={"rules_dir": rules_without_linking(tmp_path)})
    async with open_harness(kind, off, clock, amqp) as harness:
        yield harness


async def test_a_tenant_can_turn_the_link_off(unlinked: Harness) -> None:
    first = await send(unlinked, mail(unlinked, "Vraag over mijn paspoort"))
    note = await send(unlinked, phone_note(unlinked, "Belt over paspoort", outcome="routed"))
    assert (await unlinked.get(note))["status"] == "routed"
    assert sorted(await open_items(unlinked, "burgerzaken")) == sorted([first, note])
    # The list still shows the resident's other contacts, over the tenant's own window.
    resp = await unlinked.client.get(f"/v1/contacts/{first}/related", headers=ALL_KEY)
    body = await resp.json()
    assert body["months"] == 3 and [r["id"] for r in body["related"]] == [note]


def test_the_linking_bench_runs_and_cleans_up(servers: None) -> None:
    """`python -m bench.resident_linking` end to end at a small size: its figures are printed (no timing
    asserted: they are for people, docs/performance.md) and its keys are gone afterwards."""
    args = ["--seeded", "400", "--n", "100", "--batch", "50", "--repeats", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.resident_linking", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "linking off:" in out and "linking on:" in out and "added by linking:" in out
    joined = re.search(r"same category: (\d+) of 100 contacts joined", out)
    assert joined is not None and int(joined.group(1)) >= 50  # the seeded residents' half
    removed = re.search(r"removed ([\d,]+) keys", out)
    assert removed is not None and int(removed.group(1).replace(",", "")) > 400
