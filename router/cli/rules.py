"""`contact-router rules check|explain`: validate rules files; show where a contact goes, and why."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from router.cli.common import settings_from


def cmd_rules_check(args: argparse.Namespace) -> int:
    from router.core.rules import check

    path = Path(args.path or settings_from(args).rules_dir)
    problems = check(path)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{path}: ok")
    return 0


def cmd_rules_explain(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from router.core.contact import Contact, summarise_errors
    from router.core.tenants import load

    settings = settings_from(args)
    tenants = load(settings.rules_dir)
    try:
        raw = Path(args.contact).read_text(encoding="utf-8")
        data = json.loads(raw)
        if args.tenant:
            data["tenant"] = args.tenant
        contact = Contact.model_validate(data)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"{args.contact}: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"{args.contact}: invalid contact: {summarise_errors(exc)}", file=sys.stderr)
        return 2
    tenant = tenants.get(contact.tenant)
    if tenant is None:
        print(f"unknown tenant '{contact.tenant}' (known: {', '.join(sorted(tenants))})", file=sys.stderr)
        return 2
    d = tenant.classifier.classify(contact)
    deadlines = tenant.deadlines_for(contact.channel, d.category, contact.received_at)
    if args.json:
        print(
            json.dumps(
                {
                    "tenant": contact.tenant,
                    "team": d.team,
                    "category": d.category,
                    "rule": d.rule,
                    "rule_at": d.where,
                    "reasons": list(d.reasons),
                    "deadlines": [x.as_dict() for x in deadlines],
                },
                indent=2,
            )
        )
        return 0
    print(f"team:     {d.team}")
    print(f"rule:     {d.rule} ({d.where})")
    print(f"category: {d.category or '-'}")
    for reason in d.reasons:
        print(f"why:      {reason}")
    for x in deadlines:
        print(f"deadline: {x.kind} {x.term} -> {x.due.isoformat()} (warning {x.warning_at.isoformat()})")
    return 0


def add_parser(sub: Any) -> None:
    rules = sub.add_parser("rules", help="rules files")
    rules_sub = rules.add_subparsers(dest="action", required=True)
    chk = rules_sub.add_parser("check", help="validate rules files; prints file:line: reason")
    chk.add_argument("path", nargs="?")
    chk.set_defaults(func=cmd_rules_check)
    exp = rules_sub.add_parser("explain", help="show which team a contact goes to, and why")
    exp.add_argument("--tenant", help="override the contact's tenant")
    exp.add_argument("--json", action="store_true")
    exp.add_argument("contact", help="a Contact as JSON file")
    exp.set_defaults(func=cmd_rules_explain)
