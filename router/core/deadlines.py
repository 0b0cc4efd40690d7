"""Which of a contact's deadlines are still open, which one comes first, how much time is left, and the
messages of a breach.

A contact carries its deadlines as the router set them (`kind`, `term`, `due`, `warning_at`; an
extension adds `original_due`). A deadline is *open* until it is met (`met:<kind>` on the contact).
Two kinds of deadline are never open: a term of "immediately" (the adapter's automatic acknowledgement,
met at the edge) and an acknowledgement the adapter says it already sent (`acknowledged_at` in the
metadata). A team's work list sorts every item by its soonest open deadline of any kind; an item
without one sorts last.

Time left is counted the way the term is: working time (office hours of workdays) for a workday term,
clock time for hour, day and week terms (a danger report's three hours run at night too).

The breach of a deadline is one event (`deadline.breached`) and one escalation, the same whether the
scheduler fires its timer or the router finds it already past when the contact arrives (a phone note
logged long after the call).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from router.core import topology
from router.core.calendar.terms import Term, TermUnit
from router.core.calendar.workdays import TenantCalendar
from router.core.clock import epoch_ms
from router.core.messages import OutMessage, dumps, event_key
from router.core.topology import Names

NO_DEADLINE_SCORE = 32503680000000  # year 3000: items without an open deadline sort last


@dataclass(frozen=True, slots=True)
class OpenDeadline:
    """The deadline an item is listed by: its kind, its term (as text) and when it is due."""

    kind: str
    term: str | None
    due: datetime

    @property
    def score(self) -> int:
        return epoch_ms(self.due)


def is_open(deadline: Mapping[str, Any], met: Mapping[str, str], acknowledged: bool) -> bool:
    kind = deadline["kind"]
    if deadline.get("term") == "immediately" or met.get(f"met:{kind}"):
        return False
    return not (kind == "acknowledge" and acknowledged)


def soonest_open(
    deadlines: Iterable[Mapping[str, Any]], met: Mapping[str, str], acknowledged: bool = False
) -> OpenDeadline | None:
    """The open deadline due first (`met`: the contact's fields, where `met:<kind>` marks a met one)."""
    best: OpenDeadline | None = None
    for d in deadlines:
        if not is_open(d, met, acknowledged):
            continue
        due = datetime.fromisoformat(d["due"])
        if best is None or due < best.due:
            best = OpenDeadline(d["kind"], d.get("term"), due)
    return best


def score(deadline: OpenDeadline | None) -> int:
    """An item's place in its team's work list (epoch ms): its soonest open deadline, or last."""
    return deadline.score if deadline is not None else NO_DEADLINE_SCORE


@functools.lru_cache(maxsize=1024)
def term_unit(term: str | None) -> TermUnit | None:
    if not term:
        return None
    try:
        return Term.parse(term).unit
    except ValueError:
        return None


def time_left(calendar: TenantCalendar, now: datetime, due: datetime, term: str | None) -> timedelta:
    """Until `due`, on the term's own clock: working time for workday terms, clock time otherwise
    (negative once overdue)."""
    if term_unit(term) is TermUnit.WORKDAYS:
        return calendar.working_time_left(now, due)
    return due - now


# -- breaches -------------------------------------------------------------------------------------


def timer_member(subject: str, kind: str, phase: str) -> str:
    return f"{subject}|{kind}|{phase}"


def breach_messages(
    names: Names,
    now: datetime,
    *,
    tenant: str,
    contact_id: str,
    callback_id: str | None,
    kind: str,
    team: str | None,
    due: datetime | None,
    reference: str | None,
    phase: str = "breach",
    **extra: Any,
) -> list[OutMessage]:
    """The event of a warning or a breach, and for a breach the escalation on `escalations.<tenant>`
    (its message id names the timer, so that the scheduler and the router never escalate one deadline
    under two ids). Ids and facts only."""
    name = "deadline.warning" if phase == "warning" else "deadline.breached"
    body = {
        "event": name,
        "event_id": str(uuid.uuid4()),
        "at": now.isoformat(),
        "tenant": tenant,
        "contact_id": contact_id,
        "callback_id": callback_id,
        "kind": kind,
        "team": team,
        "due": due.astimezone(UTC).isoformat() if due is not None else None,
        "reference": reference,
        **extra,
    }
    text = dumps(body)
    out = [OutMessage(names(topology.EVENTS), event_key(tenant, name), text, body["event_id"])]
    if phase == "breach":
        member = timer_member(callback_id or contact_id, kind, "breach")
        out.append(
            OutMessage(
                names(topology.ESCALATIONS),
                tenant,
                text,
                f"escalation:{member}",
                {topology.H_CONTACT_ID: contact_id},
            )
        )
    return out
