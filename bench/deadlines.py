"""Workday deadlines per second on one core: `python -m bench.deadlines [--n N]`.

Random receipt moments over 2024-2030 and mixed terms of 1..10 workdays, on a calendar with
Mon-Fri 08:30-17:00 office hours, the default gemeente holidays and a few closing days.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from router.core.calendar.terms import Term, TermUnit
from router.core.calendar.workdays import CalendarSpec, TenantCalendar

SPEC = CalendarSpec.model_validate(
    {
        "office_hours": {day: "08:30-17:00" for day in ("mon", "tue", "wed", "thu", "fri")},
        "closing_days": [{"date": "2026-12-24", "reason": "Kerstavond"}, "2026-12-31"],
    }
)


def _starts(n: int, zone: ZoneInfo, seed: int) -> list[datetime]:
    rng = random.Random(seed)
    lo = datetime(2024, 1, 1, tzinfo=zone).timestamp()
    hi = datetime(2030, 12, 31, tzinfo=zone).timestamp()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    # Whole seconds in the tenant zone, as a router would get them from a parsed timestamp.
    return [(epoch + timedelta(seconds=int(rng.uniform(lo, hi)))).astimezone(zone) for _ in range(n)]


def run(n: int, repeats: int, seed: int = 1) -> tuple[float, float]:
    """(deadlines per second, milliseconds to build the tables for 2024-2031 on first use)."""
    calendar = TenantCalendar.from_spec(SPEC)
    starts = _starts(n, calendar.zone, seed)
    terms = [Term(k, TermUnit.WORKDAYS) for k in range(1, 11)]
    rng = random.Random(seed + 1)
    pairs = [(at, rng.choice(terms)) for at in starts]
    deadline = calendar.deadline
    t0 = time.perf_counter()
    # Tables are built lazily; touch every year once so that the timing below is the steady state.
    for year in range(2024, 2032):
        calendar.is_workday(datetime(year, 1, 1).date())
    build_ms = (time.perf_counter() - t0) * 1000
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for at, term in pairs:
            deadline(at, term)
        best = min(best, time.perf_counter() - t0)
    return n / best, build_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000, help="deadlines per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs; the fastest counts")
    args = parser.parse_args()
    rate, build_ms = run(args.n, args.repeats)
    print(f"workday deadlines: {rate:,.0f}/s (one core, best of {args.repeats} runs of {args.n:,})")
    print(f"first use: {build_ms:.1f} ms to build the tables of 2024-2031 (incl. loading the holidays data)")


if __name__ == "__main__":
    main()
