"""`contact-router`: run the service and its tools. One module per command group, each with
`add_parser(subparsers)`; the heavy imports happen inside the commands, so `rules check` or `deadline`
start in a blink."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from router.cli import adapters, deadline, dlq, export, history, privacy, rules, schema, serve, topology
from router.cli.common import describe, run_loop, settings_from

__all__ = ["main", "parser", "run_loop", "settings_from"]

# Command groups of other packages, registered when installed (the benchmark).
OPTIONAL_GROUPS = ("bench.cli",)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="contact-router", description=__doc__)
    p.add_argument("--rules-dir", help="rules directory (default: RULES_DIR or ./rules)")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (serve, topology, rules, deadline, schema, adapters, dlq, privacy, history, export):
        group.add_parser(sub)
    for module in OPTIONAL_GROUPS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Every command's error is one line with its cause (missing rules, a server that is not there),
        # never a traceback.
        print(f"contact-router {args.command}: {describe(exc)}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
