"""CPython's own e-mail test corpus through the mail adapter and the real broker: every message gives a
contact, an ignored automatic mail or a refusal with a reason, none a dead letter, and the adapter never
crashes."""

from __future__ import annotations

import os
from pathlib import Path

import aio_pika
import pytest

from adapters.kit.base import Inbound
from adapters.kit.context import AdapterContext
from adapters.kit.testing import START, RecordingAcks
from adapters.kit.wiring import build_context
from adapters.mail import MailAdapter
from adapters.mail.intake import take_in
from router.amqp.publisher import AmqpContactPublisher
from router.core.clock import ManualClock
from router.core.tenants import Tenant
from router.core.topology import Names
from router.service import declare_topology
from router.settings import Settings
from tests.adapters.conftest import adapter_settings
from tests.conftest import drain


def corpus() -> list[Path]:
    try:
        import test  # type: ignore[import-not-found]

        data = Path(os.path.dirname(test.__file__)) / "test_email" / "data"
    except ImportError:
        data = None
    files = sorted(data.glob("msg_*.txt")) if data is not None and data.is_dir() else []
    if not files:
        pytest.fail(
            f"CPython's e-mail test corpus (Lib/test/test_email/data/msg_*.txt) was not found "
            f"(looked in {data}). Install the interpreter's test package, e.g. "
            "`apt-get install libpython3.11-testsuite`, or use a full CPython build (pyenv ships it).",
            pytrace=False,
        )
    return files


async def test_every_corpus_message_becomes_a_contact_is_ignored_or_is_refused(
    settings: Settings, tenants: dict[str, Tenant], amqp: aio_pika.abc.AbstractConnection
) -> None:
    files = corpus()
    await declare_topology(settings, tenants)
    names = Names(settings.namespace)
    publisher = AmqpContactPublisher(settings.amqp_url, names, connection_name="test:corpus")
    ctx: AdapterContext = build_context(
        publisher=publisher,
        tenants=tenants,
        clock=ManualClock(START),
        settings=adapter_settings(adapters_enabled="mail"),
        acks=RecordingAcks(),
    )
    adapter = MailAdapter()
    outcomes: dict[str, str] = {}
    published = 0
    try:
        for path in files:
            raw = path.read_bytes()
            inbound = Inbound(payload=raw, received_at=START, meta={"recipients": "info@ommen.nl"})
            intake = await take_in(adapter, inbound, ctx)  # an exception here fails the test: a crash
            if intake.kind == "contacts":
                assert len(intake.contacts) == 1, path.name
                outcomes[path.name] = "contact"
                published += 1
            else:
                outcomes[path.name] = f"{intake.kind}: {intake.reason}"
        await ctx.drain(5)
    finally:
        await publisher.close()

    assert len(outcomes) == len(files) >= 40
    contacts = await drain(amqp, names("router.contacts"))
    dead = await drain(amqp, names("router.dead"))
    assert len(contacts) == published
    # Nothing the adapter could know is taken and then dead-lettered.
    assert dead == [] and not [o for o in outcomes.values() if o.startswith("dead")]
    assert all(o == "contact" or o.split(": ", 1)[1] for o in outcomes.values())
    # The corpus has all three: ordinary mail, bounces/list mail, and a message with no headers.
    assert outcomes["msg_01.txt"] == "contact"
    assert outcomes["msg_16.txt"].startswith("ignored: ")
    assert outcomes["msg_19.txt"] == "refused: Message refused: no header fields (not an RFC 5322 message)"
