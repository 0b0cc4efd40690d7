"""The text of `contact-router deadline`."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from router.cli.deadline import render_deadline
from router.core.calendar.workdays import CalendarSpec

MON_FRI = {day: "08:30-17:00" for day in ("mon", "tue", "wed", "thu", "fri")}
SPEC = CalendarSpec.model_validate(
    {"office_hours": MON_FRI, "closing_days": [{"date": "2026-12-24", "reason": "Kerstavond"}]}
)


def test_one_line_by_default() -> None:
    # Naive --at is tenant local time: Wed 13 May 2026 10:00 CEST; Hemelvaartsdag skipped.
    assert render_deadline(SPEC, "ommen", "2026-05-13T10:00", "3 workdays", False, False) == (
        "2026-05-19T17:00:00+02:00"
    )
    # With an offset, and as a datetime.
    assert render_deadline(SPEC, "ommen", "2026-05-13T08:00:00Z", "3 werkdagen", False, False) == (
        "2026-05-19T17:00:00+02:00"
    )
    at = datetime(2026, 4, 24, 16, tzinfo=ZoneInfo("Europe/Amsterdam"))
    assert render_deadline(SPEC, "coevorden", at, "2 workdays", False, False) == "2026-04-29T17:00:00+02:00"


def test_explain_lists_day_zero_skipped_days_deadline_and_warning() -> None:
    out = render_deadline(SPEC, "ommen", "2026-05-13T10:00", "3 workdays", True, False).splitlines()
    assert out[0] == "2026-05-19T17:00:00+02:00"
    assert "day 0: 2026-05-13 (Wednesday) — received on a workday before closing time (17:00)" in out[4]
    assert out[5:8] == [
        "skipped: 2026-05-14 (Thursday) — Hemelvaartsdag",
        "skipped: 2026-05-16 (Saturday) — weekend",
        "skipped: 2026-05-17 (Sunday) — weekend",
    ]
    assert out[8] == "deadline: 2026-05-19T17:00:00+02:00 (Tuesday)"
    assert out[9].startswith("warning at: 2026-05-19T11:54:00+02:00 (Tuesday)")


def test_explain_closing_day_and_extension() -> None:
    # Wed 23 Dec 18:00: Thu 24 Kerstavond (closing day), Fri 25 / Sat 26 Kerst, Sun 27: day 0 Mon 28.
    out = render_deadline(SPEC, "ommen", "2026-12-23T18:00", "1 workday", True, False)
    assert "skipped: 2026-12-24 (Thursday) — Kerstavond" in out
    assert "skipped: 2026-12-25 (Friday) — Eerste Kerstdag" in out
    assert out.splitlines()[0] == "2026-12-29T17:00:00+01:00"
    # 6 + 4 weeks from Wed 13 May: base Wed 24 Jun, extended Wed 22 Jul.
    out = render_deadline(SPEC, "ommen", "2026-05-13T10:00", "6 weeks + 4 weeks", True, False)
    assert "extended deadline (+ 4 weeks): 2026-07-22T17:00:00+02:00 (Wednesday)" in out


def test_json() -> None:
    doc = json.loads(
        render_deadline(SPEC, "coevorden", "2026-04-25T11:00", "12 weeks + 6 weeks", False, True)
    )
    # Sat 25 Apr + 84 days = Sat 18 Jul -> Mon 20 Jul 17:00; + 126 days = Sat 29 Aug -> Mon 31 Aug.
    assert doc["tenant"] == "coevorden"
    assert doc["received_at"] == "2026-04-25T11:00:00+02:00"
    assert doc["term"] == "12 weeks + 6 weeks"
    assert doc["day_zero"] == "2026-04-25"
    assert doc["deadline"] == "2026-07-20T17:00:00+02:00"
    assert doc["extended_deadline"] == "2026-08-31T17:00:00+02:00"
    assert doc["skipped"] == [
        {"date": "2026-07-18", "reason": "weekend"},
        {"date": "2026-07-19", "reason": "weekend"},
    ]
    assert "warning_at" in doc

    doc = json.loads(render_deadline(SPEC, "coevorden", "2026-04-24T16:00", "2 workdays", False, True))
    assert doc["day_zero"] == "2026-04-24"
    assert doc["deadline"] == "2026-04-29T17:00:00+02:00"
    assert "extended_deadline" not in doc
    assert doc["skipped"] == [
        {"date": "2026-04-25", "reason": "weekend"},
        {"date": "2026-04-26", "reason": "weekend"},
        {"date": "2026-04-27", "reason": "Koningsdag"},
    ]


@pytest.mark.parametrize(
    ("at", "term", "fragment"),
    [
        ("gisteren", "3 workdays", "invalid --at 'gisteren'"),
        ("2026-05-13T10:00", "drie dagen", "invalid term 'drie dagen'"),
        ("2026-02-30T10:00", "3 workdays", "invalid --at"),
    ],
)
def test_bad_input_is_a_value_error(at: str, term: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        render_deadline(SPEC, "ommen", at, term, False, False)
