"""The generated JSON Schema of Contact in schemas/, and whether it is stale."""

from __future__ import annotations

import json
from pathlib import Path

from router.core.contact import SCHEMA_VERSION, json_schema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / f"contact.v{SCHEMA_VERSION}.json"


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale() -> bool:
    return not SCHEMA_PATH.exists() or SCHEMA_PATH.read_text(encoding="utf-8") != render()
