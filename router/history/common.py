"""What both history stores share: the columns, the projection of a batch of contacts, the purge's
cut-off moments, and how a row of events becomes an `EventRow` again."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from router.core.history import EVENT_COLUMNS, EventRow, Item, project
from router.core.retention import Period
from router.core.tenants import Tenant

# The database's column for each EventRow field (`by` is a keyword of SQL).
DB_EVENT_COLUMNS = tuple("credential" if c == "by" else c for c in EVENT_COLUMNS)
ITEM_COLUMNS = (
    "subject_id",
    "contact_id",
    "tenant",
    "kind",
    "channel",
    "category",
    "norm_channel",
    "norm_category",
    "term",
    "team",
    "month",
    "started_at",
    "due",
    "extended_due",
    "met_at",
    "met_by",
    "breached_at",
    "met",
    "on_time",
    "within_extension",
    "work_seconds",
)


def item_values(item: Item) -> tuple[Any, ...]:
    return (
        item.subject_id,
        item.contact_id,
        item.tenant,
        item.kind,
        item.channel,
        item.category,
        item.norm_channel,
        item.norm_category,
        item.term,
        item.team,
        item.month,
        item.started_at,
        item.due,
        item.extended_due,
        item.met_at,
        item.met_by,
        item.breached_at,
        item.met,
        item.on_time,
        item.within_extension,
        item.work_seconds,
    )


def event_from(values: Mapping[str, Any], convert: Any = None) -> EventRow:
    """An EventRow from a database row keyed by column; `convert(column, value)` adapts the driver's
    types (uuid.UUID, text times) to the row's."""
    out: dict[str, Any] = {}
    for field_name, column in zip(EVENT_COLUMNS, DB_EVENT_COLUMNS, strict=True):
        value = values[column]
        if convert is not None:
            value = convert(column, value)
        out[field_name] = value
    out["deadlines"] = EventRow.deadlines_from_json(out["deadlines"])
    return EventRow(**out)


def project_all(events: Iterable[EventRow], tenants: Mapping[str, Tenant]) -> list[Item]:
    """The items of every contact the events name (the events are all the contacts' events)."""
    by_contact: dict[str, list[EventRow]] = {}
    for e in events:
        if e.contact_id is not None:
            by_contact.setdefault(e.contact_id, []).append(e)
    items: list[Item] = []
    for cid, evs in by_contact.items():
        items += project(cid, evs, tenants.get(evs[0].tenant))
    return items


def past_cutoff(term: Period, now: datetime) -> datetime:
    """The latest start that is past `term` at `now` (`term.past(start, now)` holds exactly for starts
    at or before it): `Period.after` never decreases, so the starts past their term are a prefix."""
    lo = now - timedelta(days=term.approx_days() + 1)  # past, for certain
    hi = term.latest_start(now) + timedelta(microseconds=1)  # not past, for certain
    while hi - lo > timedelta(microseconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=mid.microsecond)  # keep it a plain aware datetime
        if term.past(mid, now):
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class Closed:
    """A contact of the history and when it was last closed (None: open, or reopened by a reply)."""

    contact_id: str
    closed_at: datetime | None


def closed_contacts(rows: Sequence[tuple[str, datetime | None, datetime | None]]) -> list[Closed]:
    """From (contact id, last close, last reply): the contacts that are closed now."""
    return [
        Closed(cid, closed)
        for cid, closed, reply in rows
        if closed is not None and (reply is None or reply <= closed)
    ]
