"""The gemeente holiday calendar (Cao Gemeenten) derived from the holidays library, and include/exclude."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from router.core.calendar.workdays import HOLIDAY_NAMES, CalendarSpec, TenantCalendar

MON_FRI = {day: "08:30-17:00" for day in ("mon", "tue", "wed", "thu", "fri")}


def calendar(**extra: object) -> TenantCalendar:
    return TenantCalendar.from_spec(CalendarSpec.model_validate({"office_hours": MON_FRI, **extra}))


DEFAULT = calendar()


def test_2026_is_pinned() -> None:
    # Written out from the Cao Gemeenten for 2026 (Easter Sunday is 5 April 2026).
    assert DEFAULT.holidays_in(2026) == {
        date(2026, 1, 1): "Nieuwjaarsdag",
        date(2026, 4, 5): "Eerste Paasdag",
        date(2026, 4, 6): "Tweede Paasdag",
        date(2026, 4, 27): "Koningsdag",
        date(2026, 5, 5): "Bevrijdingsdag",
        date(2026, 5, 14): "Hemelvaartsdag",
        date(2026, 5, 24): "Eerste Pinksterdag",
        date(2026, 5, 25): "Tweede Pinksterdag",
        date(2026, 12, 25): "Eerste Kerstdag",
        date(2026, 12, 26): "Tweede Kerstdag",
    }


@pytest.mark.parametrize(
    ("liberation_day", "good_friday"),
    [
        (date(2024, 5, 5), date(2024, 3, 29)),  # Sunday; Easter 31 March
        (date(2025, 5, 5), date(2025, 4, 18)),  # Monday; Easter 20 April
        (date(2026, 5, 5), date(2026, 4, 3)),  # Tuesday; Easter 5 April
        (date(2027, 5, 5), date(2027, 3, 26)),  # Wednesday; Easter 28 March
        (date(2028, 5, 5), date(2028, 4, 14)),  # Friday; Easter 16 April
        (date(2029, 5, 5), date(2029, 3, 30)),  # Saturday; Easter 1 April
        (date(2030, 5, 5), date(2030, 4, 19)),  # Sunday; Easter 21 April
    ],
)
def test_default_has_liberation_day_off_and_works_on_good_friday(
    liberation_day: date, good_friday: date
) -> None:
    year = liberation_day.year
    assert DEFAULT.holidays_in(year)[liberation_day] == "Bevrijdingsdag"
    assert not DEFAULT.is_workday(liberation_day)
    assert DEFAULT.why_not_workday(liberation_day) == "Bevrijdingsdag"
    assert good_friday not in DEFAULT.holidays_in(year)
    assert DEFAULT.is_workday(good_friday)
    assert DEFAULT.why_not_workday(good_friday) is None


@pytest.mark.parametrize(
    "good_friday",
    [date(2024, 3, 29), date(2025, 4, 18), date(2026, 4, 3), date(2027, 3, 26), date(2030, 4, 19)],
)
def test_tenant_can_include_good_friday(good_friday: date) -> None:
    cal = calendar(holidays={"include": ["goede_vrijdag"]})
    assert not cal.is_workday(good_friday)
    assert cal.why_not_workday(good_friday) == "Goede Vrijdag"


def test_tenant_can_exclude_a_holiday() -> None:
    cal = calendar(holidays={"exclude": ["bevrijdingsdag"]})
    assert cal.is_workday(date(2026, 5, 5))  # a Tuesday
    assert date(2026, 5, 5) not in cal.holidays_in(2026)


def test_liberation_day_before_2024_only_in_lustrum_years() -> None:
    assert DEFAULT.is_workday(date(2023, 5, 5))  # Friday, not a lustrum year
    assert DEFAULT.is_workday(date(2022, 5, 5))  # Thursday
    assert not DEFAULT.is_workday(date(2020, 5, 5))  # Tuesday, 75 years of liberation
    # A tenant that includes it has it off every year.
    assert not calendar(holidays={"include": ["bevrijdingsdag"]}).is_workday(date(2022, 5, 5))


def test_kings_day_moves_to_26_april_when_27_april_is_a_sunday() -> None:
    # 27 April 2025 is a Sunday, so Koningsdag is Saturday 26 April 2025 (likewise 2014).
    h2025 = DEFAULT.holidays_in(2025)
    assert h2025[date(2025, 4, 26)] == "Koningsdag"
    assert date(2025, 4, 27) not in h2025
    assert DEFAULT.holidays_in(2014)[date(2014, 4, 26)] == "Koningsdag"
    # Otherwise on 27 April, e.g. Monday 27 April 2026; before 2014 it was Koninginnedag on 30 April.
    assert DEFAULT.why_not_workday(date(2026, 4, 27)) == "Koningsdag"
    assert DEFAULT.holidays_in(2013)[date(2013, 4, 30)] == "Koninginnedag"


def test_all_default_names_found_in_the_library_every_year() -> None:
    # Guards the mapping from the library's names: every default day off is there in each year.
    for year in range(2024, 2031):
        names = set(DEFAULT.holidays_in(year).values())
        assert names == {
            "Nieuwjaarsdag",
            "Eerste Paasdag",
            "Tweede Paasdag",
            "Koningsdag",
            "Bevrijdingsdag",
            "Hemelvaartsdag",
            "Eerste Pinksterdag",
            "Tweede Pinksterdag",
            "Eerste Kerstdag",
            "Tweede Kerstdag",
        }, year


def test_why_not_workday_reasons() -> None:
    cal = calendar(closing_days=[{"date": "2026-12-24", "reason": "Kerstavond"}, "2026-12-31"])
    assert cal.why_not_workday(date(2026, 5, 13)) is None
    assert cal.why_not_workday(date(2026, 5, 16)) == "weekend"
    assert cal.why_not_workday(date(2026, 5, 14)) == "Hemelvaartsdag"
    assert cal.why_not_workday(date(2026, 12, 24)) == "Kerstavond"
    assert cal.why_not_workday(date(2026, 12, 31)) == "closing day"
    # Tweede Kerstdag on a Saturday is reported by name.
    assert cal.why_not_workday(date(2026, 12, 26)) == "Tweede Kerstdag"
    assert cal.closing_days() == {date(2026, 12, 24): "Kerstavond", date(2026, 12, 31): "closing day"}


def test_weekday_without_office_hours() -> None:
    cal = TenantCalendar.from_spec(CalendarSpec.model_validate({"office_hours": {"mon": "09:00-12:00"}}))
    assert cal.why_not_workday(date(2026, 5, 13)) == "no office hours on Wednesday"
    assert cal.is_workday(date(2026, 5, 11))


def test_unknown_holiday_name_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(ValidationError) as info:
        CalendarSpec.model_validate({"office_hours": MON_FRI, "holidays": {"include": ["goede_vrijdg"]}})
    text = str(info.value)
    assert "holidays.include.0" in text
    assert "'goede_vrijdg'" in text
    for name in HOLIDAY_NAMES:
        assert f"'{name}'" in text


def test_holiday_both_included_and_excluded_is_refused() -> None:
    with pytest.raises(ValidationError, match="both included and excluded: koningsdag"):
        CalendarSpec.model_validate(
            {"office_hours": MON_FRI, "holidays": {"include": ["koningsdag"], "exclude": ["koningsdag"]}}
        )
