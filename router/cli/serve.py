"""`contact-router serve|router|api`: run until SIGTERM/SIGINT; optionally route sample contacts first."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from adapters.kit.registry import AdapterLoadError
from adapters.kit.wiring import start_adapters, stop_adapters
from router import heap, logs, tracing
from router.cli.common import run_loop, settings_from
from router.core.rules import RulesError
from router.core.samples import sample_contacts
from router.embedded.broker import BANNER
from router.metrics.listener import start_listener
from router.service import (
    Runtime,
    build,
    context_for_runtime,
    install_signal_handlers,
    run_http,
    start,
    status_links,
    workspace_refusal,
)
from router.settings import Settings

log = logs.get("router.cli.serve")


async def run_demo(runtime: Runtime, out: object = sys.stdout) -> bool:
    """Publish the samples through the real publishing path and print where each one went."""
    contacts = sample_contacts(runtime.clock.now())
    for contact in contacts:
        await runtime.publisher.publish(contact)
    pending = {c.cid: c for c in contacts}
    results = {}
    for _ in range(300):
        for cid in list(pending):
            record = await runtime.store.get(cid)
            if record is not None and record.fields.get("status") == "routed":
                results[cid] = record
                del pending[cid]
        if not pending:
            break
        await asyncio.sleep(0.05)
    for contact in contacts:
        record = results.get(contact.cid)
        label = f"{contact.reference}  {contact.tenant:<10} {contact.channel:<8} {contact.subject!r:<22}"
        if record is None:
            print(f"{label} -> NOT ROUTED (still pending)", file=out)  # type: ignore[call-overload]
            continue
        f = record.fields
        history = record.history[-1] if record.history else {}
        print(
            f"{label} -> team.{f['tenant']}.{f['team']}  (rule {f['rule']}, {history.get('rule_at', '?')})",
            file=out,
        )  # type: ignore[call-overload]
    if contacts:
        link = status_links(runtime.settings)(contacts[0])
        print(f"What the first resident sees of their question: {link}", file=out)  # type: ignore[call-overload]
    return not pending


def credentials_without_rules(runtime: Runtime) -> list[str]:
    """The names of API keys limited to a tenant this service has no rules for."""
    known = set(runtime.tenants)
    credentials = runtime.settings.credentials().values()
    return sorted({c.name for c in credentials if c.tenants is not None and not c.tenants <= known})


def cannot_start(settings: Settings, message: str) -> int:
    """Why the process does not start: a JSON log line where logs are JSON (a log collector reads
    them all), the plain sentence on a console. Exit status 2."""
    if settings.log_format == "json":
        log.error("cannot_start", reason=message)
    else:
        print(message, file=sys.stderr)
    return 2


async def serve(
    settings: Settings,
    *,
    with_router: bool,
    with_api: bool,
    with_scheduler: bool,
    embedded: str,
    demo: bool,
    once: bool,
) -> int:
    try:
        runtime = await build(
            settings, with_router=with_router, with_scheduler=with_scheduler, embedded=embedded
        )
    except RulesError as exc:
        return cannot_start(settings, f"rules are invalid:\n{exc}")
    except (RuntimeError, OSError) as exc:
        return cannot_start(settings, f"cannot start: {exc}")
    if with_api and (wrong := credentials_without_rules(runtime)):
        await runtime.close()
        # Named by credential only: a tenant that has no rules may be a piece of a key with a ':' in it.
        return cannot_start(
            settings,
            f"cannot start: API_KEYS credential(s) {', '.join(wrong)} name a tenant that has no rules "
            "(a key cannot hold ':')",
        )
    if with_api and (why := workspace_refusal(settings, embedded=runtime.embedded)):
        await runtime.close()
        return cannot_start(settings, f"cannot start: {why}")
    try:
        # The channel adapters (web form, social, phone notes, SMTP/IMAP) run with the HTTP API.
        adapter_ctx = await context_for_runtime(runtime) if with_api else None
    except (ValidationError, AdapterLoadError) as exc:
        await runtime.close()
        return cannot_start(settings, f"cannot start: {exc}")
    try:
        metrics = await metrics_listener(runtime) if not with_api else None
    except OSError as exc:
        await runtime.close()
        why = exc.strerror or type(exc).__name__
        return cannot_start(settings, f"cannot start: no metrics listener on METRICS_PORT ({why})")
    if runtime.embedded:
        print(f"\n*** {BANNER} ***\n", file=sys.stderr)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    # Everything kept for the process's life is loaded; what comes next is work.
    heap.settle()
    await start(runtime)
    if adapter_ctx is not None:
        await start_adapters(adapter_ctx)
    http = asyncio.create_task(run_http(runtime, stop, adapter_ctx)) if with_api else None
    http_failed: list[BaseException] = []

    def http_ended(task: asyncio.Task[None]) -> None:
        # A server that cannot listen (the port is taken) or dies must end the process, never leave it
        # running without its API.
        if not task.cancelled() and (exc := task.exception()) is not None:
            http_failed.append(exc)
            stop.set()

    if http is not None:
        http.add_done_callback(http_ended)
    code = 0
    try:
        if demo:
            if not with_router and not runtime.embedded:
                print("--demo needs the router (use `serve`)", file=sys.stderr)
                return 2
            ok = await run_demo(runtime)
            code = 0 if ok else 1
            if once:
                stop.set()
            elif with_api:
                base = f"http://{settings.http_host}:{settings.http_port}"
                print(
                    f"\nServing on {base} (Ctrl-C stops). The agent workspace: {base}/werkplek/\nTry:\n"
                    f"  curl {base}/readyz\n"
                    f"  curl -H 'X-API-Key: <key>' {base}/v1/tenants/ommen/teams/burgerzaken/items"
                )
        await stop.wait()
    finally:
        stop.set()
        if http is not None:
            with contextlib.suppress(Exception):
                await http
        if http_failed:
            failure = http_failed[0]
            log.error(
                "http_server_failed", error=type(failure).__name__, errno=getattr(failure, "errno", None)
            )
            code = 1
        if adapter_ctx is not None:
            # Before the runtime closes: acknowledgements in flight still need the broker and the store.
            await stop_adapters(adapter_ctx)
        if metrics is not None:
            await metrics.cleanup()
        await runtime.close()
        log.info("stopped")
    return code


async def metrics_listener(runtime: Runtime) -> web.AppRunner | None:
    """GET /metrics on METRICS_PORT for a process without the API (which serves it itself); None
    when the setting is 0 or empty."""
    port = runtime.settings.metrics_port
    if not port or runtime.metrics is None:
        return None
    return await start_listener(runtime.metrics, runtime.settings.http_host, port)


def cmd_serve(args: argparse.Namespace, parts: frozenset[str]) -> int:
    settings = settings_from(args)
    logs.configure(settings.log_level, settings.log_format)
    try:
        tracing.configure(settings.tracing, service="-".join(sorted(parts)))
    except tracing.TracingUnavailable as exc:
        return cannot_start(settings, str(exc))
    demo = getattr(args, "demo", False)
    # Only the quick start may choose the embedded mode by itself; a service process waits for its
    # servers and fails loudly rather than serve nothing.
    embedded = "never" if args.embedded == "auto" and not demo else args.embedded
    return run_loop(
        serve(
            settings,
            with_router="router" in parts,
            with_api="api" in parts,
            with_scheduler="scheduler" in parts,
            embedded=embedded,
            demo=demo,
            once=getattr(args, "once", False),
        )
    )


def add_parser(sub: Any) -> None:
    for name, help_text, parts in (
        (
            "serve",
            "run router, HTTP API and deadline scheduler in one process",
            {"router", "api", "scheduler"},
        ),
        ("router", "run only the router (consumer of router.contacts)", {"router"}),
        ("api", "run only the HTTP API", {"api"}),
        ("scheduler", "run only the deadline scheduler", {"scheduler"}),
    ):
        s = sub.add_parser(name, help=help_text)
        s.add_argument(
            "--embedded",
            choices=["auto", "always", "never"],
            default="auto",
            help="in-process transport and store: 'auto' = only for `serve --demo` when no server is "
            "reachable; otherwise the process waits STARTUP_TIMEOUT for RabbitMQ and Redis, then exits",
        )
        if "api" in parts:
            s.add_argument("--port", type=int, help="HTTP port (default: HTTP_PORT or 8080)")
        if name == "serve":
            s.add_argument(
                "--demo", action="store_true", help="send sample contacts and print where each went"
            )
            s.add_argument(
                "--once", action="store_true", help="with --demo: stop after the samples are routed"
            )
        s.set_defaults(func=lambda a, p=frozenset(parts): cmd_serve(a, p))
