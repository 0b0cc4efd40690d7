"""`contact-router`: run the service and its tools."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from router import logs
from router.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "rules_dir", None):
        overrides["rules_dir"] = Path(args.rules_dir)
    if getattr(args, "port", None) is not None:
        overrides["http_port"] = args.port
    return Settings(**overrides)  # type: ignore[arg-type]


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """uvloop where it is installed (Linux, macOS): the router spends much of its CPU in the event loop
    and the protocol code around it, and uvloop takes ~7 % off each contact (docs/performance.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def cmd_serve(args: argparse.Namespace, parts: frozenset[str]) -> int:
    from router.cli.serve import serve

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format)
    return run_loop(
        serve(
            settings,
            with_router="router" in parts,
            with_api="api" in parts,
            with_scheduler="scheduler" in parts,
            embedded=args.embedded,
            demo=getattr(args, "demo", False),
            once=getattr(args, "once", False),
        )
    )


def cmd_topology(args: argparse.Namespace) -> int:
    from router.core.tenants import load
    from router.service import declare_topology

    settings = _settings(args)
    tenants = load(settings.rules_dir)
    asyncio.run(declare_topology(settings, tenants))
    print(f"declared exchanges, router queues and team queues for {len(tenants)} tenant(s)")
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    from router.core.rules import check

    path = Path(args.path or _settings(args).rules_dir)
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

    settings = _settings(args)
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


def cmd_deadline(args: argparse.Namespace) -> int:
    from router.cli.deadline import render_deadline
    from router.core.rules import RulesError, load_dir

    settings = _settings(args)
    try:
        loaded = load_dir(settings.rules_dir)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.tenant not in loaded:
        print(f"unknown tenant '{args.tenant}' (known: {', '.join(sorted(loaded))})", file=sys.stderr)
        return 2
    try:
        print(
            render_deadline(
                loaded[args.tenant].rules.calendar, args.tenant, args.at, args.term, args.explain, args.json
            )
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from router.cli.schema import SCHEMA_PATH, render, stale

    if args.action == "write":
        SCHEMA_PATH.write_text(render(), encoding="utf-8")
        print(f"wrote {SCHEMA_PATH}")
        return 0
    if stale():
        print(f"{SCHEMA_PATH} is out of date: run `contact-router schema write`", file=sys.stderr)
        return 1
    print(f"{SCHEMA_PATH}: up to date")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="contact-router", description=__doc__)
    p.add_argument("--rules-dir", help="rules directory (default: RULES_DIR or ./rules)")
    sub = p.add_subparsers(dest="command", required=True)

    for name, help_text, parts in (
        (
            "serve",
            "run router, HTTP API and deadline scheduler in one process",
            {"router", "api", "scheduler"},
        ),
        ("router", "run only the router (consumer of router.contacts)", {"router"}),
        ("api", "run only the HTTP API", {"api"}),
        ("scheduler", "run only the deadline scheduler", {"scheduler"}),
    ):
        s = sub.add_parser(name, help=help_text)
        s.add_argument(
            "--embedded",
            choices=["auto", "always", "never"],
            default="auto",
            help="in-process transport and store: only when no server is reachable (auto)",
        )
        if "api" in parts:
            s.add_argument("--port", type=int, help="HTTP port (default: HTTP_PORT or 8080)")
        if name == "serve":
            s.add_argument(
                "--demo", action="store_true", help="send sample contacts and print where each went"
            )
            s.add_argument(
                "--once", action="store_true", help="with --demo: stop after the samples are routed"
            )
        s.set_defaults(func=lambda a, p=frozenset(parts): cmd_serve(a, p))

    topo = sub.add_parser("topology", help="broker topology")
    topo_sub = topo.add_subparsers(dest="action", required=True)
    topo_sub.add_parser("declare", help="declare exchanges and queues (idempotent)").set_defaults(
        func=cmd_topology
    )

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

    dl = sub.add_parser("deadline", help="compute a deadline with the tenant's calendar")
    dl.add_argument("--tenant", required=True)
    dl.add_argument("--at", required=True, help="ISO 8601; without offset: tenant local time")
    dl.add_argument("--term", required=True, help='e.g. "3 workdays", "3 hours", "6 weeks + 4 weeks"')
    dl.add_argument("--explain", action="store_true", help="list skipped days and why")
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=cmd_deadline)

    sch = sub.add_parser("schema", help="the Contact JSON Schema in schemas/")
    sch.add_argument("action", choices=["write", "check"])
    sch.set_defaults(func=cmd_schema)

    # Subcommands that live beside their own code; each module has add_parser(subparsers).
    for module in _SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.add_parser(sub)
    return p


_SUBCOMMAND_MODULES = ("router.cli.adapters", "router.amqp.dlq", "bench.cli")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
