"""Deadlines around the 2026 holidays, worked out by hand (office hours Mon-Fri 08:30-17:00).

2026 facts used below: Koningsdag Mon 27 Apr, Bevrijdingsdag Tue 5 May, Hemelvaartsdag Thu 14 May,
Tweede Pinksterdag Mon 25 May, Eerste/Tweede Kerstdag Fri 25 / Sat 26 Dec, Nieuwjaarsdag Fri 1 Jan 2027.
Summer time starts Sun 29 Mar 2026 (02:00 CET -> 03:00 CEST, 01:00 UTC) and ends Sun 25 Oct 2026
(03:00 CEST -> 02:00 CET, 01:00 UTC).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from router.core.calendar.terms import parse_term
from router.core.calendar.workdays import CalendarSpec, TenantCalendar

AMS = ZoneInfo("Europe/Amsterdam")
MON_FRI = {day: "08:30-17:00" for day in ("mon", "tue", "wed", "thu", "fri")}
CAL = TenantCalendar.from_spec(CalendarSpec.model_validate({"office_hours": MON_FRI}))


def ams(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=AMS)


@pytest.mark.parametrize(
    ("received", "term", "expected"),
    [
        # Ommen: Wed 13 May 10:00 is day 0; Thu 14 Hemelvaartsdag skipped; Fri 15 = 1, (Sat, Sun),
        # Mon 18 = 2, Tue 19 = 3.
        ("2026-05-13T10:00:00+02:00", "3 workdays", "2026-05-19T17:00:00+02:00"),
        # Coevorden: Fri 24 Apr 16:00 is day 0; Sat 25, Sun 26, Mon 27 Koningsdag skipped; Tue 28 = 1,
        # Wed 29 = 2.
        ("2026-04-24T16:00:00+02:00", "2 workdays", "2026-04-29T17:00:00+02:00"),
        # One microsecond before closing time still counts Fri 24 Apr as day 0.
        ("2026-04-24T16:59:59.999999+02:00", "2 workdays", "2026-04-29T17:00:00+02:00"),
        # Exactly at closing time: day 0 is the next workday, Tue 28 Apr; Wed 29 = 1, Thu 30 = 2.
        ("2026-04-24T17:00:00+02:00", "2 workdays", "2026-04-30T17:00:00+02:00"),
        # After closing on Mon 4 May: next workday is Wed 6 May (Tue 5 Bevrijdingsdag) = day 0; Thu 7 = 1.
        ("2026-05-04T18:00:00+02:00", "1 workday", "2026-05-07T17:00:00+02:00"),
        # Saturday 2 May: day 0 is Mon 4 May; Tue 5 Bevrijdingsdag skipped; Wed 6 = 1.
        ("2026-05-02T11:00:00+02:00", "1 workday", "2026-05-06T17:00:00+02:00"),
        # Before opening on Wed 13 May: that day is day 0; Thu 14 Hemelvaartsdag; Fri 15 = 1.
        ("2026-05-13T07:00:00+02:00", "1 workday", "2026-05-15T17:00:00+02:00"),
        # Fri 22 May: Sat 23, Sun 24, Mon 25 Tweede Pinksterdag skipped; Tue 26 = 1.
        ("2026-05-22T12:00:00+02:00", "1 workday", "2026-05-26T17:00:00+02:00"),
        # Thu 24 Dec is day 0 (no closing days here); Fri 25 Kerst, Sat 26, Sun 27; Mon 28 = 1.
        ("2026-12-24T10:00:00+01:00", "1 workday", "2026-12-28T17:00:00+01:00"),
        # Turn of the year: Wed 30 Dec day 0; Thu 31 = 1; Fri 1 Jan Nieuwjaarsdag, weekend; Mon 4 Jan = 2.
        ("2026-12-30T12:00:00+01:00", "2 workdays", "2027-01-04T17:00:00+01:00"),
        # Sunday 3 Jan 2027 late: day 0 Mon 4 Jan; Tue 5 = 1.
        ("2027-01-03T23:59:00+01:00", "1 workday", "2027-01-05T17:00:00+01:00"),
        # Across the spring DST switch: Fri 27 Mar (CET) day 0; Mon 30 Mar = 1, in CEST.
        ("2026-03-27T10:00:00+01:00", "1 workday", "2026-03-30T17:00:00+02:00"),
        # Across the autumn switch: Fri 23 Oct (CEST) day 0; Mon 26 Oct = 1, in CET.
        ("2026-10-23T10:00:00+02:00", "1 workday", "2026-10-26T17:00:00+01:00"),
        # Received in UTC: 15:30Z on Fri 24 Apr is 17:30 local, after closing; day 0 Tue 28; Wed 29 = 1.
        ("2026-04-24T15:30:00+00:00", "1 workday", "2026-04-29T17:00:00+02:00"),
        # Hour terms, around the clock, DST-correct: 23:30 CET on Sat 28 Mar is 22:30Z; +3 h = 01:30Z,
        # after the switch at 01:00Z, so 03:30 CEST (four hours on the wall clock).
        ("2026-03-28T23:30:00+01:00", "3 hours", "2026-03-29T03:30:00+02:00"),
        # 01:30 CEST on Sun 25 Oct is 23:30Z; +3 h = 02:30Z = 03:30 CET (two hours on the wall clock).
        ("2026-10-25T01:30:00+02:00", "3 hours", "2026-10-25T03:30:00+01:00"),
        # An hour term on a holiday evening is not moved: Thu 14 May 22:00 + 3 h.
        ("2026-05-14T22:00:00+02:00", "3 uur", "2026-05-15T01:00:00+02:00"),
        # Calendar days: Fri 24 Apr + 14 days = Fri 8 May, a workday; closing time that day.
        ("2026-04-24T23:00:00+02:00", "2 weeks", "2026-05-08T17:00:00+02:00"),
        # Mon 13 Apr + 14 days = Mon 27 Apr, Koningsdag: closing time of the next workday, Tue 28 Apr.
        ("2026-04-13T09:00:00+02:00", "2 weken", "2026-04-28T17:00:00+02:00"),
        # Wed 25 Nov + 30 days = Fri 25 Dec, Kerst; Sat, Sun; Mon 28 Dec.
        ("2026-11-25T12:00:00+01:00", "30 days", "2026-12-28T17:00:00+01:00"),
        # Terms with an extension: the deadline uses the base, Wed 13 May + 42 days = Wed 24 Jun.
        ("2026-05-13T10:00:00+02:00", "6 weeks + 4 weeks", "2026-06-24T17:00:00+02:00"),
        # "immediately": the moment of receipt, in the tenant zone.
        ("2026-05-13T08:00:00+00:00", "immediately", "2026-05-13T10:00:00+02:00"),
    ],
)
def test_hand_checked_deadlines(received: str, term: str, expected: str) -> None:
    deadline = CAL.deadline(datetime.fromisoformat(received), parse_term(term))
    assert deadline.isoformat() == expected
    assert deadline.tzinfo is AMS


def test_extended_deadline() -> None:
    # Wed 13 May + 70 days (6 + 4 weeks) = Wed 22 Jul 2026, a workday.
    at = ams(2026, 5, 13, 10, 0)
    assert CAL.extended_deadline(at, parse_term("6 weeks + 4 weeks")) == ams(2026, 7, 22, 17, 0)
    # 12 + 6 weeks from Wed 13 May = 126 days = Wed 16 Sep 2026.
    assert CAL.extended_deadline(at, parse_term("12 weeks + 6 weeks")) == ams(2026, 9, 16, 17, 0)
    assert CAL.extended_deadline(at, parse_term("5 workdays")) is None


def test_day_zero() -> None:
    assert CAL.day_zero(ams(2026, 5, 13, 10)) == date(2026, 5, 13)
    assert CAL.day_zero(ams(2026, 5, 13, 17)) == date(2026, 5, 15)  # Thu 14 is Hemelvaartsdag
    assert CAL.day_zero(ams(2026, 4, 25, 11)) == date(2026, 4, 28)  # Sat; Mon 27 is Koningsdag


def test_closing_days_are_skipped() -> None:
    cal = TenantCalendar.from_spec(
        CalendarSpec.model_validate(
            {
                "office_hours": MON_FRI,
                "closing_days": [{"date": "2026-12-24", "reason": "Kerstavond"}, "2026-12-31"],
            }
        )
    )
    # Wed 23 Dec at 17:00: Thu 24 closed, Fri 25 and Sat 26 Kerst, Sun 27: day 0 is Mon 28. Tue 29 = 1,
    # Wed 30 = 2, Thu 31 closed, Fri 1 Jan Nieuwjaarsdag, weekend, Mon 4 = 3, Tue 5 = 4, Wed 6 Jan = 5.
    assert cal.deadline(ams(2026, 12, 23, 17), parse_term("5 workdays")) == ams(2027, 1, 6, 17)


def test_irregular_office_hours() -> None:
    # Ommen's counter: Mon/Tue/Thu 08:30-17:00, Wed 08:30-19:00, Fri 08:30-12:30.
    hours = {"mon": "08:30-17:00", "tue": "08:30-17:00", "wed": "08:30-19:00", "thu": "08:30-17:00"}
    cal = TenantCalendar.from_spec(
        CalendarSpec.model_validate({"office_hours": {**hours, "fri": "08:30-12:30"}})
    )
    # Fri 15 May 13:00 is after Friday's closing: day 0 Mon 18; Tue 19 = 1; Wed 20 = 2, closing 19:00.
    assert cal.deadline(ams(2026, 5, 15, 13), parse_term("2 workdays")) == ams(2026, 5, 20, 19)
    # Thu 21 May 10:00 day 0; Fri 22 = 1, closing 12:30.
    assert cal.deadline(ams(2026, 5, 21, 10), parse_term("1 workday")) == ams(2026, 5, 22, 12, 30)


def test_other_time_zone() -> None:
    cal = TenantCalendar.from_spec(
        CalendarSpec.model_validate({"timezone": "America/Curacao", "office_hours": MON_FRI})
    )
    # Curaçao (UTC-4, no DST): Fri 24 Apr 16:00 local is day 0; Mon 27 Koningsdag; Tue 28 = 1.
    got = cal.deadline(datetime(2026, 4, 24, 20, tzinfo=UTC), parse_term("1 workday"))
    assert got.isoformat() == "2026-04-28T17:00:00-04:00"


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.deadline(datetime(2026, 5, 13, 10), parse_term("3 workdays"))
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.elapsed_working_time(datetime(2026, 5, 13, 10), ams(2026, 5, 14))
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.warning_point(datetime(2026, 5, 13, 10), parse_term("3 hours"))


# ---- warning point, working time, lateness -------------------------------------------------------


def test_warning_point_workdays() -> None:
    # Ommen 3 workdays from Wed 13 May 10:00: the clock starts Wed 17:00 and runs 3 x 8.5 h = 25.5 h
    # (Fri 15, Mon 18, Tue 19). 80 % = 20.4 h: Fri 8.5 h + Mon 8.5 h = 17 h, then 3.4 h = 3 h 24 min into
    # Tue 19 from 08:30: 11:54.
    assert CAL.warning_point(ams(2026, 5, 13, 10), parse_term("3 workdays")) == ams(2026, 5, 19, 11, 54)
    # Half of 2 workdays from Fri 24 Apr 16:00 = 8.5 h = all of Tue 28 Apr: reached at its closing time.
    assert CAL.warning_point(ams(2026, 4, 24, 16), parse_term("2 workdays"), 0.5) == ams(2026, 4, 28, 17)


def test_warning_point_hours_days_immediately() -> None:
    # 80 % of 3 hours = 2 h 24 min.
    assert CAL.warning_point(ams(2026, 5, 14, 10), parse_term("3 hours")) == ams(2026, 5, 14, 12, 24)
    # 2 weeks from Fri 24 Apr 17:00 to Fri 8 May 17:00 = 14 days; 80 % = 11 days 4 h 48 min: Tue 5 May 21:48.
    assert CAL.warning_point(ams(2026, 4, 24, 17), parse_term("2 weeks")) == ams(2026, 5, 5, 21, 48)
    at = ams(2026, 5, 14, 10)
    assert CAL.warning_point(at, parse_term("immediately")) == at


def test_warning_fraction_is_checked() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        CAL.warning_point(ams(2026, 5, 13, 10), parse_term("3 workdays"), 1.5)


def test_elapsed_working_time() -> None:
    start = ams(2026, 5, 13, 10)
    # The day of receipt is free: nothing has elapsed before its closing time.
    assert CAL.elapsed_working_time(start, ams(2026, 5, 13, 16)) == timedelta(0)
    # Clock starts Wed 17:00; Thu 14 Hemelvaartsdag; Fri 08:30-12:00 = 3.5 h.
    assert CAL.elapsed_working_time(start, ams(2026, 5, 15, 12)) == timedelta(hours=3, minutes=30)
    # At the deadline of 3 workdays: exactly 3 working days of 8.5 h.
    assert CAL.elapsed_working_time(start, ams(2026, 5, 19, 17)) == timedelta(hours=25, minutes=30)
    # Evening after the deadline: no office time passes.
    assert CAL.elapsed_working_time(start, ams(2026, 5, 19, 23)) == timedelta(hours=25, minutes=30)


def test_elapsed_by_unit() -> None:
    start = ams(2026, 5, 13, 10)
    end = ams(2026, 5, 15, 12)
    assert CAL.elapsed(start, end, parse_term("3 workdays").unit) == timedelta(hours=3, minutes=30)
    assert CAL.elapsed(start, end, parse_term("3 hours").unit) == timedelta(days=2, hours=2)
    assert CAL.elapsed(start, end, parse_term("2 weeks").unit) == timedelta(days=2, hours=2)


def test_working_time_left() -> None:
    deadline = ams(2026, 5, 19, 17)
    # Fri 15 May 12:00-17:00 = 5 h, Mon 18 = 8.5 h, Tue 19 = 8.5 h: 22 h.
    assert CAL.working_time_left(ams(2026, 5, 15, 12), deadline) == timedelta(hours=22)
    # Overdue: Wed 20 May 08:30-10:00 has passed since the deadline.
    assert CAL.working_time_left(ams(2026, 5, 20, 10), deadline) == -timedelta(hours=1, minutes=30)
    # Across the autumn switch: Fri 23 Oct 16:00 to Mon 26 Oct 09:30 is 1 h + 1 h of office time.
    assert CAL.working_time_left(ams(2026, 10, 23, 16), ams(2026, 10, 26, 9, 30)) == timedelta(hours=2)


def test_lateness() -> None:
    start = ams(2026, 5, 13, 10)
    term = parse_term("3 workdays")  # deadline Tue 19 May 17:00
    assert CAL.lateness(start, ams(2026, 5, 19, 12), term) == -timedelta(hours=5)
    assert CAL.lateness(start, ams(2026, 5, 19, 18), term) == timedelta(hours=1)
    assert CAL.norm_met(start, ams(2026, 5, 19, 17), term)
    assert not CAL.norm_met(start, ams(2026, 5, 19, 17, 1), term)
    # Against base plus extension: Wed 13 May + 10 weeks = Wed 22 Jul 17:00.
    ext = parse_term("6 weeks + 4 weeks")
    assert CAL.lateness(start, ams(2026, 7, 22, 16), ext, extended=True) == -timedelta(hours=1)


# ---- explanation ------------------------------------------------------------------------------


def test_explain_workdays() -> None:
    ex = CAL.explain(ams(2026, 5, 13, 10), parse_term("3 workdays"))
    assert ex.day_zero == date(2026, 5, 13)
    assert "before closing time (17:00)" in ex.day_zero_reason
    assert [(s.day, s.reason) for s in ex.skipped] == [
        (date(2026, 5, 14), "Hemelvaartsdag"),
        (date(2026, 5, 16), "weekend"),
        (date(2026, 5, 17), "weekend"),
    ]
    assert ex.deadline == ams(2026, 5, 19, 17)
    assert ex.warning_at == ams(2026, 5, 19, 11, 54)
    assert ex.extended_deadline is None


def test_explain_day_zero_decisions() -> None:
    term = parse_term("2 workdays")
    after = CAL.explain(ams(2026, 4, 24, 17), term)
    assert "at or after closing time (17:00)" in after.day_zero_reason
    assert after.day_zero == date(2026, 4, 28)
    assert [s.reason for s in after.skipped] == ["weekend", "weekend", "Koningsdag"]
    saturday = CAL.explain(ams(2026, 4, 25, 11), term)
    assert "non-workday (weekend)" in saturday.day_zero_reason
    early = CAL.explain(ams(2026, 5, 13, 7), term)
    assert "before opening time (08:30)" in early.day_zero_reason


def test_explain_calendar_days() -> None:
    ex = CAL.explain(ams(2026, 4, 13, 9), parse_term("2 weeks"))
    assert ex.day_zero == date(2026, 4, 13)
    assert [(s.day, s.reason) for s in ex.skipped] == [(date(2026, 4, 27), "Koningsdag")]
    assert ex.deadline == ams(2026, 4, 28, 17)


# ---- spec validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "loc", "fragment"),
    [
        ({"office_hours": {"mon": "8:30 - 17"}}, "office_hours.mon", "invalid office hours '8:30 - 17'"),
        ({"office_hours": {"mon": "17:00-08:30"}}, "office_hours.mon", "must be before closing time"),
        ({"office_hours": {"monday": "08:30-17:00"}}, "office_hours.monday", "'mon'"),
        ({"office_hours": {}}, "office_hours", "at least 1 item"),
        ({"office_hours": MON_FRI, "timezone": "Europe/Amsterdan"}, "timezone", "'Europe/Amsterdan'"),
        ({"office_hours": MON_FRI, "closing_days": ["2026-12-01", "2026-12-01"]}, "closing_days", "twice"),
        ({"office_hours": MON_FRI, "closing_days": ["2026-13-01"]}, "closing_days.0.date", "month"),
        ({"office_hours": MON_FRI, "calendar": {}}, "calendar", "Extra inputs"),
    ],
)
def test_bad_spec_names_field_and_value(spec: dict[str, object], loc: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        CalendarSpec.model_validate(spec)
    text = str(info.value)
    assert loc in text
    assert fragment in text


def test_spec_round_trips_through_json() -> None:
    spec = CalendarSpec.model_validate(
        {
            "office_hours": MON_FRI,
            "holidays": {"include": ["goede_vrijdag"]},
            "closing_days": [{"date": date(2026, 12, 24), "reason": "Kerstavond"}, date(2026, 12, 31)],
        }
    )
    dumped = spec.model_dump(mode="json")
    assert dumped["office_hours"]["mon"] == "08:30-17:00"
    assert dumped["closing_days"] == [
        {"date": "2026-12-24", "reason": "Kerstavond"},
        {"date": "2026-12-31", "reason": "closing day"},
    ]
    assert CalendarSpec.model_validate(dumped) == spec
