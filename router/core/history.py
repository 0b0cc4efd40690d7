"""The durable history, as plain data: what one event row keeps, the norm items a contact's events make,
the audit entries, and the port the history stores implement.

- `parse_event` turns an event of the `events` exchange into an `EventRow`: a whitelist of ids, codes,
  times and counts. Whatever else an event carries (today nothing personal, but a later event might
  add a note) is dropped here, so the history can never hold a body, a name, an address, a phone
  number, a note or free text.
- `project` turns the events of one contact into its `Item`s: one per deadline of the contact (kind
  acknowledge, respond, resolve) and one per callback request, each with when it started, was due and
  was met. The norm-compliance report (`router.core.report`) counts items. A projection depends on the
  set of events only, not on the order they arrived in, so a store recomputes the items of a contact
  whenever one of its events arrives and `rebuild` recomputes all of them.
- `AuditEntry`: who viewed or changed which contact, when (ids and codes only).
- `HistoryStore`: the port (`router.history.postgres`, `router.history.sqlite`), which also implements
  `PersonalData` (router/core/ports.py) so that retention and erasure reach the history.

What counts as met, late or open is stated for the reader of the report in `router.core.report`
(`DEFINITIONS`); `project` is where it is decided.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson

from router.core.calendar.norms import NormTable
from router.core.calendar.terms import TermError, TermUnit, parse_term
from router.core.casework import AGENT_ID_PATTERN
from router.core.ports import PersonalData
from router.core.report import ReportRow
from router.core.retention import DEFAULT_AUDIT, Period, Retention
from router.core.tenants import Tenant

__all__ = [
    "DEFAULT_AUDIT_RETENTION",
    "HISTORY_QUEUE",
    "AuditEntry",
    "DeadlineFact",
    "EventRow",
    "HistoryStore",
    "Item",
    "RebuildResult",
    "audit_entry",
    "audit_retention",
    "history_retention",
    "month_of",
    "parse_event",
    "project",
]

# The history consumer's own durable quorum queue, bound to exchange `events` with "#".
HISTORY_QUEUE = "history.events"
# How long an audit row is kept when the tenant's rules do not say (`retention: {audit: ...}`).
DEFAULT_AUDIT_RETENTION = DEFAULT_AUDIT
DEFAULT_ZONE = ZoneInfo("Europe/Amsterdam")

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_CALLBACK_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-cb[0-9]{1,6}$")
_TENANT = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
# Event names, teams, channels, categories, kinds, outcomes, origins: codes of the schema and the rules.
_CODE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_AGENT = re.compile(AGENT_ID_PATTERN)
# Rule names are the municipality's configuration ("Meldingen openbare ruimte"), never the sender's.
_RULE = re.compile(r"^[\w .,()/&+'-]{1,100}$")
_MAX_COUNT = 1_000_000


@dataclass(frozen=True, slots=True)
class DeadlineFact:
    """One deadline as `contact.routed` announced it."""

    kind: str
    term: str
    due: datetime


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event as the history keeps it: ids, codes, times and counts, nothing else."""

    event_id: str
    event: str
    tenant: str
    at: datetime
    contact_id: str | None = None
    callback_id: str | None = None
    reply_id: str | None = None
    team: str | None = None
    from_team: str | None = None
    to_team: str | None = None
    channel: str | None = None
    category: str | None = None
    rule: str | None = None
    kind: str | None = None
    due: datetime | None = None
    received_at: datetime | None = None
    on_time: bool | None = None
    closed: bool | None = None
    counted: bool | None = None
    outcome: str | None = None
    origin: str | None = None
    agent: str | None = None
    by: str | None = None
    transfers: int | None = None
    attempt: int | None = None
    deadlines: tuple[DeadlineFact, ...] = ()

    def deadlines_json(self) -> str | None:
        if not self.deadlines:
            return None
        return orjson.dumps(
            [{"kind": d.kind, "term": d.term, "due": d.due.isoformat()} for d in self.deadlines]
        ).decode()

    @staticmethod
    def deadlines_from_json(text: str | None) -> tuple[DeadlineFact, ...]:
        if not text:
            return ()
        return tuple(
            DeadlineFact(d["kind"], d["term"], datetime.fromisoformat(d["due"])) for d in orjson.loads(text)
        )


# The columns of an event row, in the order the stores write them (`EventRow` fields, deadlines as JSON).
EVENT_COLUMNS = tuple(EventRow.__dataclass_fields__)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def _match(pattern: re.Pattern[str], value: Any) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        return None
    return value


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _deadlines(value: Any) -> tuple[DeadlineFact, ...]:
    if not isinstance(value, list):
        return ()
    out = []
    for d in value[:10]:
        if not isinstance(d, dict):
            continue
        kind, due = _match(_CODE, d.get("kind")), _time(d.get("due"))
        try:
            term = str(parse_term(d["term"])) if isinstance(d.get("term"), str) else None
        except TermError:
            term = None
        if kind and due and term:
            out.append(DeadlineFact(kind, term, due))
    return tuple(out)


def parse_event(body: bytes | str) -> EventRow | str:
    """The history's row of an event, or why it cannot have one (fixed texts naming fields, never
    values). Only the fields named in `EventRow` are read, each checked to be an id, a code, a time, a
    flag or a count; a field that is none of these is left out."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "malformed JSON"
    if not isinstance(doc, dict):
        return "not a JSON object"
    event_id = doc.get("event_id")
    if not isinstance(event_id, str) or not _UUID.fullmatch(event_id.lower()):
        return "event_id: not a UUID"
    name, tenant, at = (
        _match(_CODE, doc.get("event")),
        _match(_TENANT, doc.get("tenant")),
        _time(doc.get("at")),
    )
    for field_name, value in (("event", name), ("tenant", tenant), ("at", at)):
        if value is None:
            return f"{field_name}: missing or not valid"
    assert name is not None and tenant is not None and at is not None
    contact_id = _match(_UUID, doc.get("contact_id"))
    return EventRow(
        event_id=event_id.lower(),
        event=name,
        tenant=tenant,
        at=at,
        contact_id=contact_id,
        callback_id=_match(_CALLBACK_ID, doc.get("callback_id")),
        reply_id=_match(_UUID, doc.get("reply_id")),
        team=_match(_CODE, doc.get("team")),
        from_team=_match(_CODE, doc.get("from_team")),
        to_team=_match(_CODE, doc.get("to_team")),
        channel=_match(_CODE, doc.get("channel")),
        category=_match(_CODE, doc.get("category")),
        rule=_match(_RULE, doc.get("rule")),
        kind=_match(_CODE, doc.get("kind")),
        due=_time(doc.get("due")),
        received_at=_time(doc.get("received_at")),
        on_time=_flag(doc.get("on_time")),
        closed=_flag(doc.get("closed")),
        counted=_flag(doc.get("counted")),
        outcome=_match(_CODE, doc.get("outcome")),
        origin=_match(_CODE, doc.get("origin")),
        agent=_match(_AGENT, doc.get("agent")),
        by=_match(_AGENT, doc.get("by")),
        transfers=_count(doc.get("transfers")),
        attempt=_count(doc.get("attempt")),
        deadlines=_deadlines(doc.get("deadlines")),
    )


# -- norm items -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    """One promise to a resident: a deadline of a contact or a callback request, and how it ended.

    `norm_channel` / `norm_category` name the norm of the rules that set the term (None: the norm is
    not limited to a channel or a category), which is how the report groups items."""

    subject_id: str  # the contact id (its deadlines) or the callback request's id
    contact_id: str
    tenant: str
    kind: str
    channel: str
    category: str | None
    norm_channel: str | None
    norm_category: str | None
    term: str
    team: str | None
    started_at: datetime
    month: date
    due: datetime
    extended_due: datetime | None = None
    met_at: datetime | None = None
    # How it was met: "response" (an agent recorded it), "callback" (the resident was reached),
    # "closed" (the contact was closed), "automatic" (an `immediately` term, met by the channel).
    met_by: str | None = None
    breached_at: datetime | None = None
    # Time from start to met: office time of workdays for a workday term, real time otherwise.
    work_seconds: int | None = None

    @property
    def met(self) -> bool:
        return self.met_at is not None

    @property
    def on_time(self) -> bool | None:
        return None if self.met_at is None else self.met_at <= self.due

    @property
    def within_extension(self) -> bool | None:
        """Met late but within the term's extension ("12 weeks + 6 weeks"); None without one or unmet."""
        if self.met_at is None or self.extended_due is None:
            return None
        return self.due < self.met_at <= self.extended_due


def month_of(at: datetime, zone: ZoneInfo) -> date:
    local = at.astimezone(zone)
    return date(local.year, local.month, 1)


def norm_key(
    norms: NormTable, channel: str, category: str | None, kind: str
) -> tuple[str | None, str | None]:
    """(channel, category) of the norm that gives `kind` its term for such a contact, by the lookup
    order of `NormTable.term_for`; the contact's own when no norm of the rules matches (any more)."""
    keys = {(n.kind.value, n.channel, n.category) for n in norms}
    for ch, cat in ((channel, category), (None, category), (channel, None), (None, None)):
        if (kind, ch, cat) in keys:
            return ch, cat
    return channel, category


@dataclass
class _Facts:
    """The events of one contact, sorted into what the items need."""

    received: EventRow | None = None
    routed: EventRow | None = None
    team: str | None = None
    met: dict[str, datetime] = field(default_factory=dict)
    breached: dict[tuple[str, str | None], datetime] = field(default_factory=dict)
    callbacks: list[EventRow] = field(default_factory=list)
    reached: dict[str, datetime] = field(default_factory=dict)
    closes: list[datetime] = field(default_factory=list)


def _first(into: dict[Any, datetime], key: Any, at: datetime) -> None:
    if key not in into or at < into[key]:
        into[key] = at


def _facts(events: Sequence[EventRow]) -> _Facts:
    f = _Facts()
    for e in sorted(events, key=lambda e: (e.at, e.event_id)):
        if e.event == "contact.received" and f.received is None:
            f.received = e
        elif e.event == "contact.routed" and f.routed is None:
            f.routed = e
            f.team = f.team or e.team
        elif e.event in ("contact.transferred", "contact.reply") and e.team:
            f.team = e.team
        elif e.event == "deadline.met" and e.kind:
            _first(f.met, e.kind, e.at)
        elif e.event == "deadline.breached" and e.kind:
            _first(f.breached, (e.kind, e.callback_id), e.at)
        elif e.event == "callback.requested" and e.callback_id and e.due:
            f.callbacks.append(e)
        elif e.event == "callback.attempted" and e.callback_id and e.closed:
            _first(f.reached, e.callback_id, e.at)
        elif e.event == "contact.closed":
            f.closes.append(e.at)
    return f


def _settle(item: Item, candidates: Sequence[tuple[datetime | None, str]]) -> Item:
    """Met at the earliest candidate at or after the start; time to meet on the term's clock."""
    found = [(at, how) for at, how in candidates if at is not None and at >= item.started_at]
    if found:
        item.met_at, item.met_by = min(found)
    return item


def _work_seconds(item: Item, tenant: Tenant | None, unit: TermUnit | None) -> int | None:
    if item.met_at is None:
        return None
    if unit is TermUnit.WORKDAYS and tenant is not None:
        return int(tenant.calendar.working_time_between(item.started_at, item.met_at).total_seconds())
    return max(int((item.met_at - item.started_at).total_seconds()), 0)


def _unit_and_extension(
    term: str, start: datetime, tenant: Tenant | None
) -> tuple[TermUnit | None, datetime | None]:
    try:
        parsed = parse_term(term)
    except TermError:
        return None, None
    extended = tenant.calendar.extended_deadline(start, parsed) if tenant is not None else None
    return parsed.unit, extended.astimezone(UTC) if extended is not None else None


def project(contact_id: str, events: Sequence[EventRow], tenant: Tenant | None) -> list[Item]:
    """The items of one contact from all its events (any order; the same set gives the same items).

    - A deadline of `contact.routed` starts at receipt (`contact.received`'s `received_at`) and is met
      by the first of: an `immediately` term (at receipt, by the channel's automatic
      acknowledgement), `deadline.met` of its kind, the contact's `contact.closed`.
    - A callback request starts when `callback.requested` and is met by the first of: an attempt that
      reached the resident (`callback.attempted` with `closed`), the contact's close after the request.
    """
    f = _facts(events)
    first = f.routed or f.received
    if first is None:
        return []
    tenant_id = first.tenant
    channel = next((e.channel for e in (f.routed, f.received) if e is not None and e.channel), None)
    if channel is None:
        return []
    category = f.routed.category if f.routed else None
    zone = tenant.calendar.zone if tenant is not None else DEFAULT_ZONE
    norms = tenant.loaded.rules.norms if tenant is not None else NormTable(())
    received_at = (f.received and f.received.received_at) or first.at
    closes = [(at, "closed") for at in f.closes]
    items: list[Item] = []

    def item(subject: str, kind: str, term: str, team: str | None, start: datetime, due: datetime) -> Item:
        norm_channel, norm_category = norm_key(norms, channel, category, kind)
        return Item(
            subject_id=subject,
            contact_id=contact_id,
            tenant=tenant_id,
            kind=kind,
            channel=channel,
            category=category,
            norm_channel=norm_channel,
            norm_category=norm_category,
            term=term,
            team=team,
            started_at=start,
            month=month_of(start, zone),
            due=due.astimezone(UTC),
        )

    for d in f.routed.deadlines if f.routed else ():
        it = item(contact_id, d.kind, d.term, f.team, received_at, d.due)
        unit, it.extended_due = _unit_and_extension(d.term, received_at, tenant)
        automatic = received_at if unit is TermUnit.IMMEDIATELY else None
        _settle(it, [(automatic, "automatic"), (f.met.get(d.kind), "response"), *closes])
        it.breached_at = f.breached.get((d.kind, None))
        it.work_seconds = _work_seconds(it, tenant, unit)
        items.append(it)
    callback_term = _callback_term(tenant)
    for cb in f.callbacks:
        assert cb.callback_id is not None and cb.due is not None
        it = item(cb.callback_id, "callback", callback_term, cb.team, cb.at, cb.due)
        unit, it.extended_due = _unit_and_extension(callback_term, cb.at, tenant)
        _settle(it, [(f.reached.get(cb.callback_id), "callback"), *closes])
        it.breached_at = f.breached.get(("callback", cb.callback_id))
        it.work_seconds = _work_seconds(it, tenant, unit)
        items.append(it)
    return items


def _callback_term(tenant: Tenant | None) -> str:
    term = tenant.loaded.rules.callback_term() if tenant is not None else None
    return str(term) if term is not None else "callback term"


# -- audit ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who viewed or changed which contact, when: the agent's id, the API credential's name, the
    contact id and an action code (`contact.viewed`, `contact.transferred`, ...). Ids and codes only."""

    at: datetime
    tenant: str
    contact_id: str
    action: str
    agent: str | None
    credential: str | None


def audit_entry(
    *, at: datetime, tenant: str, contact_id: str, action: str, agent: str | None, credential: str | None
) -> AuditEntry:
    """An `AuditEntry`, checked: ValueError names the field that is not an id or a code."""
    if at.tzinfo is None:
        raise ValueError("at: an aware datetime is needed")
    checks = (
        ("tenant", tenant, _TENANT, False),
        ("contact_id", contact_id.lower() if isinstance(contact_id, str) else contact_id, _UUID, False),
        ("action", action, _CODE, False),
        ("agent", agent, _AGENT, True),
        ("credential", credential, _AGENT, True),
    )
    for name, value, pattern, optional in checks:
        if value is None and optional:
            continue
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"{name}: not an id or code as the audit log keeps them")
    return AuditEntry(at.astimezone(UTC), tenant, contact_id.lower(), action, agent, credential)


# -- retention --------------------------------------------------------------------------------------


def history_retention(retention: Retention) -> Period:
    """How long the event rows of a closed contact are kept: as long as the contact itself
    (`retention.closed_contacts`), counted from its close."""
    return retention.closed_contacts


def audit_retention(retention: Retention) -> Period:
    """How long an audit row is kept, counted from its time: `retention.audit`, or two years."""
    return retention.audit


# -- the port ---------------------------------------------------------------------------------------


@dataclass
class RebuildResult:
    contacts: int = 0
    items: int = 0
    # Items of contacts whose event rows are gone (purged or erased): kept as they are, without ids.
    kept_anonymous: int = 0


class HistoryStore(PersonalData, Protocol):
    """An append-only history of events with the norm items they make, and an append-only audit log.

    `append` is idempotent on `event_id` and recomputes the items of every contact it stored an event
    of, in the same transaction: a consumer that acks after `append` returned stores every event once,
    however often it is delivered. As `PersonalData` it joins the purge (the rows of contacts closed
    longer than the tenant's term, the audit rows past the audit term) and the erasure; the items of
    those contacts are kept for the report without any id or time but their month."""

    name: str

    async def migrate(self) -> list[str]:
        """Apply the schema migrations not applied yet; their names."""
        ...

    async def append(self, events: Sequence[EventRow]) -> int:
        """Store the events not stored yet (by `event_id`); how many were new."""
        ...

    async def events_of(self, contact_id: str) -> list[EventRow]: ...

    async def count_events(self, tenant: str | None = None) -> int: ...

    async def items_of(self, contact_id: str) -> list[Item]: ...

    async def rebuild(self, tenant: str | None = None) -> RebuildResult:
        """Recompute every item from the event rows (after a change of the rules or of `project`)."""
        ...

    async def report_rows(self, tenant: str, first: date, end: date, as_of: datetime) -> list[ReportRow]:
        """The items of `tenant` that started in the months `first` <= month < `end`, grouped for the
        report (`router.core.report.compute`), their status as of `as_of`."""
        ...

    async def audit(self, entry: AuditEntry) -> None:
        """Append one entry to the audit log."""
        ...

    async def audit_log(
        self,
        tenant: str | None = None,
        *,
        contact_id: str | None = None,
        agent: str | None = None,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        """Audit entries of one contact or one agent, oldest first."""
        ...

    async def event_counts(
        self, tenant: str, events: Sequence[str], since: datetime
    ) -> dict[tuple[str, str | None], int]:
        """How many events of each name per team of `tenant` happened at or after `since` (the
        supervisor's breaches and refused transfers)."""
        ...

    async def close(self) -> None: ...
