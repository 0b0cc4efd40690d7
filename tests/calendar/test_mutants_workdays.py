"""The workday calendar's explanations and clocks, value by value (scripts/mutation): what `explain`
tells a person for each kind of receipt, and the boundaries of lateness and elapsed time."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from router.core.calendar.terms import TermUnit, parse_term
from router.core.calendar.workdays import SkippedDay
from router.core.tenants import load

ROOT = Path(__file__).resolve().parents[2]
CAL = load(ROOT / "rules")["ommen"].calendar  # Mon-Fri 08:30-17:00, Europe/Amsterdam
AMS = ZoneInfo("Europe/Amsterdam")
HEMELVAART = SkippedDay(date(2026, 5, 14), "Hemelvaartsdag")
WEEKEND = [SkippedDay(date(2026, 5, 16), "weekend"), SkippedDay(date(2026, 5, 17), "weekend")]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 5, day, hour, minute, tzinfo=AMS)


@pytest.mark.parametrize(
    ("received", "term", "day_zero", "reason", "skipped", "deadline"),
    [
        (
            at(13, 10),
            "3 workdays",
            date(2026, 5, 13),
            "received on a workday before closing time (17:00): that day is day 0",
            [HEMELVAART, *WEEKEND],
            at(19, 17),
        ),
        (
            at(16, 10),
            "2 workdays",
            date(2026, 5, 18),
            "received on a non-workday (weekend): day 0 is the next workday",
            WEEKEND,
            at(20, 17),
        ),
        (
            at(13, 7),
            "1 workday",
            date(2026, 5, 13),
            "received on a workday before opening time (08:30): that day is day 0",
            [HEMELVAART],
            at(15, 17),
        ),
        (
            at(13, 17),
            "1 workday",
            date(2026, 5, 15),
            "received at or after closing time (17:00): day 0 is the next workday",
            [HEMELVAART, *WEEKEND],
            at(18, 17),
        ),
        (
            at(9, 10),
            "5 days",
            date(2026, 5, 9),
            "calendar days count from the date of receipt: day 5 is 2026-05-14, not a workday, "
            "so the deadline moves to the next workday",
            [HEMELVAART],
            at(15, 17),
        ),
        (
            at(13, 18),
            "0 days",
            date(2026, 5, 13),
            "calendar days count from the date of receipt: day 0 is 2026-05-13, already closed at "
            "receipt, so the deadline moves to the next workday",
            [HEMELVAART],
            at(15, 17),
        ),
        (
            at(11, 10),
            "1 week",
            date(2026, 5, 11),
            "calendar days count from the date of receipt: day 7 is 2026-05-18",
            [],
            at(18, 17),
        ),
        (
            at(13, 10),
            "3 hours",
            None,
            "hour terms run around the clock from the moment of receipt",
            [],
            at(13, 13),
        ),
        (at(13, 10), "immediately", None, "the deadline is the moment of receipt", [], at(13, 10)),
    ],
)
def test_explain_says_how_each_kind_of_deadline_came_about(
    received: datetime,
    term: str,
    day_zero: date | None,
    reason: str,
    skipped: list[SkippedDay],
    deadline: datetime,
) -> None:
    t = parse_term(term)
    e = CAL.explain(received, t)
    assert (e.received_at, e.term, e.day_zero, e.day_zero_reason) == (received, t, day_zero, reason)
    assert (list(e.skipped), e.deadline) == (skipped, deadline)
    assert e.warning_at == CAL.warning_point(received, t)
    assert e.extended_deadline is None


def test_explain_gives_the_extended_deadline_and_the_asked_warning_fraction() -> None:
    t = parse_term("12 weeks + 6 weeks")
    e = CAL.explain(at(13, 10), t, fraction=0.5)
    assert (e.deadline, e.extended_deadline) == (
        datetime(2026, 8, 5, 17, tzinfo=AMS),
        CAL.extended_deadline(at(13, 10), t),
    )
    assert e.extended_deadline == datetime(2026, 9, 16, 17, tzinfo=AMS)
    assert e.warning_at == CAL.warning_point(at(13, 10), t, 0.5)
    assert e.received_at == at(13, 10)
    utc = at(13, 10).astimezone(ZoneInfo("UTC"))
    assert CAL.explain(utc, t).received_at.tzinfo == AMS  # told in the tenant's own time


def test_workdays_lists_the_workdays_between_two_dates_inclusive() -> None:
    assert list(CAL.workdays(date(2026, 5, 12), date(2026, 5, 18))) == [
        date(2026, 5, 12),
        date(2026, 5, 13),
        date(2026, 5, 15),
        date(2026, 5, 18),
    ]
    assert list(CAL.workdays(date(2026, 5, 16), date(2026, 5, 17))) == []
    assert list(CAL.workdays(date(2026, 5, 15), date(2026, 5, 15))) == [date(2026, 5, 15)]
    assert list(CAL.workdays(date(2026, 12, 31), date(2027, 1, 4))) == [date(2026, 12, 31), date(2027, 1, 4)]


def test_a_norm_is_met_up_to_and_including_the_deadline() -> None:
    t = parse_term("3 workdays")
    due = at(19, 17)
    assert CAL.lateness(at(13, 10), due, t) == timedelta(0)
    assert CAL.norm_met(at(13, 10), due, t)
    assert CAL.lateness(at(13, 10), due + timedelta(minutes=1), t) == timedelta(minutes=1)
    assert not CAL.norm_met(at(13, 10), due + timedelta(minutes=1), t)
    assert CAL.lateness(at(13, 10), at(19, 10), t) == timedelta(hours=-7)
    ext = parse_term("1 workday + 2 workdays")
    assert CAL.norm_met(at(13, 10), due, ext, extended=True)
    assert not CAL.norm_met(at(13, 10), due, ext)
    with pytest.raises(ValueError):
        CAL.lateness(at(13, 10), datetime(2026, 5, 19, 17), t)


def test_elapsed_time_on_each_clock_and_working_time_both_ways() -> None:
    assert CAL.elapsed(at(13, 10), at(13, 12), TermUnit.HOURS) == timedelta(hours=2)
    assert CAL.elapsed(at(13, 12), at(13, 10), TermUnit.DAYS) == timedelta(0)
    assert CAL.elapsed(at(13, 10), at(15, 10), TermUnit.WORKDAYS) == timedelta(hours=1, minutes=30)
    assert CAL.elapsed(at(13, 10), at(13, 16), TermUnit.WORKDAYS) == timedelta(0)
    assert CAL.elapsed_working_time(at(13, 10), at(13, 17)) == timedelta(0)
    assert CAL.working_time_between(at(13, 10), at(15, 10)) == timedelta(hours=8, minutes=30)
    assert CAL.working_time_between(at(15, 10), at(13, 10)) == -timedelta(hours=8, minutes=30)
    assert CAL.working_time_left(at(13, 10), at(13, 12)) == timedelta(hours=2)
    for bad in ((datetime(2026, 5, 13, 10), at(13, 12)), (at(13, 10), datetime(2026, 5, 13, 12))):
        with pytest.raises(ValueError):
            CAL.working_time_between(*bad)
        with pytest.raises(ValueError):
            CAL.elapsed(*bad, TermUnit.DAYS)
        with pytest.raises(ValueError):
            CAL.elapsed_working_time(*bad)


NAIVE = datetime(2026, 5, 13, 10)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: CAL.day_zero(NAIVE), "at"),
        (lambda: CAL.explain(NAIVE, parse_term("1 workday")), "at"),
        (lambda: CAL.is_workday(NAIVE), "day"),
        (lambda: CAL.working_time_between(NAIVE, at(13, 12)), "start"),
        (lambda: CAL.working_time_between(at(13, 10), NAIVE), "end"),
        (lambda: CAL.elapsed_working_time(NAIVE, at(13, 12)), "start"),
        (lambda: CAL.elapsed_working_time(at(13, 10), NAIVE), "end"),
        (lambda: CAL.elapsed(NAIVE, at(13, 12), TermUnit.HOURS), "start"),
        (lambda: CAL.elapsed(at(13, 10), NAIVE, TermUnit.HOURS), "end"),
        (lambda: CAL.lateness(at(13, 10), NAIVE, parse_term("1 workday")), "answered_at"),
    ],
)
def test_a_naive_time_is_refused_naming_the_argument(call: object, name: str) -> None:
    with pytest.raises(ValueError) as info:
        call()  # type: ignore[operator]
    assert str(info.value) == f"{name} must be timezone-aware, got naive datetime 2026-05-13T10:00:00"


def test_an_aware_time_means_its_date_in_the_tenants_zone() -> None:
    late_wednesday_utc = datetime(2026, 5, 13, 23, 30, tzinfo=ZoneInfo("UTC"))  # Thu 01:30 in Ommen
    assert not CAL.is_workday(late_wednesday_utc)
    assert CAL.why_not_workday(late_wednesday_utc) == "Hemelvaartsdag"
    assert CAL.day_zero(at(13, 17)) == date(2026, 5, 15)
    assert CAL.day_zero(at(13, 16, 59)) == date(2026, 5, 13)


def test_deadlines_and_warnings_name_a_naive_time_and_come_in_the_tenants_zone() -> None:
    t = parse_term("3 hours")
    for call in (lambda: CAL.deadline(NAIVE, t), lambda: CAL.warning_point(NAIVE, t)):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == "at must be timezone-aware, got naive datetime 2026-05-13T10:00:00"
    with pytest.raises(TypeError) as wrong:
        CAL.warning_point(date(2026, 5, 13), t)  # type: ignore[arg-type]
    assert str(wrong.value) == "at must be a datetime, got date"
    utc = at(13, 10).astimezone(ZoneInfo("UTC"))
    assert CAL.warning_point(utc, t).tzinfo == AMS and CAL.warning_point(utc, t) == at(13, 12, 24)


def test_receipt_at_opening_time_counts_that_day_and_lateness_uses_the_base_term() -> None:
    e = CAL.explain(at(13, 8, 30), parse_term("1 workday"))
    assert e.day_zero_reason == "received on a workday before closing time (17:00): that day is day 0"
    ext = parse_term("1 workday + 2 workdays")
    assert CAL.lateness(at(13, 10), at(19, 17), ext) == CAL.lateness(at(13, 10), at(19, 17), ext.base)
    assert CAL.lateness(at(13, 10), at(19, 17), ext) > timedelta(0)
