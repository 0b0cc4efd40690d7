"""Prometheus metrics (issue 17, item 2): `/metrics` of every process parses with prometheus-client's
own text parser and shows what happened (contacts received and routed, a transfer, a callback request,
warnings and breaches: the same numbers as the events published); no label value outside the known
sets, whatever comes in; the processes without the API (`router`, `scheduler`, `history consume`)
serve it on METRICS_PORT."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aio_pika
import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router.amqp.publisher import AmqpContactPublisher
from router.core import metrics as m
from router.core.contact import Contact
from router.core.history import HISTORY_QUEUE
from router.core.messages import OutMessage, event_message
from router.core.metrics import Bounds, Family, Recorder
from router.core.tenants import Tenant
from router.core.topology import Names
from router.metrics.probes import IgnoredMailProbe
from router.settings import Settings
from tests.conftest import ROOT
from tests.harness import ALL_KEY, Harness, wait_routed

Samples = list[tuple[str, dict[str, str], float]]

_NOW = datetime(2026, 5, 13, 8, 0, tzinfo=UTC)
PLANTED = ("jan.jansen@example.nl", "123456782", "Jan Jansen", "+31687654321", "NL91ABNA0417164300")


def parse(text: str) -> Samples:
    """Every sample of the exposition; the parser raises on anything that is not the text format."""
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [lab for n, lab, _ in samples if n == name]


async def scrape(get: Callable[[], Awaitable[tuple[int, str]]]) -> tuple[str, Samples]:
    status, text = await get()
    assert status == 200, text
    return text, parse(text)


async def until(
    get: Callable[[], Awaitable[tuple[int, str]]], ok: Callable[[Samples], bool], within: float = 15
) -> tuple[str, Samples]:
    """Scrape until `ok` holds (counts after a commit land a moment after the store says 'routed')."""
    for _ in range(int(within / 0.1)):
        text, samples = await scrape(get)
        if ok(samples):
            return text, samples
        await asyncio.sleep(0.1)
    raise AssertionError(f"metrics did not get there within {within}s:\n{text}")


def api_metrics(h: Harness) -> Callable[[], Awaitable[tuple[int, str]]]:
    async def get() -> tuple[int, str]:
        resp = await h.client.get("/metrics")  # no API key: the metrics hold no personal data
        return resp.status, await resp.text()

    return get


def http_metrics(port: int) -> Callable[[], Awaitable[tuple[int, str]]]:
    async def get() -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as r:
            return r.status, await r.text()

    return get


def contact_json(h: Harness, tenant: str, channel: str, body: str, **extra: Any) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "channel": channel,
        "received_at": h.clock.now().isoformat(),
        "source": {"adapter": "metrics-test", "native_id": uuid.uuid4().hex},
        "subject": "Vraag",
        "body": body,
        **extra,
    }


async def submit(h: Harness, data: dict[str, Any]) -> str:
    resp = await h.client.post("/v1/contacts", json=data, headers=ALL_KEY)
    assert resp.status == 202, await resp.text()
    cid: str = (await resp.json())["id"]
    return cid


# -- the serve process (router, API and scheduler in one), on both backends -------------------------


async def test_metrics_show_what_was_routed_transferred_and_breached(backend: Harness) -> None:
    h = backend
    first = await submit(h, contact_json(h, "ommen", "mail", "Vraag over mijn aanslag"))
    second = await submit(h, contact_json(h, "ommen", "mail", "Nog een vraag over de aanslag"))
    for cid in (first, second):
        assert (await wait_routed(h.rt, cid))["team"] == "belastingen"
    third = await h.route("coevorden", "phone", "Algemene vraag")  # straight to `contacts`: not "received"
    third_team = (await wait_routed(h.rt, third))["team"]
    status, _ = await h.transfer(first, "burgerzaken", "belastingen")
    assert status == 200
    resp = await h.client.post(
        f"/v1/contacts/{second}/callback-requests", headers=ALL_KEY, json={"reason": "terugbellen"}
    )
    assert resp.status == 201, await resp.text()
    # Every deadline runs out: the scheduler fires each warning and each breach.
    h.clock.advance(timedelta(days=120))
    assert h.rt.scheduler is not None
    while await h.rt.scheduler.tick():
        pass

    def settled(s: Samples) -> bool:
        return total(s, "contact_router_contacts_routed_total") == 3

    text, s = await until(api_metrics(h), settled)
    published = Counter((e["tenant"], e["event"]) for e in [json.loads(r.body) for r in await h.events()])

    assert total(s, "contact_router_contacts_received_total", tenant="ommen", channel="mail") == 2
    assert total(s, "contact_router_contacts_received_total") == 2
    routed = "contact_router_contacts_routed_total"
    assert total(s, routed, tenant="ommen", channel="mail", team="belastingen", outcome="routed") == 2
    assert total(s, routed, tenant="coevorden", channel="phone", team=third_team, outcome="routed") == 1
    assert total(s, "contact_router_routing_latency_seconds_count", tenant="ommen", channel="mail") == 2
    assert total(s, "contact_router_routing_latency_seconds_count") == 3
    assert total(s, "contact_router_transfers_total", from_team="belastingen", to_team="burgerzaken") == 1
    assert total(s, "contact_router_transfers_total") == 1
    assert total(s, "contact_router_callbacks_requested_total", tenant="ommen", team="belastingen") == 1
    # The counts are the events the service published, event by event.
    for (tenant, event), n in published.items():
        assert total(s, "contact_router_events_total", tenant=tenant, event=event) == n, (tenant, event)
    assert total(s, "contact_router_events_total") == sum(published.values())
    breaches = total(s, "contact_router_deadline_breaches_total")
    assert breaches == sum(n for (_, e), n in published.items() if e == "deadline.breached") >= 3
    assert (
        total(
            s, "contact_router_deadline_breaches_total", tenant="ommen", team="belastingen", kind="callback"
        )
        == 1
    )
    assert (
        total(s, "contact_router_deadline_breaches_total", tenant="ommen", team="burgerzaken", kind="respond")
        == 1
    )
    warnings = sum(n for (_, e), n in published.items() if e == "deadline.warning")
    assert total(s, "contact_router_deadline_warnings_total") == warnings
    # Read on the scrape: the open work, the consumer, the dependencies, what this process is.
    assert total(s, "contact_router_callbacks_open", tenant="ommen", team="belastingen") == 1
    assert total(s, "contact_router_work_items_open", tenant="ommen", team="burgerzaken") == 1
    assert total(s, "contact_router_consumer_attached", consumer="router") == 1
    assert total(s, "contact_router_info", role="serve") == 1
    assert total(s, "contact_router_dependency_up", dependency="redis") == 1
    if h.kind == "real":
        assert total(s, "contact_router_dependency_up", dependency="broker") == 1
        assert total(s, "contact_router_queue_consumers", queue="router.contacts") == 1
        assert (
            total(s, "contact_router_queue_messages", queue="team", tenant="ommen", team="burgerzaken") == 1
        )
        ommen_breaches = total(s, "contact_router_deadline_breaches_total", tenant="ommen")
        assert (
            total(s, "contact_router_queue_messages", queue="escalations", tenant="ommen") == ommen_breaches
        )
    assert not any(p in text for p in PLANTED)


async def test_no_label_value_outside_the_known_sets_whatever_comes_in(backend: Harness) -> None:
    h = backend
    planted = {
        "name": "Jan Jansen",
        "email": "jan.jansen@example.nl",
        "phone": "+31687654321",
    }
    body = "BSN 123456782, IBAN NL91ABNA0417164300"
    # A channel nobody knows, submitted and routed: counted under "other".
    fax = await submit(h, contact_json(h, "ommen", "faxmachine", body, sender=planted))
    await wait_routed(h.rt, fax)
    # Garbage, a contact of a tenant without rules and one that is no contact, on the router's queue.
    await h.publish_raw("zzgarbage.qqchannel", b"\x00\xff not json at all jan.jansen@example.nl")
    ghost = Contact.model_validate(contact_json(h, "ghosttown", "mail", body, sender=planted))
    await h.publish_raw("ghosttown.mail", ghost.model_dump_json().encode())
    await h.publish_raw("ommen.mail", b'{"tenant": "ommen", "channel": "mail", "body": 12}')
    # An event with an unknown name and team, published by case work's path.
    await h.rt.outbound.publish(
        event_message(h.names("events"), "contact.teleported", h.clock.now(), tenant="ommen", team="mars")
    )
    await h.rt.outbound.publish(
        event_message(
            h.names("events"), "deadline.breached", h.clock.now(), tenant="nowhere", team="x", kind="y"
        )
    )

    def dead(s: Samples) -> bool:
        return total(s, "contact_router_dead_letters_total") == 3

    text, s = await until(api_metrics(h), dead)
    assert total(s, "contact_router_contacts_received_total", tenant="ommen", channel="other") == 1
    assert total(s, "contact_router_contacts_routed_total", tenant="ommen", channel="other") == 1
    letters = "contact_router_dead_letters_total"
    assert total(s, letters, tenant="other", source="router", reason="malformed_json") == 1
    assert total(s, letters, tenant="other", source="router", reason="unknown_tenant") == 1
    assert total(s, letters, tenant="ommen", source="router", reason="invalid_contact") == 1
    assert total(s, "contact_router_events_total", tenant="ommen", event="other") == 1
    assert total(s, "contact_router_deadline_breaches_total", tenant="other", team="other", kind="other") == 1

    bounds = Bounds.of(h.rt.tenants)
    allowed = allowed_values(h.rt.tenants, bounds)
    for name, labels, _ in s:
        if not name.startswith("contact_router_"):
            continue
        for key, value in labels.items():
            if key in ("le", "version"):
                continue
            assert value in allowed[key], (name, key, value)
    for word in (
        *PLANTED,
        "faxmachine",
        "ghosttown",
        "zzgarbage",
        "qqchannel",
        "teleported",
        "mars",
        "nowhere",
    ):
        assert word not in text, word


def allowed_values(tenants: dict[str, Tenant], bounds: Bounds) -> dict[str, set[str]]:
    teams = {team for ids in bounds.teams.values() for team in ids}
    return {
        "tenant": {*tenants, m.OTHER, ""},
        "team": {*teams, m.OTHER, ""},
        "from_team": {*teams, m.OTHER},
        "to_team": {*teams, m.OTHER},
        "channel": {*bounds.channels, m.OTHER},
        "outcome": {*m.OUTCOMES, m.OTHER},
        "kind": {*m.KINDS, m.OTHER},
        "event": {*m.EVENTS, m.OTHER},
        "reason": {*m.DEAD_REASONS, *m.IGNORED_REASONS},
        "source": {*m.SOURCES, m.OTHER},
        "role": set(m.ROLES),
        "consumer": set(m.CONSUMERS),
        "dependency": set(m.DEPENDENCIES),
        "queue": set(m.QUEUES),
    }


async def test_metrics_need_no_key_and_a_bare_app_has_none(settings: Settings) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from router.http.app import ApiContext, create_app

    app = create_app(ApiContext(tenants={}, store=None, publisher=None, clock=None, credentials={}))  # type: ignore[arg-type]
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.get("/metrics")
        assert resp.status == 404
        assert (await resp.json())["error"] == "no metrics in this process"
    finally:
        await client.close()


# -- pure: the classes and the bounds ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "cls"),
    [
        ("body too large: 2000000 bytes (limit 1000000)", "too_large"),
        ("malformed JSON: Invalid JSON: expected value at line 1 column 1", "malformed_json"),
        ("invalid contact: sender.email: value is not a valid email address", "invalid_contact"),
        ("unknown tenant: no rules for the contact's tenant", "unknown_tenant"),
        ("internal error while preparing: KeyError", "internal_error"),
        ("malformed webhook JSON: unexpected end of data", "malformed_json"),
        ("unexpected webhook payload: entry is not a list", "malformed_input"),
        ("unparseable mail: UnicodeDecodeError", "malformed_input"),
        ("refused mail: Message refused: MIME parts nested too deeply", "malformed_input"),
        ("automatic mail, not routed: Auto-Submitted: auto-replied", "automatic_mail"),
        ("something nobody wrote yet", "other"),
    ],
)
def test_a_dead_letter_reason_is_counted_by_its_class(reason: str, cls: str) -> None:
    assert m.dead_reason_class(reason) == cls


def test_every_reason_the_mail_adapter_gives_for_automatic_mail_has_a_class() -> None:
    """The reasons are fixed texts in adapters/mail/parse.py `_automatic`: each is one of the classes."""
    import re

    source = (ROOT / "adapters" / "mail" / "parse.py").read_text()
    function = source.split("def _automatic(")[1].split("\ndef ")[0]
    reasons = re.findall(r'return f?"([^"]+)"', function)
    assert len(reasons) >= 10
    for reason in reasons:
        text = reason.replace("{name}", "x-autoreply").replace("{", "").replace("}", "")
        assert m.ignored_reason_class(text) != m.OTHER, reason
    assert m.ignored_reason_class("Auto-Submitted: auto-replied") == "auto_reply"
    assert m.ignored_reason_class("List-Id header (mailing list)") == "bulk"
    assert m.ignored_reason_class("empty return path (bounce)") == "bounce"
    assert m.ignored_reason_class("sent by this service (From is one of its own addresses)") == "own_mail"


class _Sink:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, tuple[str, ...]]] = Counter()

    def inc(self, family: Family, labels: tuple[str, ...], amount: float = 1.0) -> None:
        assert len(labels) == len(family.labels), family.name
        self.counts[(family.name, labels)] += int(amount)

    def observe(self, family: Family, labels: tuple[str, ...], value: float) -> None:
        assert len(labels) == len(family.labels), family.name
        self.counts[(family.name, labels)] += 1


def test_events_are_counted_by_name_team_and_kind_and_other_exchanges_not_at_all(
    tenants: dict[str, Tenant],
) -> None:
    sink = _Sink()
    rec = Recorder(sink, Bounds.of(tenants), Names("ns."))
    ev = "ns.events"
    rec.published(
        event_message(ev, "contact.transferred", _NOW, tenant="ommen", from_team="kcc", team="belastingen")
    )
    rec.published(
        event_message(ev, "transfer.refused", _NOW, tenant="ommen", team="kcc", to_team="burgerzaken")
    )
    rec.published(event_message(ev, "deadline.warning", _NOW, tenant="ommen", team="kcc", kind="respond"))
    rec.published(event_message(ev, "callback.requested", _NOW, tenant="coevorden", team="kcc"))
    rec.published(OutMessage("ns.teams", "ommen.kcc", "{}", "x"))  # a work item: no event
    rec.published(OutMessage(ev, "ommen.deadline.breached", "not json", "y"))  # counted by name only
    rec.received("ommen", "mail")
    rec.routed("ommen", "mail", "kcc", "answered", -3.0)  # a clock a little ahead: 0 s
    rec.dead_lettered("", "body too large: 2 bytes", "router")
    assert sink.counts == {
        ("contact_router_events_total", ("ommen", "contact.transferred")): 1,
        ("contact_router_transfers_total", ("ommen", "kcc", "belastingen")): 1,
        ("contact_router_events_total", ("ommen", "transfer.refused")): 1,
        ("contact_router_transfer_refusals_total", ("ommen", "kcc", "burgerzaken")): 1,
        ("contact_router_events_total", ("ommen", "deadline.warning")): 1,
        ("contact_router_deadline_warnings_total", ("ommen", "kcc", "respond")): 1,
        ("contact_router_events_total", ("coevorden", "callback.requested")): 1,
        ("contact_router_callbacks_requested_total", ("coevorden", "kcc")): 1,
        ("contact_router_events_total", ("ommen", "deadline.breached")): 1,
        ("contact_router_contacts_received_total", ("ommen", "mail")): 1,
        ("contact_router_contacts_routed_total", ("ommen", "mail", "kcc", "answered")): 1,
        ("contact_router_routing_latency_seconds", ("ommen", "mail")): 1,
        ("contact_router_dead_letters_total", ("other", "router", "too_large")): 1,
    }


def test_the_channels_are_the_known_ones_and_those_the_rules_or_adapters_name(
    tenants: dict[str, Tenant],
) -> None:
    bounds = Bounds.of(tenants, ["app"])
    assert {"mail", "webform", "social", "phone", "post", "counter", "chat", "app"} <= bounds.channels
    assert bounds.channel("fax") == bounds.channel(None) == m.OTHER
    assert bounds.team("ommen", "belastingen") == "belastingen"
    assert bounds.team("ommen", "nope") == bounds.team(m.OTHER, "belastingen") == m.OTHER
    assert bounds.tenant("coevorden") == "coevorden" and bounds.tenant("x") == m.OTHER


async def test_ignored_mail_is_read_from_the_adapters_that_count_it(tenants: dict[str, Tenant]) -> None:
    mail = SimpleNamespace(
        ignored=Counter(
            {
                ("ommen", "Auto-Submitted: auto-replied"): 3,
                ("ommen", "X-Loop header (passed an automatic responder)"): 1,
                ("ommen", "List-Id header (mailing list)"): 2,
                ("-", "empty return path (bounce)"): 1,
            }
        )
    )
    probe = IgnoredMailProbe({"mail": mail, "webform": object()}, Bounds.of(tenants))
    samples = {s.labels: s.value for s in await probe.sample()}
    assert samples == {("ommen", "auto_reply"): 4.0, ("ommen", "bulk"): 2.0, ("other", "bounce"): 1.0}


def test_every_family_is_named_and_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    names = [f.name for f in m.FAMILIES]
    assert len(set(names)) == len(names)
    for f in m.FAMILIES:
        assert f.name.startswith("contact_router_")
        assert f.name.endswith("_total") == (f.kind == "counter"), f.name
        assert f"`{f.name}`" in readme, f"README does not list {f.name}"


# -- the processes without the API: METRICS_PORT --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "AMQP_URL": settings.amqp_url,
        "REDIS_URL": settings.redis_url,
        "NAMESPACE": settings.namespace,
        "RULES_DIR": str(settings.rules_dir),
        "HTTP_HOST": "127.0.0.1",
        "LOG_LEVEL": "warning",
        **extra,
    }


async def start(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router.cli",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop(proc: asyncio.subprocess.Process) -> bytes:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    return err


async def test_a_router_process_serves_its_metrics_on_metrics_port(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> None:
    port = free_port()
    proc = await start("router", "--embedded", "never", env=env_for(settings, METRICS_PORT=str(port)))
    get = http_metrics(port)
    publisher = AmqpContactPublisher(settings.amqp_url, Names(settings.namespace))
    try:
        await until(
            get_when_up(get, proc),
            lambda s: total(s, "contact_router_consumer_attached", consumer="router") == 1,
            60,
        )
        contacts = [
            Contact.model_validate(
                {
                    "tenant": "ommen",
                    "channel": channel,
                    "received_at": "2026-05-13T10:00:00+02:00",
                    "source": {"adapter": "metrics-test", "native_id": uuid.uuid4().hex},
                    "body": "Vraag over mijn aanslag",
                }
            )
            for channel in ("mail", "mail", "webform")
        ]
        for contact in contacts:
            await publisher.publish(contact)

        def routed(s: Samples) -> bool:
            # The queues are read at most every few seconds: the first scrape saw no consumer yet.
            consumers = total(s, "contact_router_queue_consumers", queue="router.contacts")
            return total(s, "contact_router_contacts_routed_total") == 3 and consumers == 1

        text, s = await until(get, routed)
        assert total(s, "contact_router_contacts_routed_total", tenant="ommen", channel="mail") == 2
        assert total(s, "contact_router_routing_latency_seconds_count", tenant="ommen") == 3
        assert total(s, "contact_router_events_total", tenant="ommen", event="contact.routed") == 3
        assert total(s, "contact_router_info", role="router") == 1
        assert total(s, "contact_router_queue_consumers", queue="router.contacts") == 1
        assert series(s, "contact_router_queue_messages")  # the queues, read on the scrape
        assert total(s, "contact_router_dependency_up", dependency="broker") == 1
        assert total(s, "contact_router_dependency_up", dependency="redis") == 1
        assert total(s, "contact_router_contacts_received_total") == 0  # the router receives nothing itself
        assert "process_resident_memory_bytes" in text
    finally:
        await publisher.close()
        err = await stop(proc)
    assert proc.returncode == 0, err.decode()[-2000:]


def get_when_up(
    get: Callable[[], Awaitable[tuple[int, str]]], proc: asyncio.subprocess.Process
) -> Callable[[], Awaitable[tuple[int, str]]]:
    """`get`, answering 503 while the process is still starting (its port not yet open)."""

    async def attempt() -> tuple[int, str]:
        if proc.returncode is not None:
            raise AssertionError(f"the process ended with {proc.returncode}")
        try:
            return await get()
        except aiohttp.ClientConnectionError:
            return 200, ""

    return attempt


async def test_a_scheduler_process_serves_its_metrics_and_a_taken_port_stops_the_start(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> None:
    port = free_port()
    proc = await start("scheduler", "--embedded", "never", env=env_for(settings, METRICS_PORT=str(port)))
    try:
        _, s = await until(
            get_when_up(http_metrics(port), proc),
            lambda s: total(s, "contact_router_info", role="scheduler") == 1,
            60,
        )
        assert total(s, "contact_router_dependency_up", dependency="redis") == 1
        assert series(s, "contact_router_timers_due") and series(s, "contact_router_callbacks_open")
        assert not series(s, "contact_router_consumer_attached")  # no consumer in a scheduler
        # A second process on the same port does not start without its metrics.
        second = await start(
            "scheduler", "--embedded", "never", env=env_for(settings, METRICS_PORT=str(port))
        )
        _, err = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 2, err.decode()[-2000:]
        assert b"no metrics listener on METRICS_PORT" in err
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err.decode()[-2000:]


async def test_the_history_consumer_serves_its_metrics_on_metrics_port(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, tmp_path: Path
) -> None:
    port = free_port()
    env = env_for(settings, METRICS_PORT=str(port), HISTORY_URL=f"sqlite:///{tmp_path / 'history.db'}")
    proc = await start("history", "consume", env=env)
    names = Names(settings.namespace)
    get = get_when_up(http_metrics(port), proc)
    try:
        await until(get, lambda s: total(s, "contact_router_consumer_attached", consumer="history") == 1, 60)
        channel = await amqp.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(names("events"), aio_pika.ExchangeType.TOPIC, durable=True)
        for _ in range(3):
            msg = event_message(
                names("events"),
                "contact.received",
                _NOW,
                tenant="ommen",
                contact_id=str(uuid.uuid4()),
                channel="mail",
            )
            await exchange.publish(
                aio_pika.Message(msg.body.encode(), message_id=msg.message_id), msg.routing_key
            )

        def stored(s: Samples) -> bool:
            consumers = total(s, "contact_router_queue_consumers", queue=HISTORY_QUEUE)
            return total(s, "contact_router_history_events_stored_total") == 3 and consumers == 1

        _, s = await until(get, stored)
        assert total(s, "contact_router_history_events_seen_total") == 3
        assert total(s, "contact_router_info", role="history") == 1
        assert total(s, "contact_router_queue_consumers", queue=HISTORY_QUEUE) == 1
        assert total(s, "contact_router_dependency_up", dependency="broker") == 1
    finally:
        err = await stop(proc)
        cleanup = await amqp.channel()
        await cleanup.queue_delete(names(HISTORY_QUEUE))
    assert proc.returncode == 0, err.decode()[-2000:]
