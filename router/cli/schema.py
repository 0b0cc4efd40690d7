"""The generated JSON Schema of Contact in schemas/, and whether it is stale."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from router.core.contact import SCHEMA_VERSION, json_schema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / f"contact.v{SCHEMA_VERSION}.json"


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale() -> bool:
    return not SCHEMA_PATH.exists() or SCHEMA_PATH.read_text(encoding="utf-8") != render()


def cmd_schema(args: argparse.Namespace) -> int:
    if args.action == "write":
        SCHEMA_PATH.write_text(render(), encoding="utf-8")
        print(f"wrote {SCHEMA_PATH}")
        return 0
    if stale():
        print(f"{SCHEMA_PATH} is out of date: run `contact-router schema write`", file=sys.stderr)
        return 1
    print(f"{SCHEMA_PATH}: up to date")
    return 0


def add_parser(sub: Any) -> None:
    sch = sub.add_parser("schema", help="the Contact JSON Schema in schemas/")
    sch.add_argument("action", choices=["write", "check"])
    sch.set_defaults(func=cmd_schema)
