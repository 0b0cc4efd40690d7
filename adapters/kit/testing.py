"""The contract every channel adapter keeps, and a pytest plugin that runs it against yours.

Describe an adapter as an `AdapterCase` — one valid native input, one bad one, and the personal data
in them — and let `contract_tests` make the test (docs/adapters.md, "Prove it with the contract suite"):

    from adapters.kit.testing import AdapterCase, contract_tests, json_inbound

    CASES = [AdapterCase(adapter=MyAdapter, valid=lambda: json_inbound({...}),
                         invalid=lambda: json_inbound({...}), personal=("Marie de Boer",))]
    test_contract = contract_tests(CASES)

`pytest` then checks every promise against every case:

1. valid input gives valid Contacts: right tenant, channel and source.adapter, a stable native id;
2. the same input twice gives the same contact ids (the router then routes it once);
3. contacts leave only through the shared path (`submit` → the publisher), and the adapter's code
   imports no broker or store client and none of the router's infrastructure;
4. bad input is refused with a clear message (or dead-lettered with a reason) and publishes nothing;
5. no personal data (names, addresses, numbers, message text) in any log line.

The adapter is loaded as the service loads it, through its entry point, so its package must be
installed (`pip install -e .`). The tenants are those of a rules directory — `contract_tests(rules=…)`,
the option `--contract-rules DIR`, or `RULES_DIR` — and otherwise the one tenant shipped here,
`example` (adapters/kit/contract_rules/example.yaml).

Installed with contact-router, this module is a pytest plugin (entry point `contact_router_adapters`
in group `pytest11`). All it adds to a test run is the option `--contract-rules`: no fixtures, no
other hooks, so it changes no test that does not call `contract_tests`.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import inspect
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog

from adapters.kit.base import ChannelAdapter, Inbound, Rejected, submit
from adapters.kit.context import AdapterContext, MemoryDeadLetters
from adapters.kit.publisher import ContactPublisher, PublishError
from adapters.kit.registry import AdapterLoadError
from adapters.kit.settings import AdapterSettings
from adapters.kit.wiring import build_context
from router.core.clock import ManualClock
from router.core.contact import Contact
from router.core.tenants import Tenant
from router.core.tenants import load as load_tenants

__all__ = [
    "DEFAULT_TENANT",
    "FORBIDDEN_IMPORTS",
    "PROMISES",
    "START",
    "AdapterCase",
    "RecordingAcks",
    "RecordingPublisher",
    "adapter_settings",
    "context_for",
    "contract_tenants",
    "contract_tests",
    "json_inbound",
]

# The moment every contract input is received (Wednesday 13 May 2026, 10:00 in Amsterdam): fixed, so
# the same input always gives the same contacts.
START = datetime(2026, 5, 13, 10, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))

# The tenant shipped with the kit, used when no rules directory is given.
DEFAULT_TENANT = "example"
RULES_OPTION = "--contract-rules"

# What an adapter must not import: contacts go through `submit` and the publisher port only.
FORBIDDEN_IMPORTS = (
    # broker and store clients
    "aio_pika",
    "aiormq",
    "pika",
    "redis",
    "fakeredis",
    # the router's infrastructure (an adapter sees adapters.kit, router.core and router.logs)
    "router.amqp",
    "router.redis",
    "router.embedded",
    "router.http",
    "router.service",
    "router.cli",
    "router.settings",
)


# --- Test doubles ---------------------------------------------------------------------------------


class RecordingPublisher:
    """The publisher port for tests: records what went through the shared path, passes it on to the
    real publisher when given one, and refuses every contact with `fail=True` (an unconfirmed publish)."""

    def __init__(self, inner: ContactPublisher | None = None, *, fail: bool = False):
        self.inner = inner
        self.fail = fail
        self.published: list[Contact] = []

    async def publish(self, contact: Contact) -> None:
        if self.fail:
            raise PublishError("broker did not confirm the contact: test")
        if self.inner is not None:
            await self.inner.publish(contact)
        self.published.append(contact)

    async def close(self) -> None:
        return None


@dataclass
class RecordingAcks:
    """An acknowledgement sender that keeps the mails instead of sending them."""

    sent: list[EmailMessage] = field(default_factory=list)

    async def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


def adapter_settings(**values: Any) -> AdapterSettings:
    """AdapterSettings for a test: `values` over a short relay timeout, the environment and defaults."""
    return AdapterSettings(**{"smtp_relay_timeout": 5.0, **values})


def json_inbound(data: Any, *, tenant: str | None = DEFAULT_TENANT, received_at: datetime = START) -> Inbound:
    """A JSON body as a transport hands it to `translate`."""
    return Inbound(
        payload=json.dumps(data).encode(),
        received_at=received_at,
        tenant=tenant,
        content_type="application/json",
    )


# --- The cases and their context ------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterCase:
    adapter: type[ChannelAdapter]
    valid: Callable[[], Inbound]
    invalid: Callable[[], Inbound]
    # Strings of the valid (and invalid) input that are personal data: they must never be logged.
    personal: tuple[str, ...]
    # The tenant of the valid input's contacts: one of the contract's tenants.
    tenant: str = DEFAULT_TENANT
    # AdapterSettings values the adapter needs (mail routes, secrets, ...).
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.adapter.name


def contract_tenants(rules: str | os.PathLike[str] | None = None) -> Mapping[str, Tenant]:
    """The tenants of the rules directory `rules`, else of $RULES_DIR, else the kit's tenant `example`."""
    chosen = rules or os.environ.get("RULES_DIR")
    return _tenants(str(Path(chosen).resolve()) if chosen else None)


@functools.cache
def _tenants(rules_dir: str | None) -> Mapping[str, Tenant]:
    if rules_dir is not None:
        return load_tenants(Path(rules_dir))
    with as_file(files("adapters.kit") / "contract_rules") as shipped:
        return load_tenants(shipped)


def context_for(case: AdapterCase, tenants: Mapping[str, Tenant], publisher: Any = None) -> AdapterContext:
    """The context the service would give the adapter, with in-memory parts: a RecordingPublisher (or
    `publisher`), dead letters in memory, recorded acknowledgements and a clock standing at START."""
    settings = adapter_settings(**{**case.settings, "adapters_enabled": case.adapter.name})
    try:
        ctx = build_context(
            publisher=publisher or RecordingPublisher(),
            dead_letters=MemoryDeadLetters(),
            tenants=tenants,
            clock=ManualClock(START),
            settings=settings,
            acks=RecordingAcks(),
        )
    except AdapterLoadError as exc:
        pytest.fail(
            f"{case.id}: {exc}. The contract loads the adapter as the service does, through its entry "
            'point: declare it under [project.entry-points."contact_router.adapters"] and install '
            "its package (pip install -e .)",
            pytrace=False,
        )
    loaded = type(ctx.adapters[case.adapter.name])
    if loaded is not case.adapter:
        pytest.fail(
            f"{case.id}: the entry point loads {loaded.__module__}.{loaded.__qualname__}, not "
            f"{case.adapter.__module__}.{case.adapter.__qualname__} (is an old version installed?)",
            pytrace=False,
        )
    return ctx


def recorder(ctx: AdapterContext) -> RecordingPublisher:
    assert isinstance(ctx.publisher, RecordingPublisher)
    return ctx.publisher


# --- The promises ---------------------------------------------------------------------------------


async def produces_valid_contacts(case: AdapterCase, ctx: AdapterContext) -> list[Contact]:
    adapter = case.adapter()
    inbound = case.valid()
    contacts = adapter.translate(inbound, ctx)
    assert contacts, f"{case.id}: the valid input gave no contact"
    assert recorder(ctx).published == [], f"{case.id}: translate published by itself"
    for c in contacts:
        assert c.source.adapter == adapter.name, f"{case.id}: source.adapter is {c.source.adapter!r}"
        assert c.channel == adapter.channel, f"{case.id}: channel is {c.channel!r}"
        assert c.tenant == case.tenant, f"{case.id}: tenant is {c.tenant!r}"
        assert c.source.native_id.strip(), f"{case.id}: empty native id"
        again = Contact.model_validate_json(c.model_dump_json())
        assert again == c, f"{case.id}: the contact does not survive its own JSON"
    return contacts


async def is_idempotent(case: AdapterCase, ctx: AdapterContext) -> None:
    first = [c.cid for c in case.adapter().translate(case.valid(), ctx)]
    second = [c.cid for c in case.adapter().translate(case.valid(), ctx)]
    assert first == second, f"{case.id}: the same input gave other contact ids: {first} != {second}"


async def publishes_through_the_shared_path(case: AdapterCase, ctx: AdapterContext) -> None:
    outcome = await submit(case.adapter(), case.valid(), ctx)
    await ctx.drain(5)
    assert outcome.contacts, f"{case.id}: submit published nothing"
    assert recorder(ctx).published == outcome.contacts, f"{case.id}: published other contacts than it made"
    for path in adapter_sources(case.adapter):
        for imported in imports_of(path):
            assert not any(imported == f or imported.startswith(f + ".") for f in FORBIDDEN_IMPORTS), (
                f"{case.id}: {path.name} imports {imported}; publish through adapters.kit.base.submit only"
            )


async def rejects_bad_input_and_publishes_nothing(case: AdapterCase, ctx: AdapterContext) -> None:
    try:
        outcome = await submit(case.adapter(), case.invalid(), ctx)
    except Rejected as exc:
        assert exc.message.strip(), f"{case.id}: rejected without a message"
        assert 400 <= exc.status < 500, f"{case.id}: bad input answered {exc.status}"
        if exc.status == 422:
            assert exc.fields and all(f["field"] and f["message"] for f in exc.fields), (
                f"{case.id}: a 422 must name each bad field"
            )
    else:
        assert outcome.contacts == [] and outcome.dead_reason, (
            f"{case.id}: bad input was neither refused nor dead-lettered with a reason"
        )
        letters = ctx.dead_letters
        assert isinstance(letters, MemoryDeadLetters) and letters.letters[-1][1] == outcome.dead_reason
    assert recorder(ctx).published == [], f"{case.id}: bad input published a contact"


async def logs_no_personal_data(case: AdapterCase, ctx: AdapterContext) -> None:
    with structlog.testing.capture_logs() as logs, stdlib_logs() as lines:
        await submit(case.adapter(), case.valid(), ctx)
        try:
            await submit(case.adapter(), case.invalid(), ctx)
        except Rejected:
            pass
        await ctx.drain(5)
    assert logs, f"{case.id}: nothing was logged at all (is structlog capture working?)"
    text = repr(logs) + "\n".join(lines)
    for secret in case.personal:
        assert secret not in text, f"{case.id}: personal data {secret!r} appeared in a log line"


Promise = Callable[[AdapterCase, AdapterContext], Awaitable[object]]

# Test id → promise, in the order of the module docstring.
PROMISES: Mapping[str, Promise] = {
    "valid_input_gives_valid_contacts": produces_valid_contacts,
    "same_input_gives_the_same_contacts": is_idempotent,
    "publishes_through_the_shared_path_only": publishes_through_the_shared_path,
    "bad_input_is_refused_and_publishes_nothing": rejects_bad_input_and_publishes_nothing,
    "no_personal_data_in_logs": logs_no_personal_data,
}


def contract_tests(
    cases: Sequence[AdapterCase], *, rules: str | os.PathLike[str] | None = None
) -> Callable[[AdapterCase, str, pytest.FixtureRequest], None]:
    """A pytest test of every promise for every case; assign it to a `test_` name in a test module.

    `rules`: the rules directory whose tenants the cases use; otherwise `--contract-rules DIR`, then
    $RULES_DIR, then the kit's tenant `example`. The test is synchronous (it runs each promise in its
    own event loop), so it needs no asyncio plugin.
    """
    params = [pytest.param(case, name, id=f"{case.id}-{name}") for case in cases for name in PROMISES]

    @pytest.mark.parametrize(("case", "promise"), params)
    def test_contract(case: AdapterCase, promise: str, request: pytest.FixtureRequest) -> None:
        tenants = contract_tenants(rules or request.config.getoption("contract_rules", default=None))
        if case.tenant not in tenants:
            pytest.fail(
                f"{case.id}: tenant {case.tenant!r} is not among the contract's tenants "
                f"({', '.join(sorted(tenants))}); set AdapterCase(tenant=...) to one of them, or point "
                f"{RULES_OPTION} or RULES_DIR at a rules directory that has it",
                pytrace=False,
            )
        asyncio.run(_keep(case, PROMISES[promise], tenants))

    return test_contract


async def _keep(case: AdapterCase, promise: Promise, tenants: Mapping[str, Tenant]) -> None:
    ctx = context_for(case, tenants)
    try:
        await promise(case, ctx)
    finally:
        await ctx.drain(5)


# --- Helpers --------------------------------------------------------------------------------------


@contextmanager
def stdlib_logs(level: int = logging.INFO) -> Iterator[list[str]]:
    """The standard-library log lines (with tracebacks) written while inside, at `level` and above."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


def adapter_sources(cls: type[ChannelAdapter]) -> list[Path]:
    """The modules of the adapter's package (with its subpackages), or its module alone when that is
    not in a package of its own (a top-level module, or a module directly in `adapters`)."""
    module = inspect.getmodule(cls)
    assert module is not None and module.__file__ is not None
    package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    if not package or package == "adapters":
        return [Path(module.__file__)]
    folders = sys.modules[package].__path__
    return sorted(file for folder in folders for file in Path(folder).rglob("*.py"))


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out


# --- The pytest plugin ----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("contact-router", "contact-router adapter contract").addoption(
        RULES_OPTION,
        dest="contract_rules",
        metavar="DIR",
        default=None,
        help="rules directory (one <tenant>.yaml per tenant) for contract_tests; default: $RULES_DIR, "
        f"else the kit's tenant '{DEFAULT_TENANT}'",
    )
