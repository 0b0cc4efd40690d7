"""Meta webhooks: handshake, signatures, one contact per message, BSN masking and channel advice."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from adapters.social.meta import parse, signature_valid
from adapters.social.privacy import elfproef, mask_bsn
from router.core.contact import contact_id
from tests.adapters.conftest import APP_SECRET, VERIFY_TOKEN, WA_PHONE_ID_COEVORDEN, WA_PHONE_ID_OMMEN, Stack

URL = "/v1/channels/social/ommen/webhook"
# 111222333 passes the eleven-test: 9+8+7+12+10+8+9+6-3 = 66 = 6 * 11.
BSN = "111222333"


def sign(raw: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def whatsapp(
    *messages: dict[str, Any],
    statuses: list[dict[str, Any]] | None = None,
    account: str = WA_PHONE_ID_OMMEN,
) -> dict[str, Any]:
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
                                "display_phone_number": "31612345678",
                                "phone_number_id": account,
                            },
                            "contacts": [{"profile": {"name": "Kees de Vries"}, "wa_id": "31687654321"}],
                            "messages": list(messages),
                            **({"statuses": statuses} if statuses else {}),
                        },
                    }
                ],
            }
        ],
    }


def wa_text(mid: str, text: str) -> dict[str, Any]:
    return {
        "from": "31687654321",
        "id": mid,
        "timestamp": "1778659200",
        "type": "text",
        "text": {"body": text},
    }


async def post(stack: Stack, payload: dict[str, Any], *, signature: str | None = None, url: str = URL) -> Any:
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature or sign(raw)}
    return await stack.client.post(url, data=raw, headers=headers)


async def test_verification_handshake(stack: Stack) -> None:
    ok = await stack.client.get(
        URL, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    )
    assert ok.status == 200 and ok.content_type == "text/plain" and await ok.text() == "1158201444"
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
    ):
        assert (await stack.client.get(URL, params=params)).status == 403


@pytest.mark.parametrize("signature", ["sha256=" + "0" * 64, "sha1=abc", "", "garbage"])
async def test_a_bad_signature_is_401_and_nothing_is_published(stack: Stack, signature: str) -> None:
    payload = whatsapp(wa_text("wamid.bad", "Mijn paspoort is verlopen"))
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["X-Hub-Signature-256"] = signature
    resp = await stack.client.post(URL, data=raw, headers=headers)
    assert resp.status == 401
    # Signed with another secret: also refused.
    resp = await stack.client.post(URL, data=raw, headers={"X-Hub-Signature-256": sign(raw, "other-secret")})
    assert resp.status == 401
    assert stack.recorder.published == []


async def test_two_whatsapp_messages_give_two_contacts_and_a_redelivery_routes_once(stack: Stack) -> None:
    payload = whatsapp(
        wa_text("wamid.HBgLMzE2ODc2NTQzMjEVAgASGBQzQTk1", "Mijn paspoort is verlopen, wat moet ik doen?"),
        wa_text("wamid.HBgLMzE2ODc2NTQzMjEVAgASGBQzQTk2", "Wanneer wordt de container geleegd?"),
        statuses=[{"id": "wamid.out", "status": "delivered", "recipient_id": "31687654321"}],
    )
    resp = await post(stack, payload)
    assert resp.status == 200
    body = await resp.json()
    assert body["received"] == 2
    ids = [
        contact_id("ommen", "social", f"whatsapp:{m['id']}")
        for m in payload["entry"][0]["changes"][0]["value"]["messages"]
    ]
    assert [c["id"] for c in body["contacts"]] == ids
    assert (await stack.wait_routed(ids[0]))["team"] == "burgerzaken"
    assert (await stack.wait_routed(ids[1]))["team"] == "openbare_ruimte"

    # Meta re-delivers the same webhook: same contacts, routed once.
    assert (await post(stack, payload)).status == 200
    assert [m["contact"]["id"] for m in await stack.team_messages("ommen", "burgerzaken")] == [ids[0]]
    assert [m["contact"]["id"] for m in await stack.team_messages("ommen", "openbare_ruimte")] == [ids[1]]
    contact = stack.recorder.published[0]
    assert contact.sender is not None and contact.sender.phone == "+31687654321"
    assert contact.sender.name == "Kees de Vries" and contact.sender.handle == "whatsapp:31687654321"
    assert contact.metadata["social.platform"] == "whatsapp"
    assert contact.metadata["social.account_id"] == WA_PHONE_ID_OMMEN


async def test_the_account_written_to_decides_the_tenant_not_the_url(stack: Stack) -> None:
    """Pins adapters/social/adapter.py `SocialAdapter.tenant_for`:
    `return mapped if mapped is not None and mapped in ctx.tenants else url_tenant` (with the line
    before it, `mapped = ctx.settings.accounts.get(message.account_id)`). A message written to
    Coevorden's WhatsApp number is Coevorden's contact, also when Meta delivers it to Ommen's webhook
    URL (e.g. one Meta app, one callback URL, several numbers): it must never become a contact of
    Ommen. Taking the tenant from the URL (`return url_tenant`) makes the first post an Ommen contact."""
    # Two residents: one resident's second message on the same topic would join their first (issue 19).
    for url, mid, sender in (
        (URL, "wamid.coe-via-ommen", "31687654321"),
        ("/v1/channels/social/coevorden/webhook", "wamid.coe", "31687654322"),
    ):
        message = {**wa_text(mid, "Mijn paspoort is verlopen."), "from": sender}
        payload = whatsapp(message, account=WA_PHONE_ID_COEVORDEN)
        resp = await post(stack, payload, url=url)
        assert resp.status == 200, await resp.text()
        [answer] = (await resp.json())["contacts"]
        cid = contact_id("coevorden", "social", f"whatsapp:{mid}")
        assert answer["id"] == cid and answer["reference"].startswith("COE-"), (url, answer)
        assert answer["reference"] in answer["reply_text"]
        fields = await stack.wait_routed(cid)
        assert (fields["tenant"], fields["team"]) == ("coevorden", "burgerzaken"), url
    assert [c.tenant for c in stack.recorder.published] == ["coevorden", "coevorden"]
    assert [m["contact"]["id"] for m in await stack.team_messages("coevorden", "burgerzaken")] == [
        contact_id("coevorden", "social", "whatsapp:wamid.coe-via-ommen"),
        contact_id("coevorden", "social", "whatsapp:wamid.coe"),
    ]
    assert await stack.team_messages("ommen", "burgerzaken") == []
    # An account nobody configured: the URL's tenant is the fallback.
    resp = await post(stack, whatsapp(wa_text("wamid.unknown", "Paspoort verlopen"), account="999"))
    [answer] = (await resp.json())["contacts"]
    assert answer["id"] == contact_id("ommen", "social", "whatsapp:wamid.unknown")


async def test_status_callbacks_are_ignored(stack: Stack) -> None:
    payload = whatsapp(statuses=[{"id": "wamid.out", "status": "read", "recipient_id": "31687654321"}])
    resp = await post(stack, payload)
    assert resp.status == 200 and (await resp.json())["received"] == 0
    assert stack.recorder.published == []


async def test_a_bsn_is_masked_flagged_and_answered_with_the_secure_channel(stack: Stack) -> None:
    text = f"Mijn BSN is {BSN[:3]}.{BSN[3:6]}.{BSN[6:]}, kunt u mijn uitkering checken?"
    resp = await post(stack, whatsapp(wa_text("wamid.bsn", text)))
    body = await resp.json()
    [contact] = stack.recorder.published
    assert BSN not in contact.body and "111.222.333" not in contact.body
    assert contact.body == "Mijn BSN is *********, kunt u mijn uitkering checken?"
    assert contact.confidential is True
    assert contact.metadata["social.bsn_masked"] == "true"
    reply = contact.metadata["social.reply_text"]
    assert "burgerservicenummer" in reply and "14 0529" in reply and "https://www.ommen.nl/contact" in reply
    assert body["contacts"][0]["reply_text"] == reply
    # Nothing of the original reaches the router either.
    [envelope] = await stack.team_messages("ommen", "sociaal_domein")
    assert BSN not in json.dumps(envelope)


async def test_a_public_space_report_is_flagged_and_pointed_to_the_report_form(stack: Stack) -> None:
    await post(stack, whatsapp(wa_text("wamid.tegel", "Er ligt een losse stoeptegel voor mijn deur.")))
    [contact] = stack.recorder.published
    assert contact.metadata["social.public_space_report"] == "true"
    assert "meldingsformulier" in contact.metadata["social.reply_text"]
    assert "social.bsn_masked" not in contact.metadata and not contact.confidential


async def test_messenger_and_instagram_messages_skip_echoes_and_read_receipts(stack: Stack) -> None:
    for platform, obj in (("messenger", "page"), ("instagram", "instagram")):
        payload = {
            "object": obj,
            "entry": [
                {
                    "id": "PAGE1",
                    "time": 1778659200000,
                    "messaging": [
                        {
                            "sender": {"id": "PSID1"},
                            "recipient": {"id": "PAGE1"},
                            "timestamp": 1,
                            "message": {"mid": f"m_{platform}", "text": "Hoe laat is de milieustraat open?"},
                        },
                        {
                            "sender": {"id": "PAGE1"},
                            "recipient": {"id": "PSID1"},
                            "timestamp": 2,
                            "message": {"mid": "m_echo", "text": "hoi", "is_echo": True},
                        },
                        {
                            "sender": {"id": "PSID1"},
                            "recipient": {"id": "PAGE1"},
                            "timestamp": 3,
                            "read": {"watermark": 1},
                        },
                    ],
                }
            ],
        }
        resp = await post(stack, payload)
        assert resp.status == 200 and (await resp.json())["received"] == 1
    assert [(c.metadata["social.platform"], c.source.native_id) for c in stack.recorder.published] == [
        ("messenger", "messenger:m_messenger"),
        ("instagram", "instagram:m_instagram"),
    ]


async def test_a_signed_but_unreadable_payload_is_dead_lettered(stack: Stack) -> None:
    resp = await post(stack, {"object": "whatsapp_business_account", "entry": "not-a-list"})
    assert resp.status == 200
    assert "unexpected webhook payload" in (await resp.json())["dead_lettered"]
    [dead] = await stack.dead_letters()
    assert str((dead.headers or {})["x-dead-reason"]).startswith("unexpected webhook payload: entry")


async def test_an_unknown_object_is_dead_lettered_without_quoting_it(stack: Stack) -> None:
    resp = await post(stack, {"object": "j.jansen@example.nl 111222333", "entry": []})
    assert resp.status == 200
    [dead] = await stack.dead_letters()
    assert (dead.headers or {})["x-dead-reason"] == (
        "unexpected webhook payload: object: not a WhatsApp, Messenger or Instagram webhook object"
    )


def test_elfproef() -> None:
    assert elfproef("111222333") and elfproef("123456782")
    assert not elfproef("123456789") and not elfproef("000000000") and not elfproef("12345678")
    masked, count = mask_bsn("bsn 123456782, order 123456789, tel 0612345678, 1234 56 782")
    assert masked == "bsn *********, order 123456789, tel 0612345678, *********" and count == 2


def test_signature_check_is_on_the_raw_bytes() -> None:
    raw = b'{"a": 1}'
    assert signature_valid("s", raw, sign(raw, "s"))
    assert not signature_valid("s", raw + b" ", sign(raw, "s"))
    assert not signature_valid("", raw, sign(raw, ""))


def test_reactions_and_media() -> None:
    payload = whatsapp(
        {"from": "316", "id": "w1", "type": "reaction", "reaction": {"message_id": "x", "emoji": "👍"}},
        {"from": "316", "id": "w2", "type": "image", "image": {"id": "MEDIA1", "caption": "Kapotte lamp"}},
    )
    messages, ignored = parse(payload)
    assert ignored == 1
    assert [(m.kind, m.text, m.media_id) for m in messages] == [("image", "Kapotte lamp", "MEDIA1")]
