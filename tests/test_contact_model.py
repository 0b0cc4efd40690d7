"""The Contact model, its generated JSON Schema, every contact the project makes validated against the
published schema, and the published version only ever widening."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from adapters.kit import testing as contract
from adapters.kit.base import Inbound
from adapters.kit.testing import START, AdapterCase
from adapters.mail import MailAdapter
from router.cli.schema import SCHEMA_PATH, render
from router.core.contact import (
    SCHEMA_VERSION,
    Contact,
    contact_id,
    field_errors,
    find_reference,
    json_schema,
    summarise_errors,
)
from router.core.samples import sample_contacts
from router.core.tenants import Tenant
from tests.adapters.mails import resident_mail
from tests.adapters.test_contract import CASES as ADAPTER_CASES
from tests.conftest import ROOT
from tests.core.test_accepted_means_routed import inputs as contact_inputs
from tests.harness import ALL_KEY, Harness, wait_routed

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
        # A key not in the schema is the sender's word: the error names the object that has it.
        ({"unknown": 1}, "(body)"),
        ({"sender": {"bsn": "111222333"}}, "sender"),
        # Metadata keys are the sender's: an entry is named by its position.
        ({"metadata": {"Jan Jansen": "x" * 2001}}, "metadata"),
    ],
)
def test_validation_error_names_the_field(patch: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Contact.model_validate({**BASE, **patch})
    assert field in [e["field"] for e in field_errors(info.value)]


def test_errors_quote_no_value_and_no_key_of_the_sender() -> None:
    planted = ("111222333", "j.jansen@example.nl", "+31612345678", "Jan Jansen", "NL91ABNA0417164300")
    bad = {
        **BASE,
        "111222333": "x",
        "sender": {"email": "j.jansen@example.nl@", "phone": "+31612345678" * 5, "Jan Jansen": 1},
        "metadata": {"NL91ABNA0417164300": "Jan Jansen" * 300, "+31612345678": 5, "k" * 101: "v"},
        "language": "Jan Jansen",
    }
    with pytest.raises(ValidationError) as info:
        Contact.model_validate(bad)
    errors = field_errors(info.value)
    assert {e["field"] for e in errors} == {
        "(body)",
        "sender",
        "sender.email",
        "sender.phone",
        "metadata",
        "language",
    }
    [meta] = [e["message"] for e in errors if e["field"] == "metadata"]
    assert "entry 1: the value" in meta and "entry 2: the value" in meta and "entry 3: the key" in meta
    text = json.dumps(errors) + summarise_errors(info.value)
    assert not [p for p in planted if p in text], text
    # pydantic's own rendering leaves the values out too (hide_input_in_errors)
    assert "input_value" not in str(info.value) and "Jan JansenJan Jansen" not in str(info.value)


def test_nul_bytes_in_text_are_refused() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        Contact.model_validate({**BASE, "body": "a\x00b"})


# --- Every contact the project makes is valid under the published schema ----------------------------
#
# Integrators read schemas/contact.v1.json, not the model: what the project itself produces (the demo's
# samples, what each adapter makes, what the router publishes, anything the model accepts) must validate
# against that file. The schema is written in serialization mode, so documents are the wire JSON,
# `reference` included.


@functools.cache
def _published_validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    # Formats are asserted (date-time, email), not only annotations.
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_problems(document: Any) -> list[str]:
    """Why `document` is not a valid Contact under schemas/contact.v1.json ([] when it is)."""
    errors = _published_validator().iter_errors(document)
    return sorted(f"{e.json_path}: {e.message}" for e in errors)


def wire(contact: Contact) -> Any:
    """The contact as JSON on the wire (what the shared publishing path and the router send)."""
    return json.loads(contact.model_dump_json())


def test_the_validator_refuses_what_the_schema_refuses() -> None:
    good = wire(Contact.model_validate(BASE))
    assert schema_problems(good) == []
    assert any("reference" in p for p in schema_problems({k: v for k, v in good.items() if k != "reference"}))
    assert schema_problems({**good, "received_at": "13 mei 2026"}) != []  # format date-time is asserted
    assert schema_problems({**good, "tenant": "Ommen"}) != []
    assert schema_problems({**good, "unknown": 1}) != []


def test_the_demo_sample_contacts_are_valid_under_the_published_schema() -> None:
    samples = sample_contacts(datetime(2026, 5, 13, 10, 0, tzinfo=UTC))
    assert samples
    for contact in samples:
        assert schema_problems(wire(contact)) == [], contact.source.native_id


def _mail_with_attachments() -> Inbound:
    msg = resident_mail(message_id="<bijlagen@example.nl>", in_reply_to="<eerder@ommen.nl>")
    msg.add_attachment(b"%PDF-1.4 brief", maintype="application", subtype="pdf", filename="brief.pdf")
    msg.add_attachment(b"\xff\xd8 foto", maintype="image", subtype="jpeg", filename="foto.jpg")
    return Inbound(payload=msg.as_bytes(), received_at=START, meta={"recipients": "info@ommen.nl"})


# Each adapter's valid input of the contract suite, and a mail with attachments (the Attachment part).
ADAPTER_INPUTS = [
    *((case, case.valid) for case in ADAPTER_CASES),
    (next(c for c in ADAPTER_CASES if c.adapter is MailAdapter), _mail_with_attachments),
]


@pytest.mark.parametrize(
    ("case", "make"),
    ADAPTER_INPUTS,
    ids=[*(case.id for case in ADAPTER_CASES), "mail-with-attachments"],
)
async def test_contacts_the_adapters_make_are_valid_under_the_published_schema(
    case: AdapterCase, make: Callable[[], Inbound], tenants: dict[str, Tenant]
) -> None:
    ctx = contract.context_for(case, tenants)
    try:
        contacts = case.adapter().translate(make(), ctx)
    finally:
        await ctx.drain(5)
    assert contacts
    for contact in contacts:
        assert schema_problems(wire(contact)) == [], case.id
    if make is _mail_with_attachments:  # attachment metadata, hash included, is part of the document
        attachments = wire(contacts[0])["attachments"]
        assert len(attachments) == 2 and all(a["sha256"] for a in attachments)


async def test_contacts_the_router_publishes_are_valid_under_the_published_schema(backend: Harness) -> None:
    # A mail (routed, with deadlines), transferred by an agent, with a callback request; and a phone note
    # whose transfer the router carries out itself (a hop with the call's agent and note).
    mail = await backend.route("ommen", "mail", "Vraag over mijn aanslag")
    note = backend.contact(
        "ommen",
        "phone",
        "Vraag over mijn aanslag",
        metadata={
            "phone.outcome": "transferred",
            "phone.to_team": "burgerzaken",
            "phone.agent": "kcc-001",
            "phone.note": "Wil de afdeling burgerzaken spreken",
        },
    )
    await backend.rt.publisher.publish(note)
    await wait_routed(backend.rt, note.cid)
    assert (await backend.transfer(mail, "burgerzaken", "belastingen"))[0] == 200
    resp = await backend.client.post(
        f"/v1/contacts/{mail}/callback-requests", headers=ALL_KEY, json={"reason": "terugbellen"}
    )
    assert resp.status == 201

    published = []
    for team in ("belastingen", "burgerzaken"):
        published += [json.loads(m.body)["contact"] for m in await backend.team_queue("ommen", team)]
    viewed = [(await backend.get(cid))["contact"] for cid in (mail, note.cid)]
    for document in published + viewed:
        assert schema_problems(document) == [], document["id"]
    # Routed, transferred by an agent and by the router, with and without a note: the Hop part is used.
    hops = [h for document in published for h in document["hops"]]
    assert {h["kind"] for h in hops} == {"routed", "transferred"}
    assert any(h["note"] for h in hops) and any(h["agent"] == "kcc-001" for h in hops)
    assert len(published) >= 4  # routed mail, its transfer, the callback request, the phone note


@settings(
    max_examples=int(os.environ.get("SCHEMA_EXAMPLES", "500")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=contact_inputs())
def test_every_contact_the_model_accepts_is_valid_under_the_published_schema(data: dict[str, Any]) -> None:
    # Generated from the schema (tests/core/test_accepted_means_routed.py), bounds exceeded now and then:
    # what the model refuses never leaves the edge; what it accepts must serialise to a valid document.
    try:
        contact = Contact.model_validate(data)
    except ValidationError:
        event("refused by the model")
        return
    event("accepted by the model")
    assert schema_problems(wire(contact)) == []


# --- A published schema version only ever widens --------------------------------------------------
#
# schemas/published/contact.v<N>.json is the schema as version N was published, frozen. While the model
# is at version N, the generated schema may add optional fields and relax bounds, but a document valid
# under the published version must stay valid: no property removed, no type, enum value, length or
# count taken away, no pattern or format changed, nothing newly required. Breaking changes are a new
# schema_version (and a new frozen file).

PUBLISHED = ROOT / "schemas" / "published"
_UPPER = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
_LOWER = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
_EXACT = ("pattern", "format", "const", "multipleOf")


def narrowings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """How schema document `new` accepts less than `old`, one line per problem ([] if it accepts at
    least as much), for the JSON Schema constructs pydantic writes: $ref into $defs, anyOf, type, enum,
    const, bounds, pattern, format, properties, required, additionalProperties, propertyNames, items."""
    return _compare(old, new, old, new, "$")


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are compared: {ref}"
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _alternatives(node: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    node = _resolve(node, root)
    branches = node.get("anyOf") or node.get("oneOf")
    if branches is None:
        return [node]
    return [alt for branch in branches for alt in _alternatives(branch, root)]


def _types(node: dict[str, Any]) -> set[str] | None:
    kind = node.get("type")
    if kind is None:
        return None  # any type
    return {kind} if isinstance(kind, str) else set(kind)


def _covers(new: set[str] | None, old: set[str] | None) -> bool:
    if new is None:
        return True
    if old is None:
        return False
    return all(t in new or (t == "integer" and "number" in new) for t in old)


def _compare(
    old: dict[str, Any], new: dict[str, Any], old_root: dict[str, Any], new_root: dict[str, Any], path: str
) -> list[str]:
    """Every alternative of `old` must be matched by one of `new` that is not narrower."""
    news = _alternatives(new, new_root)
    problems: list[str] = []
    for alt in _alternatives(old, old_root):
        candidates = [n for n in news if _covers(_types(n), _types(alt))]
        if not candidates:
            problems.append(f"{path}: type {sorted(_types(alt) or ['any'])} is no longer accepted")
            continue
        found = [_compare_one(alt, n, old_root, new_root, path) for n in candidates]
        if all(found):  # no candidate without problems: report the closest one
            closest: list[str] = min(found, key=len)
            problems += closest
    return problems


def _compare_one(
    o: dict[str, Any], n: dict[str, Any], old_root: dict[str, Any], new_root: dict[str, Any], path: str
) -> list[str]:
    problems = [
        f"{path}: {key} {o.get(key, 'unbounded')} -> {n[key]}"
        for key in _UPPER
        if key in n and (key not in o or n[key] < o[key])
    ]
    problems += [
        f"{path}: {key} {o.get(key, 'unbounded')} -> {n[key]}"
        for key in _LOWER
        if key in n and (key not in o or n[key] > o[key])
    ]
    problems += [
        f"{path}: {key} {o.get(key, '(none)')!r} -> {n[key]!r}"
        for key in _EXACT
        if key in n and n[key] != o.get(key)
    ]
    if "enum" in n:
        old_values = o["enum"] if "enum" in o else [o["const"]] if "const" in o else None
        lost = ["(any value)"] if old_values is None else [v for v in old_values if v not in n["enum"]]
        if lost:
            problems.append(f"{path}: enum lost {lost}")
    old_props, new_props = o.get("properties", {}), n.get("properties", {})
    for name, sub in old_props.items():
        if name not in new_props:
            problems.append(f"{path}.{name}: removed")
        else:
            problems += _compare(sub, new_props[name], old_root, new_root, f"{path}.{name}")
    if added := sorted(set(n.get("required", ())) - set(o.get("required", ()))):
        problems.append(f"{path}: newly required {added}")
    old_extra, new_extra = o.get("additionalProperties", True), n.get("additionalProperties", True)
    if old_extra is not False:
        # What an extra property could be before, a new property or the new rule for extras must take.
        before = old_extra if isinstance(old_extra, dict) else {}
        for name in new_props.keys() - old_props.keys():
            problems += _compare(before, new_props[name], old_root, new_root, f"{path}.{name}")
        if new_extra is False:
            problems.append(f"{path}: additional properties are no longer allowed")
        elif isinstance(new_extra, dict):
            problems += _compare(before, new_extra, old_root, new_root, f"{path}{{}}")
    if "propertyNames" in n:
        problems += _compare(
            o.get("propertyNames", {}), n["propertyNames"], old_root, new_root, f"{path}{{name}}"
        )
    if "items" in n:
        problems += _compare(o.get("items", {}), n["items"], old_root, new_root, f"{path}[]")
    return problems


def test_the_published_version_is_frozen_in_schemas_published() -> None:
    frozen = PUBLISHED / f"contact.v{SCHEMA_VERSION}.json"
    assert frozen.exists(), (
        f"schema version {SCHEMA_VERSION} has no frozen copy: once published, copy schemas/"
        f"contact.v{SCHEMA_VERSION}.json to {frozen.relative_to(ROOT)} and never change it"
    )
    published = json.loads(frozen.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(published)
    assert published["$id"].endswith(f"/contact.v{SCHEMA_VERSION}.json")
    assert published["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def test_the_schema_accepts_everything_the_published_version_accepted() -> None:
    published = json.loads((PUBLISHED / f"contact.v{SCHEMA_VERSION}.json").read_text(encoding="utf-8"))
    assert narrowings(published, json_schema()) == [], (
        f"the Contact schema narrows published version {SCHEMA_VERSION}: make the change compatible, "
        f"or publish it as a new schema_version"
    )


def _frozen() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PUBLISHED / "contact.v1.json").read_text(encoding="utf-8"))
    return data


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change at a '/'-separated path of the document; value DELETE removes the key."""

    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value

    return change


DELETE = object()
P = "properties"


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        (_set(f"{P}/subject", DELETE), "$.subject: removed"),
        (
            _set("$defs/Source/properties/native_id/maxLength", 400),
            "$.source.native_id: maxLength 500 -> 400",
        ),
        (_set(f"{P}/body/maxLength", 99_999), "$.body: maxLength 100000 -> 99999"),
        (_set(f"{P}/body/minLength", 1), "$.body: minLength unbounded -> 1"),
        (
            _set("required", ["tenant", "channel", "received_at", "source", "reference", "sender"]),
            "newly required",
        ),
        (
            _set("$defs/Hop/properties/kind/enum", ["routed", "transferred", "reassigned"]),
            "$.hops[].kind: enum lost",
        ),
        (_set(f"{P}/tenant/pattern", "^[a-z]{1,40}$"), "$.tenant: pattern"),
        (_set(f"{P}/language/format", "email"), "$.language: format"),
        (_set(f"{P}/subject/anyOf", [{"maxLength": 998, "type": "string"}]), "$.subject: type ['null']"),
        (_set(f"{P}/confidential/type", "string"), "$.confidential: type ['boolean']"),
        (_set(f"{P}/attachments/maxItems", 50), "$.attachments: maxItems 100 -> 50"),
        (_set("$defs/Attachment/properties/size/minimum", 1), "$.attachments[].size: minimum 0 -> 1"),
        (_set(f"{P}/metadata/additionalProperties/maxLength", 1000), "$.metadata{}: maxLength 2000 -> 1000"),
        (_set(f"{P}/metadata/propertyNames/maxLength", 50), "$.metadata{name}: maxLength 100 -> 50"),
        (_set(f"{P}/metadata/additionalProperties", False), "$.metadata: additional properties"),
        (_set(f"{P}/schema_version/const", 2), "$.schema_version: const 1 -> 2"),
        (_set("$defs/Sender/properties/email/anyOf/0/format", "idn-email"), "$.sender.email: format"),
    ],
)
def test_the_comparer_catches_a_narrowed_copy(
    change: Callable[[dict[str, Any]], None], reported: str
) -> None:
    narrowed = _frozen()
    change(narrowed)
    problems = narrowings(_frozen(), narrowed)
    assert any(reported in p for p in problems), problems


@pytest.mark.parametrize(
    "change",
    [
        _set(f"{P}/new_field", {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}),
        _set(f"{P}/body/maxLength", 200_000),
        _set(f"{P}/tenant/pattern", DELETE),
        _set(
            "$defs/Hop/properties/kind/enum", ["routed", "transferred", "reassigned", "escalated", "merged"]
        ),
        _set("required", ["tenant", "channel", "source", "reference"]),
        _set(f"{P}/confidential/type", ["boolean", "string"]),
        _set("$defs/Attachment/properties/size/type", "number"),
        _set(f"{P}/channel/description", "Any channel."),
    ],
)
def test_the_comparer_lets_a_widened_copy_pass(change: Callable[[dict[str, Any]], None]) -> None:
    widened = _frozen()
    change(widened)
    assert narrowings(_frozen(), widened) == []
