"""What the command modules share: settings from the environment and options, and the event loop."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from router.settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "rules_dir", None):
        overrides["rules_dir"] = Path(args.rules_dir)
    if getattr(args, "port", None) is not None:
        overrides["http_port"] = args.port
    return Settings(**overrides)  # type: ignore[arg-type]


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """uvloop where it is installed (Linux, macOS): the router spends much of its CPU in the event loop
    and the protocol code around it, and uvloop takes ~7 % off each contact (docs/performance.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
