"""The Open Klant mapping as plain functions (router.core.openklant): what a contact and a callback
request become, within the lengths and patterns Open Klant takes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from router.core.contact import Contact
from router.core.openklant import (
    PHONE_PATTERN,
    OpenKlantConfig,
    callback_toelichting,
    digital_addresses,
    internetaak_body,
    klantcontact_body,
    onderwerpobject_identifiers,
    openklant_phone,
    token_variable,
)
from router.core.rules import RulesError, load_file
from router.export.openklant.client import refusal_reason
from tests.conftest import RULES

CONFIG = OpenKlantConfig(base_url="https://openklant.example.nl/klantinteracties/api/v1/")


def contact(**fields: object) -> Contact:
    return Contact.model_validate(
        {
            "tenant": "ommen",
            "channel": "mail",
            "received_at": "2026-11-30T09:15:00+01:00",
            "source": {"adapter": "test", "native_id": "m-1"},
            "subject": "Vraag over mijn aanslag",
            "body": "Ik heb een vraag.",
            "sender": {"name": "Jan Jansen", "email": "jan@example.nl", "phone": "06 12 34 56 78"},
            **fields,
        }
    )


def test_a_klantcontact_carries_channel_subject_text_language_and_when_it_came() -> None:
    c = contact(confidential=True)
    body = klantcontact_body(c, CONFIG)
    assert body == {
        "kanaal": "E-mail",
        "onderwerp": "Vraag over mijn aanslag",
        "inhoud": "Ik heb een vraag.",
        "indicatieContactGelukt": True,
        "taal": "nld",
        "vertrouwelijk": True,
        "plaatsgevondenOp": "2026-11-30T09:15:00+01:00",
    }
    assert "nummer" not in body  # Open Klant's own number (digits): our reference does not fit there
    assert CONFIG.base_url.endswith("/api/v1")


def test_long_texts_are_cut_to_open_klants_lengths_in_characters_and_say_where_the_rest_is() -> None:
    c = contact(subject="é" * 400, body="ë" * 5000)
    body = klantcontact_body(c, CONFIG)
    assert len(body["onderwerp"]) == 200 and body["onderwerp"].endswith("…")
    assert len(body["inhoud"]) <= 1000
    assert body["inhoud"].endswith(f"De hele tekst staat in contact-router onder {c.reference}.]")


def test_kanaal_names_come_from_the_rules_and_default_per_channel() -> None:
    config = OpenKlantConfig(base_url="https://x.example/api", kanalen={"mail": "Mail KCC"})
    assert klantcontact_body(contact(), config)["kanaal"] == "Mail KCC"
    assert klantcontact_body(contact(channel="webform"), config)["kanaal"] == "Contactformulier"
    assert klantcontact_body(contact(channel="app"), config)["kanaal"] == "app"
    assert klantcontact_body(contact(subject=None), config)["onderwerp"] == f"Mail KCC {contact().reference}"


def test_the_onderwerpobjecten_carry_our_contact_id_and_reference() -> None:
    c = contact()
    ids = onderwerpobject_identifiers(c)
    assert [i["objectId"] for i in ids] == [c.cid, c.reference]
    assert {i["codeRegister"] for i in ids} == {"contact-router"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("06 12 34 56 78", "0612345678"),
        ("+31 6 1234-5678", "+31612345678"),
        ("0031612345678", "0031612345678"),
        ("0800-1234", None),
        ("0900 1234567", None),
        ("14 0529", None),
        ("bel me", None),
    ],
)
def test_phone_numbers_as_open_klant_takes_them(raw: str, expected: str | None) -> None:
    assert openklant_phone(raw) == expected
    if expected:
        assert PHONE_PATTERN.fullmatch(expected)


def test_digital_addresses_are_the_residents_email_and_phones_each_once_with_verstrekt_door_partij() -> None:
    addresses = digital_addresses(contact(), ["+31612345678", "0612345678", "14 0529"])
    assert [(a.kind, a.address) for a in addresses] == [
        ("email", "jan@example.nl"),
        ("telefoonnummer", "0612345678"),
        ("telefoonnummer", "+31612345678"),
    ]
    body = addresses[0].body("b-uuid")
    assert "verstrektDoorPartij" in body and body["verstrektDoorPartij"] is None
    assert len(body["omschrijving"]) <= 40


def callback(**fields: str) -> dict[str, str]:
    cid = contact().cid
    return {
        "id": f"{cid}-cb1",
        "contact_id": cid,
        "team": "belastingen",
        "reason": "Vraag over de WOZ-waarde",
        "status": "open",
        "due": "2026-12-03T17:00:00+01:00",
        "preferred_time": "na 14:00",
        **fields,
    }


def attempts(cbid: str, n: int) -> list[dict[str, object]]:
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).isoformat()
    return [
        {"event": "callback.attempted", "callback_id": cbid, "at": at, "outcome": "no_answer", "attempt": i}
        for i in range(1, n + 1)
    ]


def test_an_internetaak_names_the_callback_request_first_and_is_verwerkt_once_closed() -> None:
    cb = callback()
    body = internetaak_body(cb, attempts(cb["id"], 2), "kc-uuid", "actor-uuid")
    assert body["gevraagdeHandeling"] == "Terugbellen: Vraag over de WOZ-waarde"
    assert body["toelichting"].split("\n")[0] == f"Terugbelverzoek {cb['id']}"
    assert "Poging 2 (01-12-2026 11:00): geen gehoor." in body["toelichting"]
    assert body["toegewezenAanActoren"] == [{"uuid": "actor-uuid"}]
    assert "toegewezenAanActor" not in body  # never with the deprecated single field
    assert body["status"] == "te_verwerken"
    assert internetaak_body(callback(status="closed"), [], "kc", "a")["status"] == "verwerkt"


def test_a_toelichting_with_many_attempts_keeps_the_tag_and_the_newest_within_1000_characters() -> None:
    cb = callback(reason="x" * 900)
    text = callback_toelichting(cb, attempts(cb["id"], 200))
    assert len(text) <= 1000
    assert text.startswith(f"Terugbelverzoek {cb['id']}\n")
    long_reason = internetaak_body(callback(reason="y" * 500), [], "kc", "a")["gevraagdeHandeling"]
    assert len(long_reason) == 200


def test_the_token_comes_from_the_environment_by_tenant() -> None:
    assert token_variable("ommen") == "OPENKLANT_TOKEN_OMMEN"
    assert token_variable("de-wolden") == "OPENKLANT_TOKEN_DE_WOLDEN"


def test_rules_refuse_an_openklant_section_with_a_token_or_an_unknown_team(tmp_path: Path) -> None:
    base = (RULES / "ommen.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "ommen.yaml"
    bad.write_text(
        base + "\nopenklant:\n  base_url: https://ok.example/api\n  token: geheim\n", encoding="utf-8"
    )
    with pytest.raises(RulesError, match=r"openklant\.token"):
        load_file(bad)
    bad.write_text(
        base + "\nopenklant:\n  base_url: https://ok.example/api\n  actors: {nope: X}\n", encoding="utf-8"
    )
    with pytest.raises(RulesError, match=r"openklant\.actors names teams that do not exist: nope"):
        load_file(bad)
    bad.write_text(
        base + "\nopenklant:\n  base_url: https://ok.example/api\n  actors: {kcc: KCC}\n", encoding="utf-8"
    )
    rules = load_file(bad).rules
    assert rules.openklant is not None and rules.openklant.actors == {"kcc": "KCC"}


def test_a_refusal_names_fields_and_codes_never_the_texts_that_quote_the_value() -> None:
    body = (
        b'{"invalidParams": [{"name": "klantcontact.kanaal", "code": "invalid_choice",'
        b' "reason": "\\"jan@example.nl\\" is een ongeldige keuze."}]}'
    )
    reason = refusal_reason("POST", "/maak-klantcontact", 400, body)
    assert reason == "openklant 400 on POST /maak-klantcontact: klantcontact.kanaal (invalid_choice)"
    path = "/internetaken/0b6f4b9e-2a51-4c38-9a7e-7d1c3b1f2e11"
    assert refusal_reason("PATCH", path, 404, b"{}") == "openklant 404 on PATCH /internetaken/{uuid}"
