"""Terms, message by message (scripts/mutation): what a refused term says."""

from __future__ import annotations

import pytest

from router.core.calendar.terms import Term, TermError, TermUnit, parse_term


def test_a_term_that_is_not_text_is_refused_with_what_is_expected() -> None:
    with pytest.raises(TermError) as info:
        parse_term(5)  # type: ignore[arg-type]
    assert str(info.value).startswith("invalid term 5: expected '<number> <unit>' with unit workdays")


def test_a_workday_or_hour_term_has_no_length_in_calendar_days() -> None:
    with pytest.raises(TermError) as info:
        Term(5, TermUnit.WORKDAYS).calendar_days()
    assert str(info.value) == "'5 workdays' is not counted in calendar days"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Term(1, "workdays"), "unknown term unit 'workdays'"),  # type: ignore[arg-type]
        (lambda: Term(1.5, TermUnit.DAYS), "term amount 1.5 is not a whole number"),  # type: ignore[arg-type]
        (lambda: Term(1, TermUnit.IMMEDIATELY), "the term 'immediately' takes no amount and no extension"),
        (
            lambda: Term(1, TermUnit.DAYS, Term(1, TermUnit.DAYS, Term(1, TermUnit.DAYS))),
            "a term can have only one extension",
        ),
        (
            lambda: Term(1, TermUnit.DAYS, Term(0, TermUnit.IMMEDIATELY)),
            "an extension cannot be 'immediately'",
        ),
        (
            lambda: Term(1, TermUnit.WORKDAYS, Term(1, TermUnit.HOURS)),
            "the extension must be counted like the base term (workdays cannot be extended by hours)",
        ),
        (lambda: Term(10_001, TermUnit.DAYS), "term amount 10001 is out of range: expected 0 to 10000"),
    ],
)
def test_an_inconsistent_term_is_refused_with_this_message(build: object, message: str) -> None:
    with pytest.raises(TermError) as info:
        build()  # type: ignore[operator]
    assert str(info.value) == message


def test_the_longest_term_is_allowed() -> None:
    assert Term(10_000, TermUnit.WORKDAYS).amount == 10_000
