"""Every adapter of this project — the four shipped ones and the worked example — against the contract
of the integrator kit (adapters/kit/testing.py), through the same `contract_tests` an integrator uses;
and, against the real RabbitMQ, into the router's queue."""

from __future__ import annotations

import functools
from typing import Any

import aio_pika

from adapters.example import CounterVisitAdapter
from adapters.kit import testing as contract
from adapters.kit.base import Inbound, submit
from adapters.kit.registry import BUILTIN_SOURCE, list_adapters
from adapters.kit.testing import START, AdapterCase, contract_tests, json_inbound
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
from tests.adapters.conftest import ADAPTER_SETTINGS, WA_PHONE_ID_OMMEN
from tests.adapters.mails import RESIDENT, resident_mail
from tests.conftest import RULES, drain

PROJECT = "contact-router"


def _json(data: dict[str, Any]) -> Inbound:
    return json_inbound(data, tenant="ommen")


def _mail(raw: bytes) -> Inbound:
    return Inbound(payload=raw, received_at=START, meta={"recipients": "info@ommen.nl"})


# The project's cases are Ommen's, with the settings of the adapter tests.
_case = functools.partial(AdapterCase, tenant="ommen", settings=ADAPTER_SETTINGS)


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
    _case(
        adapter=MailAdapter,
        valid=lambda: _mail(resident_mail(message_id="<contract@example.nl>").as_bytes()),
        invalid=lambda: _mail(b""),
        personal=(RESIDENT, "Jan Jansen", "06 12345678", "paspoort is verlopen"),
    ),
    _case(
        adapter=WebformAdapter,
        valid=lambda: _json(
            {
                "name": "Jan Jansen",
                "email": "jan@example.nl",
                "phone": "0612345678",
                "message": "Mijn paspoort is verlopen",
                "submission_id": "contract-1",
            },
        ),
        invalid=lambda: _json({"email": "jan-at-example", "phone": "12", "message": ""}),
        personal=(
            "Jan Jansen",
            "jan@example.nl",
            "0612345678",
            "+31612345678",
            "jan-at-example",
            "paspoort is",
        ),
    ),
    _case(
        adapter=SocialAdapter,
        valid=lambda: _json(WHATSAPP),
        invalid=lambda: _json({"object": "whatsapp_business_account", "entry": "x"}),
        personal=("31687654321", "Kees de Vries", "Dorpsstraat 12", "kliko is kapot"),
    ),
    _case(
        adapter=PhoneNotesAdapter,
        valid=lambda: _json(
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
    _case(
        adapter=CounterVisitAdapter,
        valid=lambda: _json(
            {
                "visit_id": "Q-2026-0001",
                "desk": "balie-3",
                "topic": "Paspoort aanvragen",
                "note": "Pasfoto van Marie de Boer ontbrak.",
                "visitor_name": "Marie de Boer",
                "follow_up": True,
            },
        ),
        invalid=lambda: _json({"visit_id": "Q 1", "desk": "", "visitor_name": "Marie de Boer"}),
        personal=("Marie de Boer", "Pasfoto van"),
    ),
]
IDS = [case.id for case in CASES]

test_contract = contract_tests(CASES, rules=RULES)


async def test_every_adapter_of_this_project_has_a_contract_case() -> None:
    # An integrator's adapter installed beside this project is tested by its own package's contract.
    ours = {i.name for i in list_adapters() if i.source in (PROJECT, BUILTIN_SOURCE)}
    assert ours >= {"mail", "webform", "social", "phone", "counter"}
    assert ours <= set(IDS), f"adapters without a contract case: {sorted(ours - set(IDS))}"


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
