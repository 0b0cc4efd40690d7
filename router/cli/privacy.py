"""`contact-router purge [--dry-run]` and `contact-router erase --tenant T ...`: retention and erasure.

Both print ids and counts, never personal data (no address, number or name is echoed back). What they
remove and how: router/core/erasure.py (the stores in turn), router/redis/privacy.py (Redis),
router/amqp/scrub.py (the queues).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from router.cli.common import run_loop, settings_from

_REFERENCE = re.compile(r"^[A-Z]{3}-[A-Z2-7]{4}-[A-Z2-7]{4}$")


def _print_removals(removals: list[Any], *, verb: str) -> None:
    for r in removals:
        counts = ", ".join(f"{n} {what}" for what, n in sorted(r.counts.items())) or "nothing"
        print(f"{r.store}: {verb} {counts}")
        if r.contact_ids:
            print(f"  contact ids: {' '.join(sorted(r.contact_ids))}")
        if r.message_ids:
            print(f"  message ids: {' '.join(r.message_ids)}")


def _as_json(removals: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "store": r.store,
            "dry_run": r.dry_run,
            "counts": r.counts,
            "contact_ids": sorted(r.contact_ids),
            "message_ids": r.message_ids,
        }
        for r in removals
    ]


async def _runtime(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(privacy, redis store, client) for this deployment, from the environment."""
    from router import logs
    from router.core.clock import SystemClock
    from router.core.tenants import load
    from router.redis.client import redis_client
    from router.redis.privacy import RedisPersonalData
    from router.service import keys_for, privacy_for

    settings = settings_from(args)
    # Logs to stderr, as JSON (LOG_FORMAT): stdout holds only the report.
    logs.configure(settings.log_level, settings.log_format)
    tenants = load(settings.rules_dir)
    client = redis_client(settings.redis_url)
    privacy = privacy_for(settings, tenants, client, keys_for(settings, embedded=False), SystemClock())
    redis_store = next(s for s in privacy.stores if isinstance(s, RedisPersonalData))
    return privacy, redis_store, client


def _failure(exc: BaseException) -> int:
    print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 2


async def _purge(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from router.amqp.scrub import ScrubError

    privacy, redis_store, client = await _runtime(args)
    try:
        if args.reindex and not args.dry_run:
            counts = await redis_store.reindex()
            print("reindexed: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
        removals = await privacy.purge(dry_run=args.dry_run)
    except (RedisError, ScrubError, OSError) as exc:
        return _failure(exc)
    finally:
        await privacy.close()
        await client.aclose()
    if args.json:
        print(json.dumps(_as_json(removals), indent=2))
        return 0
    policy = privacy.policy
    for tenant in policy.tenants():
        print(
            f"{tenant}: closed contacts {policy.closed_contacts(tenant)}, "
            f"dead letters {policy.dead_letters(tenant)}"
        )
    _print_removals(removals, verb="would remove" if args.dry_run else "removed")
    if args.dry_run:
        print("dry run: nothing was removed")
    return 0


def _subject(args: argparse.Namespace, tenants: list[str]) -> Any:
    from router.core.erasure import subject

    if args.tenant not in tenants:
        raise ValueError(f"unknown tenant '{args.tenant}' (known: {', '.join(sorted(tenants))})")
    refs = [r.strip().upper() for r in args.reference]
    for ref in refs:
        if not _REFERENCE.match(ref) or not ref.startswith(args.tenant[:3].upper()):
            raise ValueError(f"'{ref}' is not a reference number of {args.tenant} (e.g. OMM-5KQ3-ZP7A)")
    who = subject(
        args.tenant, references=refs, emails=args.email, phones=args.phone, contact_ids=args.contact_id
    )
    if who.is_empty():
        raise ValueError("name the resident: --reference, --email, --phone or --contact-id")
    return who


async def _erase(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from router.amqp.scrub import ScrubError
    from router.core.erasure import ErasureIncomplete

    privacy, _, client = await _runtime(args)
    try:
        who = _subject(args, privacy.policy.tenants())
        found, removals = await privacy.erase(who)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ErasureIncomplete as exc:
        _print_removals(exc.done, verb="removed")
        print(f"error: {exc}", file=sys.stderr)
        ids = " ".join(f"--contact-id {c}" for c in sorted(exc.subject.contact_ids))
        print(
            f"run the erasure again once that store is back{'; add ' + ids if ids else ''}", file=sys.stderr
        )
        return 1
    except (RedisError, ScrubError, OSError) as exc:
        return _failure(exc)
    finally:
        await privacy.close()
        await client.aclose()
    if args.json:
        print(json.dumps({"contact_ids": sorted(found.contact_ids), "removed": _as_json(removals)}, indent=2))
        return 0
    print(f"erasure for tenant {found.tenant}: {len(found.contact_ids)} contact(s)")
    for cid in sorted(found.contact_ids):
        print(f"  {cid}")
    _print_removals(removals, verb="removed")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    return run_loop(_purge(args))


def cmd_erase(args: argparse.Namespace) -> int:
    return run_loop(_erase(args))


def add_parser(sub: Any) -> None:
    purge = sub.add_parser(
        "purge",
        help="remove what is past the tenants' retention: closed contacts and dead letters",
        description="Remove, per tenant's `retention` in the rules, contacts closed longer than "
        "`closed_contacts` (state, history, callback requests, thread and reference keys, work-list "
        "entries, timers, index entries) and dead letters older than `dead_letters`. Prints ids and "
        "counts. The router does the same every hour.",
    )
    purge.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    purge.add_argument(
        "--reindex",
        action="store_true",
        help="first index every stored contact once (for contacts stored before the retention indexes)",
    )
    purge.add_argument("--json", action="store_true", help="machine-readable output")
    purge.set_defaults(func=cmd_purge)

    erase = sub.add_parser(
        "erase",
        help="remove a resident's contacts everywhere (AVG art. 17): Redis, queues, the history",
        description="Remove the contacts of one resident of a tenant, named by reference number, e-mail "
        "address, phone number or contact id (each may be given several times; a contact matching any "
        "is removed), from Redis and from the tenant's team and escalation queues, router.dead, "
        "router.unroutable, router.contacts and history.events, and from the history when HISTORY_URL "
        "is set. Prints the contact ids and counts. Messages a consumer "
        "holds unacknowledged at that moment cannot be reached; the messages kept in a scrubbed queue "
        "move to its end.",
    )
    erase.add_argument("--tenant", required=True, help="the municipality (rules file name)")
    erase.add_argument("--reference", action="append", default=[], metavar="R", help="e.g. OMM-5KQ3-ZP7A")
    erase.add_argument(
        "--email", action="append", default=[], metavar="ADDRESS", help="sender e-mail address"
    )
    erase.add_argument(
        "--phone", action="append", default=[], metavar="NUMBER", help="phone number (any notation)"
    )
    erase.add_argument("--contact-id", action="append", default=[], metavar="ID", help="a contact id")
    erase.add_argument("--json", action="store_true", help="machine-readable output")
    erase.set_defaults(func=cmd_erase)
