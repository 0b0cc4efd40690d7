"""Every CLI error is one line with its cause, never a traceback (issue 16, item 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def one_line(err: str) -> str:
    lines = [
        line for line in err.splitlines() if line.strip() and not line.startswith("{")
    ]  # JSON logs apart
    assert "Traceback" not in err
    assert len(lines) == 1, err
    return lines[0]


def test_rules_explain_without_rules_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    contact = tmp_path / "c.json"
    contact.write_text(json.dumps({"tenant": "ommen"}))
    code, err = run(capsys, "--rules-dir", str(tmp_path / "none"), "rules", "explain", str(contact))
    assert code == 2
    assert (
        one_line(err)
        == f"contact-router rules: rules are invalid: {tmp_path / 'none'}:1: no rules files (*.yaml) found"
    )


def test_topology_declare_without_rules_or_broker_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = run(capsys, "--rules-dir", str(tmp_path), "topology", "declare")
    assert code == 2 and "no rules files" in one_line(err)
    monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")
    code, err = run(capsys, "topology", "declare")
    assert code == 2
    assert one_line(err).startswith("contact-router topology: cannot connect: ")


def test_a_bad_rules_file_is_named_with_its_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "ommen.yaml").write_text("tenant: ommen\nteams: []\n")
    contact = tmp_path / "c.json"
    contact.write_text("{}")
    code, err = run(capsys, "--rules-dir", str(tmp_path), "rules", "explain", str(contact))
    assert code == 2 and f"{tmp_path / 'ommen.yaml'}:" in one_line(err)
