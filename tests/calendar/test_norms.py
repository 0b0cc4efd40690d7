"""The norm table: YAML shape, most-specific lookup, and validation errors that name the field."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from router.core.calendar.norms import NormKind, NormSpec, NormTable
from router.core.calendar.terms import Term, TermUnit, parse_term

NORMS_YAML = """
norms:
  - {kind: callback, term: "3 workdays"}
  - {kind: acknowledge, channel: mail, term: "immediately"}
  - {kind: respond, channel: mail, term: "5 workdays"}
  - {kind: respond, channel: post, term: "2 weeks"}
  - {kind: respond, category: melding_openbare_ruimte, term: "2 workdays"}
  - {kind: respond, category: gevaar, term: "3 hours"}
  - {kind: resolve, category: bezwaar, term: "12 weeks + 6 weeks"}
  - {kind: respond, channel: social, category: gevaar, term: "1 hour"}
  - {kind: respond, term: "10 workdays"}
"""
TABLE = NormTable.model_validate(yaml.safe_load(NORMS_YAML)["norms"])


@pytest.mark.parametrize(
    ("channel", "category", "kind", "expected"),
    [
        # channel + category beats category only ...
        ("social", "gevaar", "respond", "1 hour"),
        # ... which beats channel only ...
        ("mail", "gevaar", "respond", "3 hours"),
        ("webform", "melding_openbare_ruimte", "respond", "2 workdays"),
        # ... which beats a norm with neither.
        ("mail", None, "respond", "5 workdays"),
        ("mail", "paspoort", "respond", "5 workdays"),
        ("post", None, "respond", "2 weeks"),
        ("phone", None, "respond", "10 workdays"),
        ("phone", "paspoort", "respond", "10 workdays"),
        ("phone", None, "callback", "3 workdays"),
        ("mail", None, "acknowledge", "immediately"),
        (None, "bezwaar", "resolve", "12 weeks + 6 weeks"),
        ("mail", "bezwaar", NormKind.RESOLVE, "12 weeks + 6 weeks"),
    ],
)
def test_most_specific_norm_wins(channel: str | None, category: str | None, kind: str, expected: str) -> None:
    assert TABLE.term_for(channel, category, kind) == parse_term(expected)


def test_no_norm_applies() -> None:
    assert TABLE.term_for("phone", None, "acknowledge") is None
    assert TABLE.term_for("mail", "bezwaar", "acknowledge") == parse_term("immediately")
    assert NormTable(()).term_for("mail", None, "respond") is None


def test_lookup_is_case_insensitive_like_the_rules_file() -> None:
    table = NormTable.model_validate([{"kind": "respond", "channel": "Mail", "term": "5 Werkdagen"}])
    assert table.root[0].channel == "mail"
    assert table.term_for("MAIL", None, "respond") == Term(5, TermUnit.WORKDAYS)


def test_table_serialises_back_to_the_yaml_shape() -> None:
    dumped = TABLE.model_dump(mode="json", exclude_none=True)
    assert dumped[0] == {"kind": "callback", "term": "3 workdays"}
    assert dumped[6] == {"kind": "resolve", "category": "bezwaar", "term": "12 weeks + 6 weeks"}
    assert NormTable.model_validate(dumped) == TABLE
    assert len(TABLE) == 9
    assert all(isinstance(n, NormSpec) for n in TABLE)


@pytest.mark.parametrize(
    ("norm", "loc", "fragment"),
    [
        ({"kind": "answer", "term": "3 workdays"}, "0.kind", "input_value='answer'"),
        ({"kind": "respond", "term": "drie dagen"}, "0.term", "invalid term 'drie dagen'"),
        ({"kind": "respond", "term": "5 workdays + 2 weeks"}, "0.term", "cannot be extended"),
        ({"kind": "respond", "channel": "e-mail", "term": "3 workdays"}, "0.channel", "'e-mail'"),
        ({"kind": "respond", "chanel": "mail", "term": "3 workdays"}, "0.chanel", "Extra inputs"),
        ({"kind": "respond"}, "0.term", "Field required"),
    ],
)
def test_bad_norm_names_field_and_value(norm: dict[str, str], loc: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        NormTable.model_validate([norm])
    text = str(info.value)
    assert loc in text
    assert fragment in text


def test_unknown_kind_lists_the_allowed_ones() -> None:
    with pytest.raises(ValidationError) as info:
        NormSpec.model_validate({"kind": "answer", "term": "3 workdays"})
    assert "'acknowledge', 'respond', 'callback' or 'resolve'" in str(info.value)


def test_two_norms_for_the_same_situation_are_refused() -> None:
    with pytest.raises(ValidationError, match="norms 0 and 1 both apply to kind='respond', channel='mail'"):
        NormTable.model_validate(
            [
                {"kind": "respond", "channel": "mail", "term": "5 workdays"},
                {"kind": "respond", "channel": "mail", "term": "3 workdays"},
            ]
        )


def test_norms_are_frozen() -> None:
    with pytest.raises(ValidationError):
        TABLE.root[0].term = parse_term("1 workday")
