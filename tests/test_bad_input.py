"""The bad-input corpus: every item gets a clear error (status and a message naming the problem) or a
dead letter with its reason — never a 5xx, never a crash — and the service keeps routing afterwards.

Over HTTP: POST /v1/contacts and the agent routes, the social webhook (forged and replayed), mail over
SMTP with huge attachments. Over AMQP: raw messages to exchange `contacts`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aio_pika
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.settings import AdapterSettings
from adapters.kit.wiring import build_context, start_adapters, stop_adapters
from router.core.contact import contact_id
from router.core.topology import H_DEAD_REASON
from router.http.app import create_app
from router.service import Runtime, build, start
from router.settings import Settings
from tests.backends import contacts_tap
from tests.conftest import drain
from tests.test_routing_e2e import contact_json, wait_routed

KEY = {"X-API-Key": "secret-key", "X-Agent-Id": "agent-1"}
APP_SECRET = "bad-input-app-secret"
WA_PHONE_ID = "106540352240000"
MAIL_MAX_BYTES = 300_000
MAIL_MAX_ATTACHMENT_BYTES = 50_000


@dataclass
class Service:
    rt: Runtime
    client: TestClient[Any, Any]
    amqp: aio_pika.abc.AbstractConnection
    smtp_port: int | None

    async def good_contact_still_routes(self) -> None:
        """The point of the whole corpus: after all that, a good contact is routed as usual."""
        assert (await self.client.get("/healthz")).status == 200
        ready = await self.client.get("/readyz")
        assert ready.status == 200, await ready.text()
        data = contact_json()
        resp = await self.client.post("/v1/contacts", json=data, headers=KEY)
        assert resp.status == 202, await resp.text()
        await wait_routed(self.rt, contact_id("ommen", "test", data["source"]["native_id"]))

    async def dead_letters(self, n: int, within: float = 10) -> list[aio_pika.abc.AbstractIncomingMessage]:
        out: list[aio_pika.abc.AbstractIncomingMessage] = []
        for _ in range(int(within / 0.1)):
            out += await drain(self.amqp, self.rt.names("router.dead"), settle=0.1)
            if len(out) >= n:
                break
        return out


@pytest.fixture
async def service(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> AsyncIterator[Service]:
    rt = await build(settings, with_router=True, embedded="never")
    await start(rt)
    for _ in range(100):
        if rt.router is not None and rt.router.ready:
            break
        await asyncio.sleep(0.05)
    adapter_settings = AdapterSettings(
        adapters_enabled="social,mail,webform,phone",
        webform_rate_limit=1000,
        meta_app_secret=APP_SECRET,  # type: ignore[arg-type]
        social_accounts=f"{WA_PHONE_ID}:ommen",
        mail_routes="info@ommen.nl:ommen",
        smtp_port=0,
        mail_max_bytes=MAIL_MAX_BYTES,
        mail_max_attachment_bytes=MAIL_MAX_ATTACHMENT_BYTES,
    )
    ctx = build_context(publisher=rt.publisher, tenants=rt.tenants, clock=rt.clock, settings=adapter_settings)
    await start_adapters(ctx)
    app = create_app(rt.api_context())
    app[ADAPTERS] = ctx
    add_routes(app)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    mail = ctx.adapters.get("mail")
    yield Service(rt, client, amqp, getattr(mail, "smtp_port", None))
    await client.close()
    await stop_adapters(ctx, within=5)
    await rt.close()


# --- HTTP: POST /v1/contacts and the agent routes -------------------------------------------------

GOOD = contact_json(native_id="corpus")


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


NUMBER_5000 = "number of 5000 digits"

# (name, body, expected status, text the error must contain)
COMMON: list[tuple[str, bytes, int, str]] = [
    ("malformed JSON", b'{"tenant": "ommen", ', 400, "malformed JSON"),
    ("empty body", b"", 400, "malformed JSON"),
    ("invalid UTF-8", b'{"tenant": "omm\xff\xfeen"}', 400, "not valid UTF-8 (byte 15)"),
    ("raw NUL byte", b'{"tenant": "om\x00men"}', 400, "malformed JSON: Invalid control character"),
    ("deeply nested JSON", nested(100_000), 400, "malformed JSON: nested too deeply"),
    (NUMBER_5000, b'{"size": 1' + b"0" * 5000 + b"}", 400, "malformed JSON: number too long"),
    ("oversized body", dumps({**GOOD, "body": "a" * 1_100_000}), 413, "body too large: limit is 1000000"),
    ("not an object", b"[1, 2]", 422, "expected a JSON object"),
]

CONTACT_ONLY: list[tuple[str, bytes, int, str]] = [
    ("wrong types", dumps({**GOOD, "tenant": 5, "attachments": "x"}), 422, "invalid contact"),
    ("unknown tenant", dumps({**GOOD, "tenant": "zwolle"}), 422, "unknown tenant"),
    ("escaped NUL in a name", dumps({**GOOD, "sender": {"name": "Jan\u0000"}}), 422, "NUL"),
    ("escaped NUL in a metadata key", dumps({**GOOD, "metadata": {"k\u0000": "v"}}), 422, "NUL"),
    ("NUL in the body", dumps({**GOOD, "body": "a\u0000b"}), 422, "NUL"),
    # A metadata key is the sender's word: the error names the entry by its position.
    ("deep nesting inside a field", dumps({**GOOD, "metadata": {"a": [[[[[[["x"]]]]]]]}}), 422, "entry 1"),
    ("id of another source", dumps({**GOOD, "id": str(uuid.uuid4())}), 422, "invalid contact"),
    ("unknown field", dumps({**GOOD, "bsn": "111222333"}), 422, "invalid contact"),
    (
        "too many attachments",
        dumps({**GOOD, "attachments": [{"filename": "a", "size": 1}] * 101}),
        422,
        "attach",
    ),
]

AGENT_ROUTES = [
    ("/v1/contacts/{id}/transfer", {"to_team": "kcc", "from_team": "burgerzaken", "note": "x"}),
    ("/v1/contacts/{id}/callback-requests", {"reason": "terugbellen"}),
    ("/v1/callback-requests/{id}-cb1/attempts", {"outcome": "no_answer"}),
    ("/v1/contacts/{id}/responses", {"kind": "respond"}),
    ("/v1/contacts/{id}/close", {"resolution": "beantwoord"}),
]


def error_of(status: int, text: str) -> str:
    """The error message of a JSON error body; fails on anything else."""
    body = json.loads(text)
    assert isinstance(body, dict) and isinstance(body.get("error"), str), text
    return json.dumps(body)


async def test_contact_submission_corpus(service: Service) -> None:
    for name, body, status, says in COMMON + CONTACT_ONLY:
        resp = await service.client.post(
            "/v1/contacts", data=body, headers={**KEY, "Content-Type": "application/json"}
        )
        text = await resp.text()
        assert resp.status == status, f"{name}: {resp.status} {text[:300]}"
        assert resp.content_type == "application/json", name
        assert says in error_of(resp.status, text), f"{name}: {text[:300]}"
    await service.good_contact_still_routes()


async def test_contact_submission_field_errors_name_each_field(service: Service) -> None:
    resp = await service.client.post(
        "/v1/contacts", json={**GOOD, "tenant": 5, "attachments": "x"}, headers=KEY
    )
    fields = {f["field"] for f in (await resp.json())["fields"]}
    assert {"tenant", "attachments"} <= fields
    resp = await service.client.post("/v1/contacts", json={**GOOD, "tenant": "zwolle"}, headers=KEY)
    assert (await resp.json())["fields"] == [{"field": "tenant", "message": "no rules for tenant 'zwolle'"}]


async def test_agent_routes_corpus(service: Service) -> None:
    cid = str(uuid.uuid4())
    for route, good in AGENT_ROUTES:
        path = route.format(id=cid)
        cases = [
            *COMMON,
            ("wrong types", dumps(dict.fromkeys(good, 5)), 422, "invalid request"),
            ("unknown field", dumps({**good, "bsn": "111222333"}), 422, "invalid request"),
            ("escaped NUL", dumps({**good, "note": "a\u0000b"}), 422, "NUL"),
            ("unknown contact", dumps(good), 404, "no"),
        ]
        for name, body, status, says in cases:
            resp = await service.client.post(
                path, data=body, headers={**KEY, "Content-Type": "application/json"}
            )
            text = await resp.text()
            assert resp.status == status, f"{path} {name}: {resp.status} {text[:300]}"
            assert says in error_of(resp.status, text), f"{path} {name}: {text[:300]}"
    resp = await service.client.get("/v1/tenants/ommen/teams/kcc/items?limit=abc", headers=KEY)
    assert resp.status == 422 and "limit" in await resp.text()
    resp = await service.client.get(f"/v1/tenants/ommen/teams/kcc/items?limit=1{'0' * 5000}", headers=KEY)
    assert resp.status == 422
    await service.good_contact_still_routes()


async def test_oversized_chunked_body_without_length_is_413(service: Service) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield b" " * 100_000

    for path in ("/v1/contacts", f"/v1/contacts/{uuid.uuid4()}/close"):
        resp = await service.client.post(
            path, data=chunks(), headers={**KEY, "Content-Type": "application/json"}
        )
        assert resp.status == 413
        assert "body too large: limit is 1000000 bytes" in await resp.text()
    await service.good_contact_still_routes()


async def test_huge_headers_and_url_get_a_4xx_naming_the_problem(service: Service) -> None:
    post, get = service.client.post, service.client.get
    many = {f"X-H{i}": "a" for i in range(200)}
    cases: list[tuple[str, Callable[[], Any], str]] = [
        (
            "huge header",
            lambda: post("/v1/contacts", json=GOOD, headers={**KEY, "X-Big": "a" * 20_000}),
            "8190",
        ),
        (
            "many headers",
            lambda: post("/v1/contacts", json=GOOD, headers={**KEY, **many}),
            "Too many headers",
        ),
        ("huge URL", lambda: get("/v1/contacts/" + "a" * 10_000, headers=KEY), "8190 bytes"),
        ("huge API key", lambda: get("/v1/contacts/x", headers={"X-API-Key": "k" * 9000}), "8190 bytes"),
    ]
    for name, call, says in cases:
        resp = await call()
        text = await resp.text()
        assert 400 <= resp.status < 500, f"{name}: {resp.status}"
        assert says in text, f"{name}: {text[:200]}"
    assert (await service.client.get("/v1/contacts/x", headers={"X-API-Key": "wrong"})).status == 401
    await service.good_contact_still_routes()


# --- The adapters' own HTTP routes ----------------------------------------------------------------

ADAPTER_ROUTES = ("/v1/channels/webform/ommen", "/v1/channels/phone/ommen/notes")


async def test_adapter_routes_corpus(service: Service) -> None:
    """Every bad body gets a 4xx with an error, and none of them is published: read from a tap on
    exchange `contacts` opened first (tests/backends.py `contacts_tap`; router.contacts is emptied by
    the running router), with one valid web-form submission as the tap's positive control."""
    async with contacts_tap(service.amqp, service.rt.names) as tap:
        for path in ADAPTER_ROUTES:
            for name, body, _status, _says in COMMON:
                if name == NUMBER_5000:
                    continue  # see the test below
                resp = await service.client.post(
                    path, data=body, headers={**KEY, "Content-Type": "application/json"}
                )
                text = await resp.text()
                assert resp.status < 500, f"{path} {name}: {resp.status} {text[:300]}"
                assert 400 <= resp.status < 500 and "error" in json.loads(text), (
                    f"{path} {name}: {text[:300]}"
                )
            resp = await service.client.post("/v1/channels/webform/zwolle", json={}, headers=KEY)
            assert resp.status == 404 and "unknown tenant 'zwolle'" in await resp.text()
        assert await tap.take() == []
        # The control: a valid submission on the same route is published, and the tap sees it.
        resp = await service.client.post(ADAPTER_ROUTES[0], json={"message": "Mijn paspoort is verlopen."})
        assert resp.status == 202, await resp.text()
        assert [m.routing_key for m in await tap.take()] == ["ommen.webform"]
    await service.good_contact_still_routes()


async def test_adapter_routes_answer_an_overlong_number_with_a_4xx(service: Service) -> None:
    raw = b'{"object": 1' + b"0" * 5000 + b"}"
    statuses = []
    for path in ADAPTER_ROUTES:
        resp = await service.client.post(path, data=raw, headers={**KEY, "Content-Type": "application/json"})
        statuses.append(resp.status)
    resp = await service.client.post(SOCIAL, data=raw, headers={"X-Hub-Signature-256": sign(raw)})
    statuses.append(resp.status)
    assert all(s < 500 for s in statuses), statuses


# --- The social webhook: forged and replayed ------------------------------------------------------

SOCIAL = "/v1/channels/social/ommen/webhook"


def sign(raw: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def whatsapp(mid: str, text: str) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "31612345678", "phone_number_id": WA_PHONE_ID},
        "contacts": [{"profile": {"name": "Kees de Vries"}, "wa_id": "31687654321"}],
        "messages": [
            {
                "from": "31687654321",
                "id": mid,
                "timestamp": "1778659200",
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(payload).encode()


async def test_forged_webhooks_are_refused_and_publish_nothing(service: Service) -> None:
    """Pins adapters/social/adapter.py `SocialAdapter.receive`: `if not signature_valid(secret, raw,
    request.headers.get("X-Hub-Signature-256")):` answering 401 before `submit_or_error`. "Nothing was
    published" is read from a tap on exchange `contacts` opened before the posts (tests/backends.py
    `contacts_tap`), not from router.contacts, which the running router empties; the same payload
    signed is the tap's positive control."""
    raw = whatsapp(f"wamid.{uuid.uuid4().hex}", "Wanneer wordt het afval opgehaald?")
    async with contacts_tap(service.amqp, service.rt.names) as tap:
        for name, signature in (
            ("signed with another secret", sign(raw, "not-the-secret")),
            ("signature of another body", sign(raw + b" ")),
            ("garbage signature", "sha256=zz"),
            ("no signature", None),
        ):
            headers = {"Content-Type": "application/json"}
            if signature is not None:
                headers["X-Hub-Signature-256"] = signature
            resp = await service.client.post(SOCIAL, data=raw, headers=headers)
            assert resp.status == 401, name
            assert "X-Hub-Signature-256" in (await resp.json())["error"], name
        resp = await service.client.post(
            "/v1/channels/social/zwolle/webhook", data=raw, headers={"X-Hub-Signature-256": sign(raw)}
        )
        assert resp.status == 404 and "unknown tenant 'zwolle'" in await resp.text()
        assert await tap.take(settle=0.5) == []
        # The control: signed, the same payload is published, and the tap sees it.
        resp = await service.client.post(SOCIAL, data=raw, headers={"X-Hub-Signature-256": sign(raw)})
        assert resp.status == 200, await resp.text()
        assert [m.routing_key for m in await tap.take()] == ["ommen.social"]
    await service.good_contact_still_routes()


async def test_replayed_webhook_routes_once(service: Service) -> None:
    mid = f"wamid.{uuid.uuid4().hex}"
    raw = whatsapp(mid, "Mijn paspoort is verlopen.")
    ids = []
    for _ in range(3):  # Meta retries; an attacker may replay a captured request: same outcome
        resp = await service.client.post(SOCIAL, data=raw, headers={"X-Hub-Signature-256": sign(raw)})
        assert resp.status == 200
        ids.append([c["id"] for c in (await resp.json())["contacts"]])
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 1
    fields = await wait_routed(service.rt, ids[0][0])
    await asyncio.sleep(0.5)
    items = await drain(service.amqp, service.rt.names.team_queue("ommen", fields["team"]))
    assert [m.message_id for m in items] == ids[0]


async def test_signed_but_broken_webhooks_are_dead_lettered_with_a_reason(service: Service) -> None:
    corpus = [
        (b'{"object": "whatsapp_business_account", ', "malformed webhook JSON"),
        (nested(50_000), "malformed webhook JSON"),
        (b'{"object": "whatsapp_business_account", "entry": "x"}', "unexpected webhook payload"),
    ]
    for raw, _ in corpus:
        resp = await service.client.post(SOCIAL, data=raw, headers={"X-Hub-Signature-256": sign(raw)})
        assert resp.status == 200, (resp.status, await resp.text())  # taken: Meta must not retry it
        assert "dead_lettered" in await resp.json()
    dead = await service.dead_letters(3)
    reasons = {m.body: str((m.headers or {})[H_DEAD_REASON]) for m in dead}
    for raw, says in corpus:
        assert reasons[raw].startswith(says), reasons.get(raw)
    big = b'{"pad": "' + b"a" * 1_100_000 + b'"}'
    resp = await service.client.post(SOCIAL, data=big, headers={"X-Hub-Signature-256": sign(big)})
    assert resp.status == 413 and "body too large" in await resp.text()
    await service.good_contact_still_routes()


# --- Mail with huge attachments over SMTP ---------------------------------------------------------


def mail_with(attachment: bytes, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Inwoner <inwoner@example.nl>"
    msg["To"] = "info@ommen.nl"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.nl>"
    msg.set_content("Zie de bijlage.")
    msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="scan.pdf")
    return msg


def send(port: int, msg: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(msg)


async def test_mail_over_the_size_limit_is_refused_at_smtp_and_a_big_attachment_is_listed_only(
    service: Service,
) -> None:
    assert service.smtp_port is not None, "the mail adapter did not start its SMTP server"
    too_big = mail_with(b"%PDF" + b"\x00" * MAIL_MAX_BYTES, "Te groot")
    with pytest.raises(
        (smtplib.SMTPDataError, smtplib.SMTPSenderRefused, smtplib.SMTPServerDisconnected)
    ) as info:
        await asyncio.to_thread(send, service.smtp_port, too_big)
    if isinstance(info.value, (smtplib.SMTPDataError, smtplib.SMTPSenderRefused)):
        assert info.value.smtp_code == 552

    big = mail_with(b"%PDF" + b"\x01" * (MAIL_MAX_ATTACHMENT_BYTES * 2), "Paspoort verlopen")
    await asyncio.to_thread(send, service.smtp_port, big)
    for _ in range(200):
        items = await drain(service.amqp, service.rt.names.team_queue("ommen", "burgerzaken"), settle=0.1)
        if items:
            break
    assert len(items) == 1
    contact = json.loads(items[0].body)["contact"]
    # The router never carries attachment content: name, type and size only.
    [attachment] = contact["attachments"]
    assert attachment["filename"] == "scan.pdf" and attachment["size"] > MAIL_MAX_ATTACHMENT_BYTES
    assert len(items[0].body) < 20_000
    await service.good_contact_still_routes()


# --- Raw AMQP messages to exchange `contacts` -----------------------------------------------------

# (name, routing key, body, start of the dead-letter reason)
RAW: list[tuple[str, str, bytes, str]] = [
    ("malformed JSON", "ommen.mail", b'{"tenant": "ommen", ', "malformed JSON"),
    ("empty body", "ommen.mail", b"", "malformed JSON"),
    ("not an object", "ommen.mail", b"[1, 2]", "invalid contact"),
    ("wrong types", "ommen.mail", dumps({**contact_json(), "tenant": 5}), "invalid contact: tenant"),
    ("unknown tenant", "zwolle.mail", dumps(contact_json(tenant="zwolle")), "unknown tenant: no rules"),
    ("oversized", "ommen.mail", dumps({**contact_json(), "body": "a" * 1_100_000}), "body too large"),
    ("invalid UTF-8", "ommen.mail", b'{"tenant": "omm\xff\xfeen"}', "malformed JSON"),
    ("raw NUL byte", "ommen.mail", b'{"tenant": "om\x00men"}', "malformed JSON"),
    ("NUL in the body", "ommen.mail", dumps(contact_json(body="a\u0000b")), "invalid contact"),
    ("deeply nested", "ommen.mail", nested(100_000), "malformed JSON"),
    ("number of 5000 digits", "ommen.mail", b'{"tenant": 1' + b"0" * 5000 + b"}", "malformed JSON"),
]


async def test_raw_amqp_corpus_is_dead_lettered_with_reasons_and_routing_goes_on(
    service: Service,
) -> None:
    names = service.rt.names
    channel = await service.amqp.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(names("contacts"))
    ids = {}
    for name, key, body, _ in RAW:
        mid = str(uuid.uuid4())
        ids[mid] = name
        await exchange.publish(aio_pika.Message(body, message_id=mid), routing_key=key)
    # A valid contact with an enormous header table: routed as usual, the headers stay behind.
    good = contact_json()
    await exchange.publish(
        aio_pika.Message(
            dumps(good), message_id=str(uuid.uuid4()), headers={f"x-h{i}": "a" * 500 for i in range(100)}
        ),
        routing_key="ommen.mail",
    )
    await channel.close()

    dead = await service.dead_letters(len(RAW))
    by_name = {ids[m.message_id or ""]: m for m in dead}
    assert set(by_name) == {name for name, *_ in RAW}
    for name, key, body, says in RAW:
        message = by_name[name]
        headers = message.headers or {}
        assert str(headers[H_DEAD_REASON]).startswith(says), f"{name}: {headers[H_DEAD_REASON]}"
        assert headers["x-original-routing-key"] == key
        assert message.body == body, f"{name}: the dead letter must carry the body unchanged"
    fields = await wait_routed(service.rt, contact_id("ommen", "test", good["source"]["native_id"]))
    [item] = await drain(service.amqp, names.team_queue("ommen", fields["team"]))
    assert not any(k.startswith("x-h") for k in (item.headers or {}))
    assert service.rt.router is not None and service.rt.router.ready
    await service.good_contact_still_routes()


def test_corpus_names_are_unique() -> None:
    for corpus in (COMMON + CONTACT_ONLY, RAW):
        names = [c[0] for c in corpus]
        assert len(names) == len(set(names))


async def test_an_unexpected_error_is_a_500_whose_log_names_the_route_not_the_path(settings: Any) -> None:
    """What a caller typed into a path (here an e-mail address) stays out of the log of a 500."""
    import structlog

    from router.service import build

    rt = await build(settings, with_router=False, embedded="always")
    app = create_app(rt.api_context())

    async def broken(request: Any) -> Any:
        raise RuntimeError("a bug")

    app.router.add_get("/v1/broken/{who}", broken)
    try:
        async with TestClient(TestServer(app)) as client:
            with structlog.testing.capture_logs() as logged:
                resp = await client.get("/v1/broken/jan.jansen@example.nl")
            assert resp.status == 500
            assert await resp.json() == {"error": "internal error"}
    finally:
        await rt.close()
    [entry] = [e for e in logged if e["event"] == "unhandled_error"]
    assert entry["route"] == "/v1/broken/{who}"
    assert "jan.jansen" not in repr(logged)
