"""The normalised Contact: what every channel adapter produces and the router consumes.

Versioned by `schema_version`; the JSON Schema in `schemas/` is generated from this module
(`contact-router schema write`) and a test keeps the two in step.
"""

from __future__ import annotations

import base64
import functools
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

SCHEMA_VERSION = 1

# The channels the project ships adapters for. Channel is a free identifier so that an integrator can
# add one (e.g. "app") without a schema change.
KNOWN_CHANNELS = ("mail", "webform", "social", "phone", "post", "counter", "chat")

# Fixed namespace: contact ids are derived from the idempotency key, so a re-sent contact gets the
# same id on every router and after every restart.
_ID_NAMESPACE = uuid.UUID("6f1d0f53-4c59-4c8e-9a55-2b3f1c1e7a10")

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
ShortText = Annotated[str, StringConstraints(max_length=500)]

# The moments a contact can have been received. The calendar computes deadlines up to years ahead of
# received_at, so the model bounds it statically; "not in the future" needs a clock and is checked where
# a contact is accepted (`admission_problems`). Before 1900 is a typo or a zero value, not a letter.
RECEIVED_MIN = datetime(1900, 1, 1, tzinfo=UTC)
RECEIVED_MAX = datetime(2200, 1, 1, tzinfo=UTC)
# An entry point's own clock and the sender's may differ a little; more than this is a wrong date.
MAX_FUTURE_AT_ENTRY = timedelta(minutes=5)
# The router accepts more, so that nothing an entry point accepted is refused later because two
# machines' clocks differ: an hour of skew between an entry point and a router is tolerated.
MAX_FUTURE_AT_ROUTER = timedelta(hours=1)
# Metadata that becomes a field of a hop when the router carries out a phone note.
_HOP_METADATA = {"phone.agent": 500}
METADATA_KEY_CHARS = 100
METADATA_VALUE_CHARS = 2000


# JSON types as the schema states them. pydantic's lax mode would also take a number as a Unix time, 0/1
# as a boolean and "5" as a number: input the JSON Schema refuses and no sender means.
def _moment(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("must be a date-time: ISO 8601 text with an offset")
    return value


def _boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _whole_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(_moment)]
Flag = Annotated[bool, BeforeValidator(_boolean)]
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class _Model(BaseModel):
    # hide_input_in_errors: str(ValidationError) without `input_value`, which echoes the field's value.
    # (The locations in it can still hold a sender's keys: log field_errors, never the exception.)
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, hide_input_in_errors=True)


class Source(_Model):
    """Where the contact came from. (tenant, adapter, native_id) is the idempotency key."""

    adapter: Identifier
    native_id: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class Sender(_Model):
    name: ShortText | None = None
    email: EmailStr | None = None
    phone: Annotated[str, StringConstraints(max_length=40)] | None = None
    handle: ShortText | None = None


class Attachment(_Model):
    """Metadata only: the router never carries attachment content."""

    filename: ShortText
    content_type: Annotated[str, StringConstraints(max_length=200)] = "application/octet-stream"
    size: WholeNumber = Field(ge=0)
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None


class Hop(_Model):
    """One step in a contact's life: routed to a team, transferred, handed to coordination."""

    kind: Literal["routed", "transferred", "reassigned", "escalated"] = "transferred"
    team: Identifier
    from_team: Identifier | None = None
    agent: ShortText | None = None
    at: Moment
    note: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class Contact(_Model):
    schema_version: Literal[1] = 1
    id: str | None = Field(
        default=None,
        description="Derived from (tenant, source.adapter, source.native_id); omit it on input.",
    )
    tenant: Identifier
    channel: Identifier = Field(description=f"One of {', '.join(KNOWN_CHANNELS)}, or an added channel.")
    # Bounds checked by pydantic itself; `Moment` adds one type check (text, not a Unix number).
    received_at: Moment = Field(
        ge=RECEIVED_MIN,
        lt=RECEIVED_MAX,
        description="When the channel received it; from 1900 on, and not (more than minutes) in the future",
    )
    source: Source
    sender: Sender | None = None
    subject: Annotated[str, StringConstraints(max_length=998)] | None = None
    body: Annotated[str, StringConstraints(max_length=100_000)] = ""
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] = "nl"
    attachments: Annotated[list[Attachment], Field(max_length=100)] = []
    category: Identifier | None = None
    confidential: Flag = False
    hops: Annotated[list[Hop], Field(max_length=100)] = []
    metadata: Annotated[
        dict[
            Annotated[str, StringConstraints(max_length=METADATA_KEY_CHARS)],
            Annotated[str, StringConstraints(max_length=METADATA_VALUE_CHARS)],
        ],
        Field(max_length=50),
    ] = {}

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        # `reference` is derived from the id; accept it back from our own serialised form.
        if isinstance(data, dict) and "reference" in data:
            data = {k: v for k, v in data.items() if k != "reference"}
        return data

    @field_validator("metadata", mode="before")
    @classmethod
    def _entries_by_position(cls, value: Any) -> Any:
        # Metadata keys are the sender's own words (a key may be a name or a BSN): pydantic's own errors
        # would put the key into the field path. An entry is named by its position instead.
        if not isinstance(value, dict):
            return value  # pydantic says what it expected
        problems = []
        for n, (key, item) in enumerate(value.items(), 1):
            if not isinstance(key, str) or len(key) > METADATA_KEY_CHARS:
                problems.append(f"entry {n}: the key must be text of at most {METADATA_KEY_CHARS} characters")
            if not isinstance(item, str) or len(item) > METADATA_VALUE_CHARS:
                problems.append(
                    f"entry {n}: the value must be text of at most {METADATA_VALUE_CHARS} characters"
                )
        if problems:
            raise ValueError("; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else ""))
        return value

    @field_validator("metadata")
    @classmethod
    def _fits_a_hop(cls, value: dict[str, str]) -> dict[str, str]:
        for key, limit in _HOP_METADATA.items():
            if len(value.get(key, "")) > limit:
                raise ValueError(f"{key} must be at most {limit} characters")
        return value

    @model_validator(mode="after")
    def _derive_id_and_check_text(self) -> Contact:
        for name in ("subject", "body"):
            value = getattr(self, name)
            if value is not None:
                _no_nul(value)

        derived = contact_id(self.tenant, self.source.adapter, self.source.native_id)
        if self.id is None:
            self.id = derived
        elif self.id != derived:
            raise ValueError(
                "id does not belong to this source (tenant, source.adapter, source.native_id); "
                "omit id and the service derives it"
            )
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reference(self) -> str:
        """The reference number residents see, e.g. OMM-5KQ3-ZP7A."""
        return reference_for(self.tenant, self.id or "")

    @property
    def idempotency_key(self) -> str:
        return f"{self.tenant}:{self.source.adapter}:{self.source.native_id}"

    @property
    def cid(self) -> str:
        assert self.id is not None  # set by the validator
        return self.id


def contact_id(tenant: str, adapter: str, native_id: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{tenant}\x1f{adapter}\x1f{native_id}"))


_REFERENCE_RE = re.compile(r"\b([A-Z]{3})-([A-Z2-7]{4})-([A-Z2-7]{4})\b")


@functools.lru_cache(maxsize=4096)  # pure; asked several times per contact while it is routed
def reference_for(tenant: str, cid: str) -> str:
    if not cid:
        return ""
    # The first 8 base32 characters are the first 5 bytes exactly; encoding only those is 3x cheaper.
    code = base64.b32encode(uuid.UUID(cid).bytes[:5]).decode()
    return f"{tenant[:3].upper()}-{code[:4]}-{code[4:]}"


def find_reference(text: str) -> str | None:
    """A reference number quoted in free text (a mail subject), if any."""
    match = _REFERENCE_RE.search(text.upper())
    return match.group(0) if match else None


def admission_problems(
    contact: Contact, now: datetime, max_future: timedelta = MAX_FUTURE_AT_ENTRY
) -> list[dict[str, str]]:
    """What keeps a valid contact from being accepted now: the checks that need a clock. Every entry
    point asks this before it says "accepted", and the router with a wider margin, so that nothing
    accepted is refused later."""
    if contact.received_at > now + max_future:
        minutes = int(max_future.total_seconds() // 60)
        return [{"field": "received_at", "message": f"is more than {minutes} minutes in the future"}]
    return []


# Fields whose keys are the sender's: a path stops at them (Contact.metadata names entries by position).
_FREE_KEYS = frozenset({"metadata"})


def _field_path(err: ErrorDetails) -> str:
    parts = list(err["loc"])
    if err["type"] == "extra_forbidden" and parts:
        parts = parts[:-1]  # the unknown key is the sender's word, not a field of the schema
    for i, part in enumerate(parts):
        if part in _FREE_KEYS:
            parts = parts[: i + 1]
            break
    return ".".join(str(p) for p in parts) or "(body)"


def _field_message(err: ErrorDetails) -> str:
    if err["type"] == "extra_forbidden":
        return "has a field that is not in the schema (extra fields are not permitted)"
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return "does not match any of the expected kinds"  # pydantic's message quotes the given tag
    message = err["msg"]
    if message.startswith("value is not a valid email address"):
        # email-validator's reasons quote the offending characters or the domain
        return "value is not a valid email address"
    return message


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as [{field, message}], for API bodies, dead letters and logs: dotted paths of the
    schema's field names and fixed messages, never a value or a key the sender chose (a key not in the
    schema names its parent; a metadata entry is named by its position, `metadata: entry 3: ...`)."""
    out: list[dict[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        entry = {"field": _field_path(err), "message": _field_message(err)}
        if entry not in out:
            out.append(entry)
    return out


def summarise_errors(exc: ValidationError) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in field_errors(exc))


def json_schema() -> dict[str, Any]:
    schema = Contact.model_json_schema(mode="serialization")
    schema["$id"] = f"https://contact-router.example/schemas/contact.v{SCHEMA_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def utc_iso(dt: datetime) -> str:
    return dt.isoformat()
