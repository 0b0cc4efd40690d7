"""`contact-router deadline` end to end, as an agent or integrator would call it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", "deadline", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ommen_three_workdays_skip_ascension_day() -> None:
    res = cli("--tenant", "ommen", "--at", "2026-05-13T10:00", "--term", "3 workdays", "--explain")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "2026-05-19T17:00:00+02:00"
    assert any("2026-05-14" in line and "Hemelvaartsdag" in line for line in lines)


def test_coevorden_two_workdays_skip_kings_day_as_json() -> None:
    res = cli("--tenant", "coevorden", "--at", "2026-04-24T16:00", "--term", "2 workdays", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["deadline"] == "2026-04-29T17:00:00+02:00"
    assert {"date": "2026-04-27", "reason": "Koningsdag"} in data["skipped"]


def test_bad_input_is_a_clear_error() -> None:
    res = cli("--tenant", "ommen", "--at", "2026-05-13T10:00", "--term", "drie dagen")
    assert res.returncode == 2 and "invalid term 'drie dagen'" in res.stderr
    res = cli("--tenant", "zwolle", "--at", "2026-05-13T10:00", "--term", "3 workdays")
    assert res.returncode == 2 and "unknown tenant 'zwolle'" in res.stderr
