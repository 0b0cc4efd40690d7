"""`contact-router history …` (the durable history and its audit log) and `contact-router report`.

    history consume                 the consumer of `events` into the history (its own process), with
                                    the hourly purge of the history past the tenants' retention
    history migrate                 apply the schema migrations (consume does it at start-up too)
    history rebuild [--tenant T]    recompute the norm items from the event rows
    history audit --contact ID | --agent ID [--tenant T] [--json]
    history purge [--dry-run] [--json]
    history check                   exit 0 when the database answers and the queue has a consumer
    report --tenant T --period 2026Q4 [--format csv|html|json] [--output FILE] [--charts DIR]

Everything printed is ids, codes, counts and figures: the history holds nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from router.cli.common import run_loop, settings_from

_NOT_SET = "HISTORY_URL is not set: postgresql://user:password@host:5432/db or sqlite:///path"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    h = sub.add_parser("history", help="the durable history of events and the audit log")
    verbs = h.add_subparsers(dest="history_command", required=True)
    verbs.add_parser("consume", help="store every event of exchange `events` (its own process)").set_defaults(
        func=lambda a: _run(a, _consume)
    )
    verbs.add_parser("migrate", help="apply the schema migrations").set_defaults(
        func=lambda a: _run(a, _migrate)
    )
    rebuild = verbs.add_parser("rebuild", help="recompute the norm items from the event rows")
    rebuild.add_argument("--tenant")
    rebuild.set_defaults(func=lambda a: _run(a, _rebuild))
    audit = verbs.add_parser("audit", help="who viewed or changed a contact, or what an agent did")
    which = audit.add_mutually_exclusive_group(required=True)
    which.add_argument("--contact", metavar="ID", help="a contact id")
    which.add_argument("--agent", metavar="ID", help="an agent id")
    audit.add_argument("--tenant")
    audit.add_argument("--limit", type=int, default=1000)
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=lambda a: _run(a, _audit))
    purge = verbs.add_parser("purge", help="remove history rows past the tenants' retention")
    purge.add_argument("--dry-run", action="store_true")
    purge.add_argument("--json", action="store_true")
    purge.set_defaults(func=lambda a: _run(a, _purge))
    verbs.add_parser("check", help="the database answers and the queue has a consumer").set_defaults(
        func=lambda a: _run(a, _check)
    )

    r = sub.add_parser("report", help="the norm-compliance report of a tenant for a period")
    r.add_argument("--tenant", required=True)
    r.add_argument("--period", required=True, help="2026Q4, 2026 or 2026-11")
    r.add_argument("--format", choices=("csv", "html", "json"), default="csv")
    r.add_argument("--output", type=Path, help="write to this file (default: standard output)")
    r.add_argument("--charts", type=Path, metavar="DIR", help="also write the charts as PNG files here")
    r.set_defaults(func=lambda a: _run(a, _report))


def _run(args: argparse.Namespace, command: Callable[[argparse.Namespace, Any, Any], Awaitable[int]]) -> int:
    from router import logs
    from router.core.rules import RulesError
    from router.core.tenants import load

    settings = settings_from(args)
    logs.configure(settings.log_level, settings.log_format)  # logs go to stderr; stdout is the output
    url = settings.history_url.get_secret_value()
    if not url:
        print(_NOT_SET, file=sys.stderr)
        return 2
    try:
        tenants = load(settings.rules_dir)
    except RulesError as exc:
        print(f"rules are invalid:\n{exc}", file=sys.stderr)
        return 2

    async def main() -> int:
        from router.history import open_store

        try:
            migrating = getattr(args, "history_command", None) == "migrate"
            store = await open_store(url, tenants, migrate=not migrating)
        except (OSError, ValueError) as exc:
            print(f"cannot open the history: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        try:
            return await command(args, store, (settings, tenants))
        finally:
            await store.close()

    return run_loop(main())


async def _migrate(args: argparse.Namespace, store: Any, env: Any) -> int:
    done = await store.migrate()
    print("\n".join(f"applied {name}" for name in done) or "the schema is up to date")
    return 0


async def _rebuild(args: argparse.Namespace, store: Any, env: Any) -> int:
    result = await store.rebuild(args.tenant)
    print(
        f"rebuilt {result.items} items of {result.contacts} contacts"
        f" ({result.kept_anonymous} items without ids kept as they are)"
    )
    return 0


async def _audit(args: argparse.Namespace, store: Any, env: Any) -> int:
    entries = await store.audit_log(args.tenant, contact_id=args.contact, agent=args.agent, limit=args.limit)
    if args.json:
        rows = [
            {
                "at": e.at.isoformat(),
                "tenant": e.tenant,
                "contact_id": e.contact_id,
                "action": e.action,
                "agent": e.agent,
                "credential": e.credential,
            }
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for e in entries:
        print(
            f"{e.at.isoformat()}  {e.tenant:<10} {e.contact_id}  {e.action:<22} "
            f"{e.agent or '-'} ({e.credential or '-'})"
        )
    if not entries:
        print("no audit entries", file=sys.stderr)
    return 0


async def _purge(args: argparse.Namespace, store: Any, env: Any) -> int:
    from router.core.retention import RetentionPolicy

    _, tenants = env
    policy = RetentionPolicy({t: tenant.loaded.rules.retention for t, tenant in tenants.items()})
    removal = await store.purge(policy, datetime.now(UTC), dry_run=args.dry_run)
    if args.json:
        print(
            json.dumps(
                {
                    "store": removal.store,
                    "dry_run": removal.dry_run,
                    "counts": removal.counts,
                    "contact_ids": sorted(removal.contact_ids),
                },
                indent=2,
            )
        )
        return 0
    counts = ", ".join(f"{n} {what}" for what, n in sorted(removal.counts.items())) or "nothing"
    print(f"history: {'would remove' if args.dry_run else 'removed'} {counts}")
    return 0


async def _check(args: argparse.Namespace, store: Any, env: Any) -> int:
    from router.amqp.history import consumers_of_history_queue
    from router.core.topology import Names

    settings, _ = env
    await store.count_events()
    try:
        consumers = await consumers_of_history_queue(settings.amqp_url, Names(settings.namespace))
    except Exception as exc:
        print(f"history queue: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"database ok; history queue consumers: {consumers}")
    return 0 if consumers > 0 else 1


async def _report(args: argparse.Namespace, store: Any, env: Any) -> int:
    from router.history import charts
    from router.history.report import norm_report

    _, tenants = env
    tenant = tenants.get(args.tenant)
    if tenant is None:
        print(f"unknown tenant: no rules for '{args.tenant}'", file=sys.stderr)
        return 2
    try:
        report = await norm_report(store, tenant, args.period, datetime.now(UTC))
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    pictures: dict[str, bytes] = {}
    if (args.format == "html" or args.charts) and charts.available():
        pictures = charts.charts(report)
    elif args.format == "html" or args.charts:
        print("no charts: install the extra `charts` (matplotlib)", file=sys.stderr)
    if args.charts:
        args.charts.mkdir(parents=True, exist_ok=True)
        for i, (name, png) in enumerate(pictures.items()):
            (args.charts / f"{i:02d}-{_slug(name)}.png").write_bytes(png)
    if args.format == "json":
        text = json.dumps(report.as_dict(), indent=2)
    elif args.format == "html":
        text = report.to_html(pictures)
    else:
        text = report.to_csv()
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:80]


async def _consume(args: argparse.Namespace, store: Any, env: Any) -> int:
    from router import logs
    from router.amqp.history import HistoryConsumer
    from router.amqp.probes import QueueProbe, history_queues
    from router.core.clock import SystemClock
    from router.core.erasure import PeriodicPurge, Privacy
    from router.core.retention import RetentionPolicy
    from router.core.topology import Names
    from router.metrics.listener import start_listener
    from router.metrics.probes import HistoryProbe
    from router.service import install_signal_handlers, metrics_for

    log = logs.get("router.cli.history")
    settings, tenants = env
    stop = asyncio.Event()
    install_signal_handlers(stop)
    names = Names(settings.namespace)
    consumer = HistoryConsumer(settings.amqp_url, names, store.append)
    metrics = metrics_for(tenants, names, "history")
    metrics.add_probe(HistoryProbe(consumer))
    metrics.add_probe(QueueProbe(settings.amqp_url, history_queues(names)))
    listener = None
    if settings.metrics_port:
        try:
            listener = await start_listener(metrics, settings.http_host, settings.metrics_port)
        except OSError as exc:
            print(
                f"no metrics listener on METRICS_PORT: {exc.strerror or type(exc).__name__}", file=sys.stderr
            )
            await metrics.close()
            return 2
    policy = RetentionPolicy({t: tenant.loaded.rules.retention for t, tenant in tenants.items()})
    purge = PeriodicPurge(Privacy([store], policy, SystemClock()), _run_lock(store))
    tasks = [
        asyncio.create_task(consumer.run(), name="history"),
        asyncio.create_task(purge.run(), name="purge"),
    ]
    log.info("history_consumer_started")
    await stop.wait()
    consumer.stop()
    purge.stop()
    for task in tasks:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
    if listener is not None:
        await listener.cleanup()
    await metrics.close()
    log.info("stopped", stored=consumer.stored)
    return 0


def _run_lock(store: Any) -> Any:
    """One purge at a time: an advisory lock in PostgreSQL; a lock of this process for SQLite (one
    process writes an SQLite file)."""
    from router.history.postgres import PgRunLock, PostgresHistory

    if isinstance(store, PostgresHistory):
        return PgRunLock(store)
    return _LocalLock()


class _LocalLock:
    def __init__(self) -> None:
        self._held = False

    async def acquire(self, ttl_ms: int) -> str | None:
        if self._held:
            return None
        self._held = True
        return "local"

    async def release(self, token: str) -> None:
        self._held = False
