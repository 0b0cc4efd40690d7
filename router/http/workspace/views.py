"""What the pages show, built from the case-work service's data: rows of a work list with their
deadline state, and a contact's deadlines with how each came about (as `contact-router deadline
--explain` tells it)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from router.core.calendar.terms import Term
from router.core.casework import SYNCHRONOUS_CHANNELS, CaseState
from router.core.casework_service import Casework
from router.core.deadlines import time_left
from router.core.tenants import Tenant
from router.core.worklist import ItemHead
from router.http.workspace import texts

# Under this share of the term left an item is at risk (the colour "bijna te laat").
AT_RISK_SHARE = 0.2
# Items on one page of a work list: what an agent can take in; the counts cover the whole list.
PAGE_SIZE = 100


def deadline_state(
    tenant: Tenant, now: datetime, start: str | None, due: str | None, term: str | None
) -> tuple[str, int | None, float | None]:
    """('te-laat' | 'risico' | 'op-tijd' | 'geen', working seconds left, share of the term left)."""
    return _state(
        tenant,
        now,
        datetime.fromisoformat(start) if start else None,
        datetime.fromisoformat(due) if due else None,
        term,
    )


def _state(
    tenant: Tenant, now: datetime, start: datetime | None, due: datetime | None, term: str | None
) -> tuple[str, int | None, float | None]:
    if due is None:
        return "geen", None, None
    calendar = tenant.calendar
    left = int(time_left(calendar, now, due, term).total_seconds())
    if now > due:
        return "te-laat", left, 0.0
    share: float | None = None
    if start is not None:
        total = time_left(calendar, start, due, term).total_seconds()
        share = left / total if total > 0 else 0.0
    return ("risico" if share is not None and share < AT_RISK_SHARE else "op-tijd"), left, share


@dataclass
class Row:
    item: dict[str, Any]
    state: str
    left: int | None
    share: float | None

    @property
    def callback(self) -> bool:
        return bool(self.item["kind"] == "callback_request")


@dataclass
class WorkList:
    """One page of a team's work list, with the counts of the whole list (as filtered)."""

    team: str
    contacts: list[Row] = field(default_factory=list)  # of this page
    callbacks: list[Row] = field(default_factory=list)  # of this page
    channels: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    total_contacts: int = 0
    total_callbacks: int = 0
    at_risk: int = 0
    overdue: int = 0
    page: int = 1
    pages: int = 1
    first: int = 0  # position of the page's first item in the list (1-based; 0 when empty)
    last: int = 0

    @property
    def total(self) -> int:
        return self.total_contacts + self.total_callbacks


@dataclass(frozen=True)
class Placed:
    head: ItemHead
    state: str
    left: int | None
    share: float | None

    @property
    def id_score(self) -> tuple[str, float]:
        return self.head.id, self.head.score


def work_list_page(
    tenant: Tenant,
    team: str,
    heads: list[ItemHead],
    now: datetime,
    *,
    channel: str | None = None,
    category: str | None = None,
    page: int = 1,
    page_size: int = PAGE_SIZE,
    states: tuple[str, ...] | None = None,
) -> tuple[WorkList, list[Placed]]:
    """The team's items soonest deadline first (as the service lists them), filtered by channel and
    category, counted, and cut to one page (of those in `states`, when given: the counts still cover
    all): the page's items are returned to be read in full. The filters offer what the list holds."""
    out = WorkList(team)
    channels: set[str] = set()
    categories: set[str] = set()
    placed: list[Placed] = []
    for head in heads:
        channels.add(head.channel or "")
        categories.add(head.category or "")
        if channel and head.channel != channel:
            continue
        if category and (head.category or "") != category:
            continue
        start = datetime.fromisoformat(head.counted_from) if head.counted_from else None
        state, left, share = _state(tenant, now, start, head.due, head.term)
        placed.append(Placed(head, state, left, share))
        if head.kind == "callback_request":
            out.total_callbacks += 1
        else:
            out.total_contacts += 1
        out.at_risk += state == "risico"
        out.overdue += state == "te-laat"
    out.channels = sorted(c for c in channels if c)
    out.categories = sorted(c for c in categories if c)
    if states is not None:
        placed = [p for p in placed if p.state in states]
    out.pages = max(1, -(-len(placed) // page_size))
    out.page = min(max(1, page), out.pages)
    shown = placed[(out.page - 1) * page_size : out.page * page_size]
    if shown:
        out.first = (out.page - 1) * page_size + 1
        out.last = out.first + len(shown) - 1
    return out, shown


async def read_page(service: Casework, tenant: Tenant, team: str, now: datetime, **options: Any) -> WorkList:
    """`work_list_page` over the team's item heads (`options`: its filters, page and states), with the
    page's items read in full."""
    listed, shown = work_list_page(tenant, team, await service.item_heads(tenant.id, team), now, **options)
    return fill_page(listed, shown, await service.items_by_id(tenant.id, [p.id_score for p in shown]))


def fill_page(out: WorkList, shown: list[Placed], items: list[dict[str, Any]]) -> WorkList:
    """The page's rows from the items read in full, with the deadline state the counts used."""
    by_id = {item["id"]: item for item in items}
    for p in shown:
        item = by_id.get(p.head.id)
        if item is None:  # closed or moved between the two reads: the next refresh shows the list as is
            continue
        row = Row(item, p.state, p.left, p.share)
        (out.callbacks if row.callback else out.contacts).append(row)
    return out


@dataclass
class DeadlineView:
    kind: str
    label: str
    term: str
    due: str
    state: str
    left: int | None
    met_at: str | None
    extended_from: str | None
    extensible: bool
    explanation: dict[str, Any] | None


def explain(tenant: Tenant, start: datetime, term_text: str) -> dict[str, Any] | None:
    """How the deadline of `term_text` counted from `start` comes about: day 0, the days skipped."""
    try:
        term = Term.parse(term_text)
    except ValueError:
        return None
    zone = tenant.calendar.zone
    ex = tenant.calendar.explain(start, term)
    return {
        "received_at": texts.moment(ex.received_at, zone),
        "term": str(ex.term),
        "day_zero": texts.moment(datetime.combine(ex.day_zero, datetime.min.time(), zone), zone)[:-7]
        if ex.day_zero
        else None,
        "day_zero_reason": texts.day_zero_reason(ex.day_zero_reason),
        "skipped": [
            {
                "day": texts.moment(datetime.combine(s.day, datetime.min.time(), zone), zone)[:-7],
                "reason": texts.skipped_reason(s.reason),
            }
            for s in ex.skipped
        ],
        "deadline": texts.moment(ex.deadline, zone),
        "warning_at": texts.moment(ex.warning_at, zone),
        "extended_deadline": texts.moment(ex.extended_deadline, zone) if ex.extended_deadline else None,
    }


def deadlines(tenant: Tenant, state: CaseState, now: datetime) -> list[DeadlineView]:
    out = []
    received = state.fields.get("received_at")
    for d in state.deadlines():
        kind, term = d["kind"], d.get("term") or ""
        met_at = state.fields.get(f"met:{kind}") or None
        status, left, _share = deadline_state(tenant, now, received, d["due"], term)
        if met_at:
            status = "gehaald"
        try:
            extensible = Term.parse(term).extension is not None
        except ValueError:
            extensible = False
        extensible = (
            extensible and not met_at and "original_due" not in d and now <= datetime.fromisoformat(d["due"])
        )
        out.append(
            DeadlineView(
                kind=kind,
                label=texts.DEADLINE_KINDS.get(kind, kind),
                term=term,
                due=texts.moment(d["due"], tenant.calendar.zone),
                state=status,
                left=left,
                met_at=texts.moment(met_at, tenant.calendar.zone) if met_at else None,
                extended_from=texts.moment(d["original_due"], tenant.calendar.zone)
                if d.get("original_due")
                else None,
                extensible=extensible,
                explanation=explain(tenant, datetime.fromisoformat(received), term) if received else None,
            )
        )
    return out


def transfer_offer(tenant: Tenant, state: CaseState) -> str:
    """What the transfer form offers: 'transfer', 'last' (the last transfer allowed), 'callback' (past
    the limit on a channel where the resident is on the line: a callback request instead) or
    'coordinating' (past the limit on a written channel: the coordinating team decides)."""
    limit = tenant.loaded.rules.transfer_limit
    if state.transfers < limit:
        return "last" if state.transfers + 1 == limit else "transfer"
    return "callback" if state.channel in SYNCHRONOUS_CHANNELS else "coordinating"


def hops(state: CaseState) -> list[dict[str, Any]]:
    contact = json.loads(state.fields["contact"]) if "contact" in state.fields else {}
    return list(contact.get("hops") or [])
