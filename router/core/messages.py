"""What the core asks to publish: team work items and events, as plain `OutMessage`s.

Events carry ids and routing facts, never personal data, and are keyed `<tenant>.<event>`; a team work
item carries the contact.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from typing import Any

import orjson

from router.core import topology
from router.core.topology import Names


@dataclass(frozen=True)
class OutMessage:
    """One message to publish: a team work item, an event, an escalation."""

    exchange: str
    routing_key: str
    body: str
    message_id: str
    headers: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> OutMessage:
        return cls(**json.loads(raw))


def dumps(value: Any) -> str:
    """Compact JSON. orjson: every contact is serialised into several documents on the hot path, and
    orjson does it ~10× faster than the standard library (non-ASCII stays UTF-8 instead of \\u escapes).

    What orjson refuses but a contact may hold — an integer beyond 64 bits (an attachment `size`: the
    schema sets no maximum) or a lone surrogate — falls back to the standard library, which writes
    both (the surrogate as a \\u escape), so an accepted contact is never stuck on its serialisation."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), default=_isoformat)


def _isoformat(value: Any) -> str:
    # What orjson writes natively and the standard library does not: dates and times.
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def event_key(tenant: str, name: str) -> str:
    """An event's routing key, `<tenant>.<event>` (`ommen.contact.transferred`): a municipality's
    consumer binds `ommen.#` and receives its own events only."""
    return f"{tenant}.{name}"


# The namespace of the ids of events that happen once per contact (once_per_contact).
ONCE_PER_CONTACT = uuid.UUID("6f1d3c0e-5b7a-4e0c-9d43-2f8a1c6e7b90")


def once_per_contact(contact_id: str, name: str) -> str:
    """The event id of an event a contact has at most once (`contact.received`, `contact.routed`,
    `contact.reply` of a reply): the same in every attempt at routing it, so that a batch routed again
    after a failed publish (publisher confirms on a cluster: docs/architecture.md, "Commit modes")
    repeats the event under the same id, and the history and other subscribers drop the copy."""
    # uuid.uuid5(ONCE_PER_CONTACT, ...) without building a UUID object (a third of its cost; two per
    # routed contact on the router's hot path).
    digest = bytearray(hashlib.sha1(ONCE_PER_CONTACT.bytes + f"{contact_id}/{name}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def event_message(
    exchange: str, name: str, at: datetime, *, tenant: str, event_id: str | None = None, **fields: Any
) -> OutMessage:
    """An event of `tenant` on `exchange`, keyed `<tenant>.<event>`; the payload names both. The event
    id (random unless given) is the message id, so a subscriber can dedupe on either."""
    event_id = event_id or str(uuid.uuid4())
    payload = {"event": name, "event_id": event_id, "at": at.isoformat(), "tenant": tenant, **fields}
    return OutMessage(exchange, event_key(tenant, name), dumps(payload), event_id)


def team_item(
    names: Names, tenant: str, team: str, envelope: dict[str, Any], message_id: str, headers: dict[str, Any]
) -> OutMessage:
    """A work item on `team.<tenant>.<team>`; headers name the contact (never its content)."""
    return OutMessage(names(topology.TEAMS), f"{tenant}.{team}", dumps(envelope), message_id, headers)
