"""Rules files: validation with file:line errors, classification, `rules check` and `rules explain`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from router.core.classify import Classifier, normalise
from router.core.contact import Contact
from router.core.rules import RulesError, check, load_file
from router.core.tenants import Tenant
from tests.conftest import ROOT, RULES


def make(
    tenant: str = "ommen", channel: str = "mail", subject: str = "", body: str = "", **extra: object
) -> Contact:
    return Contact.model_validate(
        {
            "tenant": tenant,
            "channel": channel,
            "received_at": "2026-05-13T10:00:00+02:00",
            "source": {"adapter": "test", "native_id": f"{subject}-{body}-{channel}"},
            "subject": subject,
            "body": body,
            **extra,
        }
    )


def test_shipped_rules_are_valid() -> None:
    assert check(RULES) == []


@pytest.mark.parametrize(
    ("tenant", "channel", "subject", "body", "team", "rule"),
    [
        ("ommen", "mail", "Paspoort verlopen", "", "burgerzaken", "reisdocumenten"),
        ("ommen", "mail", "", "Ik ben VERHUISD naar Ommen", "burgerzaken", "verhuizing"),
        (
            "ommen",
            "webform",
            "",
            "Er ligt een losse stoeptegel voor mijn deur",
            "openbare_ruimte",
            "melding-openbare-ruimte",
        ),
        (
            "ommen",
            "phone",
            "",
            "Een omgevallen boom blokkeert de weg, gevaarlijk!",
            "openbare_ruimte",
            "gevaar-openbare-ruimte",
        ),
        ("ommen", "mail", "WOZ-waarde", "bezwaar tegen mijn WOZ", "belastingen", "woz"),
        ("ommen", "post", "", "Ik maak bezwaar tegen het besluit", "juridische_zaken", "bezwaar"),
        ("ommen", "mail", "Klacht", "over de behandeling", "juridische_zaken", "klacht"),
        ("coevorden", "mail", "Factuur 2026-113", "", "financien", "factuur"),
        ("coevorden", "social", "", "Wanneer komt de kliko?", "openbare_ruimte", "afval"),
        ("coevorden", "mail", "Vraag", "Wie is mijn wijkagent?", "kcc", "default"),
        # Accents and case do not matter; whole words only ("paspoorten" is not "paspoort").
        ("ommen", "mail", "IDENTITEITSKÁART", "", "burgerzaken", "reisdocumenten"),
        ("ommen", "mail", "paspoorten-museum", "rondleiding", "kcc", "default"),
    ],
)
def test_first_matching_route_decides(
    tenants: dict[str, Tenant], tenant: str, channel: str, subject: str, body: str, team: str, rule: str
) -> None:
    decision = tenants[tenant].classifier.classify(make(tenant, channel, subject, body))
    assert (decision.team, decision.rule) == (team, rule)


def test_metadata_and_sender_domain_conditions(tenants: dict[str, Tenant], tmp_path: Path) -> None:
    form = make("ommen", "webform", "Melding", "iets kapot", metadata={"form": "melding-openbare-ruimte"})
    d = tenants["ommen"].classifier.classify(form)
    assert d.rule == "meldingsformulier-openbare-ruimte" and d.category == "melding_openbare_ruimte"
    assert "metadata form=melding-openbare-ruimte" in d.reasons

    rules = (RULES / "ommen.yaml").read_text()
    rules = rules.replace(
        "routes:\n",
        "routes:\n  - name: ketenpartner\n    team: sociaal_domein\n"
        "    when:\n      sender_domain: [zorgpartner.nl]\n",
        1,
    )
    path = tmp_path / "ommen.yaml"
    path.write_text(rules)
    classifier = Classifier.compile(load_file(path))
    partner = make(sender={"email": "info@regio.zorgpartner.nl"}, subject="x")
    other = make(sender={"email": "info@notzorgpartner.nl"}, subject="y")
    assert classifier.classify(partner).rule == "ketenpartner"
    assert classifier.classify(other).rule == "default"


def test_explanation_names_file_line_and_reason(tenants: dict[str, Tenant]) -> None:
    d = tenants["ommen"].classifier.classify(make(subject="Rijbewijs kwijt"))
    lines = (RULES / "ommen.yaml").read_text().splitlines()
    assert d.where == f"{RULES / 'ommen.yaml'}:{d.rule_line}"
    assert lines[d.rule_line - 1].strip() == "- name: reisdocumenten"
    assert d.reasons == ("keyword 'rijbewijs' in subject or body",)


def test_normalise_strips_accents_and_case() -> None:
    assert normalise("Één café, ÜBER-cool") == ["een", "cafe", "uber", "cool"]


BROKEN = """\
tenant: ommen
name: Gemeente Ommen
teams:
  - {id: kcc, name: KCC}
default_team: kcc
coordinating_team: kcc
transfer_limit: -1
routes:
  - name: paspoort
    team: burgerzaken
    when:
      keywords: [paspoort]
norms:
  - {kind: respond, channel: mail, term: "vijf werkdagen"}
"""


def test_broken_file_reports_each_problem_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "ommen.yaml"
    path.write_text(BROKEN)
    with pytest.raises(RulesError) as info:
        load_file(path)
    text = str(info.value)
    assert f"{path}:7: transfer_limit: Input should be greater than or equal to 0" in text
    assert f"{path}:14:" in text and "vijf werkdagen" in text


def test_unknown_team_in_route_is_reported_with_line(tmp_path: Path) -> None:
    path = tmp_path / "ommen.yaml"
    path.write_text(
        BROKEN.replace("transfer_limit: -1", "transfer_limit: 1").replace(
            '  - {kind: respond, channel: mail, term: "vijf werkdagen"}',
            "  - {kind: respond, channel: mail, term: 5 workdays}",
        )
    )
    problems = check(path)
    assert [str(p) for p in problems] == [
        f"{path}:10: route 'paspoort': team 'burgerzaken' is not one of the teams (kcc)"
    ]


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = tmp_path / "ommen.yaml"
    path.write_text("tenant: ommen\nteams: [\n  {id: kcc\n")
    problems = check(path)
    assert len(problems) == 1 and problems[0].line >= 3 and "YAML syntax" in problems[0].reason


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_rules_check_cli_exit_codes(tmp_path: Path) -> None:
    ok = run_cli("rules", "check", "rules/")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "ommen.yaml"
    bad.write_text(BROKEN)
    res = run_cli("rules", "check", str(tmp_path))
    assert res.returncode == 1
    assert f"{bad}:7: transfer_limit" in res.stdout


def test_rules_explain_cli(tmp_path: Path) -> None:
    contact = tmp_path / "c.json"
    contact.write_text(
        json.dumps(
            {
                "tenant": "ommen",
                "channel": "webform",
                "received_at": "2026-05-13T10:00:00+02:00",
                "source": {"adapter": "x", "native_id": "1"},
                "body": "Losse stoeptegel bij de kerk",
            }
        )
    )
    res = run_cli("rules", "explain", str(contact))
    assert res.returncode == 0, res.stderr
    assert "team:     openbare_ruimte" in res.stdout
    assert "rule:     melding-openbare-ruimte (rules/ommen.yaml:" in res.stdout
    assert "keyword 'stoeptegel'" in res.stdout
    # Public-space report: the resident hears within two workdays (Wed 13 May -> Mon 18 May 17:00).
    assert "respond 2 workdays -> 2026-05-18T17:00:00+02:00" in res.stdout
    bad = run_cli("rules", "explain", "--tenant", "zwolle", str(contact))
    assert bad.returncode == 2 and "unknown tenant 'zwolle'" in bad.stderr
