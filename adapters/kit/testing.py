"""The contract every channel adapter must keep, written once and run against each adapter.

To put your own adapter under it (docs/adapters.md), describe it as an `AdapterCase` — one valid native
input, one bad one, and the personal data in the valid one — and add it to the list that
`test_contract.py` parametrizes over. The promises:

1. valid input gives valid Contacts: right tenant, channel and source.adapter, a stable native id;
2. the same input twice gives the same contact ids (the router then routes it once);
3. contacts leave only through the shared path (`submit` → the publisher), and the adapter's code
   imports no broker client;
4. bad input is refused with a clear message (or dead-lettered with a reason) and publishes nothing;
5. no personal data (names, addresses, numbers, message text) in any log line.
"""

from __future__ import annotations

import ast
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from adapters.kit.base import ChannelAdapter, Inbound, Rejected, submit
from adapters.kit.context import AdapterContext, MemoryDeadLetters
from adapters.kit.wiring import build_context
from router.core.clock import ManualClock
from router.core.contact import Contact
from router.core.tenants import Tenant
from tests.adapters.conftest import START, RecordingAcks, RecordingPublisher, adapter_settings

# Modules an adapter must not import: contacts go through `submit` and the shared publisher only.
FORBIDDEN_IMPORTS = ("aio_pika", "aiormq", "pika", "adapters.kit.publisher", "redis")


@dataclass(frozen=True)
class AdapterCase:
    adapter: type[ChannelAdapter]
    valid: Callable[[], Inbound]
    invalid: Callable[[], Inbound]
    # Strings of the valid (and invalid) input that are personal data: they must never be logged.
    personal: tuple[str, ...]
    tenant: str = "ommen"
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.adapter.name


def context_for(case: AdapterCase, tenants: Mapping[str, Tenant], publisher: Any = None) -> AdapterContext:
    return build_context(
        publisher=publisher or RecordingPublisher(),
        dead_letters=MemoryDeadLetters(),
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(adapters_enabled=case.adapter.name, **case.settings),
        acks=RecordingAcks(),
    )


def recorder(ctx: AdapterContext) -> RecordingPublisher:
    assert isinstance(ctx.publisher, RecordingPublisher)
    return ctx.publisher


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


async def logs_no_personal_data(case: AdapterCase, ctx: AdapterContext, caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    with structlog.testing.capture_logs() as logs:
        await submit(case.adapter(), case.valid(), ctx)
        try:
            await submit(case.adapter(), case.invalid(), ctx)
        except Rejected:
            pass
        await ctx.drain(5)
    assert logs, f"{case.id}: nothing was logged at all (is structlog capture working?)"
    text = repr(logs) + caplog.text
    for secret in case.personal:
        assert secret not in text, f"{case.id}: personal data {secret!r} appeared in a log line"


def adapter_sources(cls: type[ChannelAdapter]) -> list[Path]:
    """The adapter's module, or every module of its package when it lives in one of its own."""
    module = inspect.getmodule(cls)
    assert module is not None and module.__file__ is not None
    path = Path(module.__file__)
    package = module.__name__.rsplit(".", 1)[0]
    if package.count(".") >= 1:  # adapters.<name>.<module>: the whole package is the adapter
        return sorted(path.parent.glob("*.py"))
    return [path]


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out
