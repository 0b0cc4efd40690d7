"""Text of `contact-router deadline`: when is a contact due under a tenant's calendar.

`render_deadline` is pure; `cmd_deadline` loads the tenant's `CalendarSpec`, prints the result, and
prints a ValueError's message with exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from router.cli.common import settings_from
from router.core.calendar.terms import parse_term
from router.core.calendar.workdays import CalendarSpec, Explanation, TenantCalendar

__all__ = ["parse_at", "render_deadline"]

_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def parse_at(at: str | dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """An ISO 8601 moment; without an offset it is wall-clock time in `zone`."""
    if isinstance(at, str):
        try:
            moment = dt.datetime.fromisoformat(at.strip())
        except ValueError:
            raise ValueError(
                f"invalid --at {at!r}: expected an ISO 8601 date-time such as 2026-05-13T10:00 "
                "(tenant local time) or 2026-05-13T10:00+02:00"
            ) from None
    elif isinstance(at, dt.datetime):
        moment = at
    else:
        raise ValueError(f"invalid --at {at!r}: expected an ISO 8601 date-time")
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=zone)
    return moment


def _day(day: dt.date) -> str:
    return f"{day.isoformat()} ({_WEEKDAY_NAMES[day.weekday()]})"


def _moment(moment: dt.datetime) -> str:
    return f"{moment.isoformat()} ({_WEEKDAY_NAMES[moment.weekday()]})"


def _lines(tenant: str, ex: Explanation, fraction: float) -> list[str]:
    lines = [
        ex.deadline.isoformat(),
        f"tenant: {tenant}",
        f"received: {_moment(ex.received_at)}",
        f"term: {ex.term}",
    ]
    if ex.day_zero is not None:
        lines.append(f"day 0: {_day(ex.day_zero)} — {ex.day_zero_reason}")
    else:
        lines.append(f"start: {ex.day_zero_reason}")
    lines.extend(f"skipped: {_day(s.day)} — {s.reason}" for s in ex.skipped)
    lines.append(f"deadline: {_moment(ex.deadline)}")
    lines.append(f"warning at: {_moment(ex.warning_at)} ({fraction:.0%} of the term)")
    if ex.extended_deadline is not None and ex.term.extension is not None:
        lines.append(f"extended deadline (+ {ex.term.extension}): {_moment(ex.extended_deadline)}")
    return lines


def render_deadline(
    spec: CalendarSpec,
    tenant: str,
    at: str | dt.datetime,
    term: str,
    explain: bool,
    as_json: bool,
    *,
    warning_fraction: float = 0.8,
) -> str:
    """The command's output: the deadline in ISO 8601; with `explain` the reasoning; or one JSON object.

    Raises ValueError (with a message meant for the user) on a bad `at` or `term`.
    """
    calendar = TenantCalendar.from_spec(spec)
    parsed_term = parse_term(term)
    received = parse_at(at, calendar.zone)
    ex = calendar.explain(received, parsed_term, warning_fraction)
    if as_json:
        doc: dict[str, object] = {
            "tenant": tenant,
            "received_at": ex.received_at.isoformat(),
            "term": str(ex.term),
            "day_zero": ex.day_zero.isoformat() if ex.day_zero is not None else None,
            "day_zero_reason": ex.day_zero_reason,
            "deadline": ex.deadline.isoformat(),
            "warning_at": ex.warning_at.isoformat(),
        }
        if ex.extended_deadline is not None:
            doc["extended_deadline"] = ex.extended_deadline.isoformat()
        doc["skipped"] = [{"date": s.day.isoformat(), "reason": s.reason} for s in ex.skipped]
        return json.dumps(doc, ensure_ascii=False, indent=2)
    if explain:
        return "\n".join(_lines(tenant, ex, warning_fraction))
    return ex.deadline.isoformat()


def cmd_deadline(args: argparse.Namespace) -> int:
    from router.core.rules import RulesError, load_dir

    settings = settings_from(args)
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


def add_parser(sub: Any) -> None:
    dl = sub.add_parser("deadline", help="compute a deadline with the tenant's calendar")
    dl.add_argument("--tenant", required=True)
    dl.add_argument("--at", required=True, help="ISO 8601; without offset: tenant local time")
    dl.add_argument("--term", required=True, help='e.g. "3 workdays", "3 hours", "6 weeks + 4 weeks"')
    dl.add_argument("--explain", action="store_true", help="list skipped days and why")
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=cmd_deadline)
