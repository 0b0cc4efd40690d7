"""How long the service keeps what it holds about a resident (AVG art. 5(1)(e)): retention terms.

Per tenant, in the rules file (`retention:`; defaults when absent):

    retention:
      closed_contacts: 12 months   # a closed contact, its history, callbacks, thread and reference keys
      dead_letters: 30 days        # a message in router.dead, counted from when it was dead-lettered

A term is a whole number of days, weeks, months or years. Months and years are calendar months (in UTC):
closed on 31 January, a term of one month ends on 28 (or 29) February. Something is past its term at
`now` once `start + term <= now`. Pure: the purge that acts on it is `router.core.erasure`.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, WithJsonSchema

__all__ = [
    "DEFAULT_CLOSED_CONTACTS",
    "DEFAULT_DEAD_LETTERS",
    "Period",
    "PeriodField",
    "Retention",
    "RetentionPolicy",
    "parse_period",
]

Unit = Literal["day", "week", "month", "year"]

_UNITS: dict[str, Unit] = {
    "day": "day",
    "days": "day",
    "dag": "day",
    "dagen": "day",
    "week": "week",
    "weeks": "week",
    "weken": "week",
    "month": "month",
    "months": "month",
    "maand": "month",
    "maanden": "month",
    "year": "year",
    "years": "year",
    "jaar": "year",
    "jaren": "year",
}
_PERIOD_RE = re.compile(r"^\s*(\d{1,5})\s*([a-z]+)\s*$")
# More than a century of retention is a typo, not a policy; it would also overflow datetime arithmetic.
_MAX_DAYS = 100 * 366


@dataclass(frozen=True, slots=True)
class Period:
    """A retention term: `count` days, weeks, months or years."""

    count: int
    unit: Unit

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("a retention term is at least 1 day")
        if self.approx_days() > _MAX_DAYS:
            raise ValueError("a retention term is at most 100 years")

    def approx_days(self) -> int:
        """Roughly how many days (for comparing terms and bounds; `after` is exact)."""
        per = {"day": 1, "week": 7, "month": 31, "year": 366}[self.unit]
        return self.count * per

    def after(self, start: datetime) -> datetime:
        """The moment the term that began at `start` ends (aware datetimes, computed in UTC)."""
        if start.tzinfo is None:
            raise ValueError("retention needs aware datetimes")
        start = start.astimezone(UTC)
        if self.unit == "day":
            return start + timedelta(days=self.count)
        if self.unit == "week":
            return start + timedelta(weeks=self.count)
        months = self.count * (12 if self.unit == "year" else 1)
        index = start.month - 1 + months
        year, month = start.year + index // 12, index % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        return start.replace(year=year, month=month, day=day)

    def past(self, start: datetime, now: datetime) -> bool:
        """Whether something that began at `start` is past this term at `now`."""
        return self.after(start) <= now

    def latest_start(self, now: datetime) -> datetime:
        """The latest start that can be past this term at `now`: for finding candidates in an index
        ordered by start (no term is shorter than this many days); check each with `past`."""
        shortest = {"day": 1, "week": 7, "month": 28, "year": 365}[self.unit] * self.count
        return now.astimezone(UTC) - timedelta(days=shortest)

    def __str__(self) -> str:
        return f"{self.count} {self.unit}{'' if self.count == 1 else 's'}"


def parse_period(text: str) -> Period:
    """'12 months', '30 days', '1 year', '6 weeks' (also the Dutch words) -> Period; ValueError otherwise."""
    match = _PERIOD_RE.match(text.lower()) if isinstance(text, str) else None
    unit = _UNITS.get(match.group(2)) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"expected a term like '12 months', '30 days' or '2 years' (days, weeks, months or years), "
            f"got {text!r}"
        )
    return Period(int(match.group(1)), unit)


def _validate(value: Any) -> Period:
    if isinstance(value, Period):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"a term needs a unit, e.g. '{value} days' or '{value} months'")
    if not isinstance(value, str):
        raise ValueError(f"expected a term like '12 months' or '30 days', got {value!r}")
    return parse_period(value)


PeriodField = Annotated[
    Period,
    PlainValidator(_validate),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["12 months", "30 days"]}),
]

DEFAULT_CLOSED_CONTACTS = Period(12, "month")
DEFAULT_DEAD_LETTERS = Period(30, "day")
DEFAULT_AUDIT = Period(2, "year")


class Retention(BaseModel):
    """A tenant's `retention:` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A closed contact (state, history, callback requests, thread and reference keys, index entries),
    # counted from when it was closed. A reply that reopens it starts the count again at the next close.
    closed_contacts: PeriodField = DEFAULT_CLOSED_CONTACTS
    # A message in router.dead, counted from when it was dead-lettered.
    dead_letters: PeriodField = DEFAULT_DEAD_LETTERS
    # A row of the audit table (who viewed or changed which contact), counted from its time; kept on
    # erasure (AVG art. 17(3)(b)). Two years: the BIO's "at least six months" of logging, and the
    # usual term for investigating a complaint about access.
    audit: PeriodField = DEFAULT_AUDIT


class RetentionPolicy:
    """Every tenant's retention. A dead letter whose tenant cannot be read gets the shortest term of
    all tenants: when in doubt, keep less."""

    def __init__(self, by_tenant: Mapping[str, Retention]):
        self.by_tenant = dict(by_tenant)

    def tenants(self) -> list[str]:
        return sorted(self.by_tenant)

    def closed_contacts(self, tenant: str) -> Period:
        return self.by_tenant.get(tenant, Retention()).closed_contacts

    def dead_letters(self, tenant: str | None) -> Period:
        if tenant is not None and tenant in self.by_tenant:
            return self.by_tenant[tenant].dead_letters
        return self.shortest_dead_letters()

    def shortest_dead_letters(self) -> Period:
        terms = [r.dead_letters for r in self.by_tenant.values()] or [DEFAULT_DEAD_LETTERS]
        # The shortest in fact, not in approximate days: the term that ends first from one start.
        start = datetime(2000, 1, 31, tzinfo=UTC)
        return min(terms, key=lambda term: term.after(start))
