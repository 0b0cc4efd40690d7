"""`contact-router adapters list`: the registered channel adapters and which ones are enabled."""

from __future__ import annotations

import argparse
import json
from typing import Any

from adapters.kit.registry import list_adapters


def add_parser(subparsers: Any) -> None:
    """Add `adapters list` to the `contact-router` sub-command parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser("adapters", help="channel adapters")
    sub = p.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="registered adapters (entry points contact_router.adapters)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from adapters.kit.settings import AdapterSettings

    enabled = AdapterSettings().enabled
    infos = list_adapters()
    if args.json:
        rows = [{**info.__dict__, "enabled": info.name in enabled} for info in infos]
        print(json.dumps(rows, indent=2))
    else:
        for info in infos:
            state = "enabled" if info.name in enabled else "-"
            if info.error:
                print(f"{info.name:<10} BROKEN    {info.error}")
                continue
            print(f"{info.name:<10} {state:<9} channel={info.channel:<8} {info.target}  ({info.source})")
            if info.summary:
                print(f"{'':<20} {info.summary}")
    return 1 if any(i.error for i in infos) else 0
