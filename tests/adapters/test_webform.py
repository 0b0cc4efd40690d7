"""The web form over HTTP, with the real router behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email import message_from_bytes, policy

import structlog

from router.core.contact import contact_id
from router.redis.keys import Keys
from router.redis.ratelimit import RedisRateLimiter
from tests.adapters.conftest import ANSWER_DATE_OMMEN_MAIL, Stack

URL = "/v1/channels/webform/ommen"


async def test_three_invalid_fields_give_422_naming_each_and_nothing_is_published(stack: Stack) -> None:
    resp = await stack.client.post(URL, json={"email": "geen-adres", "phone": "12", "message": "  "})
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "invalid submission"
    assert sorted(f["field"] for f in body["fields"]) == ["email", "message", "phone"]
    assert all(f["message"] for f in body["fields"])
    assert stack.recorder.published == []


async def test_a_valid_form_answers_202_with_reference_and_answer_date_and_mails_an_acknowledgement(
    stack: Stack,
) -> None:
    resp = await stack.client.post(
        URL,
        json={
            "name": "Jan Jansen",
            "email": "jan@example.nl",
            "phone": "06-12 34 56 78",
            "subject": "Paspoort",
            "message": "Mijn paspoort is verlopen.",
            "submission_id": "site-123",
        },
    )
    assert resp.status == 202
    body = await resp.json()
    cid = contact_id("ommen", "webform", "site-123")
    assert body["id"] == cid and body["reference"].startswith("OMM-")
    assert body["expected_answer_by"] == "2026-05-21T17:00:00+02:00"
    assert body["expected_answer_text"] == ANSWER_DATE_OMMEN_MAIL
    assert body["reference"] in body["message"] and ANSWER_DATE_OMMEN_MAIL in body["message"]

    fields = await stack.wait_routed(cid)
    assert fields["team"] == "burgerzaken"
    [envelope] = await stack.team_messages("ommen", "burgerzaken")
    assert envelope["contact"]["sender"]["phone"] == "+31612345678"

    [ack] = await stack.sink.wait_for(1)
    assert ack.rcpt_tos == ["jan@example.nl"]
    mail = message_from_bytes(ack.content, policy=policy.default)
    assert body["reference"] in str(mail["Subject"])
    assert ANSWER_DATE_OMMEN_MAIL in mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert mail["Message-ID"] == envelope["contact"]["metadata"]["thread.ack_message_id"]


async def test_form_encoded_report_form_promises_the_date_the_router_sets(stack: Stack) -> None:
    resp = await stack.client.post(
        URL,
        data={"message": "De stoeptegel ligt los.", "form": "melding-openbare-ruimte", "website": ""},
    )
    assert resp.status == 202
    body = await resp.json()
    # Public-space report: within two workdays (Thursday 14 May is a holiday).
    assert body["expected_answer_text"] == "maandag 18 mei 2026"
    fields = await stack.wait_routed(body["id"])
    assert fields["team"] == "openbare_ruimte"
    [envelope] = await stack.team_messages("ommen", "openbare_ruimte")
    respond = [d for d in envelope["routing"]["deadlines"] if d["kind"] == "respond"]
    assert respond[0]["due"] == body["expected_answer_by"]
    assert stack.sink.messages == []  # no address, no acknowledgement


async def test_a_filled_honeypot_looks_accepted_but_nothing_is_published(stack: Stack) -> None:
    with structlog.testing.capture_logs() as logs:
        resp = await stack.client.post(
            URL, json={"message": "Buy cheap pills", "email": "bot@example.com", "website": "http://spam"}
        )
    assert resp.status == 202
    body = await resp.json()
    assert set(body) == {
        "id",
        "reference",
        "status",
        "expected_answer_by",
        "expected_answer_text",
        "message",
        "status_url",
    }
    assert stack.recorder.published == []
    assert [e["event"] for e in logs if e["event"].startswith("webform_")] == ["webform_honeypot"]
    assert "bot@example.com" not in repr(logs)
    await stack.ctx.drain(1)
    assert stack.sink.messages == []


async def test_rate_limit_per_address_answers_429_with_retry_after(stack: Stack) -> None:
    stack.ctx.rate_limiter = RedisRateLimiter(
        stack.ctx.rate_limiter.client,  # type: ignore[attr-defined]
        Keys(stack.runtime.settings.namespace),
        capacity=2,
        window_seconds=3600,
    )
    statuses = []
    for i in range(3):
        resp = await stack.client.post(URL, json={"message": f"Vraag {i}"})
        statuses.append(resp.status)
    assert statuses == [202, 202, 429]
    assert int(resp.headers["Retry-After"]) > 0
    assert "too many submissions" in (await resp.json())["error"]
    # Another municipality's form has its own bucket.
    assert (
        await stack.client.post("/v1/channels/webform/coevorden", json={"message": "Vraag"})
    ).status == 202
    assert len(stack.recorder.published) == 3


async def test_one_address_gets_a_limited_number_of_acknowledgements_whoever_posts(stack: Stack) -> None:
    """Forms from many clients naming one address (nobody verified it): every contact is accepted and
    routed, but the address gets no more acknowledgements than the per-client limit allows."""
    stack.ctx.rate_limiter = RedisRateLimiter(
        stack.ctx.rate_limiter.client,  # type: ignore[attr-defined]
        Keys(stack.runtime.settings.namespace),
        capacity=2,
        window_seconds=3600,
    )
    stack.ctx.settings = stack.ctx.settings.model_copy(update={"webform_trust_forwarded": True})
    statuses = []
    for i in range(4):
        resp = await stack.client.post(
            URL,
            json={"email": f"Slachtoffer+{i}@example.nl", "message": f"Vraag {i}"},
            headers={"X-Forwarded-For": f"192.0.2.{i + 1}"},
        )
        statuses.append(resp.status)
    assert statuses == [202] * 4
    assert len(stack.recorder.published) == 4
    await stack.ctx.drain(4)
    assert len(stack.sink.messages) == 2
    # Another address has a bucket of its own.
    resp = await stack.client.post(
        URL, json={"email": "iemand@example.nl", "message": "Vraag"}, headers={"X-Forwarded-For": "192.0.2.9"}
    )
    assert resp.status == 202
    assert len(await stack.sink.wait_for(3)) == 3


async def test_the_same_submission_id_twice_is_one_contact(stack: Stack) -> None:
    for _ in range(2):
        resp = await stack.client.post(
            URL, json={"message": "De container is niet geleegd", "submission_id": "dup-7"}
        )
        assert resp.status == 202
    cid = contact_id("ommen", "webform", "dup-7")
    await stack.wait_routed(cid)
    assert [m["contact"]["id"] for m in await stack.team_messages("ommen", "openbare_ruimte")] == [cid]


async def test_bad_requests_get_clear_errors(stack: Stack) -> None:
    client = stack.client
    resp = await client.post("/v1/channels/webform/zwolle", json={"message": "x"})
    assert resp.status == 404 and "unknown tenant" in (await resp.json())["error"]
    resp = await client.post(URL, data=b"message=x", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await client.post(URL, json={"message": "x" * 70_000})
    assert resp.status == 413
    resp = await client.post(
        URL, data="message=a&message=b", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert resp.status == 422 and (await resp.json())["fields"] == [
        {"field": "message", "message": "given more than once"}
    ]
    resp = await client.post(URL, data=b"{nope", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "malformed JSON" in (await resp.json())["error"]
    # A key that is not in the schema is the sender's word, not quoted: the error names its object.
    resp = await client.post(URL, json={"message": "x", "unexpected": 1})
    unknown = "has a field that is not in the schema (extra fields are not permitted)"
    assert resp.status == 422 and (await resp.json())["fields"] == [{"field": "(body)", "message": unknown}]
    assert stack.recorder.published == []


async def test_a_chunked_body_over_the_limit_is_413_and_under_it_is_read_whole(stack: Stack) -> None:
    async def chunks(total: int) -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            piece = b"x" * min(10_000, total - sent)
            sent += len(piece)
            yield piece

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    resp = await stack.client.post(URL, data=chunks(70_000), headers=headers)
    assert resp.status == 413

    async def form() -> AsyncIterator[bytes]:
        yield b"message="
        for _ in range(5):
            yield b"a" * 1_900

    resp = await stack.client.post(URL, data=form(), headers=headers)
    assert resp.status == 202
    [contact] = stack.recorder.published
    assert len(contact.body) == 9_500
