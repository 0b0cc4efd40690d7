"""The export to Open Klant (Klantinteracties API) as plain data: the `openklant:` section of a tenant's
rules, and how a contact and its callback requests become Open Klant objects (docs/openklant.md has
the mapping table).

Pure functions of what the store holds: the exporter (router.export.openklant) reads the contact, asks
for the bodies here and sends them. Everything here is decided by our data alone, so sending the same
contact again gives the same bodies: the exporter compares them to what it sent before and sends only
changes.

Facts of Open Klant 2.18 (API 0.9) the bodies are written for: lengths count characters (`kanaal` 50,
`onderwerp` 200, `inhoud` 1000, `gevraagdeHandeling` 200, `toelichting` 1000, a digitaal adres 80);
`nummer` and `referentienummer` are Open Klant's own (digits), so our reference travels in an
onderwerpobject; a digitaal adres needs `verstrektDoorPartij` present (null); phone numbers match
`PHONE_PATTERN`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from router.core.contact import Contact

__all__ = [
    "CALLBACK_EVENTS",
    "CONTACT_EVENTS",
    "EXPORTED_EVENTS",
    "PHONE_PATTERN",
    "OpenKlantConfig",
    "actor_body",
    "actor_identifier",
    "callback_toelichting",
    "digital_addresses",
    "internetaak_body",
    "klantcontact_body",
    "onderwerpobject_identifiers",
    "openklant_phone",
    "token_variable",
]

# The events the exporter listens to, by what they change in Open Klant.
CONTACT_EVENTS = ("contact.routed", "contact.transferred", "contact.closed")
CALLBACK_EVENTS = ("callback.requested", "callback.attempted", "callback.closed")
EXPORTED_EVENTS = CONTACT_EVENTS + CALLBACK_EVENTS

# Observed on Open Klant 2.18: stricter than the pattern in the OpenAPI document (no 0800/0900/14x).
PHONE_PATTERN = re.compile(r"^(0[1-9][0-9]{8}|\+[0-9]{9,15}|00[0-9]{7,13})$")

KANAAL_CHARS = 50
ONDERWERP_CHARS = 200
INHOUD_CHARS = 1000
HANDELING_CHARS = 200
TOELICHTING_CHARS = 1000
ADRES_CHARS = 80
ACTOR_NAME_CHARS = 200

# The register our identifiers belong to, in every onderwerpobject and actor identificator.
REGISTER = "contact-router"
CONTACT_ID = "contact-id"
REFERENCE = "referentie"

# Our channels as KCC users name them; a tenant's `kanalen` overrides or adds.
DEFAULT_KANALEN = {
    "mail": "E-mail",
    "webform": "Contactformulier",
    "social": "Sociale media",
    "phone": "Telefoon",
    "post": "Post",
    "counter": "Balie",
    "chat": "Chat",
}
# ISO 639-2/B of the languages a contact can have; anything else is Dutch, as our texts are.
_TAAL = {"nl": "nld", "en": "eng", "de": "ger", "fr": "fre", "tr": "tur", "ar": "ara", "pl": "pol"}
_OUTCOMES = {"reached": "bereikt", "no_answer": "geen gehoor", "wrong_number": "verkeerd nummer"}
_CLOSE_REASONS = {
    "reached": "bereikt",
    "wrong_number": "verkeerd nummer",
    "unreachable": "niet bereikbaar",
    "resolved_otherwise": "op een andere manier opgelost",
}
_ZONE = ZoneInfo("Europe/Amsterdam")
_CUT = " …"

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]


class OpenKlantConfig(BaseModel):
    """`openklant:` in a tenant's rules. The token is not here: a secret never goes in rules; it comes
    from the environment variable `token_variable(tenant)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The Klantinteracties API root, e.g. https://openklant.ommen.nl/klantinteracties/api/v1
    base_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=500)]
    # Channel id -> kanaal as the KCC names it (the defaults: DEFAULT_KANALEN).
    kanalen: dict[Identifier, Annotated[str, StringConstraints(min_length=1, max_length=KANAAL_CHARS)]] = {}
    # Team id -> the name of its actor (organisatorische eenheid); default: the team's name.
    actors: dict[
        Identifier, Annotated[str, StringConstraints(min_length=1, max_length=ACTOR_NAME_CHARS)]
    ] = {}
    # Requests in flight to this Open Klant at most.
    concurrency: int = Field(default=8, ge=1, le=64)
    # Seconds before a request counts as failed (and is retried).
    timeout: float = Field(default=10.0, gt=0, le=120)

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def kanaal(self, channel: str) -> str:
        return self.kanalen.get(channel) or DEFAULT_KANALEN.get(channel) or channel[:KANAAL_CHARS]


def token_variable(tenant: str) -> str:
    """The environment variable with a tenant's Open Klant token: OPENKLANT_TOKEN_OMMEN."""
    return "OPENKLANT_TOKEN_" + re.sub(r"[^A-Z0-9]", "_", tenant.upper())


def _fit(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, cut visibly."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - len(_CUT)].rstrip() + _CUT


def _local(at: datetime | str) -> str:
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    return moment.astimezone(_ZONE).strftime("%d-%m-%Y %H:%M")


def onderwerpobject_identifiers(contact: Contact) -> list[dict[str, str]]:
    """Our contact id (what the exporter looks a klantcontact up by) and the reference residents quote
    (what a KISS user searches for)."""
    return [
        {
            "objectId": contact.cid,
            "codeObjecttype": "contact",
            "codeRegister": REGISTER,
            "codeSoortObjectId": CONTACT_ID,
        },
        {
            "objectId": contact.reference,
            "codeObjecttype": "contact",
            "codeRegister": REGISTER,
            "codeSoortObjectId": REFERENCE,
        },
    ]


def klantcontact_body(contact: Contact, config: OpenKlantConfig) -> dict[str, Any]:
    """The klantcontact of a routed contact. A message longer than `inhoud` allows is cut, with a line
    saying that the whole text is in contact-router under the reference."""
    body = contact.body.strip()
    if len(body) > INHOUD_CHARS:
        note = f"\n[Ingekort. De hele tekst staat in contact-router onder {contact.reference}.]"
        body = body[: INHOUD_CHARS - len(note) - 1].rstrip() + "…" + note
    onderwerp = contact.subject or f"{config.kanaal(contact.channel)} {contact.reference}"
    return {
        "kanaal": config.kanaal(contact.channel)[:KANAAL_CHARS],
        "onderwerp": _fit(onderwerp, ONDERWERP_CHARS),
        "inhoud": body,
        "indicatieContactGelukt": True,
        "taal": _TAAL.get(contact.language.split("-")[0], "nld"),
        "vertrouwelijk": contact.confidential,
        "plaatsgevondenOp": contact.received_at.isoformat(),
    }


def openklant_phone(raw: str) -> str | None:
    """The number as Open Klant takes it ('+31612345678', '0612345678'), or None when it takes no such
    number (0800, 0900, 14x, or not a number at all)."""
    compact = re.sub(r"[\s().-]", "", raw)
    return compact if PHONE_PATTERN.fullmatch(compact) else None


@dataclass(frozen=True, slots=True)
class DigitalAddress:
    kind: str  # soortDigitaalAdres: email | telefoonnummer
    address: str

    def body(self, betrokkene: str) -> dict[str, Any]:
        return {
            "verstrektDoorBetrokkene": {"uuid": betrokkene},
            # Open Klant 2.18 refuses a digitaal adres without this key, null or not.
            "verstrektDoorPartij": None,
            "adres": self.address,
            "soortDigitaalAdres": self.kind,
            "omschrijving": "Opgegeven bij contact",
        }


def digital_addresses(contact: Contact, callback_phones: Sequence[str] = ()) -> list[DigitalAddress]:
    """The resident's e-mail address and phone numbers that Open Klant can hold, each once."""
    out: list[DigitalAddress] = []
    sender = contact.sender
    if sender and sender.email and len(sender.email) <= ADRES_CHARS:
        out.append(DigitalAddress("email", sender.email))
    for raw in [sender.phone if sender and sender.phone else "", *callback_phones]:
        phone = openklant_phone(raw) if raw else None
        if phone and DigitalAddress("telefoonnummer", phone) not in out:
            out.append(DigitalAddress("telefoonnummer", phone))
    return out


def actor_identifier(tenant: str, team: str) -> str:
    return f"{tenant}.{team}"


def actor_body(tenant: str, team: str, name: str) -> dict[str, Any]:
    """A team as an actor of kind organisatorische_eenheid, identified by our tenant and team ids."""
    return {
        "naam": name[:ACTOR_NAME_CHARS],
        "soortActor": "organisatorische_eenheid",
        "indicatieActief": True,
        "actoridentificator": {
            "objectId": actor_identifier(tenant, team),
            "codeObjecttype": "team",
            "codeRegister": REGISTER,
            "codeSoortObjectId": "team-id",
        },
        "actorIdentificatie": {"omschrijving": name[:ACTOR_NAME_CHARS]},
    }


def callback_tag(callback_id: str) -> str:
    """The first line of an internetaak's toelichting: how the exporter (and a person) finds which
    callback request it is."""
    return f"Terugbelverzoek {callback_id}"


def callback_toelichting(callback: dict[str, str], history: list[dict[str, Any]]) -> str:
    """Tag, reason, due time, and the attempts (newest kept when they do not all fit)."""
    cbid = callback["id"]
    head = [callback_tag(cbid)]
    if callback.get("due"):
        head.append(f"Terugbellen vóór {_local(callback['due'])}.")
    if callback.get("preferred_time"):
        head.append(f"Voorkeurstijd: {callback['preferred_time'][:100]}.")
    lines = []
    for entry in history:
        if entry.get("callback_id") != cbid:
            continue
        if entry.get("event") == "callback.attempted":
            outcome = _OUTCOMES.get(str(entry.get("outcome")), str(entry.get("outcome")))
            lines.append(f"Poging {entry.get('attempt', '?')} ({_local(entry['at'])}): {outcome}.")
        elif entry.get("event") == "callback.closed":
            reason = _CLOSE_REASONS.get(str(entry.get("reason")), str(entry.get("reason")))
            lines.append(f"Afgesloten ({_local(entry['at'])}): {reason}.")
    reason = callback.get("reason", "")
    text = "\n".join([*head, f"Reden: {reason}" if reason else ""]).strip()
    tail: list[str] = []
    for line in reversed(lines):  # the newest attempts matter most
        if len(text) + len("\n".join([line, *tail])) + 2 > TOELICHTING_CHARS:
            break
        tail.insert(0, line)
    if len(tail) < len(lines):
        tail.insert(0, f"({len(lines) - len(tail)} eerdere regels weggelaten)")
    full = "\n".join([text, *tail]) if tail else text
    return _fit(full, TOELICHTING_CHARS)


def internetaak_body(
    callback: dict[str, str], history: list[dict[str, Any]], klantcontact: str, actor: str
) -> dict[str, Any]:
    """The internetaak of a callback request; `verwerkt` once it is closed (Open Klant then fills
    afgehandeldOp)."""
    reason = callback.get("reason", "").strip()
    return {
        "aanleidinggevendKlantcontact": {"uuid": klantcontact},
        "gevraagdeHandeling": _fit(f"Terugbellen: {reason}" if reason else "Terugbellen", HANDELING_CHARS),
        # Not with the deprecated single `toegewezenAanActor`: Open Klant refuses both together.
        "toegewezenAanActoren": [{"uuid": actor}],
        "toelichting": callback_toelichting(callback, history),
        "status": "verwerkt" if callback.get("status") == "closed" else "te_verwerken",
    }
