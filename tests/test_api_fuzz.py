"""schemathesis against the service's own OpenAPI document, as CI runs it: the CLI on the served
/v1/openapi.json with `--checks all` (not a server error, status codes, content types, headers and bodies
as documented, schema-valid requests accepted, schema-violating ones rejected, authentication not
ignored, missing required headers refused, unsupported methods 405, resources usable after creation,
deleted ones gone) and every phase (examples, coverage, fuzzing, stateful): it must find nothing.

What no schema can say is told in tests/schemathesis.toml (one status a valid request may get: 412 for
a stale If-Match) and tests/schemathesis_hooks.py (how to make valid moments and phone numbers).

The API runs for real (router, RabbitMQ, Redis, namespaced) on a port in a thread of its own, since
schemathesis calls it over HTTP. Bounded: FUZZ_EXAMPLES per operation (default 30).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from router.core.tenants import load
from router.http.openapi import document
from router.service import Runtime, build, start
from router.settings import Settings
from tests.faults.helpers import free_port

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
TESTS = Path(__file__).resolve().parent
HEADERS = {"X-API-Key": "secret-key", "X-Agent-Id": "fuzz-agent"}
# The social webhook answers 503 while it has no app secret (Meta retries): give it one, so that it
# answers as it does in production (401 for a bad signature).
META_APP_SECRET = "fuzz-meta-secret"


class ServiceThread:
    """The API + router in a thread with its own event loop, serving on 127.0.0.1:port."""

    def __init__(self, settings: Settings, embedded: str = "never"):
        self.settings = settings
        self.embedded = embedded
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop_event: asyncio.Event | None = None
        self.runtime: Runtime | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="api-under-fuzz", daemon=True)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        from adapters.kit.wiring import start_adapters, stop_adapters
        from router.service import context_for_runtime, run_http

        self.runtime = await build(self.settings, with_router=True, embedded=self.embedded)
        await start(self.runtime)
        # As `serve` runs it: the API with the enabled channel adapters' routes.
        adapters = await context_for_runtime(self.runtime)
        await start_adapters(adapters)
        self.stop_event = asyncio.Event()
        http = asyncio.create_task(run_http(self.runtime, self.stop_event, adapters))
        for _ in range(100):
            await asyncio.sleep(0.05)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.settings.http_port)
                writer.close()
                break
            except OSError:
                continue
        # /readyz answers 503 until the router's consumer is attached; fuzz the ready service.
        for _ in range(200):
            if self.runtime.router is not None and self.runtime.router.ready:
                break
            await asyncio.sleep(0.05)
        self.ready.set()
        await http
        await stop_adapters(adapters, within=5)
        await self.runtime.close()

    def __enter__(self) -> ServiceThread:
        self.thread.start()
        self.ready.wait(30)
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(40)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"


@pytest.fixture
def api(
    settings: Settings, amqp: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServiceThread]:
    monkeypatch.setenv("META_APP_SECRET", META_APP_SECRET)
    with ServiceThread(settings.model_copy(update={"http_port": free_port()})) as service:
        yield service


def served(api: ServiceThread) -> dict[str, Any]:
    with urllib.request.urlopen(f"{api.base_url}/v1/openapi.json", timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def test_served_document_is_the_deployments(api: ServiceThread, settings: Settings) -> None:
    """The document names this deployment's tenants and teams, and is the one the code assembles."""
    doc = served(api)
    assert doc == json.loads(json.dumps(document(tenants=load(settings.rules_dir))))
    assert doc["components"]["schemas"]["Contact"]["properties"]["tenant"]["enum"] == ["coevorden", "ommen"]


def schemathesis_all_checks(base_url: str, examples: int = EXAMPLES) -> subprocess.CompletedProcess[str]:
    """`schemathesis run --checks all` against the served document, with this suite's config and hooks."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(TESTS / "schemathesis.toml"),
        "run",
        f"{base_url}/v1/openapi.json",
        "--checks",
        "all",
        *(arg for name, value in HEADERS.items() for arg in ("-H", f"{name}: {value}")),
        "--max-examples",
        str(examples),
        "--generation-deterministic",  # the same requests on every run: CI failures reproduce
        "--generation-allow-x00",
        "false",  # the document says text holds no NUL character (refused with 422)
        "--continue-on-failure",
        "--request-timeout",
        "10",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(TESTS.parent)}
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=TESTS.parent)


def test_schemathesis_with_all_checks_finds_nothing(api: ServiceThread) -> None:
    run = schemathesis_all_checks(api.base_url)
    summary = run.stdout[run.stdout.find("SUMMARY") :] if "SUMMARY" in run.stdout else run.stdout[-3000:]
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    assert "No issues found" in run.stdout or "passed" in summary, summary
