"""The date by which the resident gets an answer, as the router will compute it, for acknowledgements.

The router classifies the contact and sets the `respond` deadline from the tenant's service norms; the
adapter asks the same compiled rules, so the acknowledgement promises the date the team is held to.
(It reads the category only to pick the norm; routing stays the router's decision.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from adapters.kit.dutch import long_date, long_date_time
from router.core.calendar.terms import TermUnit
from router.core.contact import Contact
from router.core.tenants import Tenant


@dataclass(frozen=True)
class AnswerBy:
    due: datetime
    text: str  # plain Dutch, e.g. "donderdag 21 mei 2026"


def answer_by(tenant: Tenant, contact: Contact) -> AnswerBy | None:
    """None when the tenant has no `respond` norm for this channel and category."""
    category = contact.category or tenant.classifier.classify(contact).category
    zone = tenant.loaded.rules.calendar.timezone
    for deadline in tenant.deadlines_for(contact.channel, category, contact.received_at):
        if deadline.kind == "respond":
            # Hour terms (danger: 3 hours) end mid-day, so the time matters; others end at closing time.
            hours = deadline.term.unit == TermUnit.HOURS
            text = long_date_time(deadline.due, zone) if hours else long_date(deadline.due, zone)
            return AnswerBy(deadline.due, text)
    return None
