"""What the core publishes is always serialisable: what a contact may hold is never stuck there."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from router.core.messages import dumps, team_item
from router.core.topology import Names


def test_a_team_item_with_what_orjson_refuses_is_still_written() -> None:
    # The published schema sets no maximum for an attachment's size, and JSON allows lone surrogates:
    # both were accepted once (found by schemathesis), so the callback's team item must carry them.
    contact = {
        "subject": "Vraag \ud800",
        "attachments": [{"filename": "scan.pdf", "size": 52914470881807228928}],
        "received_at": datetime(2026, 12, 2, 9, 0, tzinfo=UTC),
    }
    msg = team_item(Names(""), "ommen", "kcc", {"contact": contact}, "m-1", {})
    back = json.loads(msg.body)
    assert back["contact"]["attachments"][0]["size"] == 52914470881807228928
    assert back["contact"]["subject"] == "Vraag \ud800"
    assert back["contact"]["received_at"] == "2026-12-02T09:00:00+00:00"


def test_the_fast_path_keeps_non_ascii_as_utf8() -> None:
    assert dumps({"t": "één"}) == '{"t":"één"}'
