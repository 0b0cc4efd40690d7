"""`contact-router dlq list | show ID | replay [ID…] [--all]`: inspect and replay dead-lettered contacts.

What dead letters are and why replaying is safe: router/amqp/dlq.py.

`list` prints what is safe to paste into a ticket: the id (a UUID, or a digest of the body), age, size,
the original routing key when it has the form `<tenant>.<channel>`, and the reason, which names fields
and never quotes the input (README, "Privacy"). A routing key of another form was chosen by whoever
published the message and is not printed. Only `show` prints a body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from router.amqp.dlq import DeadLetter, DeadLetterQueue, DlqError
from router.core import topology
from router.core.topology import Names
from router.settings import Settings


def _settings() -> Settings:
    return Settings()


# `<tenant>.<channel>` (identifiers as the Contact model has them), or `-.<channel>` from an adapter
# that could not tell the tenant; in openklant.dead `<tenant>.<event>` (ommen.contact.routed).
_ROUTING_KEY = re.compile(
    r"(?:[a-z][a-z0-9_-]{0,39}|-)\.[a-z][a-z0-9_-]{0,39}|[a-z][a-z0-9_-]{0,39}\.(?:contact|callback)\.[a-z_]{1,30}"
)
OTHER_KEY = "(not <tenant>.<channel>)"


def shown_key(routing_key: str) -> str:
    return routing_key if _ROUTING_KEY.fullmatch(routing_key) else OTHER_KEY


def summary(d: DeadLetter, now: datetime) -> dict[str, Any]:
    """What `list` prints of one dead letter."""
    return {**d.summary(now), "routing_key": shown_key(d.routing_key)}


def _print_table(letters: list[DeadLetter], out: TextIO, queue: str = topology.DEAD) -> None:
    now = datetime.now(UTC)
    if not letters:
        print(f"{queue} is empty", file=out)
        return
    print(f"{'ID':<38} {'AGE':>5} {'SIZE':>8}  {'ROUTING KEY':<24} REASON", file=out)
    for d in letters:
        reason = d.reason if len(d.reason) <= 120 else d.reason[:117] + "..."
        key = shown_key(d.routing_key)
        print(f"{d.id:<38} {d.age(now):>5} {d.size:>8}  {key:<24} {reason}", file=out)
    print(f"{len(letters)} dead letter(s)", file=out)


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with DeadLetterQueue(settings.amqp_url, Names(settings.namespace), args.queue) as dlq:
        letters = await dlq.browse(args.limit)
    if args.json:
        now = datetime.now(UTC)
        print(json.dumps([summary(d, now) for d in letters], indent=2))
    else:
        _print_table(letters, sys.stdout, args.queue)
    return 0


async def _show(args: argparse.Namespace, settings: Settings) -> int:
    async with DeadLetterQueue(settings.amqp_url, Names(settings.namespace), args.queue) as dlq:
        letters = [d for d in await dlq.browse() if d.id == args.id]
    if not letters:
        print(f"no dead letter with id '{args.id}' in {args.queue}", file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    for d in letters:
        try:
            body: Any = json.loads(d.body)
        except ValueError:
            body = d.body.decode("utf-8", "backslashreplace")
        if args.json:
            headers = {k: v for k, v in d.headers.items() if k != "x-death"}
            print(json.dumps({**d.summary(now), "headers": headers, "body": body}, indent=2, default=str))
            continue
        for k, v in d.summary(now).items():
            print(f"{k + ':':<13}{v}")
        print("body (personal data: do not paste it into tickets or chat):")
        print(json.dumps(body, indent=2, ensure_ascii=False) if not isinstance(body, str) else body)
    return 0


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    if not args.all and not args.ids:
        print(
            "name the dead letters to replay (ids from `contact-router dlq list`) or give --all",
            file=sys.stderr,
        )
        return 2
    if args.all and args.ids:
        print("give either ids or --all, not both", file=sys.stderr)
        return 2
    async with DeadLetterQueue(settings.amqp_url, Names(settings.namespace), args.queue) as dlq:
        replayed, missing = await dlq.replay(None if args.all else args.ids)
        target = Names(settings.namespace)(dlq.replay_exchange)
    if missing:
        print(f"not in {args.queue}: {', '.join(missing)}; nothing was replayed", file=sys.stderr)
        return 1
    for d in replayed:
        print(f"replayed {d.id} -> {target} key {d.routing_key}")
    print(f"{len(replayed)} dead letter(s) replayed")
    return 0


def _run(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = asyncio.run(handler(args, _settings()))
        except DlqError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return code

    return run


def add_parser(subparsers: Any) -> None:
    """Add `dlq list|show|replay` to the `contact-router` sub-command parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "dlq",
        help="dead-lettered contacts (queue router.dead): list, show, replay",
        description="Inspect and replay dead-lettered contacts in router.dead (AMQP_URL, NAMESPACE). "
        "Replaying is idempotent: a contact is routed at most once however often it is replayed.",
    )
    sub = p.add_subparsers(dest="action", required=True)
    queue = argparse.ArgumentParser(add_help=False)
    queue.add_argument(
        "--queue",
        choices=sorted(topology.DEAD_LETTER_QUEUES),
        default=topology.DEAD,
        help="the dead-letter queue (default router.dead; openklant.dead: the Open Klant export's, "
        "replayed to exchange openklant.replay)",
    )
    ls = sub.add_parser(
        "list",
        parents=[queue],
        help="id, age, size, original routing key and reason of each dead letter; never the body",
        description="List dead letters without removing them. Bodies are never printed: they hold "
        "personal data. Use `dlq show ID` for one body.",
    )
    ls.add_argument("--limit", type=int, default=1000, help="show at most this many (default 1000)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_run(_list))
    show = sub.add_parser(
        "show",
        parents=[queue],
        help="one dead letter with headers AND BODY (personal data: an operator's explicit request)",
        description="Print one dead letter: reason, routing key, headers and the BODY. The body holds "
        "personal data (names, addresses, message text): do not paste it into tickets or chat.",
    )
    show.add_argument("id", help="an id from `dlq list`")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_run(_show))
    rp = sub.add_parser(
        "replay",
        parents=[queue],
        help="publish dead letters back (router.dead: to exchange contacts) with their original routing key",
        description="Publish dead letters, body unchanged, to exchange `contacts` with their original "
        "routing key, and remove each from router.dead once the broker confirmed it. Idempotent: the "
        "router routes a contact at most once. If an id is not found, nothing is replayed.",
    )
    rp.add_argument("ids", nargs="*", metavar="ID", help="ids from `dlq list`")
    rp.add_argument("--all", action="store_true", help="replay every dead letter in the queue now")
    rp.set_defaults(func=_run(_replay))
