"""`contact-router export openklant`: the export of routed contacts and callback requests to each
tenant's Open Klant (docs/openklant.md), its own process.

A tenant is exported when its rules have an `openklant:` section; its token comes from the
environment (`OPENKLANT_TOKEN_<TENANT>`), never from the rules. A tenant with the section and without
the token stops the start: exporting a tenant's contacts to nowhere is a mistake to show, not to skip.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import Any

from router.cli.common import run_loop, settings_from


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("export", help="export to the systems the municipality uses (Open Klant)")
    verbs = e.add_subparsers(dest="export_command", required=True)
    ok = verbs.add_parser(
        "openklant",
        help="routed contacts and callback requests to each tenant's Open Klant (its own process)",
        description="Consume exchange `events` (a queue openklant.events.<tenant> per tenant) and keep "
        "each exported tenant's Open Klant in step: a klantcontact per routed contact, an internetaak "
        "per callback request. Tenants: those whose rules have an `openklant:` section; tokens from "
        "OPENKLANT_TOKEN_<TENANT>. What Open Klant refuses goes to openklant.dead "
        "(`contact-router dlq --queue openklant.dead ...`).",
    )
    ok.add_argument(
        "--prefetch", type=int, default=100, help="events in hand per tenant at most (default 100)"
    )
    ok.set_defaults(func=_openklant)
    check = verbs.add_parser(
        "check",
        help="exit 0 when every exported tenant's queue has a consumer (a healthcheck); counts per queue",
    )
    check.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from router.core.rules import RulesError
    from router.core.tenants import load

    settings = settings_from(args)
    try:
        tenants = load(settings.rules_dir)
    except RulesError as exc:
        print(f"rules are invalid:\n{exc}", file=sys.stderr)
        return 2
    exported = sorted(t for t, tenant in tenants.items() if tenant.loaded.rules.openklant is not None)
    if not exported:
        print("no tenant has an `openklant:` section in its rules: nothing to export", file=sys.stderr)
        return 2
    return run_loop(_queue_counts(settings, exported))


async def _queue_counts(settings: Any, tenants: list[str]) -> int:
    import aio_pika

    from router.amqp import connect as amqp_connect
    from router.core import topology
    from router.core.topology import Names

    names = Names(settings.namespace)
    conn = await amqp_connect.connect(
        settings.amqp_url, timeout=10, client_properties={"connection_name": "export-check"}
    )
    healthy = True
    try:
        # Each tenant's queue needs a consumer; the dead letters are only counted.
        queues = [(names.openklant_queue(t), True) for t in tenants] + [
            (names(topology.OPENKLANT_DEAD), False)
        ]
        for queue, consumed in queues:
            channel = await conn.channel()
            try:
                result = (await channel.declare_queue(queue, passive=True)).declaration_result
                ready, consumers = int(result.message_count or 0), int(result.consumer_count or 0)
            except aio_pika.exceptions.ChannelClosed:
                print(f"{queue}: missing (the exporter never started)")
                healthy = False
                continue
            print(f"{queue}: {ready} waiting" + (f", {consumers} consumer(s)" if consumed else ""))
            healthy = healthy and (consumers > 0 or not consumed)
            await channel.close()
    finally:
        await conn.close()
    return 0 if healthy else 1


def _tokens(tenants: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Token per exported tenant, and the variables that are missing. Read here, at start-up only: the
    names depend on the tenants, so they cannot be fields of the settings object."""
    from router.core.openklant import token_variable

    tokens, missing = {}, []
    for name, tenant in sorted(tenants.items()):
        if tenant.loaded.rules.openklant is None:
            continue
        value = os.environ.get(token_variable(name), "").strip()
        if value:
            tokens[name] = value
        else:
            missing.append(token_variable(name))
    return tokens, missing


def _openklant(args: argparse.Namespace) -> int:
    from router import logs
    from router.core.rules import RulesError
    from router.core.tenants import load

    settings = settings_from(args)
    logs.configure(settings.log_level, settings.log_format)
    try:
        tenants = load(settings.rules_dir)
    except RulesError as exc:
        print(f"rules are invalid:\n{exc}", file=sys.stderr)
        return 2
    tokens, missing = _tokens(tenants)
    if missing:
        print(f"no Open Klant token: set {', '.join(missing)}", file=sys.stderr)
        return 2
    if not tokens:
        print("no tenant has an `openklant:` section in its rules: nothing to export", file=sys.stderr)
        return 2
    return run_loop(_serve(args, settings, tenants, tokens))


async def _serve(
    args: argparse.Namespace, settings: Any, tenants: dict[str, Any], tokens: dict[str, str]
) -> int:
    import aiohttp

    from router import logs
    from router.core.topology import Names
    from router.export.openklant.client import OpenKlantClient
    from router.export.openklant.consumer import ExportConsumer
    from router.export.openklant.mapping import MappingStore
    from router.export.openklant.sync import ContactSync, Target
    from router.redis.casestore import RedisCaseStore
    from router.redis.client import redis_client
    from router.service import install_signal_handlers, keys_for

    log = logs.get("router.cli.export")
    stop = asyncio.Event()
    install_signal_handlers(stop)
    keys = keys_for(settings, embedded=False)
    redis = redis_client(settings.redis_url)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), raise_for_status=False)
    targets = {}
    for name, token in tokens.items():
        rules = tenants[name].loaded.rules
        config = rules.openklant
        client = OpenKlantClient(
            session,
            name,
            config.base_url,
            token,
            concurrency=config.concurrency,
            timeout=config.timeout,
            stop=stop,
        )
        names = {t.id: config.actors.get(t.id, t.name) for t in rules.teams}
        targets[name] = Target(name, config, client, names)
    sync = ContactSync(RedisCaseStore(redis, keys), MappingStore(redis, keys), targets)
    others = sorted(set(tenants) - set(targets))
    consumer = ExportConsumer(
        settings.amqp_url,
        Names(settings.namespace),
        sync,
        sorted(targets),
        others,
        stop,
        prefetch=args.prefetch,
    )
    task = asyncio.create_task(consumer.run(), name="export-openklant")
    log.info("openklant_export_started", tenants=sorted(targets))
    await stop.wait()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 30)
    await session.close()
    await redis.aclose()
    log.info(
        "stopped",
        outcomes=consumer.outcomes,
        dead_lettered=consumer.dead_lettered,
        created=dict(sync.created),
        requests={n: t.client.requests for n, t in targets.items()},
    )
    return 0
