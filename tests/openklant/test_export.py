"""The export end to end (issue 20, "Done when", scaled to the default suite): a real router (RabbitMQ,
Redis) routes contacts of two tenants, agents ask for callbacks, transfer and call back through the
API; a real `contact-router export openklant` process exports to one contract stub per tenant, is
killed twice mid-run and started again, and both Open Klants answer 503 for a while. In the end every
contact is exactly one klantcontact, every callback request exactly one internetaak with the right
status, and nothing is lost or dead-lettered. The full size (1,000 / 200, two minutes of 503) is
`python -m bench.openklant`."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import aio_pika

from router.amqp.dlq import DeadLetterQueue
from router.core import topology
from router.core.contact import Contact
from router.core.topology import Names
from tests.conftest import AMQP_URL
from tests.harness import ALL_KEY, Harness, wait_routed
from tests.openklant.conftest import (
    TENANTS,
    ExporterProcess,
    delete_export_topology,
    exporter_env,
    queue_state,
    wait_for,
    wait_ready,
    write_rules,
)
from tests.openklant.stub import OpenKlantStub

CONTACTS = 300
CALLBACKS = 60
TRANSFERS = 10
CHANNELS = ("mail", "webform", "phone")
BODY = "Ik heb een vraag over mijn situatie, wilt u contact opnemen?"


def resident_contact(h: Harness, i: int) -> Contact:
    tenant = TENANTS[i % 2]
    return Contact.model_validate(
        {
            "tenant": tenant,
            "channel": CHANNELS[i % 3],
            "received_at": h.clock.now().isoformat(),
            "source": {"adapter": "test", "native_id": uuid.uuid4().hex},
            "subject": f"Vraag {i}",
            "body": BODY if i % 50 else BODY + " Meer uitleg." * 200,  # some longer than inhoud takes
            "confidential": i % 7 == 0,
            "sender": {
                "name": f"Inwoner Nummer{i}",
                "email": f"inwoner{i}@example.nl",
                "phone": f"+3161234{i:04d}",
            },
        }
    )


async def publish_all(h: Harness, contacts: list[Contact]) -> None:
    for start in range(0, len(contacts), 50):
        await asyncio.gather(*(h.rt.publisher.publish(c) for c in contacts[start : start + 50]))


def addresses_of(stub: OpenKlantStub, kc: str) -> list[tuple[str, str]]:
    """(soort, adres) of the digitale adressen the klantcontact's betrokkenen provided, sorted."""
    betrokkenen = {
        b["uuid"] for b in stub.objects["betrokkenen"].values() if b["hadKlantcontact"]["uuid"] == kc
    }
    return sorted(
        (d["soortDigitaalAdres"], d["adres"])
        for d in stub.objects["digitaleadressen"].values()
        if d["verstrektDoorBetrokkene"]["uuid"] in betrokkenen
    )


def exported(stubs: dict[str, OpenKlantStub]) -> int:
    return sum(len(s.objects["klantcontacten"]) for s in stubs.values())


async def test_two_tenants_export_exactly_once_through_two_kills_and_an_outage(
    h: Harness,
    stubs: dict[str, OpenKlantStub],
    exporter: ExporterProcess,
    amqp: aio_pika.abc.AbstractConnection,
    namespace: str,
) -> None:
    names = Names(namespace)
    exporter.start()
    await wait_ready(amqp, names, exporter)
    contacts = [resident_contact(h, i) for i in range(CONTACTS)]
    sending = asyncio.create_task(publish_all(h, contacts))

    # Killed mid-run: some contacts exported, most not.
    await wait_for(lambda: exported(stubs) >= 40, "the first klantcontacten", within=60, every=0.01)
    exporter.kill()
    assert exported(stubs) < CONTACTS, "killed after everything was exported: not mid-run"
    exporter.start()
    await sending
    await asyncio.gather(*(wait_routed(h.rt, c.cid, within=60) for c in contacts))

    # Both Open Klants down for a few seconds while agents work.
    for s in stubs.values():
        s.outage(4)
    asked: dict[str, tuple[Contact, str]] = {}
    for c in contacts[:CALLBACKS]:
        resp = await h.client.post(
            f"/v1/contacts/{c.cid}/callback-requests",
            headers=ALL_KEY,
            json={"reason": "Graag terugbellen over de vraag", "preferred_time": "na 14:00"},
        )
        assert resp.status == 201, await resp.text()
        asked[(await resp.json())["id"]] = (c, "kcc")
    # Transferred: half of them after their callback was asked (the internetaak stays with kcc).
    moved = [c.cid for c in contacts[CALLBACKS - TRANSFERS // 2 : CALLBACKS + TRANSFERS // 2]]
    for cid in moved:
        status, body = await h.transfer(cid, "burgerzaken", "kcc")
        assert status == 200, body
    exporter.kill()  # the second kill: while the outage lasts and callbacks are coming
    exporter.start()
    ids = list(asked)
    reached, resolved = ids[:20], ids[20:30]
    for cbid in ids[30:]:
        resp = await h.client.post(
            f"/v1/callback-requests/{cbid}/attempts", headers=ALL_KEY, json={"outcome": "no_answer"}
        )
        assert resp.status == 200, await resp.text()
    for cbid in reached:
        resp = await h.client.post(
            f"/v1/callback-requests/{cbid}/attempts", headers=ALL_KEY, json={"outcome": "reached"}
        )
        assert resp.status == 200, await resp.text()
    for cbid in resolved:
        resp = await h.client.post(
            f"/v1/callback-requests/{cbid}/close", headers=ALL_KEY, json={"reason": "resolved_otherwise"}
        )
        assert resp.status == 200, await resp.text()

    def done() -> bool:
        for c in contacts:
            found = stubs[c.tenant].klantcontacten_of(c.cid)
            if len(found) != 1:
                return False
            # A klantcontact is made before its digitale adressen: wait for those too.
            if len(addresses_of(stubs[c.tenant], found[0]["uuid"])) < 2:
                return False
        for cbid, (c, _) in asked.items():
            tasks = stubs[c.tenant].internetaken_tagged(cbid)
            want = "verwerkt" if cbid in reached or cbid in resolved else "te_verwerken"
            if (
                len(tasks) != 1
                or tasks[0]["status"] != want
                or ("Poging" not in tasks[0]["toelichting"] and want != "verwerkt")
            ):
                return False
        return all(
            assigned_team(stubs[t], cid) == "burgerzaken"
            for t, cid in ((tenant_of(contacts, m), m) for m in moved)
        )

    await wait_for(done, "every contact and callback exported with its status", within=90, every=0.25)
    await asyncio.sleep(1.0)  # nothing more arrives: no doubles from redeliveries
    assert done()
    assert exporter.starts == 3

    for c in contacts:
        stub = stubs[c.tenant]
        (kc,) = stub.klantcontacten_of(c.cid)
        assert (
            kc["kanaal"] == {"mail": "E-mail", "webform": "Contactformulier", "phone": "Telefoon"}[c.channel]
        )
        assert (kc["onderwerp"], kc["taal"], kc["vertrouwelijk"]) == (c.subject, "nld", c.confidential)
        assert kc["plaatsgevondenOp"] == c.received_at.isoformat()
        assert len(kc["inhoud"]) <= 1000 and kc["inhoud"].startswith(BODY)
        (betrokkene,) = [
            b for b in stub.objects["betrokkenen"].values() if b["hadKlantcontact"]["uuid"] == kc["uuid"]
        ]
        assert (betrokkene["rol"], betrokkene["initiator"]) == ("klant", True)
        adressen = sorted(
            (d["soortDigitaalAdres"], d["adres"])
            for d in stub.objects["digitaleadressen"].values()
            if d["verstrektDoorBetrokkene"]["uuid"] == betrokkene["uuid"]
        )
        assert adressen == [("email", c.sender.email), ("telefoonnummer", c.sender.phone)]  # type: ignore[union-attr]
        refs = {
            o["onderwerpobjectidentificator"]["objectId"]
            for o in stub.objects["onderwerpobjecten"].values()
            if o["klantcontact"]["uuid"] == kc["uuid"]
        }
        assert refs == {c.cid, c.reference}
    assert exported(stubs) == CONTACTS  # nothing else: no stray second klantcontact

    for cbid, (c, _) in asked.items():
        stub = stubs[c.tenant]
        (task,) = stub.internetaken_tagged(cbid)
        assert task["gevraagdeHandeling"] == "Terugbellen: Graag terugbellen over de vraag"
        assert task["aanleidinggevendKlantcontact"]["uuid"] == stub.klantcontacten_of(c.cid)[0]["uuid"]
        assert [actor_name(stub, a["uuid"]) for a in task["toegewezenAanActoren"]] == ["KCC"]
        if cbid in reached or cbid in resolved:
            assert task["afgehandeldOp"]
        else:
            assert task.get("afgehandeldOp") is None and "Poging 1" in task["toelichting"]
    assert sum(len(s.objects["internetaken"]) for s in stubs.values()) == CALLBACKS
    for tenant, stub in stubs.items():
        actors = [a["actoridentificator"]["objectId"] for a in stub.objects["actoren"].values()]
        assert sorted(actors) == sorted(set(actors)), f"{tenant}: an actor created twice"
        assert stub.statuses[503] > 0, "the outage was not seen"

    for tenant in TENANTS:
        assert (await queue_state(amqp, names.openklant_queue(tenant)))[0] == 0
    assert (await queue_state(amqp, names(topology.OPENKLANT_DEAD)))[0] == 0
    logs = exporter.logs()
    assert "openklant_retry" in logs
    for c in contacts[:50]:
        assert c.sender is not None
        for personal in (c.sender.email, c.sender.phone, c.sender.name, "Graag terugbellen"):
            assert personal not in logs


def tenant_of(contacts: list[Contact], cid: str) -> str:
    return next(c.tenant for c in contacts if c.cid == cid)


def actor_name(stub: OpenKlantStub, actor: str) -> str:
    return str(stub.objects["actoren"][actor]["naam"])


def assigned_team(stub: OpenKlantStub, cid: str) -> str | None:
    kcs = stub.klantcontacten_of(cid)
    if len(kcs) != 1:
        return None
    links = [
        a for a in stub.objects["actorklantcontacten"].values() if a["klantcontact"]["uuid"] == kcs[0]["uuid"]
    ]
    if len(links) != 1:
        return None
    ident = stub.objects["actoren"][links[0]["actor"]["uuid"]]["actoridentificator"]["objectId"]
    return str(ident).split(".", 1)[1]


async def test_a_refused_contact_is_dead_lettered_naming_the_field_and_replays_once_after_the_fix(
    h: Harness,
    stubs: dict[str, OpenKlantStub],
    exporter: ExporterProcess,
    amqp: aio_pika.abc.AbstractConnection,
    namespace: str,
) -> None:
    names = Names(namespace)
    stubs["ommen"].refuse("klantcontacten", "kanaal")  # as a stricter Open Klant would
    env = exporter_env(namespace, Path(exporter.env["RULES_DIR"]))
    missing = await run_cli(env, "export", "check")
    assert missing.returncode == 1 and "missing (the exporter never started)" in missing.stdout
    exporter.start()
    await wait_ready(amqp, names, exporter)
    check = await run_cli(env, "export", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{names.openklant_queue('ommen')}: 0 waiting, 1 consumer(s)" in check.stdout
    refused, fine = resident_contact(h, 0), resident_contact(h, 1)
    assert (refused.tenant, fine.tenant) == ("ommen", "coevorden")
    await publish_all(h, [refused, fine])
    await wait_for(
        lambda: stubs["coevorden"].klantcontacten_of(fine.cid), "the other tenant's contact exported"
    )
    await wait_for(
        lambda: _ready(amqp, names(topology.OPENKLANT_DEAD), 1), "a dead letter in openklant.dead", within=30
    )
    async with DeadLetterQueue(AMQP_URL, names, topology.OPENKLANT_DEAD) as dlq:
        (letter,) = await dlq.browse()
    assert letter.reason == "openklant 400 on POST /maak-klantcontact: klantcontact.kanaal (invalid_choice)"
    assert letter.routing_key == "ommen.contact.routed"
    assert json.loads(letter.body)["contact_id"] == refused.cid  # the event: ids, nothing personal
    assert refused.sender is not None and refused.sender.email not in letter.body.decode()
    assert stubs["ommen"].klantcontacten_of(refused.cid) == []

    stubs["ommen"].refused.clear()  # fixed on the Open Klant side
    listed = await run_cli(env, "dlq", "list", "--queue", "openklant.dead")
    assert listed.returncode == 0 and "klantcontact.kanaal (invalid_choice)" in listed.stdout
    assert "ommen.contact.routed" in listed.stdout
    replay = await run_cli(env, "dlq", "replay", "--queue", "openklant.dead", "--all")
    assert replay.returncode == 0, replay.stderr
    assert "1 dead letter(s) replayed" in replay.stdout
    await wait_for(lambda: stubs["ommen"].klantcontacten_of(refused.cid), "the replayed contact exported")
    await asyncio.sleep(0.5)
    assert len(stubs["ommen"].klantcontacten_of(refused.cid)) == 1
    assert (await queue_state(amqp, names(topology.OPENKLANT_DEAD)))[0] == 0


class Run:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


async def run_cli(env: dict[str, str], *args: str) -> Run:
    """`contact-router ARGS` as a process, without blocking the loop the stubs answer on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return Run(proc.returncode or 0, out.decode(), err.decode())


async def _ready(amqp: aio_pika.abc.AbstractConnection, queue: str, n: int) -> bool:
    return (await queue_state(amqp, queue))[0] == n


async def test_without_a_token_the_exporter_does_not_start_and_says_which_variable(
    tmp_path: Path, stubs: dict[str, OpenKlantStub], namespace: str
) -> None:
    env: dict[str, Any] = exporter_env(namespace, write_rules(tmp_path / "rules", stubs))
    del env["OPENKLANT_TOKEN_COEVORDEN"]
    run = await run_cli(env, "export", "openklant")
    assert run.returncode == 2
    assert "no Open Klant token: set OPENKLANT_TOKEN_COEVORDEN" in run.stderr
    assert stubs["ommen"].token not in run.stderr


async def test_a_tenant_without_open_klant_is_not_exported_and_key_names_hold_nothing_personal(
    h: Harness,
    stubs: dict[str, OpenKlantStub],
    tmp_path: Path,
    amqp: aio_pika.abc.AbstractConnection,
    namespace: str,
    redis_client: Any,
) -> None:
    names = Names(namespace)
    rules = write_rules(tmp_path / "only-ommen", {"ommen": stubs["ommen"]})
    env = exporter_env(namespace, rules)
    del env["OPENKLANT_TOKEN_COEVORDEN"]  # not needed: coevorden has no `openklant:` section
    proc = ExporterProcess(env, tmp_path / "exporter.log")
    proc.start()
    try:
        await wait_ready(amqp, names, proc, ("ommen",))
        ommen, coevorden = resident_contact(h, 0), resident_contact(h, 1)
        await publish_all(h, [ommen, coevorden])
        await wait_routed(h.rt, coevorden.cid)
        await wait_for(lambda: stubs["ommen"].klantcontacten_of(ommen.cid), "the ommen contact exported")
        await asyncio.sleep(0.5)
        assert stubs["coevorden"].requests == {}  # its events never reach the exporter
        assert (await queue_state(amqp, names.openklant_queue("ommen")))[0] == 0
        assert (await queue_state(amqp, names.openklant_queue("coevorden")))[0] == -1  # no such queue
        keys = [k.decode() async for k in redis_client.scan_iter(match=f"{namespace}openklant:*")]
        assert sorted(keys) == [
            f"{namespace}openklant:{{ommen}}:actors",
            f"{namespace}openklant:{{ommen}}:contact:{ommen.cid}",
        ]
        mapping = await redis_client.hgetall(f"{namespace}openklant:{{ommen}}:contact:{ommen.cid}")
        assert ommen.sender is not None
        text = repr(mapping)
        for personal in (ommen.sender.email, ommen.sender.phone, "Inwoner"):
            assert personal not in text
    finally:
        proc.stop()
        await delete_export_topology(amqp, names)


async def test_one_open_klant_down_holds_only_its_own_tenants_events_and_loses_none(
    h: Harness,
    stubs: dict[str, OpenKlantStub],
    exporter: ExporterProcess,
    amqp: aio_pika.abc.AbstractConnection,
    namespace: str,
) -> None:
    names = Names(namespace)
    stubs["ommen"].outage(120)
    exporter.start()
    await wait_ready(amqp, names, exporter)
    contacts = [resident_contact(h, i) for i in range(300)]  # 150 each: more than the prefetch
    await publish_all(h, contacts)
    theirs = [c for c in contacts if c.tenant == "coevorden"]
    await wait_for(
        lambda: all(stubs["coevorden"].klantcontacten_of(c.cid) for c in theirs),
        "coevorden exported while ommen's Open Klant is down",
        within=30,
    )
    assert stubs["ommen"].objects["klantcontacten"] == {} and stubs["ommen"].statuses[503] > 0
    assert exporter.stop() == 0  # a clean stop in the middle of the retries
    ready, _ = await queue_state(amqp, names.openklant_queue("ommen"))
    assert ready == 150  # every ommen event back in its queue: nothing lost
