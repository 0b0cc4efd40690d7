"""The contract stub answers like Open Klant 2.18 where the exporter relies on it (issue 20, "Facts"):
if it did not, the export tests would prove nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.openklant.stub import OpenKlantStub

TOKEN = {"Authorization": "Token stub-token"}


@pytest.fixture
async def stub() -> AsyncIterator[OpenKlantStub]:
    async with OpenKlantStub() as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, stub: OpenKlantStub, method: str, path: str, **kw: Any
) -> tuple[int, Any]:
    headers = kw.pop("headers", TOKEN)
    async with http.request(method, stub.url + path, headers=headers, **kw) as resp:
        return resp.status, (await resp.json() if resp.status != 204 else None)


KC = {"kanaal": "E-mail", "onderwerp": "Vraag", "taal": "nld", "vertrouwelijk": False}


async def test_only_the_token_scheme_authenticates(stub: OpenKlantStub, http: aiohttp.ClientSession) -> None:
    assert (await call(http, stub, "GET", "/klantcontacten", headers={}))[0] == 401
    bearer = {"Authorization": "Bearer stub-token"}
    status, doc = await call(http, stub, "GET", "/klantcontacten", headers=bearer)
    assert (status, doc["code"]) == (401, "not_authenticated")
    assert (await call(http, stub, "GET", "/klantcontacten"))[0] == 200


async def test_400s_name_camelcase_dotted_fields_and_unknown_query_parameters(
    stub: OpenKlantStub, http: aiohttp.ClientSession
) -> None:
    status, doc = await call(
        http, stub, "POST", "/maak-klantcontact", json={"klantcontact": {**KC, "inhoud": "x" * 1001}}
    )
    assert status == 400
    assert doc["invalidParams"] == [
        {
            "name": "klantcontact.inhoud",
            "code": "max_length",
            "reason": "Zorg ervoor dat dit veld niet meer dan 1000 karakters bevat.",
        }
    ]
    status, doc = await call(
        http, stub, "POST", "/klantcontacten", json={**KC, "nummer": "OMM-5KQ3-ZP7A", "extern": 1}
    )
    assert status == 400 and [p["name"] for p in doc["invalidParams"]] == ["nummer"]
    status, doc = await call(
        http, stub, "GET", "/klantcontacten", params={"plaatsgevondenOp__gte": "2026-01-01"}
    )
    assert status == 400 and doc["invalidParams"][0]["code"] == "unknown-parameters"
    status, _ = await call(http, stub, "POST", "/klantcontacten", json={**KC, "onbekend": "genegeerd"})
    assert status == 201  # unknown body fields are ignored


async def test_a_digitaal_adres_needs_verstrekt_door_partij_and_a_phone_number_open_klant_takes(
    stub: OpenKlantStub, http: aiohttp.ClientSession
) -> None:
    _, kc = await call(http, stub, "POST", "/klantcontacten", json=KC)
    _, b = await call(
        http,
        stub,
        "POST",
        "/betrokkenen",
        json={"hadKlantcontact": {"uuid": kc["uuid"]}, "rol": "klant", "initiator": True},
    )
    adres = {
        "verstrektDoorBetrokkene": {"uuid": b["uuid"]},
        "adres": "0612345678",
        "soortDigitaalAdres": "telefoonnummer",
    }
    status, doc = await call(http, stub, "POST", "/digitaleadressen", json=adres)
    assert status == 400 and doc["invalidParams"][0]["name"] == "verstrektDoorPartij"
    status, doc = await call(
        http,
        stub,
        "POST",
        "/digitaleadressen",
        json={**adres, "verstrektDoorPartij": None, "adres": "0800 1234"},
    )
    assert status == 400 and doc["invalidParams"][0]["name"] == "adres"
    assert (await call(http, stub, "POST", "/digitaleadressen", json={**adres, "verstrektDoorPartij": None}))[
        0
    ] == 201


async def test_an_internetaak_takes_one_kind_of_assignment_and_verwerkt_fills_afgehandeld_op(
    stub: OpenKlantStub, http: aiohttp.ClientSession
) -> None:
    _, kc = await call(http, stub, "POST", "/klantcontacten", json=KC)
    _, actor = await call(
        http, stub, "POST", "/actoren", json={"naam": "KCC", "soortActor": "organisatorische_eenheid"}
    )
    taak = {
        "aanleidinggevendKlantcontact": {"uuid": kc["uuid"]},
        "gevraagdeHandeling": "Terugbellen",
        "status": "te_verwerken",
        "toegewezenAanActoren": [{"uuid": actor["uuid"]}],
    }
    status, doc = await call(
        http, stub, "POST", "/internetaken", json={**taak, "toegewezenAanActor": {"uuid": actor["uuid"]}}
    )
    assert status == 400 and doc["invalidParams"][0]["name"] == "nonFieldErrors"
    status, made = await call(http, stub, "POST", "/internetaken", json=taak)
    assert status == 201 and not made.get("afgehandeldOp")
    status, done = await call(
        http, stub, "PATCH", f"/internetaken/{made['uuid']}", json={"status": "verwerkt"}
    )
    assert status == 200 and done["status"] == "verwerkt" and done["afgehandeldOp"]


async def test_several_onderwerpobject_filters_return_duplicates(
    stub: OpenKlantStub, http: aiohttp.ClientSession
) -> None:
    ident = {
        "objectId": "abc",
        "codeRegister": "contact-router",
        "codeObjecttype": "contact",
        "codeSoortObjectId": "contact-id",
    }
    status, made = await call(
        http,
        stub,
        "POST",
        "/maak-klantcontact",
        json={"klantcontact": KC, "onderwerpobject": {"onderwerpobjectidentificator": ident}},
    )
    assert status == 201 and made["klantcontact"]["gingOverOnderwerpobjecten"]
    one = {"onderwerpobject__onderwerpobjectidentificatorObjectId": "abc"}
    _, doc = await call(http, stub, "GET", "/klantcontacten", params=one)
    assert doc["count"] == 1
    two = {**one, "onderwerpobject__onderwerpobjectidentificatorCodeRegister": "contact-router"}
    _, doc = await call(http, stub, "GET", "/klantcontacten", params=two)
    assert doc["count"] == 2 and len({r["uuid"] for r in doc["results"]}) == 1


async def test_503_on_demand(stub: OpenKlantStub, http: aiohttp.ClientSession) -> None:
    stub.outage(5)
    assert (await call(http, stub, "GET", "/actoren"))[0] == 503
    stub.outage(0)
    assert (await call(http, stub, "GET", "/actoren"))[0] == 200


def test_every_field_the_exporter_sends_is_a_writable_field_of_the_document() -> None:
    """Open Klant ignores unknown body fields silently: a misspelt one would be lost without a word."""
    from router.core.contact import Contact
    from router.core.openklant import (
        OpenKlantConfig,
        actor_body,
        digital_addresses,
        internetaak_body,
        klantcontact_body,
        onderwerpobject_identifiers,
    )
    from tests.openklant.stub import SCHEMAS

    contact = Contact.model_validate(
        {
            "tenant": "ommen",
            "channel": "mail",
            "received_at": "2026-11-30T09:15:00+01:00",
            "source": {"adapter": "t", "native_id": "1"},
            "sender": {"email": "a@example.nl", "phone": "0612345678"},
        }
    )
    config = OpenKlantConfig(base_url="https://ok.example/api")
    sent = {
        "klantcontacten": klantcontact_body(contact, config),
        "actoren": actor_body("ommen", "kcc", "KCC"),
        "internetaken": internetaak_body({"id": "x-cb1", "team": "kcc"}, [], "kc", "a"),
        "digitaleadressen": digital_addresses(contact)[0].body("b"),
        "Onderwerpobjectidentificator": onderwerpobject_identifiers(contact)[0],
        "Actoridentificator": actor_body("ommen", "kcc", "KCC")["actoridentificator"],
        "OrganisatorischeEenheid": actor_body("ommen", "kcc", "KCC")["actorIdentificatie"],
    }
    for schema, body in sent.items():
        assert set(body) <= set(SCHEMAS[schema]), (schema, set(body) - set(SCHEMAS[schema]))
