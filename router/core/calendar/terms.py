"""Service-norm terms: "5 workdays", "3 hours", "2 weeks", "12 weeks + 6 weeks", "immediately".

A `Term` is a plain immutable value; what it means on a calendar (office hours, holidays, time zone)
is decided by `router.core.calendar.workdays.TenantCalendar`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

__all__ = ["MAX_AMOUNT", "Term", "TermError", "TermField", "TermUnit", "parse_term"]

# Terms in service charters are at most months long; the bound keeps a typo such as "50000 workdays"
# from making the calendar build centuries of workday tables.
MAX_AMOUNT = 10_000


class TermUnit(StrEnum):
    WORKDAYS = "workdays"
    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"
    IMMEDIATELY = "immediately"


class TermError(ValueError):
    """A term could not be parsed or is inconsistent."""


_UNIT_WORDS: dict[str, TermUnit] = {
    "workday": TermUnit.WORKDAYS,
    "workdays": TermUnit.WORKDAYS,
    "werkdag": TermUnit.WORKDAYS,
    "werkdagen": TermUnit.WORKDAYS,
    "hour": TermUnit.HOURS,
    "hours": TermUnit.HOURS,
    "uur": TermUnit.HOURS,
    "uren": TermUnit.HOURS,
    "day": TermUnit.DAYS,
    "days": TermUnit.DAYS,
    "dag": TermUnit.DAYS,
    "dagen": TermUnit.DAYS,
    "week": TermUnit.WEEKS,
    "weeks": TermUnit.WEEKS,
    "weken": TermUnit.WEEKS,
}
_IMMEDIATE_WORDS = frozenset({"immediately", "direct", "onmiddellijk"})
_SINGULAR = {
    TermUnit.WORKDAYS: "workday",
    TermUnit.HOURS: "hour",
    TermUnit.DAYS: "day",
    TermUnit.WEEKS: "week",
}
_CALENDAR_DAY_UNITS = frozenset({TermUnit.DAYS, TermUnit.WEEKS})

_PART = r"([0-9]+)\s*([a-z]+)"
_TERM_RE = re.compile(rf"{_PART}(?:\s*\+\s*{_PART})?")
_EXPECTED = (
    "expected '<number> <unit>' with unit workdays, hours, days or weeks "
    "(Dutch: werkdagen, uur, dagen, weken), optionally '+ <number> <unit>', or 'immediately'"
)


@dataclass(frozen=True, slots=True)
class Term:
    """`amount` `unit`, optionally with an `extension` (itself a Term without extension).

    An extension must be counted the same way as the base: workdays with workdays, hours with hours,
    days and weeks with each other (both are calendar days).
    """

    amount: int
    unit: TermUnit
    extension: Term | None = None

    def __post_init__(self) -> None:
        # A Term can be built in code as well as parsed, so the invariants are checked here.
        if not isinstance(self.unit, TermUnit):
            raise TermError(f"unknown term unit {self.unit!r}")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TermError(f"term amount {self.amount!r} is not a whole number")
        if self.unit is TermUnit.IMMEDIATELY:
            if self.amount != 0 or self.extension is not None:
                raise TermError("the term 'immediately' takes no amount and no extension")
            return
        if not 0 <= self.amount <= MAX_AMOUNT:
            raise TermError(f"term amount {self.amount} is out of range: expected 0 to {MAX_AMOUNT}")
        ext = self.extension
        if ext is None:
            return
        if ext.extension is not None:
            raise TermError("a term can have only one extension")
        if ext.unit is TermUnit.IMMEDIATELY:
            raise TermError("an extension cannot be 'immediately'")
        if ext.unit is not self.unit and not (
            self.unit in _CALENDAR_DAY_UNITS and ext.unit in _CALENDAR_DAY_UNITS
        ):
            raise TermError(
                "the extension must be counted like the base term "
                f"({self.unit} cannot be extended by {ext.unit})"
            )

    @classmethod
    def parse(cls, text: str) -> Term:
        return parse_term(text)

    @property
    def base(self) -> Term:
        """The term without its extension."""
        return self if self.extension is None else Term(self.amount, self.unit)

    def extended(self) -> Term:
        """Base plus extension as one term (itself when there is no extension)."""
        ext = self.extension
        if ext is None:
            return self
        if ext.unit is self.unit:
            return Term(self.amount + ext.amount, self.unit)
        # Mixed days and weeks: both are calendar days.
        return Term(self.calendar_days() + ext.calendar_days(), TermUnit.DAYS)

    def calendar_days(self) -> int:
        """Length of a day or week term in calendar days."""
        if self.unit is TermUnit.WEEKS:
            return 7 * self.amount
        if self.unit is TermUnit.DAYS:
            return self.amount
        raise TermError(f"'{self}' is not counted in calendar days")

    def __str__(self) -> str:
        if self.unit is TermUnit.IMMEDIATELY:
            return "immediately"
        unit = _SINGULAR[self.unit] if self.amount == 1 else self.unit.value
        text = f"{self.amount} {unit}"
        return text if self.extension is None else f"{text} + {self.extension}"


def _unit(word: str, text: str) -> TermUnit:
    try:
        return _UNIT_WORDS[word]
    except KeyError:
        raise TermError(f"unknown unit {word!r}; {_EXPECTED}") from None


def parse_term(text: str) -> Term:
    """Parse a term in English or Dutch; case and whitespace do not matter."""
    if not isinstance(text, str):
        raise TermError(f"invalid term {text!r}: {_EXPECTED}")
    norm = " ".join(text.split()).lower()
    if norm in _IMMEDIATE_WORDS:
        return Term(0, TermUnit.IMMEDIATELY)
    m = _TERM_RE.fullmatch(norm)
    if m is None:
        raise TermError(f"invalid term {text!r}: {_EXPECTED}")
    amount, word, ext_amount, ext_word = m.groups()
    extension = None
    try:
        if ext_amount is not None:
            extension = Term(int(ext_amount), _unit(ext_word, text))
        return Term(int(amount), _unit(word, text), extension)
    except TermError as exc:
        raise TermError(f"invalid term {text!r}: {exc}") from None


def _validate(value: Any) -> Term:
    if isinstance(value, Term):
        return value
    return parse_term(value)


# Declare a model field as `term: TermField`; it validates from a string and serialises back to one.
TermField = Annotated[
    Term,
    PlainValidator(_validate),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "description": "'<number> <unit>' (workdays, hours, days, weeks; Dutch werkdagen, uur, dagen, "
            "weken), optionally '+ <number> <unit>', or 'immediately'",
            "examples": ["5 workdays", "3 hours", "2 weeks", "12 weeks + 6 weeks", "immediately"],
        }
    ),
]
