"""The bodies the API answers, as pydantic models: each handler sends its answer through its model
(`answer`), and the OpenAPI document takes every response schema from the same models
(router/http/openapi.py), so a client generated from /v1/openapi.json gets the shapes it will receive.

Every field is always present (null when it has no value), so clients need no "is the key there" code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from adapters.kit.openapi import Accepted, Error, FieldError, Timestamp
from router.core.casework import CALLBACK_OUTCOMES, TRANSFER_OUTCOMES
from router.core.contact import Contact

__all__ = [
    "Accepted",
    "CallbackItem",
    "CallbackRequest",
    "Closed",
    "ContactItem",
    "ContactView",
    "Deadline",
    "Error",
    "Extension",
    "FieldError",
    "Health",
    "HistoryEntry",
    "Notice",
    "OpenApiDocument",
    "Readiness",
    "ResponseRecorded",
    "Taken",
    "TransferRefused",
    "Transferred",
    "WorkList",
    "answer",
]

CONTACT_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
CALLBACK_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-cb[0-9]+$"
TEAM_ID = r"^[a-z][a-z0-9_-]{0,39}$"
ContactId = Annotated[str, Field(pattern=CONTACT_ID)]
CallbackId = Annotated[str, Field(pattern=CALLBACK_ID)]
TeamId = Annotated[str, Field(pattern=TEAM_ID)]
DeadlineKind = Literal["acknowledge", "respond", "resolve"]
Outcome = Literal[CALLBACK_OUTCOMES]  # type: ignore[valid-type]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(_Out):
    status: Literal["ok"]


class Readiness(_Out):
    status: Literal["ready", "unready"]
    checks: dict[str, str] = Field(description="Each check: 'ok', or why it failed")
    embedded: bool


class OpenApiDocument(BaseModel):
    """This OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow")
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


class Deadline(_Out):
    kind: DeadlineKind
    term: str = Field(description="The norm's term, e.g. '5 workdays', '3 hours', '12 weeks + 6 weeks'")
    due: Timestamp
    warning_at: Timestamp
    original_due: Timestamp | None = Field(default=None, description="Before the extension, if extended")
    extension: str | None = Field(default=None, description="The extension term given, e.g. '6 weeks'")
    extended_at: Timestamp | None = None


class CallbackRequest(_Out):
    id: CallbackId
    contact_id: ContactId
    team: TeamId
    reason: str | None
    phone: str | None = Field(description="E.164, e.g. +31612345678")
    preferred_time: str | None
    status: Literal["open", "closed"]
    due: Timestamp
    term: str | None
    counted_from: Timestamp | None = Field(
        description="The moment the term counts from (a phone note: the call)"
    )
    created_at: Timestamp | None
    created_by: str | None
    origin: str | None = Field(description="agent, transfer_refused or phone_note")
    attempts: int = Field(ge=0)
    last_outcome: Outcome | None
    closed_at: Timestamp | None
    closed_reason: str | None = Field(
        description="reached, wrong_number, unreachable, resolved_otherwise, or 'contact closed'"
    )


class HistoryEntry(BaseModel):
    """One event in the contact's life; each event has fields of its own."""

    model_config = ConfigDict(extra="allow")
    event: str = Field(min_length=1)
    at: Timestamp


class ContactView(_Out):
    id: ContactId
    tenant: TeamId
    status: Literal["routing", "routed", "closed", "merged"]
    team: TeamId | None
    category: str | None
    rule: str | None
    transfers: int = Field(ge=0)
    received_at: Timestamp | None
    routed_at: Timestamp | None
    deadlines: list[Deadline]
    met: dict[str, Timestamp] = Field(description="Deadline kind -> when it was met (written once)")
    closed_at: Timestamp | None
    resolution: str | None
    contact: Contact | None
    history: list[HistoryEntry]
    callback_requests: list[CallbackRequest]
    version: Annotated[str, Field(pattern=r"^[0-9]+$")]


class RelatedContact(_Out):
    """Another contact of the same resident (same e-mail address, phone number or social handle)."""

    id: ContactId
    reference: str = Field(description="The reference number the resident knows it by, e.g. OMM-5KQ3-ZP7A")
    channel: str
    received_at: Timestamp
    status: Literal["routing", "routed", "closed", "merged"]
    team: TeamId
    category: str | None


class RelatedContacts(_Out):
    """The resident's other contacts of the tenant's last `months` months, newest first, across channels
    (ids, codes and dates only)."""

    id: ContactId
    months: int = Field(ge=1, description="The tenant's window (rules: residents.related_months)")
    related: list[RelatedContact]


class _Item(_Out):
    id: str
    contact_id: ContactId
    due: Timestamp | None = Field(description="The item's soonest open deadline")
    deadline_kind: Literal["acknowledge", "respond", "resolve", "callback"] | None
    term: str | None = Field(description="That deadline's term")
    working_time_left_seconds: int | None = Field(
        description="Until `due` on the term's clock: office time of workdays for a workday term, clock "
        "time for hour, day and week terms; negative once overdue"
    )
    overdue: bool
    reference: str | None
    channel: str | None
    received_at: Timestamp | None
    sender_name: str | None
    subject: str | None
    last_note: str | None = Field(description="The note of the latest hand-over")
    category: str | None
    owner: str | None = Field(
        default=None, description='The id of the agent who took the contact ("ik pak dit op"), if any'
    )


class ContactItem(_Item):
    kind: Literal["contact"]
    id: ContactId
    transfers: int = Field(ge=0)
    status: str | None


class CallbackItem(_Item):
    kind: Literal["callback_request"]
    id: CallbackId
    reason: str | None
    phone: str | None = Field(description="E.164")
    preferred_time: str | None
    attempts: int = Field(ge=0)
    counted_from: Timestamp | None = Field(default=None, description="When the callback term started")


class WorkList(_Out):
    tenant: TeamId
    team: TeamId
    items: list[Annotated[ContactItem | CallbackItem, Field(discriminator="kind")]]


class Transferred(_Out):
    id: ContactId
    team: TeamId = Field(description="Where the contact is now")
    from_team: TeamId | None
    transfers: int = Field(ge=0)
    transfer_limit: int = Field(ge=0)
    outcome: Literal[TRANSFER_OUTCOMES] = Field(  # type: ignore[valid-type]
        description="transferred; sent_to_coordinating_team (a written contact past the limit); assigned "
        "(the coordinating team's final assignment)"
    )
    intended_team: TeamId
    message: str


class TransferRefused(_Out):
    """A transfer past the limit while the resident is on the line: a callback request instead."""

    error: str
    transfers: int = Field(ge=0)
    transfer_limit: int = Field(ge=0)
    callback_request: CallbackRequest


class ResponseRecorded(_Out):
    id: ContactId
    kind: Literal["acknowledge", "respond"]
    on_time: bool
    due: Timestamp | None
    met_at: Timestamp = Field(description="When the deadline was met (written once)")


class Notice(_Out):
    kind: Literal["deadline_extended", "callback_unreachable"]
    channel: Literal["email", "letter"]
    sent_by_service: bool = Field(description="False: the team got it as a work item to send")
    subject: str
    text: str = Field(description="Plain Dutch, for the resident")


class Extension(_Out):
    id: ContactId
    kind: DeadlineKind
    term: str
    extension: str
    original_due: Timestamp
    due: Timestamp
    warning_at: Timestamp
    notice: Notice


class Taken(_Out):
    id: ContactId
    team: TeamId
    owner: str = Field(description="The agent who has it")
    taken_at: Timestamp


class Closed(_Out):
    id: ContactId
    status: Literal["closed"]
    closed_at: Timestamp


def answer(
    model: type[BaseModel], body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """`body` through `model`: what the document promises is what is sent."""
    text = model.model_validate(body).model_dump_json()
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Health,
    Readiness,
    OpenApiDocument,
    Accepted,
    ContactView,
    RelatedContacts,
    WorkList,
    Transferred,
    TransferRefused,
    CallbackRequest,
    ResponseRecorded,
    Extension,
    Taken,
    Closed,
    Error,
)
