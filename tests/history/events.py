"""Events as the service publishes them (router/core/messages.py `event_message`), for the history
tests: one contact's life in a few calls."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from router.core.history import EventRow, parse_event
from router.core.messages import event_message
from router.core.tenants import Tenant


def event(name: str, at: datetime, tenant: str = "ommen", **fields: Any) -> EventRow:
    row = parse_event(event_message("events", name, at, tenant=tenant, **fields).body)
    assert not isinstance(row, str), row
    return row


def routed(
    t: Tenant, cid: str, at: datetime, channel: str = "mail", category: str | None = None
) -> list[EventRow]:
    """contact.received and contact.routed, with the deadlines the tenant's norms give."""
    deadlines = [d.as_dict() for d in t.deadlines_for(channel, category, at)]
    common = {"tenant": t.id, "contact_id": cid, "channel": channel}
    return [
        event("contact.received", at, received_at=at.isoformat(), **common),
        event(
            "contact.routed",
            at,
            team="kcc",
            rule="Algemene vragen",
            category=category,
            deadlines=deadlines,
            **common,
        ),
    ]


def met(t: Tenant, cid: str, at: datetime, kind: str = "respond", agent: str = "kcc-017") -> EventRow:
    return event(
        "deadline.met", at, tenant=t.id, contact_id=cid, kind=kind, on_time=True, agent=agent, by="ommen-kcc"
    )


def closed(t: Tenant, cid: str, at: datetime) -> EventRow:
    return event(
        "contact.closed", at, tenant=t.id, contact_id=cid, team="kcc", agent="kcc-017", by="ommen-kcc"
    )


def new_id() -> str:
    return str(uuid.uuid4())
