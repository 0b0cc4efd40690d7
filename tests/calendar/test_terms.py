"""Terms: parsing (English and Dutch), printing back, and clear errors."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel, ValidationError

from router.core.calendar.terms import Term, TermError, TermField, TermUnit, parse_term

W, H, D, WK = TermUnit.WORKDAYS, TermUnit.HOURS, TermUnit.DAYS, TermUnit.WEEKS


@pytest.mark.parametrize(
    ("text", "expected", "printed"),
    [
        ("3 workdays", Term(3, W), "3 workdays"),
        ("1 workday", Term(1, W), "1 workday"),
        ("5 werkdagen", Term(5, W), "5 workdays"),
        ("1 werkdag", Term(1, W), "1 workday"),
        ("3 hours", Term(3, H), "3 hours"),
        ("1 hour", Term(1, H), "1 hour"),
        ("3 uur", Term(3, H), "3 hours"),
        ("1 uur", Term(1, H), "1 hour"),
        ("2 weeks", Term(2, WK), "2 weeks"),
        ("1 week", Term(1, WK), "1 week"),
        ("2 weken", Term(2, WK), "2 weeks"),
        ("30 days", Term(30, D), "30 days"),
        ("1 day", Term(1, D), "1 day"),
        ("30 dagen", Term(30, D), "30 days"),
        ("6 weeks + 4 weeks", Term(6, WK, Term(4, WK)), "6 weeks + 4 weeks"),
        ("12 weken + 6 weken", Term(12, WK, Term(6, WK)), "12 weeks + 6 weeks"),
        ("immediately", Term(0, TermUnit.IMMEDIATELY), "immediately"),
        ("direct", Term(0, TermUnit.IMMEDIATELY), "immediately"),
        ("onmiddellijk", Term(0, TermUnit.IMMEDIATELY), "immediately"),
        # Case and whitespace do not matter.
        ("  5   WERKDAGEN ", Term(5, W), "5 workdays"),
        ("Immediately", Term(0, TermUnit.IMMEDIATELY), "immediately"),
        ("6 Weeks+4 weeks", Term(6, WK, Term(4, WK)), "6 weeks + 4 weeks"),
        ("3\tHours", Term(3, H), "3 hours"),
    ],
)
def test_parse_and_print(text: str, expected: Term, printed: str) -> None:
    term = parse_term(text)
    assert term == expected
    assert str(term) == printed
    assert parse_term(str(term)) == term
    assert Term.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["drie dagen", "5 maanden", "workdays", "5", "", "3 workdays +", "+ 3 workdays", "3.5 hours", "-1 days"],
)
def test_bad_term_names_the_text(text: str) -> None:
    with pytest.raises(TermError) as info:
        parse_term(text)
    assert f"invalid term {text!r}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_term_message_says_what_is_expected() -> None:
    with pytest.raises(TermError) as info:
        parse_term("drie dagen")
    assert str(info.value) == (
        "invalid term 'drie dagen': expected '<number> <unit>' with unit workdays, hours, days or weeks "
        "(Dutch: werkdagen, uur, dagen, weken), optionally '+ <number> <unit>', or 'immediately'"
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("5 workdays + 2 weeks", "workdays cannot be extended by weeks"),
        ("3 hours + 1 day", "hours cannot be extended by days"),
        ("20000 hours", "out of range"),
        ("5 maanden", "unknown unit 'maanden'"),
    ],
)
def test_inconsistent_terms(text: str, fragment: str) -> None:
    with pytest.raises(TermError, match=fragment):
        parse_term(text)


def test_extension_of_days_and_weeks_is_in_calendar_days() -> None:
    assert parse_term("6 weeks + 10 days").extended() == Term(52, D)
    assert parse_term("12 weeks + 6 weeks").extended() == Term(18, WK)
    assert parse_term("12 weeks + 6 weeks").base == Term(12, WK)
    assert parse_term("3 workdays").extended() == Term(3, W)


def test_term_is_immutable() -> None:
    term = parse_term("3 workdays")
    with pytest.raises(dataclasses.FrozenInstanceError):
        term.amount = 4  # type: ignore[misc]
    assert hash(term) == hash(Term(3, W))


def test_term_invariants_hold_when_built_in_code() -> None:
    with pytest.raises(TermError):
        Term(3, TermUnit.IMMEDIATELY)
    with pytest.raises(TermError):
        Term(1, W, Term(1, W, Term(1, W)))
    with pytest.raises(TermError):
        Term(True, W)


class _Model(BaseModel):
    term: TermField


def test_term_field_validates_and_serialises() -> None:
    model = _Model.model_validate({"term": "5 werkdagen"})
    assert model.term == Term(5, W)
    assert model.model_dump(mode="json") == {"term": "5 workdays"}
    assert _Model(term=Term(2, WK)).term == Term(2, WK)
    assert _Model.model_json_schema()["properties"]["term"]["type"] == "string"


def test_term_field_error_names_field_and_value() -> None:
    with pytest.raises(ValidationError) as info:
        _Model.model_validate({"term": "drie dagen"})
    text = str(info.value)
    assert "term" in text and "'drie dagen'" in text
    assert info.value.errors()[0]["loc"] == ("term",)
