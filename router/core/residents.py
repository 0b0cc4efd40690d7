"""One resident across channels: which earlier contact a new one joins, and a resident's other contacts.

A contact's identity keys (`router.core.erasure.identities`: the e-mail address lower-cased, the phone
number in E.164, the social handle with its platform) name the resident; the store keeps, per tenant and
key, the ids of the resident's contacts, under a keyed hash of the value (router/redis/keys.py). Pure:
the store reads the candidates, this module decides.

- `open_link`: a new contact on the same category as an open, recent contact of the same resident joins
  it as a follow-up (`router.core.routing.follow_up`), unless the tenant turned it off (`residents` in
  the rules). Threading by In-Reply-To and by a quoted reference goes first.
- `related`: the resident's other contacts of the last `related_months`, for the contact page.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from router.core.contact import Contact, reference_for
from router.core.erasure import identities
from router.core.rules import Residents

# The fields of a candidate contact the decisions below read (one HMGET per candidate).
CANDIDATE_FIELDS = ("tenant", "channel", "status", "category", "team", "received_at", "committed")
# At most this many contact ids are read per identity key: a shared address (a care home's front desk,
# a firm writing on behalf of many) must not make routing read thousands of contacts.
CANDIDATES_PER_KEY = 100
RULE = "same-resident"
# A phone note whose outcome still asks something of a team on its own (a callback request with its own
# deadline) is not linked: joining would drop that request (docs/architecture.md).
_OWN_ITEM_OUTCOMES = frozenset({"colleague_unavailable"})


def identity_keys(contact: Contact) -> list[tuple[str, str]]:
    """(kind, normalised value) of the contact's sender: never a BSN, never a name."""
    sender = contact.sender
    if sender is None:
        return []
    return identities({"sender": {"email": sender.email, "phone": sender.phone, "handle": sender.handle}})


def months_before(now: datetime, months: int) -> datetime:
    """`now` minus calendar months (in UTC), the day clamped to the month's length."""
    now = now.astimezone(UTC)
    index = now.year * 12 + now.month - 1 - months
    year, month = divmod(index, 12)
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    return now.replace(year=year, month=month + 1, day=day)


def may_link(contact: Contact, category: str | None, policy: Residents) -> bool:
    """Whether a newly classified contact is looked up at all."""
    if not policy.link_open_same_category or category is None:
        return False
    if contact.channel == "phone" and contact.metadata.get("phone.outcome") in _OWN_ITEM_OUTCOMES:
        return False
    return True


def _received(fields: Mapping[str, str]) -> datetime | None:
    try:
        return datetime.fromisoformat(fields.get("received_at", ""))
    except ValueError:
        return None


@dataclass(frozen=True)
class Link:
    """The open contact a new one joins, and why."""

    target: str
    team: str
    category: str

    def join(self) -> dict[str, str]:
        """As `router.core.routing.follow_up` takes it."""
        return {"id": self.target, "team": self.team, "rule": RULE, "category": self.category}


def open_link(
    contact: Contact,
    category: str | None,
    candidates: Iterable[tuple[str, Mapping[str, str]]],
    policy: Residents,
    now: datetime,
) -> Link | None:
    """The earliest open contact of the same tenant and resident on the same category, received within
    the tenant's window: the one the new contact joins. None: it opens an item of its own."""
    if not may_link(contact, category, policy):
        return None
    since = months_before(now, policy.related_months)
    best: tuple[datetime, str, str] | None = None
    for cid, fields in candidates:
        if cid == contact.cid or fields.get("tenant") != contact.tenant or fields.get("committed") != "1":
            continue
        if fields.get("status") != "routed" or fields.get("category") != category or not fields.get("team"):
            continue
        received = _received(fields)
        if received is None or received < since or received > contact.received_at:
            continue
        if best is None or (received, cid) < best[:2]:
            best = (received, cid, fields["team"])
    if best is None or category is None:
        return None
    return Link(best[1], best[2], category)


@dataclass(frozen=True)
class Related:
    """One other contact of the resident, as the contact page and the API show it: ids and codes only."""

    id: str
    reference: str
    channel: str
    received_at: datetime
    status: str
    team: str
    category: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "reference": self.reference,
            "channel": self.channel,
            "received_at": self.received_at.isoformat(),
            "status": self.status,
            "team": self.team,
            "category": self.category,
        }


def related(
    cid: str,
    tenant: str,
    candidates: Iterable[tuple[str, Mapping[str, str]]],
    policy: Residents,
    now: datetime,
) -> list[Related]:
    """The resident's other contacts of the tenant received in the last `related_months`, newest first.
    A contact of another tenant is never among them, whatever its address."""
    since = months_before(now, policy.related_months)
    out: dict[str, Related] = {}
    for other, fields in candidates:
        if other == cid or other in out or fields.get("tenant") != tenant:
            continue
        if fields.get("committed") != "1":  # still being routed (or never was): not yet a contact
            continue
        received = _received(fields)
        if received is None or received < since:
            continue
        out[other] = Related(
            id=other,
            reference=reference_for(tenant, other),
            channel=fields.get("channel", ""),
            received_at=received,
            status=fields.get("status", ""),
            team=fields.get("team", ""),
            category=fields.get("category") or None,
        )
    return sorted(out.values(), key=lambda r: (r.received_at, r.id), reverse=True)
