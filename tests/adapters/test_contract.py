"""Every adapter — the four shipped ones and the worked example — against the contract in contract.py."""

from __future__ import annotations

import json
from typing import Any

import aio_pika
import pytest

from adapters.example import CounterVisitAdapter
from adapters.kit import testing as contract
from adapters.kit.base import Inbound, submit
from adapters.kit.registry import list_adapters
from adapters.kit.testing import AdapterCase
from adapters.mail import MailAdapter
from adapters.phone.adapter import PhoneNotesAdapter
from adapters.social import SocialAdapter
from adapters.webform.adapter import WebformAdapter
from router.amqp.publisher import AmqpContactPublisher
from router.core.contact import Contact
from router.core.tenants import Tenant
from router.core.topology import H_IDEMPOTENCY, Names
from router.service import declare_topology
from router.settings import Settings
from tests.adapters.conftest import START, WA_PHONE_ID_OMMEN
from tests.adapters.mails import RESIDENT, resident_mail
from tests.conftest import drain


def _json(tenant: str | None, data: dict[str, Any]) -> Inbound:
    return Inbound(
        payload=json.dumps(data).encode(), received_at=START, tenant=tenant, content_type="application/json"
    )


def _mail(raw: bytes) -> Inbound:
    return Inbound(payload=raw, received_at=START, meta={"recipients": "info@ommen.nl"})


WHATSAPP = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "1",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "metadata": {"phone_number_id": WA_PHONE_ID_OMMEN},
                        "contacts": [{"profile": {"name": "Kees de Vries"}, "wa_id": "31687654321"}],
                        "messages": [
                            {
                                "from": "31687654321",
                                "id": "wamid.contract",
                                "type": "text",
                                "text": {"body": "Mijn kliko is kapot, Dorpsstraat 12"},
                            }
                        ],
                    },
                }
            ],
        }
    ],
}

CASES = [
    AdapterCase(
        adapter=MailAdapter,
        valid=lambda: _mail(resident_mail(message_id="<contract@example.nl>").as_bytes()),
        invalid=lambda: _mail(b""),
        personal=(RESIDENT, "Jan Jansen", "06 12345678", "paspoort is verlopen"),
    ),
    AdapterCase(
        adapter=WebformAdapter,
        valid=lambda: _json(
            "ommen",
            {
                "name": "Jan Jansen",
                "email": "jan@example.nl",
                "phone": "0612345678",
                "message": "Mijn paspoort is verlopen",
                "submission_id": "contract-1",
            },
        ),
        invalid=lambda: _json("ommen", {"email": "jan-at-example", "phone": "12", "message": ""}),
        personal=(
            "Jan Jansen",
            "jan@example.nl",
            "0612345678",
            "+31612345678",
            "jan-at-example",
            "paspoort is",
        ),
    ),
    AdapterCase(
        adapter=SocialAdapter,
        valid=lambda: _json("ommen", WHATSAPP),
        invalid=lambda: _json("ommen", {"object": "whatsapp_business_account", "entry": "x"}),
        personal=("31687654321", "Kees de Vries", "Dorpsstraat 12", "kliko is kapot"),
    ),
    AdapterCase(
        adapter=PhoneNotesAdapter,
        valid=lambda: _json(
            "ommen",
            {
                "caller_name": "Piet Pietersen",
                "phone": "06 87654321",
                "topic": "Uitkering",
                "note": "Vraagt naar zijn uitkering van maart.",
                "outcome": "transferred",
                "to_team": "sociaal_domein",
                "agent": "kcc-001",
                "call_id": "call-contract",
            },
        ),
        invalid=lambda: _json(
            "ommen",
            {
                "caller_name": "Piet Pietersen",
                "phone": "12",
                "topic": "x",
                "note": "y",
                "outcome": "answered",
                "agent": "kcc-001",
            },
        ),
        personal=("Piet Pietersen", "06 87654321", "+31687654321", "uitkering van maart"),
    ),
    AdapterCase(
        adapter=CounterVisitAdapter,
        valid=lambda: _json(
            "ommen",
            {
                "visit_id": "Q-2026-0001",
                "desk": "balie-3",
                "topic": "Paspoort aanvragen",
                "note": "Pasfoto van Marie de Boer ontbrak.",
                "visitor_name": "Marie de Boer",
                "follow_up": True,
            },
        ),
        invalid=lambda: _json("ommen", {"visit_id": "Q 1", "desk": "", "visitor_name": "Marie de Boer"}),
        personal=("Marie de Boer", "Pasfoto van"),
    ),
]
IDS = [case.id for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_valid_input_gives_valid_contacts(case: AdapterCase, tenants: dict[str, Tenant]) -> None:
    await contract.produces_valid_contacts(case, contract.context_for(case, tenants))


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_same_input_gives_the_same_contacts(case: AdapterCase, tenants: dict[str, Tenant]) -> None:
    await contract.is_idempotent(case, contract.context_for(case, tenants))


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_publishes_through_the_shared_path_only(case: AdapterCase, tenants: dict[str, Tenant]) -> None:
    await contract.publishes_through_the_shared_path(case, contract.context_for(case, tenants))


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_bad_input_is_refused_and_publishes_nothing(
    case: AdapterCase, tenants: dict[str, Tenant]
) -> None:
    await contract.rejects_bad_input_and_publishes_nothing(case, contract.context_for(case, tenants))


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_no_personal_data_in_logs(
    case: AdapterCase, tenants: dict[str, Tenant], caplog: pytest.LogCaptureFixture
) -> None:
    await contract.logs_no_personal_data(case, contract.context_for(case, tenants), caplog)


async def test_every_registered_adapter_has_a_contract_case() -> None:
    registered = {info.name for info in list_adapters()}
    assert registered >= {"mail", "webform", "social", "phone", "counter"}
    assert registered <= set(IDS), f"adapters without a contract case: {sorted(registered - set(IDS))}"


async def test_every_adapter_reaches_the_router_queue_through_the_real_broker(
    settings: Settings, tenants: dict[str, Tenant], amqp: aio_pika.abc.AbstractConnection
) -> None:
    await declare_topology(settings, tenants)
    names = Names(settings.namespace)
    publisher = AmqpContactPublisher(settings.amqp_url, names, connection_name="test:contract")
    made: list[Contact] = []
    try:
        for case in CASES:
            ctx = contract.context_for(case, tenants, publisher=publisher)
            made += (await submit(case.adapter(), case.valid(), ctx)).contacts
            await ctx.drain(5)
    finally:
        await publisher.close()
    messages = await drain(amqp, names("router.contacts"))
    assert sorted(str((m.headers or {})[H_IDEMPOTENCY]) for m in messages) == sorted(
        c.idempotency_key for c in made
    )
    assert {m.routing_key for m in messages} == {f"ommen.{c.channel}" for c in made}
    assert sorted(Contact.model_validate_json(m.body).cid for m in messages) == sorted(c.cid for c in made)
