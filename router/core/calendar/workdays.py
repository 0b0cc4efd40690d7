"""The tenant's workday calendar: office hours, gemeente holidays, closing days, and service-norm deadlines.

Everything here is pure computation. A `TenantCalendar` is built once per tenant from its `CalendarSpec`
and keeps lazily built per-year tables of workdays (opening and closing instants as UTC microseconds,
cumulative office time), so a workday deadline is one bisect and no holiday lookup or time-zone
conversion. The exact semantics are documented in docs/calendar.md.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from router.core.calendar.terms import Term, TermUnit

__all__ = [
    "DEFAULT_HOLIDAYS",
    "DEFAULT_TIMEZONE",
    "HOLIDAY_NAMES",
    "CalendarSpec",
    "ClosingDay",
    "ClosingDayField",
    "Explanation",
    "HolidayName",
    "HolidaySelection",
    "OfficeHours",
    "OfficeHoursField",
    "SkippedDay",
    "TenantCalendar",
    "Weekday",
    "gemeente_holidays",
]

DEFAULT_TIMEZONE = "Europe/Amsterdam"

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

HolidayName = Literal[
    "nieuwjaarsdag",
    "goede_vrijdag",
    "eerste_paasdag",
    "tweede_paasdag",
    "koningsdag",
    "bevrijdingsdag",
    "hemelvaartsdag",
    "eerste_pinksterdag",
    "tweede_pinksterdag",
    "eerste_kerstdag",
    "tweede_kerstdag",
]
HOLIDAY_NAMES: tuple[HolidayName, ...] = get_args(HolidayName)

# Days off under the Cao Gemeenten. Goede Vrijdag is not one of them (the holidays library lists it for
# NL since v0.83); the two Sundays are listed so that a tenant open on Sundays is closed on them.
DEFAULT_HOLIDAYS: frozenset[HolidayName] = frozenset(HOLIDAY_NAMES) - {"goede_vrijdag"}

_DISPLAY: dict[HolidayName, str] = {
    "nieuwjaarsdag": "Nieuwjaarsdag",
    "goede_vrijdag": "Goede Vrijdag",
    "eerste_paasdag": "Eerste Paasdag",
    "tweede_paasdag": "Tweede Paasdag",
    "koningsdag": "Koningsdag",
    "bevrijdingsdag": "Bevrijdingsdag",
    "hemelvaartsdag": "Hemelvaartsdag",
    "eerste_pinksterdag": "Eerste Pinksterdag",
    "tweede_pinksterdag": "Tweede Pinksterdag",
    "eerste_kerstdag": "Eerste Kerstdag",
    "tweede_kerstdag": "Tweede Kerstdag",
}
# The holidays library's Dutch names (language="nl"), lower-cased, to our keys. Koninginnedag (until
# 2013) is the same day off under another name, shown as such.
_LIBRARY_NAMES: dict[str, HolidayName] = {
    "nieuwjaarsdag": "nieuwjaarsdag",
    "eerste paasdag": "eerste_paasdag",
    "tweede paasdag": "tweede_paasdag",
    "koningsdag": "koningsdag",
    "koninginnedag": "koningsdag",
    "bevrijdingsdag": "bevrijdingsdag",
    "hemelvaartsdag": "hemelvaartsdag",
    "eerste pinksterdag": "eerste_pinksterdag",
    "tweede pinksterdag": "tweede_pinksterdag",
    "eerste kerstdag": "eerste_kerstdag",
    "tweede kerstdag": "tweede_kerstdag",
}
# The Cao Gemeenten makes 5 May a day off every year from 2024; before that only in lustrum years,
# which is what the library lists.
_BEVRIJDINGSDAG_YEARLY_FROM = 2024

# Bounds keep a far-off date from making the calendar build thousands of yearly tables.
MIN_YEAR = 1900
MAX_YEAR = 2999

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_US = dt.timedelta(microseconds=1)


# --------------------------------------------------------------------------------------------------
# Holidays


@dataclass(frozen=True, slots=True)
class _Candidate:
    day: dt.date
    key: HolidayName
    display: str
    # A 5 May that the library does not list: off by default only from 2024, or when included.
    extra_liberation_day: bool = False


@lru_cache(maxsize=256)
def _candidates(year: int) -> tuple[_Candidate, ...]:
    """Every gemeente holiday of one year that a tenant could have, before defaults and include/exclude."""
    lib = holidays.country_holidays("NL", years=year, language="nl")
    found: list[_Candidate] = []
    for day in sorted(lib):
        for name in lib.get_list(day):
            name = str(name).strip()
            key = _LIBRARY_NAMES.get(name.lower())
            # Anything else the library lists (now or in a later version) is no gemeente day off.
            if key is not None:
                display = "Koninginnedag" if name.lower() == "koninginnedag" else _DISPLAY[key]
                found.append(_Candidate(day, key, display))
    # Good Friday is derived from Easter Monday rather than read from the library: the library's NL
    # calendar lists it only since v0.83, and this must give the same days with any supported version.
    easter_monday = next((c.day for c in found if c.key == "tweede_paasdag"), None)
    if easter_monday is not None:
        good_friday = easter_monday - dt.timedelta(days=3)
        found.append(_Candidate(good_friday, "goede_vrijdag", _DISPLAY["goede_vrijdag"]))
    if not any(c.key == "bevrijdingsdag" for c in found):
        found.append(_Candidate(dt.date(year, 5, 5), "bevrijdingsdag", _DISPLAY["bevrijdingsdag"], True))
    return tuple(sorted(found, key=lambda c: (c.day, HOLIDAY_NAMES.index(c.key))))


def gemeente_holidays(
    year: int,
    include: frozenset[str] | set[str] = frozenset(),
    exclude: frozenset[str] | set[str] = frozenset(),
) -> dict[dt.date, str]:
    """Days off of `year` under the Cao Gemeenten, adjusted by a tenant's include/exclude names.

    Returns date -> Dutch display name (joined with " / " when two fall on one day). Including
    "bevrijdingsdag" makes 5 May a day off in every year, also before 2024.
    """
    wanted = (DEFAULT_HOLIDAYS | set(include)) - set(exclude)
    out: dict[dt.date, str] = {}
    for c in _candidates(year):
        if c.key not in wanted:
            continue
        if c.extra_liberation_day and year < _BEVRIJDINGSDAG_YEARLY_FROM and c.key not in include:
            continue
        out[c.day] = f"{out[c.day]} / {c.display}" if c.day in out else c.display
    return out


# --------------------------------------------------------------------------------------------------
# Spec (YAML `calendar:`)


@dataclass(frozen=True, slots=True)
class OfficeHours:
    """Opening and closing time (local wall clock) of one weekday."""

    opens: dt.time
    closes: dt.time

    def __post_init__(self) -> None:
        if self.opens >= self.closes:
            raise ValueError(
                f"opening time {self.opens:%H:%M} must be before closing time {self.closes:%H:%M}"
            )

    @classmethod
    def parse(cls, text: str) -> OfficeHours:
        m = _HOURS_RE.fullmatch(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"invalid office hours {text!r}: expected 'HH:MM-HH:MM', e.g. '08:30-17:00'")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        try:
            return cls(dt.time(h1, m1), dt.time(h2, m2))
        except ValueError as exc:
            raise ValueError(f"invalid office hours {text!r}: {exc}") from None

    def __str__(self) -> str:
        return f"{self.opens:%H:%M}-{self.closes:%H:%M}"


_HOURS_RE = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])\s*-\s*([01]?[0-9]|2[0-3]):([0-5][0-9])")


def _office_hours(value: Any) -> OfficeHours:
    return value if isinstance(value, OfficeHours) else OfficeHours.parse(value)


OfficeHoursField = Annotated[
    OfficeHours,
    PlainValidator(_office_hours),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}$"}),
]


class HolidaySelection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    include: tuple[HolidayName, ...] = ()
    exclude: tuple[HolidayName, ...] = ()

    @model_validator(mode="after")
    def _disjoint(self) -> HolidaySelection:
        both = sorted(set(self.include) & set(self.exclude))
        if both:
            raise ValueError(f"holidays both included and excluded: {', '.join(both)}")
        return self


class ClosingDay(BaseModel):
    """A day the municipality itself is closed. YAML: `{date: 2026-12-24, reason: ...}` or a bare date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: dt.date
    reason: str = Field(default="closing day", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _bare_date(cls, value: Any) -> Any:
        if isinstance(value, dt.date | str):
            return {"date": value}
        return value


# The JSON Schema says what the YAML accepts: a bare date or {date, reason}.
ClosingDayField = Annotated[
    ClosingDay,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date"},
                {
                    "type": "object",
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "reason": {"type": "string", "minLength": 1, "default": "closing day"},
                    },
                    "required": ["date"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]


class CalendarSpec(BaseModel):
    """A tenant's calendar as written under `calendar:` in its rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = DEFAULT_TIMEZONE
    # A weekday that is missing is closed.
    office_hours: dict[Weekday, OfficeHoursField] = Field(min_length=1)
    holidays: HolidaySelection = HolidaySelection()
    closing_days: tuple[ClosingDayField, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: expected an IANA name such as 'Europe/Amsterdam'"
            ) from None
        return value

    @field_validator("closing_days")
    @classmethod
    def _unique_dates(cls, value: tuple[ClosingDay, ...]) -> tuple[ClosingDay, ...]:
        seen: set[dt.date] = set()
        for day in value:
            if day.date in seen:
                raise ValueError(f"closing day {day.date.isoformat()} is listed twice")
            seen.add(day.date)
        return value


# --------------------------------------------------------------------------------------------------
# Explanation


@dataclass(frozen=True, slots=True)
class SkippedDay:
    day: dt.date
    reason: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """How a deadline came about, for people: the day-0 decision and every day that was skipped."""

    received_at: dt.datetime
    term: Term
    # None for terms that do not count days (hours, immediately).
    day_zero: dt.date | None
    day_zero_reason: str
    skipped: tuple[SkippedDay, ...]
    deadline: dt.datetime
    warning_at: dt.datetime
    extended_deadline: dt.datetime | None


# --------------------------------------------------------------------------------------------------
# Workday tables


@dataclass(frozen=True, slots=True)
class _Year:
    ords: tuple[int, ...]
    open_us: tuple[int, ...]
    close_us: tuple[int, ...]
    close_dt: tuple[dt.datetime, ...]


@dataclass(frozen=True, slots=True)
class _Table:
    """Workdays of the years first..last in order. Index i is the i-th workday of the range."""

    first: int
    last: int
    start_us: int  # local midnight, 1 January of `first`
    end_us: int  # local midnight, 1 January of `last + 1`
    start_s: float
    ords: list[int]
    open_us: list[int]
    close_us: list[int]
    close_s: list[int]
    close_dt: list[dt.datetime]
    # cum_us[i]: office time of workdays 0..i-1, so cum_us[i + 1] is the total at closing of day i.
    cum_us: list[int]
    index: dict[int, int]


def _aware(value: dt.datetime, name: str) -> None:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive datetime {value.isoformat()}")


def _between(start: dt.datetime, end: dt.datetime) -> dt.timedelta:
    # Python subtracts two datetimes with the same tzinfo as wall-clock times, which is an hour off
    # across a DST switch; in UTC it is the real time between them.
    return end.astimezone(_UTC) - start.astimezone(_UTC)


def _to_us(value: dt.datetime) -> int:
    return (value - _EPOCH) // _US


class TenantCalendar:
    """Workdays and deadlines for one tenant. Build with `from_spec` once and reuse.

    All methods take timezone-aware datetimes (a naive one raises ValueError) and return datetimes in
    the tenant's zone.
    """

    def __init__(self, spec: CalendarSpec) -> None:
        self.spec = spec
        self.zone = ZoneInfo(spec.timezone)
        self._hours: tuple[OfficeHours | None, ...] = tuple(spec.office_hours.get(d) for d in WEEKDAYS)
        self._include = frozenset(spec.holidays.include)
        self._exclude = frozenset(spec.holidays.exclude)
        self._closing = {c.date: c.reason for c in spec.closing_days}
        self._years: dict[int, _Year] = {}
        self._lock = threading.Lock()
        # Readers take one reference to the current table; extending swaps in a new, wider one. It starts
        # empty (covering no year) and grows to the years that are asked for.
        self._table = _Table(
            first=1,
            last=0,
            start_us=0,
            end_us=0,
            start_s=float("inf"),
            ords=[],
            open_us=[],
            close_us=[],
            close_s=[],
            close_dt=[],
            cum_us=[0],
            index={},
        )

    @classmethod
    def from_spec(cls, spec: CalendarSpec) -> TenantCalendar:
        return cls(spec)

    # ---- tables ------------------------------------------------------------------------------

    def _year(self, year: int) -> _Year:
        cached = self._years.get(year)
        if cached is not None:
            return cached
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise ValueError(f"year {year} is outside the supported calendar range {MIN_YEAR}-{MAX_YEAR}")
        off = gemeente_holidays(year, self._include, self._exclude)
        ords: list[int] = []
        opens: list[int] = []
        closes: list[int] = []
        close_dt: list[dt.datetime] = []
        day = dt.date(year, 1, 1)
        one = dt.timedelta(days=1)
        while day.year == year:
            hours = self._hours[day.weekday()]
            if hours is not None and day not in off and day not in self._closing:
                o = dt.datetime.combine(day, hours.opens, tzinfo=self.zone)
                c = dt.datetime.combine(day, hours.closes, tzinfo=self.zone)
                ords.append(day.toordinal())
                opens.append(_to_us(o))
                closes.append(_to_us(c))
                # Normalised through UTC so that a wall time in a DST gap gets the offset it really has.
                close_dt.append(c.astimezone(_UTC).astimezone(self.zone))
            day += one
        built = _Year(tuple(ords), tuple(opens), tuple(closes), tuple(close_dt))
        self._years[year] = built
        return built

    def _build(self, first: int, last: int) -> _Table:
        ords: list[int] = []
        open_us: list[int] = []
        close_us: list[int] = []
        close_dt: list[dt.datetime] = []
        for year in range(first, last + 1):
            y = self._year(year)
            ords.extend(y.ords)
            open_us.extend(y.open_us)
            close_us.extend(y.close_us)
            close_dt.extend(y.close_dt)
        cum = [0]
        total = 0
        for o, c in zip(open_us, close_us, strict=True):
            total += c - o
            cum.append(total)
        start = _to_us(dt.datetime(first, 1, 1, tzinfo=self.zone))
        return _Table(
            first=first,
            last=last,
            start_us=start,
            end_us=_to_us(dt.datetime(last + 1, 1, 1, tzinfo=self.zone)),
            start_s=start / 1e6,
            ords=ords,
            open_us=open_us,
            close_us=close_us,
            close_s=[c // 1_000_000 for c in close_us],
            close_dt=close_dt,
            cum_us=cum,
            index={o: i for i, o in enumerate(ords)},
        )

    def _cover(self, first: int, last: int) -> _Table:
        """A table covering at least the years first..last."""
        table = self._table
        if table.first <= first and last <= table.last:
            return table
        with self._lock:
            table = self._table
            if table.first <= table.last:
                first, last = min(first, table.first), max(last, table.last)
            if (first, last) != (table.first, table.last):
                table = self._build(first, last)
                self._table = table
            return table

    def _year_of(self, us: int) -> int:
        return self._local(us).year

    def _locate(self, us: int, n: int, *also_us: int) -> tuple[_Table, int]:
        """Index i0 of day 0 for a contact received at `us`: the first workday closing after it.

        The table returned covers the years of `us` and `also_us` and holds workday i0 + n too; always
        use the index with the table it came with, since a wider table renumbers the workdays.
        """
        lo, hi = min((us, *also_us)), max((us, *also_us))
        table = self._table
        if not (table.start_us <= lo and hi < table.end_us):
            table = self._cover(self._year_of(lo), self._year_of(hi))
        while True:
            i0 = bisect_right(table.close_us, us)
            if i0 + n < len(table.close_us):
                return table, i0
            table = self._cover(table.first, table.last + 1)

    def _on_or_after(self, ordinal: int) -> tuple[_Table, int]:
        """Table and index of the first workday on or after a date ordinal."""
        year = dt.date.fromordinal(ordinal).year
        table = self._cover(year, year)
        while True:
            i = bisect_left(table.ords, ordinal)
            if i < len(table.ords):
                return table, i
            table = self._cover(table.first, table.last + 1)

    @staticmethod
    def _work_us(table: _Table, us: int) -> int:
        """Office time of the table's workdays up to `us` (which must lie inside the table's years)."""
        i = bisect_right(table.close_us, us)
        if i < len(table.open_us) and us > table.open_us[i]:
            return table.cum_us[i] + us - table.open_us[i]
        return table.cum_us[i]

    def _normalise(self, at: dt.datetime) -> dt.datetime:
        # Through UTC: astimezone() to the zone `at` already has returns it unchanged, even a wall time
        # that does not exist (inside the spring DST gap).
        return at.astimezone(_UTC).astimezone(self.zone)

    def _local(self, us: int) -> dt.datetime:
        return (_EPOCH + dt.timedelta(microseconds=us)).astimezone(self.zone)

    # ---- days --------------------------------------------------------------------------------

    def _date(self, day: dt.date) -> dt.date:
        if isinstance(day, dt.datetime):
            _aware(day, "day")
            return day.astimezone(self.zone).date()
        return day

    def is_workday(self, day: dt.date) -> bool:
        """Open on `day`: office hours, no holiday, no closing day. An aware datetime means its local date."""
        day = self._date(day)
        return day.toordinal() in self._cover(day.year, day.year).index

    def why_not_workday(self, day: dt.date) -> str | None:
        """None on a workday; otherwise the holiday's name, the closing day's reason, or "weekend"."""
        day = self._date(day)
        if self.is_workday(day):
            return None
        holiday = self.holidays_in(day.year).get(day)
        if holiday is not None:
            return holiday
        closing = self._closing.get(day)
        if closing is not None:
            return closing
        weekday = day.weekday()
        return "weekend" if weekday >= 5 else f"no office hours on {_WEEKDAY_NAMES[weekday]}"

    def holidays_in(self, year: int) -> dict[dt.date, str]:
        """The tenant's public holidays of `year` (without its own closing days): date -> Dutch name."""
        return gemeente_holidays(year, self._include, self._exclude)

    def closing_days(self) -> dict[dt.date, str]:
        return dict(self._closing)

    def office_hours(self, day: dt.date) -> OfficeHours | None:
        """Office hours on `day`, None when it is not a workday."""
        day = self._date(day)
        return self._hours[day.weekday()] if self.is_workday(day) else None

    def workdays(self, start: dt.date, end: dt.date) -> Iterator[dt.date]:
        """Workdays from start up to and including end."""
        table = self._cover(start.year, end.year)
        i = bisect_left(table.ords, start.toordinal())
        stop = end.toordinal()
        while i < len(table.ords) and table.ords[i] <= stop:
            yield dt.date.fromordinal(table.ords[i])
            i += 1

    # ---- deadlines ---------------------------------------------------------------------------

    def day_zero(self, at: dt.datetime) -> dt.date:
        """Day 0 of a workday term received at `at`."""
        _aware(at, "at")
        table, i0 = self._locate(_to_us(at), 0)
        return dt.date.fromordinal(table.ords[i0])

    def deadline(self, at: dt.datetime, term: Term) -> dt.datetime:
        """When a contact received at `at` must have been handled under the base `term` (no extension)."""
        if at.utcoffset() is None:
            _aware(at, "at")
        unit = term.unit
        if unit is TermUnit.WORKDAYS:
            # Hot path: the first workday closing after `at` is day 0 (closing time itself belongs to the
            # next day), so the deadline is the closing time `amount` workdays further on.
            ts = at.timestamp()
            table = self._table
            if ts >= table.start_s:
                i = bisect_right(table.close_s, ts) + term.amount
                if i < len(table.close_dt):
                    return table.close_dt[i]
            table, i0 = self._locate(_to_us(at), term.amount)
            return table.close_dt[i0 + term.amount]
        if unit is TermUnit.HOURS:
            return (at.astimezone(_UTC) + dt.timedelta(hours=term.amount)).astimezone(self.zone)
        if unit is TermUnit.IMMEDIATELY:
            return self._normalise(at)
        return self._calendar_day_deadline(at, term.calendar_days())

    def _calendar_day_deadline(self, at: dt.datetime, days: int) -> dt.datetime:
        target = at.astimezone(self.zone).date().toordinal() + days
        table, i = self._on_or_after(target)
        if table.close_us[i] <= _to_us(at):
            # Only for "0 days" after closing time: never a deadline before receipt.
            table, i = self._locate(_to_us(at), 0)
        return table.close_dt[i]

    def extended_deadline(self, at: dt.datetime, term: Term) -> dt.datetime | None:
        """Deadline of base plus extension; None when the term has no extension."""
        if term.extension is None:
            return None
        return self.deadline(at, term.extended())

    def warning_point(self, at: dt.datetime, term: Term, fraction: float = 0.8) -> dt.datetime:
        """When `fraction` of the base term's time has passed (working time for workday terms)."""
        _aware(at, "at")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"warning fraction must be between 0 and 1, got {fraction}")
        unit = term.unit
        if unit is TermUnit.WORKDAYS:
            table, i0 = self._locate(_to_us(at), term.amount)
            clock = table.cum_us[i0 + 1]
            target = clock + round(fraction * (table.cum_us[i0 + term.amount + 1] - clock))
            # The earliest instant at which the working-time clock reaches the target.
            j = max(bisect_left(table.cum_us, target) - 1, i0)
            return self._local(table.open_us[j] + target - table.cum_us[j])
        if unit is TermUnit.IMMEDIATELY:
            return self._normalise(at)
        span = _between(at, self.deadline(at, term))
        return (at.astimezone(_UTC) + span * fraction).astimezone(self.zone)

    # ---- working time ------------------------------------------------------------------------

    def working_time_between(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Office time of workdays from start to end; negative when end is before start."""
        _aware(start, "start")
        _aware(end, "end")
        s, e = _to_us(start), _to_us(end)
        table, _ = self._locate(s, 0, e)
        return dt.timedelta(microseconds=self._work_us(table, e) - self._work_us(table, s))

    def elapsed_working_time(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Elapsed time on the clock of a workday term received at `start`, at `end`.

        The clock starts at closing time of day 0 (the day of receipt is free) and runs during office
        hours of workdays only, so at the deadline of N workdays it shows exactly N working days.
        Zero before the clock starts.
        """
        _aware(start, "start")
        _aware(end, "end")
        s, e = _to_us(start), _to_us(end)
        table, i0 = self._locate(s, 0, e)
        if e <= table.close_us[i0]:
            return dt.timedelta(0)
        return dt.timedelta(microseconds=self._work_us(table, e) - table.cum_us[i0 + 1])

    def elapsed(self, start: dt.datetime, end: dt.datetime, unit: TermUnit) -> dt.timedelta:
        """Elapsed time on the clock of a term of `unit`: working time for workdays, else calendar time.

        Never negative.
        """
        if unit is TermUnit.WORKDAYS:
            return self.elapsed_working_time(start, end)
        _aware(start, "start")
        _aware(end, "end")
        return max(_between(start, end), dt.timedelta(0))

    def working_time_left(self, now: dt.datetime, deadline: dt.datetime) -> dt.timedelta:
        """Office time of workdays from now until the deadline; negative when overdue.

        Between a missed deadline and the next opening it is zero: compare `now > deadline` for an
        overdue flag.
        """
        return self.working_time_between(now, deadline)

    def lateness(
        self, start: dt.datetime, answered_at: dt.datetime, term: Term, *, extended: bool = False
    ) -> dt.timedelta:
        """answered_at minus the deadline (base plus extension if `extended`); <= 0 when the norm was met."""
        _aware(answered_at, "answered_at")
        deadline = self.deadline(start, term.extended() if extended else term)
        return _between(deadline, answered_at)

    def norm_met(
        self, start: dt.datetime, answered_at: dt.datetime, term: Term, *, extended: bool = False
    ) -> bool:
        return self.lateness(start, answered_at, term, extended=extended) <= dt.timedelta(0)

    # ---- explanation -------------------------------------------------------------------------

    def _skipped(self, first: dt.date, last: dt.date) -> list[SkippedDay]:
        """Non-workdays from first up to (not including) last."""
        out: list[SkippedDay] = []
        day = first
        while day < last:
            reason = self.why_not_workday(day)
            if reason is not None:
                out.append(SkippedDay(day, reason))
            day += dt.timedelta(days=1)
        return out

    def explain(self, at: dt.datetime, term: Term, fraction: float = 0.8) -> Explanation:
        """The deadline of `term` for a contact received at `at`, with the reasoning behind it."""
        _aware(at, "at")
        local = self._normalise(at)
        received = local.date()
        deadline = self.deadline(at, term)
        unit = term.unit
        day_zero: dt.date | None
        skipped: list[SkippedDay] = []
        if unit is TermUnit.WORKDAYS:
            day_zero = self.day_zero(at)
            hours = self._hours[received.weekday()]
            why = self.why_not_workday(received)
            if why is not None or hours is None:
                reason = f"received on a non-workday ({why}): day 0 is the next workday"
            elif local.time() < hours.opens:
                reason = f"received on a workday before opening time ({hours.opens:%H:%M}): that day is day 0"
            elif day_zero == received:
                reason = (
                    f"received on a workday before closing time ({hours.closes:%H:%M}): that day is day 0"
                )
            else:
                reason = (
                    f"received at or after closing time ({hours.closes:%H:%M}): day 0 is the next workday"
                )
            skipped = self._skipped(received, deadline.date())
        elif unit in (TermUnit.DAYS, TermUnit.WEEKS):
            day_zero = received
            days = term.calendar_days()
            target = received + dt.timedelta(days=days)
            reason = f"calendar days count from the date of receipt: day {days} is {target.isoformat()}"
            skipped = self._skipped(target, deadline.date())
            if deadline.date() != target:
                # A workday target is only passed by "0 days" received after closing time.
                why_moved = "already closed at receipt" if self.is_workday(target) else "not a workday"
                reason += f", {why_moved}, so the deadline moves to the next workday"
        elif unit is TermUnit.HOURS:
            day_zero = None
            reason = "hour terms run around the clock from the moment of receipt"
        else:
            day_zero = None
            reason = "the deadline is the moment of receipt"
        return Explanation(
            received_at=local,
            term=term,
            day_zero=day_zero,
            day_zero_reason=reason,
            skipped=tuple(skipped),
            deadline=deadline,
            warning_at=self.warning_point(at, term, fraction),
            extended_deadline=self.extended_deadline(at, term),
        )
