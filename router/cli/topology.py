"""`contact-router topology declare`: exchanges, queues and bindings, idempotent."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from router.cli.common import settings_from


def cmd_topology(args: argparse.Namespace) -> int:
    from router.core.tenants import load
    from router.service import declare_topology

    settings = settings_from(args)
    tenants = load(settings.rules_dir)
    asyncio.run(declare_topology(settings, tenants))
    print(f"declared exchanges, router queues and team queues for {len(tenants)} tenant(s)")
    return 0


def add_parser(sub: Any) -> None:
    topo = sub.add_parser("topology", help="broker topology")
    topo_sub = topo.add_subparsers(dest="action", required=True)
    topo_sub.add_parser("declare", help="declare exchanges and queues (idempotent)").set_defaults(
        func=cmd_topology
    )
