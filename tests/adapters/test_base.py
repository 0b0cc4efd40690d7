"""The shared path itself: submit, dead letters, the after_publish hook."""

from __future__ import annotations

import pytest

from adapters.kit.base import ChannelAdapter, Inbound, PublishError, submit
from adapters.kit.context import AdapterContext, MemoryDeadLetters
from adapters.kit.testing import START, RecordingPublisher
from adapters.kit.wiring import build_context
from router.core.clock import ManualClock
from router.core.contact import Contact, Source
from router.core.tenants import Tenant
from tests.adapters.conftest import adapter_settings


class Toy(ChannelAdapter):
    name = "toy"
    channel = "chat"

    def __init__(self, tenant: str = "ommen", adapter: str = "toy", hook_fails: bool = False):
        self.tenant = tenant
        self.adapter = adapter
        self.hook_fails = hook_fails
        self.hooked: list[str] = []

    def translate(self, inbound: Inbound, ctx: AdapterContext) -> list[Contact]:
        return [
            Contact(
                tenant=self.tenant,
                channel=self.channel,
                received_at=inbound.received_at,
                source=Source(adapter=self.adapter, native_id=inbound.payload.decode()),
            )
        ]

    async def after_publish(self, contacts: list[Contact], inbound: Inbound, ctx: AdapterContext) -> None:
        if self.hook_fails:
            raise RuntimeError("smtp said no to someone@example.nl")
        self.hooked += [c.cid for c in contacts]


def ctx_with(tenants: dict[str, Tenant], publisher: RecordingPublisher) -> AdapterContext:
    return build_context(
        publisher=publisher,
        dead_letters=MemoryDeadLetters(),
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(adapters_enabled="mail"),
    )


def inbound(native_id: str = "n-1") -> Inbound:
    return Inbound(payload=native_id.encode(), received_at=START, tenant="ommen")


async def test_a_contact_the_model_refuses_is_dead_lettered_not_a_crash(tenants: dict[str, Tenant]) -> None:
    ctx = ctx_with(tenants, RecordingPublisher())
    outcome = await submit(Toy(tenant="Not A Tenant"), inbound(), ctx)
    assert outcome.contacts == [] and outcome.dead_reason is not None
    assert outcome.dead_reason.startswith("invalid contact: tenant:")
    assert isinstance(ctx.dead_letters, MemoryDeadLetters)
    assert ctx.dead_letters.letters == [(b"n-1", outcome.dead_reason, "ommen.chat")]


async def test_a_contact_under_another_adapters_name_is_refused(tenants: dict[str, Tenant]) -> None:
    publisher = RecordingPublisher()
    with pytest.raises(ValueError, match=r"source\.adapter 'mail'"):
        await submit(Toy(adapter="mail"), inbound(), ctx_with(tenants, publisher))
    assert publisher.published == []


async def test_the_hook_runs_after_the_confirm_only(tenants: dict[str, Tenant]) -> None:
    toy = Toy()
    with pytest.raises(PublishError):
        await submit(toy, inbound(), ctx_with(tenants, RecordingPublisher(fail=True)))
    assert toy.hooked == []
    outcome = await submit(toy, inbound(), ctx_with(tenants, RecordingPublisher()))
    assert toy.hooked == [outcome.contacts[0].cid]


async def test_a_failing_hook_does_not_undo_the_accepted_contact(tenants: dict[str, Tenant]) -> None:
    import structlog

    publisher = RecordingPublisher()
    with structlog.testing.capture_logs() as logs:
        outcome = await submit(Toy(hook_fails=True), inbound(), ctx_with(tenants, publisher))
    assert publisher.published == outcome.contacts != []
    [failure] = [e for e in logs if e["event"] == "after_publish_failed"]
    assert failure["error"] == "RuntimeError" and "someone@example.nl" not in repr(logs)
