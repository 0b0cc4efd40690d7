"""RFC 5322 mail → the parts a contact needs, with the standard `email` package (modern policy).

Every header read is guarded: the modern policy parses headers lazily and some broken ones raise on
access (CPython's own corpus has such messages). A value that cannot be parsed is treated as absent,
so one bad header never costs the resident their question. Only a message with no usable structure at
all is `MalformedMail`, which the adapter dead-letters with the reason.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import html
import re
from dataclasses import dataclass, field
from email import policy
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message

import nh3
from pydantic import ValidationError

from router.core.contact import Attachment, Sender

MAX_BODY_CHARS = 100_000
MAX_SUBJECT_CHARS = 998
MAX_ATTACHMENTS = 100
MAX_THREAD_CHARS = 2000
_FEED_CHUNK = 65_536

_MSGID = re.compile(r"<[^<>\s]{1,500}>")
_BLOCK_TAGS = re.compile(r"<\s*/?\s*(?:br|p|div|li|tr|h[1-6]|table|ul|ol|blockquote)\b[^>]*>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# RFC 3834's values of Auto-Submitted besides "no" (auto-notified: RFC 5436).
_AUTO_SUBMITTED = frozenset({"auto-generated", "auto-replied", "auto-notified"})


class MalformedMail(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ParsedMail:
    message_id: str | None
    thread_ids: list[str]  # In-Reply-To first, then References newest first
    subject: str
    sender: Sender | None
    sender_invalid: bool
    sender_address: str  # as written, lower-case; "" if none (for loop checks, never logged)
    body: str
    body_truncated: bool
    attachments: list[Attachment] = field(default_factory=list)
    attachments_omitted: int = 0
    attachments_over_limit: int = 0
    automatic: str | None = None  # why this is an automatic mail (fixed words: it becomes a reason)
    suppress_ack: bool = False  # the sender asked for no automatic answers
    header_recipients: list[str] = field(default_factory=list)


def header(msg: Message, name: str) -> str | None:
    """A header's decoded value, or None when absent or unreadable."""
    try:
        value = msg.get(name)
        if value is None:
            return None
        text = str(value)
    except Exception:
        # Fall back to the raw (undecoded) value rather than losing the header.
        try:
            raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
        except Exception:
            return None
        if raw is None:
            return None
        text = str(raw)
    return _CONTROL.sub("", text).replace("\r", " ").replace("\n", " ").strip()


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header; [] when absent or unreadable."""
    try:
        value = msg.get(name)
        addresses = getattr(value, "addresses", None) if value is not None else None
        if addresses is None:
            return []
        return [(a.display_name or "", a.addr_spec or "") for a in addresses]
    except Exception:
        return []


def message_ids(text: str | None) -> list[str]:
    return _MSGID.findall(text or "")


def html_to_text(markup: str) -> str:
    # Block elements become line breaks before the sanitiser drops every tag; script and style go
    # with their content. The sanitiser escapes what is left, so unescape once to plain text.
    marked = _BLOCK_TAGS.sub("\n", markup)
    cleaned = nh3.clean(marked, tags=set(), clean_content_tags={"script", "style", "head", "title"})
    return html.unescape(cleaned)


def tidy(text: str) -> str:
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [_SPACES.sub(" ", line).rstrip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _decoded_text(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except Exception:
        pass
    # Unknown or lying charset: decode the bytes ourselves, never fail.
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    charset = "utf-8"
    try:
        charset = part.get_content_charset() or "utf-8"
        return data.decode(charset, errors="replace")
    except (LookupError, ValueError):
        return data.decode("cp1252", errors="replace")


def _leaves(part: Message) -> list[Message]:
    """Non-multipart parts in order; an attached message (message/rfc822) is one leaf, not opened."""
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        out: list[Message] = []
        payload = part.get_payload()
        for sub in payload if isinstance(payload, list) else []:
            if isinstance(sub, Message):
                out.extend(_leaves(sub))
        return out
    return [part]


def _body_part(msg: EmailMessage, leaves: list[Message]) -> Message | None:
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is not None:
        return part
    for preferred in ("text/plain", "text/html"):
        for leaf in leaves:
            if leaf.get_content_type() == preferred and _disposition(leaf) != "attachment":
                return leaf
    return None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    if not name:
        return None
    return _CONTROL.sub("", str(name)).strip() or None


def _attachment_bytes(part: Message) -> bytes:
    try:
        if part.get_content_maintype() == "message":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0].as_bytes()
            return b""
        if part.get("Content-Transfer-Encoding", "").strip().lower() == "base64":
            # Straight from the encoded text: get_payload(decode=True) makes two more copies of it.
            encoded = part.get_payload()
            if isinstance(encoded, str):
                with contextlib.suppress(binascii.Error, ValueError):
                    return binascii.a2b_base64(encoded)
        payload = part.get_payload(decode=True)
        return payload if isinstance(payload, bytes) else b""
    except Exception:
        return b""


def _parse_bytes(raw: bytes) -> Message:
    """The mail, parsed from its bytes in pieces: `BytesParser.parsebytes` first decodes all of it into
    one str and wraps that in a StringIO, which holds up to 4 bytes per character: ~90 MB for 23 MB."""
    parser = BytesFeedParser(policy=policy.default)
    view = memoryview(raw)
    for start in range(0, len(raw), _FEED_CHUNK):
        parser.feed(bytes(view[start : start + _FEED_CHUNK]))
    return parser.close()


def _attachments(
    leaves: list[Message], body: Message | None, max_bytes: int
) -> tuple[list[Attachment], int, int]:
    out: list[Attachment] = []
    omitted = over = 0
    for i, leaf in enumerate(leaves, 1):
        if leaf is body:
            continue
        name = _filename(leaf)
        ctype = leaf.get_content_type()
        if name is None and _disposition(leaf) != "attachment" and leaf.get_content_maintype() == "text":
            continue  # the other half of multipart/alternative, not an attachment
        if len(out) >= MAX_ATTACHMENTS:
            omitted += 1
            continue
        data = _attachment_bytes(leaf)
        if len(data) > max_bytes:
            over += 1
        out.append(
            Attachment(
                filename=(name or f"bijlage-{i}")[:500],
                content_type=ctype[:200],
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return out, omitted, over


def _sender(msg: Message) -> tuple[Sender | None, bool, str]:
    found = _addresses(msg, "from") or _addresses(msg, "sender")
    if not found:
        raw = header(msg, "from")
        return (None, bool(raw), "")
    display, address = found[0]
    name = _CONTROL.sub("", display).strip()[:500] or None
    try:
        return Sender(name=name, email=address or None), False, address.lower()
    except ValidationError:
        # A malformed From must not cost the resident their question (peers choke here): keep the
        # name, drop the address, flag it. No acknowledgement can go out.
        return (Sender(name=name) if name else None), True, address.lower()


def _automatic(msg: Message, leaves: list[Message], sender: str, envelope_from: str | None) -> str | None:
    """Why this mail was sent by a machine (RFC 3834 and common practice), or None."""
    auto = header(msg, "auto-submitted")
    if auto and (keyword := auto.split(";")[0].strip().lower()) != "no":
        # The reason is logged and shown by `dlq list`: RFC 3834's keywords by name, any other value
        # (the sender wrote it, it may be anything) is not quoted.
        return f"Auto-Submitted: {keyword if keyword in _AUTO_SUBMITTED else 'a value other than no'}"
    precedence = (header(msg, "precedence") or "").lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    for name in ("x-autoreply", "x-autorespond", "x-autogenerated", "x-auto-reply"):
        if header(msg, name) is not None:
            return f"{name} header"
    if header(msg, "list-id") is not None:
        return "List-Id header (mailing list)"
    if envelope_from == "" or (header(msg, "return-path") or "").replace(" ", "") == "<>":
        return "empty return path (bounce)"
    local = sender.split("@")[0]
    env_local = (envelope_from or "").lower().split("@")[0]
    if local in ("mailer-daemon", "postmaster") or env_local in ("mailer-daemon", "postmaster"):
        return "sender is a mail system (mailer-daemon/postmaster)"
    if msg.get_content_type() == "multipart/report":
        return "delivery or read report (multipart/report)"
    for leaf in leaves:
        if leaf.get_content_type() in ("message/delivery-status", "message/disposition-notification"):
            return f"delivery or read report ({leaf.get_content_type()})"
    return None


def _suppress_ack(msg: Message, sender: str) -> bool:
    if header(msg, "x-auto-response-suppress") is not None:
        return True
    local = sender.split("@")[0]
    return local.replace("-", "").replace("_", "").replace(".", "") in ("noreply", "donotreply")


def _thread_ids(msg: Message) -> list[str]:
    ids: list[str] = []
    for mid in message_ids(header(msg, "in-reply-to")) + list(
        reversed(message_ids(header(msg, "references")))
    ):
        if mid not in ids:
            ids.append(mid)
    # Keep what fits in one metadata value; the newest ids (kept first) are the ones that thread.
    kept: list[str] = []
    size = 0
    for mid in ids:
        if size + len(mid) + 1 > MAX_THREAD_CHARS:
            break
        kept.append(mid)
        size += len(mid) + 1
    return kept


def parse_mail(raw: bytes, *, max_attachment_bytes: int, envelope_from: str | None = None) -> ParsedMail:
    if not raw.strip():
        raise MalformedMail("empty message")
    msg = _parse_bytes(raw)
    assert isinstance(msg, EmailMessage)
    if not msg.keys():
        raise MalformedMail("no header fields (not an RFC 5322 message)")
    leaves = _leaves(msg)
    body_part = _body_part(msg, leaves)
    body = ""
    if body_part is not None:
        text = _decoded_text(body_part)
        body = html_to_text(text) if body_part.get_content_subtype() == "html" else text
    body = tidy(body)
    truncated = len(body) > MAX_BODY_CHARS
    sender, sender_invalid, address = _sender(msg)
    attachments, omitted, over = _attachments(leaves, body_part, max_attachment_bytes)
    mid = message_ids(header(msg, "message-id"))
    recipients = [
        a for name in ("to", "cc", "delivered-to", "x-original-to") for _, a in _addresses(msg, name) if a
    ]
    return ParsedMail(
        message_id=mid[0] if mid else None,
        thread_ids=_thread_ids(msg),
        subject=tidy(header(msg, "subject") or "")[:MAX_SUBJECT_CHARS],
        sender=sender,
        sender_invalid=sender_invalid,
        sender_address=address,
        body=body[:MAX_BODY_CHARS],
        body_truncated=truncated,
        attachments=attachments,
        attachments_omitted=omitted,
        attachments_over_limit=over,
        automatic=_automatic(msg, leaves, address, envelope_from),
        suppress_ack=_suppress_ack(msg, address),
        header_recipients=recipients,
    )
