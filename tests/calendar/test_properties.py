"""Properties of deadlines and working time that must hold for every moment of receipt (2024-2030)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from router.core.calendar.terms import Term, TermUnit
from router.core.calendar.workdays import CalendarSpec, TenantCalendar

AMS = ZoneInfo("Europe/Amsterdam")
MON_FRI = {day: "08:30-17:00" for day in ("mon", "tue", "wed", "thu", "fri")}
UNIFORM = TenantCalendar.from_spec(
    CalendarSpec.model_validate(
        {
            "office_hours": MON_FRI,
            "closing_days": [{"date": "2026-12-24", "reason": "Kerstavond"}, "2026-12-31"],
        }
    )
)
# Ommen's counter hours: days of different length, so "N working days" is not N times one number.
IRREGULAR_HOURS = {
    "mon": "08:30-17:00",
    "tue": "08:30-17:00",
    "wed": "08:30-19:00",
    "thu": "08:30-17:00",
    "fri": "08:30-12:30",
}
IRREGULAR = TenantCalendar.from_spec(
    CalendarSpec.model_validate({"office_hours": IRREGULAR_HOURS, "holidays": {"include": ["goede_vrijdag"]}})
)
CALENDARS = st.sampled_from([UNIFORM, IRREGULAR])

# Local times in the tenant zone, including the nonexistent and repeated hours around DST switches,
# plus the same instants seen from UTC.
local_moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31, 23, 59), timezones=st.just(AMS)
)
utc_moments = local_moments.map(lambda d: d.astimezone(UTC))
moments = st.one_of(local_moments, utc_moments)
# Minute-precision moments hit opening and closing times exactly far more often.
whole_minutes = st.builds(
    lambda d, minute: datetime(d.year, d.month, d.day, minute // 60, minute % 60, tzinfo=AMS),
    st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31)),
    st.sampled_from(
        [0, 8 * 60 + 29, 8 * 60 + 30, 12 * 60 + 30, 16 * 60 + 59, 17 * 60, 19 * 60, 23 * 60 + 59]
    ),
)
starts = st.one_of(moments, whole_minutes)
amounts = st.integers(min_value=0, max_value=10)
units = st.sampled_from([TermUnit.WORKDAYS, TermUnit.HOURS, TermUnit.DAYS, TermUnit.WEEKS])


def utc(moment: datetime) -> datetime:
    # Python compares and subtracts datetimes that share a tzinfo by wall-clock time (wrong around a DST
    # switch), so every comparison here is made in UTC.
    return moment.astimezone(UTC)


def closing_time(cal: TenantCalendar, day: date) -> tuple[int, int]:
    hours = cal.office_hours(day)
    assert hours is not None
    return hours.closes.hour, hours.closes.minute


@given(cal=CALENDARS, at=starts, amount=amounts, unit=units)
def test_deadline_not_before_receipt(cal: TenantCalendar, at: datetime, amount: int, unit: TermUnit) -> None:
    deadline = cal.deadline(at, Term(amount, unit))
    assert utc(deadline) >= utc(at)
    assert deadline.tzinfo is AMS


@given(cal=CALENDARS, at=starts, amount=amounts)
def test_workday_deadline_is_closing_time_of_a_workday(
    cal: TenantCalendar, at: datetime, amount: int
) -> None:
    deadline = cal.deadline(at, Term(amount, TermUnit.WORKDAYS))
    local = deadline.astimezone(AMS)
    assert cal.is_workday(local.date())
    assert (local.hour, local.minute, local.second, local.microsecond) == (
        *closing_time(cal, local.date()),
        0,
        0,
    )


@given(cal=CALENDARS, a=starts, b=starts, amount=amounts, unit=units)
def test_monotone_in_the_start(
    cal: TenantCalendar, a: datetime, b: datetime, amount: int, unit: TermUnit
) -> None:
    s1, s2 = sorted((a, b), key=utc)
    term = Term(amount, unit)
    assert utc(cal.deadline(s1, term)) <= utc(cal.deadline(s2, term))


@given(cal=CALENDARS, at=starts, amount=amounts)
def test_one_more_workday_is_later(cal: TenantCalendar, at: datetime, amount: int) -> None:
    later = cal.deadline(at, Term(amount + 1, TermUnit.WORKDAYS))
    assert utc(later) > utc(cal.deadline(at, Term(amount, TermUnit.WORKDAYS)))


@given(at=starts, amount=amounts)
def test_elapsed_working_time_at_the_deadline_is_n_working_days(at: datetime, amount: int) -> None:
    deadline = UNIFORM.deadline(at, Term(amount, TermUnit.WORKDAYS))
    assert UNIFORM.elapsed_working_time(at, deadline) == amount * timedelta(hours=8, minutes=30)


@given(at=starts, amount=amounts)
def test_elapsed_working_time_with_days_of_different_length(at: datetime, amount: int) -> None:
    deadline = IRREGULAR.deadline(at, Term(amount, TermUnit.WORKDAYS))
    # Sum, day by day, the office hours of the workdays after day 0 up to the deadline's day.
    expected = timedelta(0)
    day = IRREGULAR.day_zero(at) + timedelta(days=1)
    last = deadline.astimezone(AMS).date()
    counted = 0
    while day <= last:
        hours = IRREGULAR.office_hours(day)
        if hours is not None:
            opens = datetime.combine(day, hours.opens)
            closes = datetime.combine(day, hours.closes)
            expected += closes - opens
            counted += 1
        day += timedelta(days=1)
    assert counted == amount
    assert IRREGULAR.elapsed_working_time(at, deadline) == expected


@given(cal=CALENDARS, at=starts, amount=st.integers(min_value=0, max_value=72))
def test_hour_terms_are_absolute_time(cal: TenantCalendar, at: datetime, amount: int) -> None:
    deadline = cal.deadline(at, Term(amount, TermUnit.HOURS))
    assert utc(deadline) - utc(at) == timedelta(hours=amount)


@given(cal=CALENDARS, at=starts, amount=st.integers(min_value=1, max_value=10), fraction=st.floats(0.0, 1.0))
def test_warning_point_is_the_fraction_of_the_working_time(
    cal: TenantCalendar, at: datetime, amount: int, fraction: float
) -> None:
    term = Term(amount, TermUnit.WORKDAYS)
    deadline = cal.deadline(at, term)
    warning = cal.warning_point(at, term, fraction)
    assert utc(at) <= utc(warning) <= utc(deadline)
    total = cal.elapsed_working_time(at, deadline)
    elapsed = cal.elapsed_working_time(at, warning)
    assert abs(elapsed - total * fraction) <= timedelta(microseconds=1)


@given(cal=CALENDARS, a=moments, b=moments)
def test_working_time_left_is_antisymmetric(cal: TenantCalendar, a: datetime, b: datetime) -> None:
    assert cal.working_time_left(a, b) == -cal.working_time_left(b, a)


@settings(max_examples=50)
@given(cal=CALENDARS, at=starts, amount=amounts)
def test_explanation_agrees_with_deadline(cal: TenantCalendar, at: datetime, amount: int) -> None:
    term = Term(amount, TermUnit.WORKDAYS)
    ex = cal.explain(at, term)
    assert utc(ex.deadline) == utc(cal.deadline(at, term))
    assert all(not cal.is_workday(s.day) for s in ex.skipped)
    assert ex.day_zero is not None
    # Every day from receipt to the deadline is skipped or a workday: day 0, the N counted ones and,
    # when the contact came in after closing time, the day of receipt.
    received = at.astimezone(AMS).date()
    days = (ex.deadline.date() - received).days + 1
    after_closing = cal.is_workday(received) and ex.day_zero != received
    assert days - len(ex.skipped) == amount + 1 + after_closing
