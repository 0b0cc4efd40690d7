"""`contact-router dlq list | show ID | replay [ID…] [--all]`: inspect and replay dead-lettered contacts.

Dead letters sit in the quorum queue `router.dead`: contacts the router could not process (header
`x-dead-reason`, and `x-original-routing-key`), contacts an adapter could not turn into a contact, and
messages the broker gave up on after `x-delivery-limit` deliveries (header `x-death`). Bodies are
unchanged, so after a fix (a rules file for a new tenant, a repaired adapter) an operator replays them
to exchange `contacts` with their original routing key.

Replaying is idempotent: the contact id derives from (tenant, source.adapter, source.native_id), so the
router's dedupe routes a replayed contact at most once, however often it is replayed. A dead letter is
removed from `router.dead` only after the broker confirmed its replay; a crash in between leaves it
there, and replaying it again is harmless. The original message id travels along, so a contact the
broker dead-lettered mid-routing resumes its own claim in the store.

Browsing takes the messages without acknowledging them and returns them when done: the broker marks
them redelivered, nothing else changes. `list` never prints bodies (they hold personal data); `show`
does, because an operator asked for exactly that message.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage

from router.core import topology
from router.core.topology import Names
from router.settings import Settings

# Headers that describe the dead-lettering itself; a replayed message leaves them behind.
_DEATH_HEADERS = (
    topology.H_DEAD_REASON,
    topology.H_ORIGINAL_KEY,
    "x-death",
    "x-delivery-count",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)
H_REPLAYED_AT = "x-replayed-at"


class DlqError(Exception):
    """The broker is unreachable or the queue is missing; the message says which."""


@dataclass
class DeadLetter:
    id: str
    reason: str
    routing_key: str
    size: int
    dead_at: datetime | None
    message_id: str | None
    content_type: str | None
    headers: dict[str, Any] = field(repr=False)
    body: bytes = field(repr=False)

    def age(self, now: datetime) -> str:
        if self.dead_at is None:
            return "?"
        seconds = max(0, int((now - self.dead_at).total_seconds()))
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"

    def summary(self, now: datetime) -> dict[str, Any]:
        """Everything but the body: safe to print and to log."""
        return {
            "id": self.id,
            "reason": self.reason,
            "routing_key": self.routing_key,
            "size": self.size,
            "age": self.age(now),
            "dead_at": self.dead_at.isoformat() if self.dead_at else None,
        }


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _first_death(headers: dict[str, Any]) -> dict[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}


def parse(message: AbstractIncomingMessage) -> DeadLetter:
    headers = dict(message.headers or {})
    death = _first_death(headers)
    reason = headers.get(topology.H_DEAD_REASON)
    if reason is None and death:
        count = death.get("count")
        reason = f"broker: {_text(death.get('reason', '?'))} in {_text(death.get('queue', '?'))}" + (
            f" after {count} deaths" if count else ""
        )
    key = headers.get(topology.H_ORIGINAL_KEY)
    if key is None and death.get("routing-keys"):
        key = death["routing-keys"][0]
    dead_at = message.timestamp
    if dead_at is None and isinstance(death.get("time"), datetime):
        dead_at = death["time"]
    if dead_at is not None and dead_at.tzinfo is None:
        dead_at = dead_at.replace(tzinfo=UTC)
    body = message.body
    ident = message.message_id or "sha-" + hashlib.sha256(body).hexdigest()[:16]
    return DeadLetter(
        id=ident,
        reason=_text(reason) if reason is not None else "(no reason given)",
        routing_key=_text(key) if key is not None else (message.routing_key or ""),
        size=len(body),
        dead_at=dead_at,
        message_id=message.message_id,
        content_type=message.content_type,
        headers=headers,
        body=body,
    )


class DeadLetterQueue:
    """Browse and replay `router.dead` over one connection."""

    def __init__(self, url: str, names: Names):
        self.url = url
        self.names = names
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def __aenter__(self) -> DeadLetterQueue:
        try:
            self._connection = await aio_pika.connect(
                self.url, client_properties={"connection_name": "contact-router dlq"}, timeout=10
            )
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
            raise DlqError(f"cannot reach the broker: {type(exc).__name__}: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _take(
        self, channel: aio_pika.abc.AbstractChannel, limit: int | None
    ) -> list[tuple[DeadLetter, AbstractIncomingMessage]]:
        """Take up to `limit` dead letters (at most as many as are there now), unacknowledged."""
        name = self.names(topology.DEAD)
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise DlqError(f"queue {name} does not exist (run `contact-router topology declare`)") from exc
        count = int(queue.declaration_result.message_count or 0)
        if limit is not None:
            count = min(count, limit)
        out = []
        # Only what is there now: a replayed contact that fails again comes back and must not be
        # taken a second time in the same run.
        for _ in range(count):
            message = await queue.get(no_ack=False, fail=False, timeout=10)
            if message is None:
                break
            out.append((parse(message), message))
        return out

    async def browse(self, limit: int | None = None) -> list[DeadLetter]:
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            return [d for d, _ in await self._take(channel, limit)]
        finally:
            await channel.close()  # everything taken goes back to the queue

    async def replay(self, ids: Sequence[str] | None) -> tuple[list[DeadLetter], list[str]]:
        """Replay the dead letters with these ids (None: all). Returns (replayed, ids not found);
        when an id is not found nothing is replayed."""
        assert self._connection is not None
        channel = await self._connection.channel()
        out = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            taken = await self._take(channel, None)
            wanted = [(d, m) for d, m in taken if ids is None or d.id in ids]
            missing = (
                [] if ids is None else [i for i in dict.fromkeys(ids) if i not in {d.id for d, _ in taken}]
            )
            if missing:
                return [], missing
            contacts = await out.get_exchange(self.names(topology.CONTACTS), ensure=True)
            replayed = []
            for dead, message in wanted:
                headers = {k: v for k, v in dead.headers.items() if k not in _DEATH_HEADERS}
                headers[H_REPLAYED_AT] = datetime.now(UTC).isoformat()
                await contacts.publish(
                    aio_pika.Message(
                        dead.body,
                        content_type=dead.content_type or "application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=dead.message_id,
                        headers=headers,
                        timestamp=datetime.now(UTC),
                    ),
                    routing_key=dead.routing_key,
                    mandatory=True,
                    timeout=10,
                )
                # Confirmed by the broker: only now may the dead letter go.
                await message.ack()
                replayed.append(dead)
            return replayed, []
        finally:
            await out.close()
            await channel.close()


def _settings() -> Settings:
    return Settings()


def _print_table(letters: list[DeadLetter], out: TextIO) -> None:
    now = datetime.now(UTC)
    if not letters:
        print("router.dead is empty", file=out)
        return
    print(f"{'ID':<38} {'AGE':>5} {'SIZE':>8}  {'ROUTING KEY':<24} REASON", file=out)
    for d in letters:
        reason = d.reason if len(d.reason) <= 120 else d.reason[:117] + "..."
        print(f"{d.id:<38} {d.age(now):>5} {d.size:>8}  {d.routing_key:<24} {reason}", file=out)
    print(f"{len(letters)} dead letter(s)", file=out)


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with DeadLetterQueue(settings.amqp_url, Names(settings.namespace)) as dlq:
        letters = await dlq.browse(args.limit)
    if args.json:
        now = datetime.now(UTC)
        print(json.dumps([d.summary(now) for d in letters], indent=2))
    else:
        _print_table(letters, sys.stdout)
    return 0


async def _show(args: argparse.Namespace, settings: Settings) -> int:
    async with DeadLetterQueue(settings.amqp_url, Names(settings.namespace)) as dlq:
        letters = [d for d in await dlq.browse() if d.id == args.id]
    if not letters:
        print(f"no dead letter with id '{args.id}' in router.dead", file=sys.stderr)
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
    async with DeadLetterQueue(settings.amqp_url, Names(settings.namespace)) as dlq:
        replayed, missing = await dlq.replay(None if args.all else args.ids)
    if missing:
        print(f"not in router.dead: {', '.join(missing)}; nothing was replayed", file=sys.stderr)
        return 1
    for d in replayed:
        print(f"replayed {d.id} -> {Names(settings.namespace)(topology.CONTACTS)} key {d.routing_key}")
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
    ls = sub.add_parser(
        "list",
        help="id, age, size, original routing key and reason of each dead letter; never the body",
        description="List dead letters without removing them. Bodies are never printed: they hold "
        "personal data. Use `dlq show ID` for one body.",
    )
    ls.add_argument("--limit", type=int, default=1000, help="show at most this many (default 1000)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_run(_list))
    show = sub.add_parser(
        "show",
        help="one dead letter with headers AND BODY (personal data: an operator's explicit request)",
        description="Print one dead letter: reason, routing key, headers and the BODY. The body holds "
        "personal data (names, addresses, message text): do not paste it into tickets or chat.",
    )
    show.add_argument("id", help="an id from `dlq list`")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_run(_show))
    rp = sub.add_parser(
        "replay",
        help="publish dead letters back to exchange contacts with their original routing key",
        description="Publish dead letters, body unchanged, to exchange `contacts` with their original "
        "routing key, and remove each from router.dead once the broker confirmed it. Idempotent: the "
        "router routes a contact at most once. If an id is not found, nothing is replayed.",
    )
    rp.add_argument("ids", nargs="*", metavar="ID", help="ids from `dlq list`")
    rp.add_argument("--all", action="store_true", help="replay every dead letter in the queue now")
    rp.set_defaults(func=_run(_replay))
