"""`contact-router report` and `contact-router history …` against an SQLite history."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from router.cli import main
from router.core.history import audit_entry
from router.core.tenants import Tenant
from router.history import open_store
from tests.conftest import RULES
from tests.history.events import met, new_id, routed

OCT = datetime(2026, 10, 5, 10, 0).astimezone()


@pytest.fixture
def history(sqlite_url: str, tenants: dict[str, Tenant], monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    cid = new_id()
    ommen = tenants["ommen"]

    async def fill() -> None:
        store = await open_store(sqlite_url, tenants)
        await store.append([*routed(ommen, cid, OCT), met(ommen, cid, OCT + timedelta(days=1))])
        await store.audit(
            audit_entry(
                at=OCT,
                tenant="ommen",
                contact_id=cid,
                action="contact.viewed",
                agent="kcc-017",
                credential="ommen-kcc",
            )
        )
        await store.close()

    asyncio.run(fill())
    # The commands configure logging to the stderr of the moment (pytest's capture, closed afterwards).
    monkeypatch.setattr("router.logs.configure", lambda *args, **kwargs: None)
    monkeypatch.setenv("HISTORY_URL", sqlite_url)
    monkeypatch.setenv("RULES_DIR", str(RULES))
    monkeypatch.setenv("LOG_LEVEL", "warning")
    return sqlite_url, cid


def test_report_in_every_format(
    history: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["report", "--tenant", "ommen", "--period", "2026Q4", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["period"] == "2026Q4" and [n["kind"] for n in doc["norms"]] == ["acknowledge", "respond"]
    assert doc["norms"][1]["total"]["met_on_time"] == 1
    assert main(["report", "--tenant", "ommen", "--period", "2026Q4"]) == 0
    assert capsys.readouterr().out.startswith("kind,channel,category,term,clock,month,")
    out = tmp_path / "ommen.html"
    assert (
        main(
            [
                "report",
                "--tenant",
                "ommen",
                "--period",
                "2026",
                "--format",
                "html",
                "--output",
                str(out),
                "--charts",
                str(tmp_path / "charts"),
            ]
        )
        == 0
    )
    assert "data:image/png;base64," in out.read_text()
    assert sorted(p.name for p in (tmp_path / "charts").iterdir())[0] == "00-overview.png"
    assert main(["report", "--tenant", "ommen", "--period", "2026Q9"]) == 2
    assert main(["report", "--tenant", "nowhere", "--period", "2026Q4"]) == 2


def test_history_audit_rebuild_and_purge(
    history: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, cid = history
    assert main(["history", "audit", "--contact", cid, "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert (entry["agent"], entry["credential"], entry["action"]) == (
        "kcc-017",
        "ommen-kcc",
        "contact.viewed",
    )
    assert main(["history", "audit", "--agent", "kcc-017"]) == 0
    assert cid in capsys.readouterr().out
    assert main(["history", "rebuild"]) == 0
    assert capsys.readouterr().out.startswith("rebuilt 2 items of 1 contacts")
    assert main(["history", "purge", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True
    assert main(["history", "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_without_history_url_the_commands_say_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("router.logs.configure", lambda *args, **kwargs: None)
    monkeypatch.delenv("HISTORY_URL", raising=False)
    assert main(["history", "rebuild"]) == 2
    assert "HISTORY_URL is not set" in capsys.readouterr().err
