"""Everything the service holds per tenant, compiled once at start-up: rules, classifier, calendar."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from router.core.calendar.terms import Term
from router.core.calendar.workdays import TenantCalendar
from router.core.classify import Classifier
from router.core.rules import LoadedRules, load_dir

# The kinds of deadline the router sets when a contact arrives; callbacks come later, from agents.
ROUTING_DEADLINE_KINDS = ("acknowledge", "respond", "resolve")


@dataclass(frozen=True)
class Deadline:
    kind: str
    term: Term
    due: datetime
    warning_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "term": str(self.term),
            "due": self.due.isoformat(),
            "warning_at": self.warning_at.isoformat(),
        }


@dataclass(frozen=True)
class Tenant:
    loaded: LoadedRules
    classifier: Classifier
    calendar: TenantCalendar
    # (channel, category) -> the (kind, term) pairs that apply: the norm lookup once per situation, not
    # three times per contact. Bounded: channels are free identifiers.
    _terms: dict[tuple[str, str | None], tuple[tuple[str, Term], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def id(self) -> str:
        return self.loaded.rules.tenant

    def deadline(self, kind: str, term: Term, received_at: datetime) -> Deadline:
        due = self.calendar.deadline(received_at, term)
        return Deadline(kind, term, due, self.calendar.warning_point(received_at, term))

    def deadlines_for(self, channel: str, category: str | None, received_at: datetime) -> list[Deadline]:
        terms = self._terms.get((channel, category))
        if terms is None:
            norms = self.loaded.rules.norms
            found = ((kind, norms.term_for(channel, category, kind)) for kind in ROUTING_DEADLINE_KINDS)
            terms = tuple((kind, term) for kind, term in found if term is not None)
            if len(self._terms) >= 1024:
                self._terms.clear()
            self._terms[(channel, category)] = terms
        return [self.deadline(kind, term, received_at) for kind, term in terms]


def build(loaded: dict[str, LoadedRules]) -> dict[str, Tenant]:
    return {
        tenant: Tenant(item, Classifier.compile(item), TenantCalendar.from_spec(item.rules.calendar))
        for tenant, item in loaded.items()
    }


def load(rules_dir: Path) -> dict[str, Tenant]:
    return build(load_dir(rules_dir))
