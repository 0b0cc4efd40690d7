"""Meta webhooks (WhatsApp Cloud API, Messenger, Instagram): signature check and payload → messages.

Pure functions: no I/O. Payload shapes follow Meta's webhook reference:
- WhatsApp: {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages",
  "value": {"metadata": {"phone_number_id"}, "contacts": [...], "messages": [...], "statuses": [...]}}]}]}
- Messenger ("page") and Instagram ("instagram"): {"entry": [{"id", "messaging": [{"sender": {"id"},
  "recipient": {"id"}, "message": {"mid", "text", "attachments", "is_echo"}}]}]}
Status callbacks (delivered/read), echoes of our own messages, reactions and other events are counted
as ignored, never turned into contacts.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

PLATFORMS = {"whatsapp_business_account": "whatsapp", "page": "messenger", "instagram": "instagram"}


class PayloadError(ValueError):
    """The (signed) payload does not have the shape Meta documents. The message becomes a dead-letter
    reason: positions and field names of Meta's format, never a value from the payload."""


@dataclass(frozen=True)
class SocialMessage:
    platform: str  # whatsapp | messenger | instagram
    account_id: str  # WhatsApp phone-number id, page id or Instagram account id: which municipality
    message_id: str  # wamid... / mid...: the idempotency key
    sender_id: str  # wa_id / page-scoped id
    sender_name: str | None
    sender_phone: str | None  # WhatsApp only: the wa_id is the number
    kind: str  # text, image, document, location, ...
    text: str
    media_id: str | None = None


def signature_valid(secret: str, raw: bytes, header: str | None) -> bool:
    """X-Hub-Signature-256: 'sha256=' + hex HMAC-SHA256 of the raw body with the app secret."""
    if not secret or not header:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("ascii", errors="replace"))


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: expected an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{where}: expected a list")
    return value


def _str(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def parse(payload: Any) -> tuple[list[SocialMessage], int]:
    """Inbound messages and the number of ignored events (statuses, echoes, reactions, ...)."""
    body = _dict(payload, "payload")
    platform = PLATFORMS.get(str(body.get("object")))
    if platform is None:
        # Not the value itself: a payload signed with our secret can still carry anything there.
        raise PayloadError("object: not a WhatsApp, Messenger or Instagram webhook object")
    out: list[SocialMessage] = []
    ignored = 0
    for i, entry in enumerate(_list(body.get("entry"), "entry")):
        entry = _dict(entry, f"entry.{i}")
        if platform == "whatsapp":
            got, skipped = _whatsapp(entry, i)
        else:
            got, skipped = _messaging(platform, entry, i)
        out += got
        ignored += skipped
    return out, ignored


_WA_MEDIA = ("image", "video", "audio", "document", "sticker")


def _whatsapp_text(message: dict[str, Any], kind: str) -> tuple[str, str | None] | None:
    """(text, media id) of one WhatsApp message; None for kinds that are no question (reactions)."""
    if kind == "text":
        return str(_dict(message.get("text", {}), "text").get("body", "")), None
    if kind in _WA_MEDIA:
        found = message.get(kind)
        media: dict[str, Any] = found if isinstance(found, dict) else {}
        return str(media.get("caption", "")), _str(media.get("id"))
    if kind == "button":
        return str((message.get("button") or {}).get("text", "")), None
    if kind == "interactive":
        reply = message.get("interactive") or {}
        chosen = reply.get("button_reply") or reply.get("list_reply") or {}
        return str(chosen.get("title", "")), None
    if kind == "location":
        loc = message.get("location") or {}
        parts = [str(loc[k]) for k in ("name", "address") if loc.get(k)]
        coords = f"{loc.get('latitude')}, {loc.get('longitude')}"
        return "Locatie: " + ", ".join([*parts, coords]), None
    if kind == "reaction":
        return None
    return "", None  # contacts, order, unsupported: the team sees the kind in the metadata


def _whatsapp(entry: dict[str, Any], i: int) -> tuple[list[SocialMessage], int]:
    out = []
    ignored = 0
    for j, change in enumerate(_list(entry.get("changes"), f"entry.{i}.changes")):
        change = _dict(change, f"entry.{i}.changes.{j}")
        value = _dict(change.get("value", {}), f"entry.{i}.changes.{j}.value")
        ignored += len(_list(value.get("statuses"), "statuses"))
        if change.get("field") != "messages":
            ignored += 1
            continue
        account = _str(_dict(value.get("metadata", {}), "metadata").get("phone_number_id")) or ""
        names = {}
        for contact in _list(value.get("contacts"), "contacts"):
            if isinstance(contact, dict) and contact.get("wa_id"):
                names[str(contact["wa_id"])] = (contact.get("profile") or {}).get("name")
        for k, message in enumerate(_list(value.get("messages"), "messages")):
            message = _dict(message, f"entry.{i}.changes.{j}.value.messages.{k}")
            mid, sender = _str(message.get("id")), _str(message.get("from"))
            if mid is None or sender is None:
                raise PayloadError(f"entry.{i}.changes.{j}.value.messages.{k}: id and from are required")
            kind = str(message.get("type", "unknown"))
            content = _whatsapp_text(message, kind)
            if content is None:
                ignored += 1
                continue
            name = names.get(sender)
            out.append(
                SocialMessage(
                    platform="whatsapp",
                    account_id=account,
                    message_id=mid,
                    sender_id=sender,
                    sender_name=str(name)[:500] if name else None,
                    sender_phone="+" + sender if sender.isdigit() else None,
                    kind=kind,
                    text=content[0],
                    media_id=content[1],
                )
            )
    return out, ignored


def _messaging(platform: str, entry: dict[str, Any], i: int) -> tuple[list[SocialMessage], int]:
    out = []
    ignored = len(_list(entry.get("changes"), f"entry.{i}.changes"))  # comments, mentions: not messages
    account = _str(entry.get("id")) or ""
    for j, event in enumerate(_list(entry.get("messaging"), f"entry.{i}.messaging")):
        event = _dict(event, f"entry.{i}.messaging.{j}")
        message = event.get("message")
        if not isinstance(message, dict) or message.get("is_echo"):
            ignored += 1  # delivery, read, reaction, postback, or our own message echoed back
            continue
        mid = _str(message.get("mid"))
        sender = _str((event.get("sender") or {}).get("id"))
        if mid is None or sender is None:
            raise PayloadError(f"entry.{i}.messaging.{j}: message.mid and sender.id are required")
        attachments = [a for a in _list(message.get("attachments"), "attachments") if isinstance(a, dict)]
        kind = (
            "text" if message.get("text") else (str(attachments[0].get("type")) if attachments else "unknown")
        )
        out.append(
            SocialMessage(
                platform=platform,
                account_id=_str((event.get("recipient") or {}).get("id")) or account,
                message_id=mid,
                sender_id=sender,
                sender_name=None,
                sender_phone=None,
                kind=kind,
                text=str(message.get("text", "")),
            )
        )
    return out, ignored
