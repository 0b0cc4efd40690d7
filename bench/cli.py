"""`contact-router bench`: the routing benchmark (bench/routing.py), as a subcommand."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    from bench.routing import __doc__ as doc
    from bench.routing import add_arguments, execute

    p = subparsers.add_parser(
        "bench",
        help="routing throughput, latency, memory and rule cost against the broker's ceiling",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=execute)
