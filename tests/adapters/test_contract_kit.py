"""The contract machinery of the kit (adapters/kit/testing.py) itself: the plugin adds nothing but its
option, the default tenant ships with the package, and each promise fails, saying why, for an adapter
that breaks it."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.kit import registry, testing
from adapters.kit.base import ChannelAdapter
from adapters.kit.context import AdapterContext
from adapters.kit.testing import AdapterCase, contract_tests, json_inbound
from tests.conftest import RULES

# An adapter that breaks four of the five promises: it imports a store client, makes a fresh native id
# each time, logs the resident's name, and refuses bad input without saying why.
LEAKY = """
import json
import logging
import uuid

import redis  # noqa: F401

from adapters.kit.base import ChannelAdapter, Inbound, Rejected
from adapters.kit.context import AdapterContext
from router.core.contact import Contact, Sender, Source


class Leaky(ChannelAdapter):
    name = "leaky"
    channel = "kiosk"

    def translate(self, inbound: Inbound, ctx: AdapterContext) -> list[Contact]:
        data = json.loads(inbound.payload)
        if "name" not in data:
            raise Rejected(" ")
        logging.getLogger("leaky").info("question from %s", data["name"])
        return [
            Contact(
                tenant=inbound.tenant,
                channel=self.channel,
                received_at=inbound.received_at,
                source=Source(adapter=self.name, native_id=str(uuid.uuid4())),
                sender=Sender(name=data["name"]),
                body="Waar haal ik een parkeervergunning?",
            )
        ]
"""


@pytest.fixture
def leaky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[ChannelAdapter]]:
    (tmp_path / "leaky_kiosk").mkdir()
    (tmp_path / "leaky_kiosk" / "__init__.py").write_text("")
    (tmp_path / "leaky_kiosk" / "adapter.py").write_text(textwrap.dedent(LEAKY))
    monkeypatch.syspath_prepend(str(tmp_path))
    ours = registry.Registration("leaky", "leaky_kiosk.adapter:Leaky", "leaky-kiosk")
    declared = [*registry._registrations(), ours]
    monkeypatch.setattr(registry, "_registrations", lambda: declared)
    yield importlib.import_module("leaky_kiosk.adapter").Leaky
    for name in [m for m in sys.modules if m.startswith("leaky_kiosk")]:
        del sys.modules[name]


def case_of(adapter: type[ChannelAdapter], **fields: object) -> AdapterCase:
    return AdapterCase(
        adapter=adapter,
        valid=lambda: json_inbound({"name": "Marie de Boer"}),
        invalid=lambda: json_inbound({}),
        personal=("Marie de Boer",),
        **fields,  # type: ignore[arg-type]
    )


def test_the_plugin_is_registered_and_adds_only_its_option(request: pytest.FixtureRequest) -> None:
    plugin = request.config.pluginmanager.get_plugin("contact_router_adapters")
    assert plugin is testing, "no pytest11 entry point: reinstall the project (pip install -e .)"
    assert [name for name in vars(testing) if name.startswith("pytest_")] == ["pytest_addoption"]
    assert request.config.getoption("contract_rules") is None


def test_the_default_tenant_ships_with_the_kit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RULES_DIR", raising=False)
    tenants = testing.contract_tenants()
    assert list(tenants) == [testing.DEFAULT_TENANT]
    assert Path(tenants["example"].loaded.file).parent.name == "contract_rules"
    assert sorted(testing.contract_tenants(RULES)) == ["coevorden", "ommen"]
    monkeypatch.setenv("RULES_DIR", str(RULES))
    assert sorted(testing.contract_tenants()) == ["coevorden", "ommen"]


def test_contract_tests_makes_one_test_per_case_and_promise() -> None:
    from adapters.example import CounterVisitAdapter

    test = contract_tests([case_of(CounterVisitAdapter)])
    (mark,) = test.pytestmark  # type: ignore[attr-defined]
    assert [p.id for p in mark.args[1]] == [f"counter-{promise}" for promise in testing.PROMISES]


async def test_each_broken_promise_fails_saying_why(leaky: type[ChannelAdapter]) -> None:
    case = case_of(leaky)

    def ctx() -> AdapterContext:
        return testing.context_for(case, testing.contract_tenants())

    await testing.produces_valid_contacts(case, ctx())  # the one it keeps
    with pytest.raises(AssertionError, match="the same input gave other contact ids"):
        await testing.is_idempotent(case, ctx())
    with pytest.raises(AssertionError, match=r"adapter\.py imports redis"):
        await testing.publishes_through_the_shared_path(case, ctx())
    with pytest.raises(AssertionError, match="rejected without a message"):
        await testing.rejects_bad_input_and_publishes_nothing(case, ctx())
    with pytest.raises(AssertionError, match="personal data 'Marie de Boer' appeared in a log line"):
        await testing.logs_no_personal_data(case, ctx())


def test_an_unregistered_adapter_is_told_how_to_register(leaky: type[ChannelAdapter]) -> None:
    class Unregistered(leaky):  # type: ignore[valid-type,misc]
        name = "unregistered"

    with pytest.raises(pytest.fail.Exception, match=r"no adapter named 'unregistered'.*pip install -e"):
        testing.context_for(case_of(Unregistered), testing.contract_tenants())
    with pytest.raises(pytest.fail.Exception, match=r"loads leaky_kiosk\.adapter\.Leaky, not .*\.Other "):
        testing.context_for(case_of(type("Other", (leaky,), {})), testing.contract_tenants())


def test_a_tenant_the_rules_lack_is_named(
    leaky: type[ChannelAdapter], request: pytest.FixtureRequest
) -> None:
    test = contract_tests([case_of(leaky, tenant="ommen")])
    with pytest.raises(pytest.fail.Exception, match=r"tenant 'ommen' is not among .* \(example\)"):
        test(case_of(leaky, tenant="ommen"), "valid_input_gives_valid_contacts", request)
