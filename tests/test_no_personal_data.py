"""Nothing personal leaves the record (issue 14, item 1).

Five values a resident may give — a BSN, an e-mail address, a phone number, a name and an IBAN — are
planted in every entry point and every error path of a real `contact-router serve` process (RabbitMQ,
Redis, the HTTP API with every adapter, the SMTP server, the router and the scheduler), and looked for
wherever they must never be:

- every line the process writes (stdout and stderr: structlog's events and the libraries' records,
  aiosmtpd, aiohttp, aio-pika and asyncio included; each line must also be JSON, which shows that the
  libraries' records went through the same pipeline);
- the header `x-dead-reason` of every dead letter, and what `contact-router dlq list` prints (table
  and `--json`);
- every message on the `events` exchange (a queue of the test's bound with `#`: body and routing key)
  and on the `escalations` exchange (each routed contact's deadline is made due, so that the scheduler
  escalates it);
- every Redis key name in the namespace (SCAN), the thread keys of Message-IDs and the web form's
  rate-limit buckets included.
- what `GET /metrics` answers after each case (issue 17: label values are ids and fixed classes).

Where personal data is expected, it is not looked for: the contact record (the values of the Redis
hash `contact:{<id>}` and of its history), the team-queue item, the dead letter's body, and the
acknowledgement mail to the resident (README, "Privacy").

CASES names each entry point and error path; each is one test, so a failure says which path leaked
what, and where. Between cases the test empties `router.dead`, so that `dlq list` shows that case's dead
letters only; it looks at the Redis keys the case added and the log lines it caused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import os
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from router.core import topology
from router.core.contact import contact_id
from router.redis.keys import Keys
from tests.conftest import AMQP_URL, REDIS_URL, ROOT, RULES, delete_namespace, new_namespace

# The planted values, and what is looked for (lower case: aiosmtpd upper-cases what it did not
# recognise; the phone number is normalised to E.164 by some entry points).
BSN = "111222333"  # passes the eleven-test: 9+8+7+12+10+8+9+6-3 = 66 = 6 * 11
EMAIL = "planted.mail@burger-voorbeeld.nl"
PHONE = "+31612345678"
NAME = "Fenna Oosterhuis"
IBAN = "NL91ABNA0417164300"
NEEDLES: dict[str, tuple[str, ...]] = {
    "BSN": (BSN,),
    "e-mail address": ("planted.mail", "burger-voorbeeld"),
    "phone number": ("612345678",),
    "name": ("oosterhuis",),
    "IBAN": ("nl91abna", "0417164300"),
}
ALL = f"{NAME}, BSN {BSN}, IBAN {IBAN}, tel. {PHONE}, mail {EMAIL}"

APP_SECRET = "planted-test-app-secret"
WA_PHONE_ID = "106540352242922"
API = {"X-API-Key": "secret-key"}
AGENT = {**API, "X-Agent-Id": "agent-7"}
SETTLE = 0.8  # seconds for the last log lines and events of a case
_ADDRESSES = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- the relay that takes the acknowledgements ---------------------------------------------------


class _Relay:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        return "250 OK"


# --- the service under test ------------------------------------------------------------------------


@dataclass
class Service:
    namespace: str
    env: dict[str, str]
    http: str
    smtp_port: int
    output: Path
    proc: subprocess.Popen[bytes]

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace)

    def name(self, base: str) -> str:
        return self.namespace + base

    def output_size(self) -> int:
        return self.output.stat().st_size

    def output_since(self, offset: int) -> str:
        with self.output.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")


TAPS = {
    "tests.events": (topology.EVENTS, "#"),
    "tests.escalations": (topology.ESCALATIONS, "#"),
    "tests.dead": (topology.DEAD, ""),
}


async def _bind_taps(namespace: str) -> None:
    """Queues of the test's own on `events`, `escalations` and `router.dead`, bound before any input."""
    conn = await aio_pika.connect(AMQP_URL)
    channel = await conn.channel()
    for queue, (exchange, key) in TAPS.items():
        q = await channel.declare_queue(namespace + queue, durable=False, auto_delete=False)
        await q.bind(namespace + exchange, routing_key=key)
    await conn.close()


async def _clean(namespace: str) -> None:
    conn = await aio_pika.connect(AMQP_URL)
    channel = await conn.channel()
    for queue in TAPS:
        await channel.queue_delete(namespace + queue)
    await delete_namespace(conn, namespace)
    await conn.close()
    client = aioredis.Redis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{namespace}*", count=1000):
        await client.delete(key)
    await client.aclose()


def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rules/ with Ommen's same-resident link off: every case sends contacts of the one planted resident
    on one topic, and each must stand alone to be escalated. Coevorden keeps the link (the case
    "one resident across channels" exercises it)."""
    rules = tmp_path_factory.mktemp("rules")
    for path in RULES.glob("*.yaml"):
        (rules / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    with (rules / "ommen.yaml").open("a", encoding="utf-8") as f:
        f.write("\nresidents:\n  link_open_same_category: false\n")
    return rules


@pytest.fixture(scope="module")
def service(servers: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    namespace = new_namespace()
    relay = Controller(_Relay(), hostname="127.0.0.1", port=free_port())
    relay.start()
    http_port, smtp_port = free_port(), free_port()
    env = {
        **os.environ,
        "AMQP_URL": AMQP_URL,
        "REDIS_URL": REDIS_URL,
        "NAMESPACE": namespace,
        "RULES_DIR": str(rules_dir(tmp_path_factory)),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(http_port),
        "API_KEYS": "integrator:secret-key",
        "KEY_SECRET": "planted-test-key-secret",
        # Every level: what the service and the libraries say below WARNING must be clean too.
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "json",
        "STARTUP_TIMEOUT": "30",
        "ADAPTERS_ENABLED": "mail,webform,social,phone",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "MAIL_ROUTES": "info@ommen.nl:ommen,@coevorden.nl:coevorden",
        "ACK_FROM": "ommen:noreply@ommen.nl",
        "SMTP_RELAY_HOST": "127.0.0.1",
        "SMTP_RELAY_PORT": str(relay.port),
        "META_APP_SECRET": APP_SECRET,
        "META_VERIFY_TOKEN": "planted-test-verify-token",
        "SOCIAL_ACCOUNTS": f"{WA_PHONE_ID}:ommen",
        "WEBFORM_RATE_LIMIT": "3",
        "WEBFORM_RATE_WINDOW_SECONDS": "3600",
        "WEBFORM_TRUST_FORWARDED": "true",
    }
    output = tmp_path_factory.mktemp("no-personal-data") / "serve.log"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "router.cli", "serve", "--embedded", "never"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    svc = Service(namespace, env, f"http://127.0.0.1:{http_port}", smtp_port, output, proc)
    try:
        _wait_ready(svc)
        asyncio.run(_bind_taps(namespace))
        yield svc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        relay.stop()
        asyncio.run(_clean(namespace))


def _wait_ready(svc: Service, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise AssertionError(f"serve exited: {svc.output_since(0)[-3000:]}")
        try:
            with urllib.request.urlopen(svc.http + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"serve not ready within {within}s: {svc.output_since(0)[-3000:]}")


# --- what a case does, and what it leaves ----------------------------------------------------------


@dataclass
class Expect:
    """What a case waits for before it looks: contacts to be processed (and escalated), dead letters."""

    processed: list[str] = field(default_factory=list)  # contact ids: committed (routed, merged, ...)
    escalate: list[str] = field(default_factory=list)  # contact ids whose deadlines are made due
    dead: int = 0
    # Values besides the five that must not show up in key names (a client address).
    also: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Probe:
    """One case's connections to the service: HTTP, SMTP, AMQP and Redis."""

    def __init__(
        self,
        svc: Service,
        http: aiohttp.ClientSession,
        amqp: aio_pika.abc.AbstractConnection,
        redis: aioredis.Redis,
    ):
        self.svc = svc
        self.http = http
        self.amqp = amqp
        self.redis = redis

    # -- input ------------------------------------------------------------------------------------

    async def request(
        self, method: str, path: str, expect: int | tuple[int, ...], **kw: Any
    ) -> dict[str, Any]:
        async with self.http.request(method, self.svc.http + path, **kw) as resp:
            text = await resp.text()
            wanted = expect if isinstance(expect, tuple) else (expect,)
            assert resp.status in wanted, f"{method} {path}: {resp.status} {text[:500]}"
            try:
                data: Any = json.loads(text)
            except ValueError:
                data = {"text": text}
            return data if isinstance(data, dict) else {"json": data}

    def client_address(self) -> dict[str, str]:
        """A web-form client address of its own (the rate limit is per address)."""
        return {"X-Forwarded-For": f"198.51.100.{next(_ADDRESSES)}"}

    async def smtp(self, action: Callable[[smtplib.SMTP], Any]) -> Any:
        def run() -> Any:
            with smtplib.SMTP("127.0.0.1", self.svc.smtp_port, timeout=15) as client:
                return action(client)

        return await asyncio.to_thread(run)

    async def publish(self, key: str, body: bytes, message_id: str | None = None) -> None:
        channel = await self.amqp.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(self.svc.name(topology.CONTACTS))
        message = aio_pika.Message(
            body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id or str(uuid.uuid4())
        )
        await exchange.publish(message, routing_key=key)
        await channel.close()

    async def routed_contact(self) -> tuple[str, str]:
        """A contact with the five values, submitted and routed: (id, team)."""
        answer = await self.request("POST", "/v1/contacts", 202, json=api_contact(), headers=API)
        cid = answer["id"]
        await self.wait_committed(cid)
        team = await self.redis.hget(self.svc.keys.contact(cid), "team")
        assert isinstance(team, bytes)
        return cid, team.decode()

    # -- waiting ----------------------------------------------------------------------------------

    async def wait_committed(self, cid: str, within: float = 20) -> None:
        key = self.svc.keys.contact(cid)
        for _ in range(int(within / 0.05)):
            if await self.redis.hget(key, "committed") == b"1":
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"contact {cid} was not processed within {within}s")

    async def escalate(self, cid: str, within: float = 20) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Make the contact's (and its callback requests') deadlines due now; the escalations."""
        due = self.svc.keys.timers()
        members = [m async for m, _ in self.redis.zscan_iter(due, match=f"{cid}*")]
        breaches = [m for m in members if m.endswith(b"|breach")]
        assert breaches, f"contact {cid} has no deadline to breach"
        await self.redis.zadd(due, dict.fromkeys(members, 0))
        got: list[aio_pika.abc.AbstractIncomingMessage] = []
        for _ in range(int(within / 0.1)):
            got += await self.take("tests.escalations", settle=0.0)
            if len([m for m in got if (m.headers or {}).get(topology.H_CONTACT_ID) == cid]) >= len(breaches):
                return got
            await asyncio.sleep(0.1)
        raise AssertionError(f"contact {cid}: {len(breaches)} escalation(s) expected, got {len(got)}")

    async def take(self, tap: str, settle: float = 0.3) -> list[aio_pika.abc.AbstractIncomingMessage]:
        channel = await self.amqp.channel()
        queue = await channel.get_queue(self.svc.name(tap), ensure=True)
        out = []
        idle = 0.0
        while True:
            message = await queue.get(no_ack=True, fail=False)
            if message is not None:
                out.append(message)
                idle = 0.0
                continue
            if idle >= settle:
                break
            await asyncio.sleep(0.05)
            idle += 0.05
        await channel.close()
        return out

    async def dead_letters(
        self, count: int, within: float = 20
    ) -> list[aio_pika.abc.AbstractIncomingMessage]:
        got: list[aio_pika.abc.AbstractIncomingMessage] = []
        for _ in range(int(within / 0.1)):
            got += await self.take("tests.dead", settle=0.0)
            if len(got) >= count:
                break
            await asyncio.sleep(0.1)
        got += await self.take("tests.dead", settle=0.3)
        assert len(got) == count, f"{count} dead letter(s) expected, got {len(got)}"
        return got

    # -- what is left -----------------------------------------------------------------------------

    async def key_names(self) -> set[bytes]:
        return {k async for k in self.redis.scan_iter(match=f"{self.svc.namespace}*", count=1000)}

    async def dlq_list(self) -> str:
        out = []
        for args in ((), ("--json",)):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "router.cli",
                "dlq",
                "list",
                *args,
                cwd=ROOT,
                env={**self.svc.env, "LOG_LEVEL": "info"},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            text, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, text.decode()
            out.append(text.decode())
        return "\n".join(out)

    async def empty_dead_queue(self) -> None:
        channel = await self.amqp.channel()
        queue = await channel.get_queue(self.svc.name(topology.DEAD), ensure=True)
        await queue.purge()
        await channel.close()


@asynccontextmanager
async def probe_for(svc: Service) -> AsyncIterator[Probe]:
    amqp = await aio_pika.connect(AMQP_URL)
    client = aioredis.Redis.from_url(REDIS_URL)
    async with aiohttp.ClientSession() as http:
        try:
            yield Probe(svc, http, amqp, client)
        finally:
            await amqp.close()
            await client.aclose()


# --- input with the planted values -----------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def api_contact(**patch: Any) -> dict[str, Any]:
    contact: dict[str, Any] = {
        "tenant": "ommen",
        "channel": "mail",
        "received_at": now_iso(),
        "source": {"adapter": "test", "native_id": uuid.uuid4().hex},
        "sender": {"name": NAME, "email": EMAIL, "phone": PHONE},
        "subject": f"Paspoort aanvragen, BSN {BSN}",
        "body": f"Graag terugbellen. {ALL}",
        "metadata": {"kenmerk": ALL[:2000]},
    }
    contact.update(patch)
    return contact


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def sign(raw: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def whatsapp(message: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    mid = f"wamid.{uuid.uuid4().hex}"
    text = {"from": "31612345678", "id": mid, "timestamp": "1778659200", "type": "text"}
    message = message or {**text, "text": {"body": f"Mijn BSN is {BSN}. {ALL}"}}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "3152912345",
                                "phone_number_id": WA_PHONE_ID,
                            },
                            "contacts": [{"profile": {"name": NAME}, "wa_id": "31612345678"}],
                            "messages": [message],
                        },
                    }
                ],
            }
        ],
        **top,
    }


def resident_mail(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"{NAME} <{EMAIL}>"
    msg["To"] = "info@ommen.nl"
    msg["Subject"] = f"Vraag over mijn aanslag, BSN {BSN}"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}.{BSN}.{EMAIL}>"
    for name, value in headers.items():
        del msg[name]
        msg[name] = value
    msg.set_content(f"Goedemiddag,\n\n{ALL}\n\nMet vriendelijke groet,\n{NAME}\n")
    return msg


def mail_id(msg: EmailMessage) -> str:
    return contact_id("ommen", "mail", str(msg["Message-ID"]))


# --- the cases: every entry point and error path ---------------------------------------------------


async def api_valid(p: Probe) -> Expect:
    answer = await p.request("POST", "/v1/contacts", 202, json=api_contact(), headers=API)
    return Expect(processed=[answer["id"]], escalate=[answer["id"]])


async def same_resident(p: Probe) -> Expect:
    """Issue 19: the planted resident mails Coevorden, then calls about the same topic: the phone note
    (their address and number, a note full of the values) joins the open mail."""
    first = await p.request("POST", "/v1/contacts", 202, json=api_contact(tenant="coevorden"), headers=API)
    await p.wait_committed(first["id"])
    note = api_contact(
        tenant="coevorden",
        channel="phone",
        subject=f"Paspoort, {NAME}",
        metadata={"phone.outcome": "answered", "phone.agent": "kcc-1", "phone.note": ALL},
    )
    second = await p.request("POST", "/v1/contacts", 202, json=note, headers=API)
    await p.wait_committed(second["id"])
    merged = await p.redis.hget(p.svc.keys.contact(second["id"]), "merged_into")
    assert merged == first["id"].encode()
    return Expect(processed=[first["id"], second["id"]], escalate=[first["id"]])


async def api_invalid_fields(p: Probe) -> Expect:
    bad = api_contact(
        tenant=NAME,
        channel=IBAN,
        language=BSN,
        received_at=f"{BSN}T{PHONE}",
        sender={"name": NAME * 60, "email": f"{EMAIL}@{EMAIL}", "phone": PHONE * 5},
        category=EMAIL,
    )
    await p.request("POST", "/v1/contacts", 422, json=bad, headers=API)
    return Expect()


async def api_invalid_metadata_keys(p: Probe) -> Expect:
    metadata = {BSN: "x" * 2001, EMAIL: {"nested": PHONE}, NAME * 10: "v", IBAN: [IBAN]}
    await p.request("POST", "/v1/contacts", 422, json=api_contact(metadata=metadata), headers=API)
    # keys of the sender's that are not in the schema, at the top and inside `sender`
    extra = api_contact(**{BSN: IBAN, EMAIL: NAME}, sender={"name": NAME, PHONE: EMAIL})
    await p.request("POST", "/v1/contacts", 422, json=extra, headers=API)
    # a NUL character in a metadata key and in a value
    nul = api_contact(metadata={f"{EMAIL}\u0000": "v", "k": f"{IBAN}\u0000"})
    await p.request("POST", "/v1/contacts", 422, json=nul, headers=API)
    return Expect()


async def api_too_large(p: Probe) -> Expect:
    big = dumps(api_contact(body=ALL * 12_000))
    await p.request(
        "POST", "/v1/contacts", 413, data=big, headers={**API, "Content-Type": "application/json"}
    )
    return Expect()


async def api_wrong_types(p: Probe) -> Expect:
    wrong = api_contact(tenant=int(BSN), sender=EMAIL, metadata=[NAME, IBAN], attachments=PHONE)
    await p.request("POST", "/v1/contacts", 422, json=wrong, headers=API)
    malformed = f'{{"tenant": "ommen", "body": "{ALL}", "{EMAIL}": {BSN}'.encode()
    headers = {**API, "Content-Type": "application/json"}
    await p.request("POST", "/v1/contacts", 400, data=malformed, headers=headers)
    await p.request("POST", "/v1/contacts", 422, json=[ALL], headers=API)
    return Expect()


async def api_paths_and_queries(p: Probe) -> Expect:
    # What aiohttp's access log and error pages would show: paths and query strings of the sender's.
    await p.request("GET", f"/v1/contacts/{EMAIL}", 404, params={"bsn": BSN, "iban": IBAN}, headers=API)
    await p.request("POST", f"/v1/{NAME}/{PHONE}", (404, 405), data=ALL.encode())
    await p.request("GET", f"/v1/tenants/ommen/teams/{BSN}/items", (403, 404), headers=API)
    return Expect()


def webform_fields(**patch: str) -> dict[str, str]:
    return {
        "name": NAME,
        "email": EMAIL,
        "phone": "06-12345678",
        "subject": f"Vraag over mijn BSN {BSN}",
        "message": f"Beste gemeente, {ALL}",
        **patch,
    }


async def webform_valid(p: Probe) -> Expect:
    url = "/v1/channels/webform/ommen"
    first = await p.request("POST", url, 202, json=webform_fields(), headers=p.client_address())
    second = await p.request("POST", url, 202, data=webform_fields(), headers=p.client_address())
    ids = [first["id"], second["id"]]
    return Expect(processed=ids, escalate=ids)


async def webform_invalid(p: Probe) -> Expect:
    url = "/v1/channels/webform/ommen"
    bad = webform_fields(email=f"{EMAIL}@", phone=f"{PHONE}{BSN}", form=NAME, submission_id=EMAIL)
    await p.request("POST", url, 422, json={**bad, BSN: IBAN}, headers=p.client_address())
    repeated = f"{EMAIL}={BSN}&{EMAIL}={IBAN}&message={NAME}".encode()
    form = {"Content-Type": "application/x-www-form-urlencoded", **p.client_address()}
    await p.request("POST", url, 422, data=repeated, headers=form)
    await p.request(
        "POST",
        url,
        400,
        data=b'{"message": "' + ALL.encode(),
        headers={"Content-Type": "application/json", **p.client_address()},
    )
    # The honeypot filled: a normal-looking answer, nothing published.
    await p.request("POST", url, 202, json=webform_fields(website=EMAIL), headers=p.client_address())
    return Expect()


async def webform_rate_limited(p: Probe) -> Expect:
    # The client address is personal data too: the bucket's key holds a keyed hash of it.
    address = "203.0.113.77"
    headers = {"X-Forwarded-For": f"{address}, 10.0.0.1"}
    url = "/v1/channels/webform/ommen"
    ids = [
        (await p.request("POST", url, 202, json=webform_fields(), headers=headers))["id"] for _ in range(3)
    ]
    await p.request("POST", url, 429, json=webform_fields(), headers=headers)
    return Expect(processed=ids, also={"client address": (address,)})


def phone_note(**patch: Any) -> dict[str, Any]:
    return {
        "topic": f"Terugbellen over BSN {BSN}",
        "note": f"Beller vraagt naar de aanslag. {ALL}",
        "agent": "agent-7",
        "outcome": "colleague_unavailable",
        "to_team": "belastingen",
        "caller_name": NAME,
        "phone": PHONE,
        "call_id": f"call-{uuid.uuid4().hex}",
        **patch,
    }


async def phone_valid(p: Probe) -> Expect:
    url = "/v1/channels/phone/ommen/notes"
    answer = await p.request("POST", url, 202, json=phone_note(), headers=API)
    transferred = await p.request(
        "POST", url, 202, json=phone_note(outcome="transferred", to_team="burgerzaken"), headers=API
    )
    answered = await p.request(
        "POST", url, 202, json=phone_note(outcome="answered", to_team=None), headers=API
    )
    # The callback request's deadline escalates (a phone note has no deadline of its own).
    return Expect(processed=[answer["id"], transferred["id"], answered["id"]], escalate=[answer["id"]])


async def phone_invalid(p: Probe) -> Expect:
    url = "/v1/channels/phone/ommen/notes"
    bad = phone_note(outcome=NAME, to_team=EMAIL, phone=f"{IBAN}", called_at=BSN, call_id=EMAIL)
    await p.request("POST", url, 422, json={**bad, BSN: PHONE}, headers=API)
    await p.request("POST", url, 422, json=phone_note(to_team="parkeren"), headers=API)
    return Expect()


async def phone_agent_is_an_address(p: Probe) -> Expect:
    # The agent's id must be an id: an address is refused, or at least never travels in an event.
    url = "/v1/channels/phone/ommen/notes"
    note = phone_note(agent=EMAIL, outcome="transferred", to_team="burgerzaken")
    async with p.http.post(p.svc.http + url, json=note, headers=API) as resp:
        answer = await resp.json()
    if resp.status == 202:
        return Expect(processed=[answer["id"]])
    assert resp.status == 422, answer
    return Expect()


SOCIAL_URL = "/v1/channels/social/ommen/webhook"


async def social_post(p: Probe, raw: bytes, expect: int, signature: str | None = "sign") -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = sign(raw) if signature == "sign" else signature
    return await p.request("POST", SOCIAL_URL, expect, data=raw, headers=headers)


async def social_valid(p: Probe) -> Expect:
    answer = await social_post(p, dumps(whatsapp()), 200)
    [contact] = answer["contacts"]
    return Expect(processed=[contact["id"]], escalate=[contact["id"]])


async def social_unsigned_or_forged(p: Probe) -> Expect:
    raw = dumps(whatsapp())
    await social_post(p, raw, 401, signature=None)
    await social_post(p, raw, 401, signature=sign(raw, secret=EMAIL))
    await social_post(p, raw, 401, signature=f"sha256={BSN}{IBAN}")
    return Expect()


async def social_unknown_object(p: Probe) -> Expect:
    await social_post(p, dumps(whatsapp(object=f"{EMAIL} {BSN} {NAME}")), 200)
    return Expect(dead=1)


async def social_malformed(p: Probe) -> Expect:
    await social_post(p, f'{{"object": "page", "entry": [{{"text": "{ALL}"'.encode(), 200)
    # the shape Meta documents, a message without an id: positions are named, never values
    nameless = {"from": PHONE, "type": "text", "text": {"body": ALL}}
    await social_post(p, dumps(whatsapp(nameless)), 200)
    return Expect(dead=2)


async def mail_valid(p: Probe) -> Expect:
    msg = resident_mail()
    reply = await p.smtp(lambda c: c.send_message(msg, from_addr=EMAIL, to_addrs=["info@ommen.nl"]))
    assert reply == {}
    cid = mail_id(msg)
    await p.wait_committed(cid)
    # A reply to it joins it through the thread key of its Message-ID.
    answer = resident_mail(**{"In-Reply-To": str(msg["Message-ID"]), "Subject": f"Re: BSN {BSN}"})
    await p.smtp(lambda c: c.send_message(answer, from_addr=EMAIL, to_addrs=["info@ommen.nl"]))
    return Expect(processed=[cid, mail_id(answer)], escalate=[cid])


async def mail_malformed(p: Probe) -> Expect:
    # No header fields at all: refused before the answer to DATA (issue 15), with a fixed reason.
    raw = f"\r\n{ALL}\r\nGeen kopregels.\r\n".encode()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await p.smtp(lambda c: c.sendmail(EMAIL, ["info@ommen.nl"], raw))
    code, reply = refused.value.smtp_code, refused.value.smtp_error.decode()
    assert 500 <= code < 600, (code, reply)
    assert not [v for v in (EMAIL, BSN, NAME, IBAN, PHONE) if v in reply], reply
    # A From that is no address keeps the question (mail.sender_invalid) and is routed.
    odd = resident_mail(From=f"{NAME} <{EMAIL}@@{BSN}>")
    await p.smtp(lambda c: c.send_message(odd, from_addr=EMAIL, to_addrs=["info@ommen.nl"]))
    return Expect(processed=[mail_id(odd)])


async def mail_auto_submitted(p: Probe) -> Expect:
    msg = resident_mail(**{"Auto-Submitted": f"{EMAIL}; {BSN} {NAME}"})
    await p.smtp(lambda c: c.send_message(msg, from_addr=EMAIL, to_addrs=["info@ommen.nl"]))
    listed = resident_mail(**{"Precedence": "bulk", "List-Id": f"<{BSN}.{EMAIL}>"})
    await p.smtp(lambda c: c.send_message(listed, from_addr=EMAIL, to_addrs=["info@ommen.nl"]))
    # Both answered 250 and ignored (issue 15): no contact, no dead letter; the log names the header.
    return Expect()


async def mail_unknown_recipient(p: Probe) -> Expect:
    def session(client: smtplib.SMTP) -> list[tuple[int, bytes]]:
        client.ehlo(f"{BSN}.example")
        client.mail(EMAIL)
        refused = client.rcpt(EMAIL)
        # Lines aiosmtpd does not recognise: it logs `%r unrecognised: %s` with what was typed.
        bogus = [client.docmd(EMAIL, BSN), client.docmd(BSN, f"{IBAN} {NAME}"), client.docmd(IBAN)]
        return [refused, *bogus]

    answers = await p.smtp(session)
    assert answers[0][0] == 550 and all(code == 500 for code, _ in answers[1:]), answers
    return Expect()


def amqp_body(**patch: Any) -> bytes:
    return dumps({**api_contact(**patch), "source": {"adapter": "test", "native_id": uuid.uuid4().hex}})


async def amqp_malformed_json(p: Probe) -> Expect:
    await p.publish("ommen.mail", f'{{"tenant": "ommen", "body": "{ALL}", "{EMAIL}": '.encode())
    await p.publish("ommen.mail", ALL.encode())
    await p.publish("ommen.mail", dumps([EMAIL, BSN]))
    return Expect(dead=3)


async def amqp_unknown_tenant(p: Probe) -> Expect:
    await p.publish("zwolle.mail", amqp_body(tenant="zwolle"))
    # A tenant id that is a name (an identifier as the schema has it): the reason does not quote it.
    await p.publish("ommen.mail", amqp_body(tenant="oosterhuis"))
    return Expect(dead=2)


async def amqp_schema_errors(p: Probe) -> Expect:
    await p.publish("ommen.mail", amqp_body(channel=IBAN, language=BSN, sender={"email": f"{EMAIL}@"}))
    await p.publish("ommen.mail", amqp_body(**{BSN: IBAN}, sender={"name": NAME, EMAIL: PHONE}))
    await p.publish("ommen.mail", amqp_body(body=ALL * 60_000))  # too large
    return Expect(dead=3)


async def amqp_metadata_keys(p: Probe) -> Expect:
    # Refused: keys of the sender's with values that break the limits.
    await p.publish("ommen.mail", amqp_body(metadata={BSN: "x" * 2001, EMAIL: 5, NAME * 11: PHONE}))
    # Routed: keys of the sender's that are personal data, in a valid contact (the record keeps them).
    native = uuid.uuid4().hex
    body = dumps(
        {
            **api_contact(metadata={BSN: NAME, EMAIL: IBAN, PHONE: "x"}),
            "source": {"adapter": "test", "native_id": native},
        }
    )
    await p.publish("ommen.mail", body)
    cid = contact_id("ommen", "test", native)
    return Expect(dead=1, processed=[cid], escalate=[cid])


async def amqp_message_id_and_routing_key(p: Probe) -> Expect:
    # A publisher's own message id and routing key, chosen from the resident's data.
    await p.publish(f"{BSN}.mail", f'{{"body": "{NAME}"'.encode(), message_id=EMAIL)
    await p.publish(f"{EMAIL}.{NAME}", amqp_body(tenant="zwolle"), message_id=f"{IBAN}-{PHONE}")
    return Expect(dead=2)


async def agent_actions_with_notes(p: Probe) -> Expect:
    cid, team = await p.routed_contact()
    other = "kcc" if team != "kcc" else "burgerzaken"
    note = f"Warm overgedragen. {ALL}"
    await p.request(
        "POST",
        f"/v1/contacts/{cid}/transfer",
        200,
        json={"to_team": other, "from_team": team, "note": note},
        headers=AGENT,
    )
    callback = await p.request(
        "POST",
        f"/v1/contacts/{cid}/callback-requests",
        201,
        json={"reason": note, "phone": PHONE, "preferred_time": f"na 17:00, vraag naar {NAME}"},
        headers=AGENT,
    )
    await p.request(
        "POST",
        f"/v1/callback-requests/{callback['id']}/attempts",
        200,
        json={"outcome": "no_answer", "note": note},
        headers=AGENT,
    )
    await p.request(
        "POST", f"/v1/contacts/{cid}/responses", 200, json={"kind": "respond", "note": note}, headers=AGENT
    )
    return Expect(processed=[cid], escalate=[cid])


async def agent_id_is_an_address(p: Probe) -> Expect:
    cid, team = await p.routed_contact()
    other = "kcc" if team != "kcc" else "burgerzaken"
    body = {"to_team": other, "from_team": team, "note": "doorverbonden"}
    # The agent's id in the header, then in the body: an address is refused (422), or at least never
    # travels in an event.
    await p.request(
        "POST", f"/v1/contacts/{cid}/transfer", (200, 422), json=body, headers={**API, "X-Agent-Id": EMAIL}
    )
    await p.request(
        "POST",
        f"/v1/contacts/{cid}/close",
        (200, 409, 422),
        json={"resolution": "klaar", "agent": EMAIL},
        headers=API,
    )
    await p.request(
        "POST",
        f"/v1/contacts/{cid}/close",
        (200, 409, 422),
        json={"resolution": "klaar", "agent": NAME},
        headers=API,
    )
    return Expect(processed=[cid])


async def agent_bodies_that_fail_validation(p: Probe) -> Expect:
    cid, _ = await p.routed_contact()
    await p.request(
        "POST",
        f"/v1/contacts/{cid}/transfer",
        422,
        json={"to_team": NAME, "from_team": EMAIL, "note": ALL, BSN: IBAN},
        headers=AGENT,
    )
    await p.request(
        "POST",
        f"/v1/contacts/{cid}/callback-requests",
        422,
        json={"reason": "", "phone": f"{IBAN} {EMAIL}", "preferred_time": ALL * 10},
        headers=AGENT,
    )
    await p.request(
        "POST",
        f"/v1/callback-requests/{cid}-cb1/attempts",
        (404, 422),
        json={"outcome": BSN, "note": ALL},
        headers=AGENT,
    )
    await p.request(
        "POST", f"/v1/contacts/{EMAIL}/close", (404, 422), json={"resolution": ALL}, headers=AGENT
    )
    malformed = f'{{"to_team": "kcc", "note": "{ALL}"'.encode()
    await p.request(
        "POST",
        f"/v1/contacts/{cid}/transfer",
        400,
        data=malformed,
        headers={**AGENT, "Content-Type": "application/json"},
    )
    return Expect(processed=[cid])


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Probe], Awaitable[Expect]]


CASES = [
    Case("POST /v1/contacts: valid", api_valid),
    Case("one resident across channels: a phone note joins the open mail", same_resident),
    Case("POST /v1/contacts: invalid, the values in fields", api_invalid_fields),
    Case(
        "POST /v1/contacts: invalid, the values in metadata keys and unknown keys", api_invalid_metadata_keys
    ),
    Case("POST /v1/contacts: too large", api_too_large),
    Case("POST /v1/contacts: wrong types and malformed JSON", api_wrong_types),
    Case("HTTP: the values in paths and query strings", api_paths_and_queries),
    Case("web form: valid (JSON and form-encoded)", webform_valid),
    Case("web form: invalid, repeated fields, malformed, honeypot", webform_invalid),
    Case("web form: rate-limited", webform_rate_limited),
    Case("phone notes: valid (callback, transfer, answered)", phone_valid),
    Case("phone notes: invalid", phone_invalid),
    Case("phone notes: the agent is an e-mail address", phone_agent_is_an_address),
    Case("social webhook: valid", social_valid),
    Case("social webhook: unsigned or forged", social_unsigned_or_forged),
    Case("social webhook: unknown object", social_unknown_object),
    Case("social webhook: malformed JSON and a message without an id", social_malformed),
    Case("mail over SMTP: valid, and a reply that joins it", mail_valid),
    Case("mail over SMTP: malformed (no headers; a From that is no address)", mail_malformed),
    Case("mail over SMTP: auto-submitted with a planted header, list mail", mail_auto_submitted),
    Case("mail over SMTP: unknown recipient, unrecognised commands", mail_unknown_recipient),
    Case("AMQP to contacts: malformed JSON", amqp_malformed_json),
    Case("AMQP to contacts: unknown tenant", amqp_unknown_tenant),
    Case("AMQP to contacts: schema errors with the values", amqp_schema_errors),
    Case("AMQP to contacts: the values as metadata keys", amqp_metadata_keys),
    Case("AMQP to contacts: the values as message id and routing key", amqp_message_id_and_routing_key),
    Case("agent actions: transfer, callback request, attempt, response with notes", agent_actions_with_notes),
    Case("agent actions: the agent id is an e-mail address or a name", agent_id_is_an_address),
    Case("agent actions: bodies that fail validation", agent_bodies_that_fail_validation),
]


# --- looking for the values ------------------------------------------------------------------------


def found_in(text: str, needles: dict[str, tuple[str, ...]]) -> list[str]:
    low = text.lower()
    return [what for what, forms in needles.items() if any(form.lower() in low for form in forms)]


def not_json(lines: str) -> list[str]:
    bad = []
    for line in lines.splitlines():
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError:
            bad.append(line[:300])
    return bad


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_nothing_personal_leaves_the_record(service: Service, case: Case) -> None:
    async with probe_for(service) as p:
        keys_before = await p.key_names()
        offset = service.output_size()
        expect = await case.run(p)
        dead = await p.dead_letters(expect.dead) if expect.dead else []
        for cid in expect.processed:
            await p.wait_committed(cid)
        escalations = []
        for cid in expect.escalate:
            escalations += await p.escalate(cid)
        await asyncio.sleep(SETTLE)
        listed = await p.dlq_list() if dead else ""
        await p.empty_dead_queue()
        events = await p.take("tests.events")
        escalations += await p.take("tests.escalations", settle=0.0)
        new_keys = await p.key_names() - keys_before
        metrics = (await p.request("GET", "/metrics", 200))["text"]
    output = service.output_since(offset)

    places: dict[str, list[str]] = {}

    def look(where: str, text: str, needles: dict[str, tuple[str, ...]] = NEEDLES) -> None:
        if hits := found_in(text, needles):
            places.setdefault(where, []).extend(f"{h}: {text[:400]!r}" for h in hits)

    for line in output.splitlines():
        look("log line", line)
    for message in dead:
        look("x-dead-reason", str((message.headers or {}).get(topology.H_DEAD_REASON, "")))
    look("dlq list", listed)
    for message in events:
        look("event", f"{message.routing_key} {message.body.decode('utf-8', 'replace')}")
    for message in escalations:
        look(
            "escalation", f"{message.routing_key} {message.headers} {message.body.decode('utf-8', 'replace')}"
        )
    for key in new_keys:
        look("Redis key name", key.decode("utf-8", "replace"), {**NEEDLES, **expect.also})
    look("/metrics", metrics, {**NEEDLES, **expect.also})

    assert not places, f"{case.name}: personal data left the record:\n" + json.dumps(places, indent=2)
    assert not not_json(output), f"{case.name}: lines that are not JSON: {not_json(output)}"
    assert service.proc.poll() is None, "serve died"
    # The checks looked at something: the lines of each processed contact were captured, and `dlq
    # list` listed each dead letter.
    for cid in expect.processed:
        assert cid in output, f"{case.name}: no log line of contact {cid}"
    if expect.processed:
        assert events and new_keys, f"{case.name}: no events or no keys were seen"
    if expect.dead:
        assert listed.count(" dead letter(s)") == 1 and f"{expect.dead} dead letter(s)" in listed, listed


# --- the log pipeline on its own: paths the service cannot be made to take on purpose --------------

_PLANTED_SCRIPT = f"""
import logging, threading
from pydantic import ValidationError
from router import logs
from router.core.contact import Contact, Hop

BSN, EMAIL, PHONE, NAME, IBAN = {BSN!r}, {EMAIL!r}, {PHONE!r}, {NAME!r}, {IBAN!r}
"""

CONFIGURED = (
    _PLANTED_SCRIPT
    + """
logs.configure("debug", "json")
log = logs.get("router.routing")
try:  # what prepare_failed logs: an exception raised while a contact is decided
    Hop(team="kcc", at="2026-05-13T10:00:00+02:00", agent=NAME * 100, **{EMAIL: IBAN})
except ValidationError:
    log.exception("prepare_failed", contact_id="c-1")
try:
    {}[EMAIL]
except KeyError as exc:
    log.error("router_session_failed", error=type(exc).__name__, exc_info=exc)
logging.getLogger("mail.log").warning("%r unrecognised: %s", ("127.0.0.1", 5), EMAIL.upper())
pika = logging.getLogger("aio_pika.robust_connection")
pika.warning('Connection attempt to "%s" failed: %s', "amqp://u:pw@h", IBAN)
logging.getLogger("asyncio").error(f"Exception in callback cb({BSN!r})\\nhandle: <Handle cb({BSN!r})>")
logging.getLogger("some.library").debug("%s called", NAME)
logging.getLogger("some.library").error(ValueError(PHONE))
def fail():
    raise ValueError(EMAIL)
thread = threading.Thread(target=fail, name="worker")
thread.start()
thread.join()
raise RuntimeError(f"uncaught, about {BSN}")
"""
)

UNCONFIGURED = (
    _PLANTED_SCRIPT
    + """
log = logs.get("an.integrators.service")
try:
    Contact.model_validate({"tenant": "ommen", BSN: NAME})
except ValidationError:
    log.exception("translate_failed")
logging.getLogger("mail.log").warning("%r unrecognised: %s", ("127.0.0.1", 5), EMAIL.upper())
"""
)


def run_script(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_tracebacks_and_library_records_carry_no_values() -> None:
    run = run_script(CONFIGURED)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-3000:]  # the uncaught exception ends the script
    assert not found_in(output, NEEDLES), output
    assert not not_json(output), not_json(output)
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]
    by_event = {e["event"]: e for e in entries}
    # The service's own exceptions: every frame and the types, never the message.
    failed = by_event["prepare_failed"]
    assert (
        failed["error"] == "ValidationError"
        and "pydantic_core._pydantic_core.ValidationError" in failed["exception"]
    )
    assert 'File "<string>"' in failed["exception"]
    assert by_event["router_session_failed"]["exception"].endswith("KeyError")
    # Library records: their template, never what it was formatted with.
    assert by_event["%r unrecognised: %s"]["logger"] == "mail.log"
    assert 'Connection attempt to "%s" failed: %s' in by_event
    assert "Exception in callback cb" in by_event  # asyncio formats its own text: cut at "("
    assert by_event["%s called"]["level"] == "debug"
    assert by_event["(ValueError logged)"]["logger"] == "some.library"
    # Uncaught exceptions, in the main thread and in another, go the same way.
    assert by_event["thread_exception"]["thread"] == "worker"
    assert by_event["uncaught_exception"]["error"] == "RuntimeError"


def test_a_process_that_never_configures_logs_writes_no_values_either() -> None:
    # An integrator's own service that imports the kit: structlog's default renderer would print every
    # frame's local variables (rich), and the standard library's fallback every argument.
    run = run_script(UNCONFIGURED)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert not found_in(output, NEEDLES), output
    assert "translate_failed" in output and "ValidationError" in output
    [library] = [json.loads(line) for line in run.stderr.splitlines() if '"mail.log"' in line]
    assert library["event"] == "%r unrecognised: %s" and library["level"] == "warning"
