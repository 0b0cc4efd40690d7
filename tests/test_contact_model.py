"""The Contact model and its generated JSON Schema."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from router.cli.schema import SCHEMA_PATH, render
from router.core.contact import Contact, contact_id, field_errors, find_reference

BASE = {
    "tenant": "ommen",
    "channel": "mail",
    "received_at": "2026-05-13T10:00:00+02:00",
    "source": {"adapter": "smtp", "native_id": "<abc@example.nl>"},
}


def test_schema_file_is_in_step_with_the_model() -> None:
    assert SCHEMA_PATH.exists(), "run `contact-router schema write`"
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), (
        "schemas/ is stale: run `contact-router schema write`"
    )
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["properties"]["schema_version"]["const"] == 1
    for field in (
        "id",
        "tenant",
        "channel",
        "received_at",
        "source",
        "sender",
        "subject",
        "body",
        "language",
        "attachments",
        "category",
        "confidential",
        "hops",
        "metadata",
        "reference",
    ):
        assert field in schema["properties"], field


def test_id_is_derived_from_the_idempotency_key_and_stable() -> None:
    a = Contact.model_validate(BASE)
    b = Contact.model_validate({**BASE, "subject": "anders"})
    assert a.id == b.id == contact_id("ommen", "smtp", "<abc@example.nl>")
    assert Contact.model_validate_json(a.model_dump_json()) == a  # round trip incl. computed reference
    assert find_reference(f"Re: uw vraag [{a.reference}]") == a.reference


def test_a_foreign_id_is_refused() -> None:
    with pytest.raises(ValidationError, match="id does not belong to this source"):
        Contact.model_validate({**BASE, "id": "00000000-0000-0000-0000-000000000000"})


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"received_at": "2026-05-13T10:00:00"}, "received_at"),
        ({"tenant": "Ommen!"}, "tenant"),
        ({"sender": {"email": "geen-adres"}}, "sender.email"),
        ({"source": {"adapter": "smtp"}}, "source.native_id"),
        ({"attachments": [{"filename": "a.pdf", "size": -1}]}, "attachments.0.size"),
        ({"confidential": "misschien"}, "confidential"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_validation_error_names_the_field(patch: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Contact.model_validate({**BASE, **patch})
    assert field in [e["field"] for e in field_errors(info.value)]


def test_nul_bytes_in_text_are_refused() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        Contact.model_validate({**BASE, "body": "a\x00b"})
