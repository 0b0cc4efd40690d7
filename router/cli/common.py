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


def describe(exc: BaseException) -> str:
    """An error as one line for the operator: its cause, never a traceback. Rules problems keep their
    `file:line: reason`; a validation error names fields, not values."""
    from pydantic import ValidationError

    from router.core.contact import summarise_errors
    from router.core.rules import RulesError

    if isinstance(exc, RulesError):
        return "rules are invalid: " + "; ".join(str(p) for p in exc.problems)
    if isinstance(exc, ValidationError):
        return f"invalid {exc.title}: {summarise_errors(exc)}"
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError | ConnectionError) or "Connect" in type(exc).__name__:
        return f"cannot connect: {text or type(exc).__name__}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
