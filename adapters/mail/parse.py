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
import re
import secrets
from dataclasses import dataclass, field
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from typing import Any

from inscriptis import get_text  # type: ignore[import-untyped]
from inscriptis.model.config import ParserConfig  # type: ignore[import-untyped]
from pydantic import ValidationError

from router.core.contact import Attachment, Sender

MAX_BODY_CHARS = 100_000
MAX_SUBJECT_CHARS = 998
MAX_ATTACHMENTS = 100
MAX_THREAD_CHARS = 2000
_FEED_CHUNK = 65_536
# Markup given to the HTML converter at most: it builds a tree of the whole document, and the text
# agents read is cut at MAX_BODY_CHARS anyway.
MAX_HTML_CHARS = 2_000_000
# What a contact says when its text was so damaged that nothing readable remained (never the encoded
# text itself).
UNREADABLE_BODY = (
    "[De tekst van dit bericht kon niet worden gelezen: de codering is beschadigd. "
    "Het oorspronkelijke bericht staat in de mailbox.]"
)
_B64_ALPHABET = re.compile(rb"[^A-Za-z0-9+/]")

_MSGID = re.compile(r"<[^<>\s]{1,500}>")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# RFC 3834's values of Auto-Submitted besides "no" (auto-notified: RFC 5436).
_AUTO_SUBMITTED = frozenset({"auto-generated", "auto-replied", "auto-notified"})


class MalformedMail(Exception):
    """The mail cannot become a contact, for a reason the sender can be told (fixed words)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MailTooComplex(MalformedMail):
    """Past a limit of the MIME structure (parts, depth, decoded size): refused, never opened further."""


@dataclass(frozen=True)
class Limits:
    max_parts: int = 500
    max_depth: int = 20
    max_decoded_bytes: int = 25_000_000


def redecode(value: str) -> str:
    """A header value read from raw 8-bit bytes (the parser keeps them as surrogate escapes) as text:
    UTF-8 (RFC 6532), else Windows-1252 (old clients), never a surrogate."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    return decode_8bit(data)


def decode_8bit(data: bytes) -> str:
    """Bytes of no (or a wrong ASCII) charset: UTF-8 when they are, else Windows-1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


class _Policy(EmailPolicy):
    """policy.default, with raw 8-bit header values decoded as text when they are read from the source."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        return name, redecode(value)


POLICY = _Policy()


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
    body_damaged: bool = False  # a transfer encoding was repaired (padding, junk skipped)
    body_unreadable: bool = False  # nothing readable remained: the body is UNREADABLE_BODY
    return_path: str | None = None  # Return-Path as the delivering server wrote it (IMAP's envelope)
    from_envelope: bool = False  # the sender's address is the envelope's (From had none usable)


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


def _all_values(msg: Message, name: str) -> list[str]:
    try:
        return [str(v).strip() for v in msg.get_all(name) or []]
    except Exception:
        return []


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


_HTML_CONFIG = ParserConfig(display_links=True, display_images=False, table_cell_separator=" | ")


def html_to_text(markup: str) -> str:
    """HTML mail as the text agents read: link targets after the link text (`[text](url)`), list items
    as bullets, table cells side by side (` | `); scripts and styles dropped (inscriptis renders text, it runs
    nothing). Any HTML shown to agents as HTML goes through nh3 instead."""
    if not markup.strip():
        return ""
    try:
        return str(get_text(markup[:MAX_HTML_CHARS], _HTML_CONFIG))
    except Exception:
        return ""


def tidy(text: str) -> str:
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [_SPACES.sub(" ", line).rstrip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _lenient_base64(text: str) -> tuple[bytes, bool]:
    """Base64 decoded whatever it looks like: junk skipped, a stray last character dropped, padding
    repaired. True when anything had to be repaired (whitespace and line breaks do not count)."""
    data = text.encode("ascii", "surrogateescape")
    stripped = b"".join(data.split())
    core = stripped.rstrip(b"=")
    clean = _B64_ALPHABET.sub(b"", core)
    damaged = clean != core or (len(stripped) % 4 != 0)
    if len(clean) % 4 == 1:
        clean = clean[:-1]  # one character alone encodes no byte
    clean += b"=" * (-len(clean) % 4)
    try:
        return binascii.a2b_base64(clean), damaged
    except (binascii.Error, ValueError):
        return b"", True


def _transfer_encoding(part: Message) -> str:
    try:
        return str(part.get("content-transfer-encoding", "")).strip().lower()
    except Exception:
        return ""


def _part_bytes(part: Message) -> tuple[bytes, bool]:
    """The decoded bytes of a leaf and whether its encoding was damaged."""
    encoded = part.get_payload()
    if not isinstance(encoded, str):
        return b"", False
    if _transfer_encoding(part) == "base64":
        return _lenient_base64(encoded)
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return encoded.encode("utf-8", "surrogateescape"), True
    return (payload if isinstance(payload, bytes) else b""), False


def _charset(part: Message) -> str | None:
    try:
        charset = part.get_content_charset()
    except Exception:
        return None
    if not charset or charset in ("us-ascii", "ascii", "unknown-8bit", "x-unknown"):
        return None  # say nothing about 8-bit bytes: decide by the bytes
    return charset


def _decoded_text(part: Message) -> tuple[str, bool]:
    """A text part as text, and whether its transfer encoding was damaged. No charset, or ASCII
    declared over 8-bit bytes: UTF-8 else Windows-1252. An unknown or lying charset: the same rule,
    never a failure, never a surrogate."""
    data, damaged = _part_bytes(part)
    charset = _charset(part)
    if charset is None:
        return decode_8bit(data), damaged
    try:
        return data.decode(charset, errors="strict"), damaged
    except LookupError:
        return decode_8bit(data), damaged
    except (UnicodeDecodeError, ValueError):
        try:
            return data.decode("utf-8"), damaged
        except UnicodeDecodeError:
            return data.decode(charset, errors="replace"), damaged


def _readable(text: str) -> bool:
    """False when what is left is mostly replacement characters and control bytes: damage, not words."""
    visible = [ch for ch in text if not ch.isspace()]
    if not visible:
        return True  # an empty mail is empty, not damaged
    bad = sum(1 for ch in visible if ch == "\ufffd" or (ord(ch) < 32) or not ch.isprintable())
    letters = sum(1 for ch in visible if ch.isalnum())
    return bad / len(visible) < 0.3 and letters / len(visible) > 0.3


def _leaves(part: Message, limits: Limits, depth: int = 0) -> list[Message]:
    """Non-multipart parts in order; an attached message (message/rfc822) is one leaf, not opened."""
    if depth > limits.max_depth:
        raise MailTooComplex(f"MIME parts nested deeper than {limits.max_depth} levels")
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        out: list[Message] = []
        payload = part.get_payload()
        for sub in payload if isinstance(payload, list) else []:
            if isinstance(sub, Message):
                out.extend(_leaves(sub, limits, depth + 1))
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
        if _transfer_encoding(part) == "base64":
            # Straight from the encoded text: get_payload(decode=True) makes two more copies of it.
            encoded = part.get_payload()
            if isinstance(encoded, str):
                with contextlib.suppress(binascii.Error, ValueError):
                    return binascii.a2b_base64(encoded)
                return _lenient_base64(encoded)[0]
        payload = part.get_payload(decode=True)
        return payload if isinstance(payload, bytes) else b""
    except Exception:
        return b""


class _CountingFactory:
    """The parser's message factory, counting parts as the parser makes them: past the limit the feed
    stops (MailTooComplex), before a bomb of tiny parts has become a tree of objects."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = -1  # FeedParser calls the factory once to test its signature

    def __call__(self, policy: Any = POLICY) -> EmailMessage:
        self.count += 1
        if self.count > self.limit:
            raise MailTooComplex(f"more than {self.limit} MIME parts")
        return EmailMessage(policy=policy)


# A base64 leaf (not text, not a container) of at least this many encoded bytes is read straight from
# the raw mail (size and sha256, decoded in pieces) and never given to the parser: the parser keeps a
# body as one str object per line (~130 bytes for a 78-byte line) and then joins them, ~2.5 copies.
LARGE_PART_BYTES = 32 * 1024
_PIECE = 1 << 20
_MARKER = "x-contact-router-extracted"
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;]{1,200}))', re.IGNORECASE)
_CTE_BASE64 = re.compile(
    rb"^content-transfer-encoding[ \t]*:[ \t]*base64[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)
_CTYPE = re.compile(rb"^content-type[ \t]*:[ \t]*([a-z0-9!#$&^_.+-]+)/", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class _Extracted:
    size: int
    sha256: str


def _decode_piecewise(body: memoryview) -> _Extracted:
    """Size and sha256 of a base64 body, decoded a piece at a time (junk skipped, padding repaired)."""
    digest = hashlib.sha256()
    size = 0
    carry = b""
    for start in range(0, len(body), _PIECE):
        clean = carry + _B64_ALPHABET.sub(b"", bytes(body[start : start + _PIECE]))
        whole = len(clean) - len(clean) % 4
        chunk, carry = clean[:whole], clean[whole:]
        with contextlib.suppress(binascii.Error, ValueError):
            data = binascii.a2b_base64(chunk)
            digest.update(data)
            size += len(data)
    if len(carry) > 1:
        with contextlib.suppress(binascii.Error, ValueError):
            data = binascii.a2b_base64(carry + b"=" * (-len(carry) % 4))
            digest.update(data)
            size += len(data)
    return _Extracted(size, digest.hexdigest())


def _blank_line(raw: bytes, start: int) -> tuple[int, int] | None:
    """(end of the header block, start of the body) of the header block at `start`, or None."""
    if raw.startswith(b"\r\n", start):
        return start, start + 2
    if raw.startswith(b"\n", start):
        return start, start + 1
    ends = [
        (i, i + len(sep)) for sep in (b"\n\r\n", b"\n\n") if (i := raw.find(sep, start, start + 65_536)) >= 0
    ]
    if not ends:
        return None
    end, body = min(ends)
    return end + 1, body


def _split_large_parts(raw: bytes, token: str) -> tuple[list[memoryview], dict[str, _Extracted]]:
    """The mail as pieces to feed the parser, with large base64 leaves left out (their body empty, a
    marker header naming them) and what they decode to. Conservative: a part is taken out only when its
    header block says base64 and a non-text, non-container type, after a delimiter line of a boundary
    a multipart header declared; its body ends at the first line starting with "-" (never base64)."""
    view = memoryview(raw)
    pieces: list[memoryview] = []
    extracted: dict[str, _Extracted] = {}
    boundaries: set[bytes] = set()
    emitted = 0
    block = 0  # start of the header block being looked at
    while True:
        found = _blank_line(raw, block)
        if found is None:
            break
        header_end, body = found
        headers = raw[block:header_end]
        for m in _BOUNDARY.finditer(headers):
            boundaries.add(b"--" + (m.group(1) or m.group(2)))
        ctype = _CTYPE.search(headers)
        major = ctype.group(1).lower() if ctype else b"text"
        search_from = body
        if _CTE_BASE64.search(headers) and major not in (b"text", b"multipart", b"message"):
            dash = raw.find(b"\n-", body)
            end = len(raw) if dash < 0 else dash + 1  # the line break before it ends the body
            if end - body >= LARGE_PART_BYTES:
                name = f"{token}-{len(extracted)}"
                extracted[name] = _decode_piecewise(view[body:end])
                newline = b"\r\n" if raw[header_end - 2 : header_end] == b"\r\n" else b"\n"
                pieces.append(view[emitted:header_end])
                pieces.append(memoryview(f"{_MARKER}: {name}".encode() + newline + newline))
                emitted = end
            search_from = end
        # The next part's header block: after the next delimiter line of a known boundary.
        block = -1
        at = search_from
        while (line := raw.find(b"\n--", at)) >= 0:
            line_end = raw.find(b"\n", line + 1)
            text = raw[line + 1 : line_end if line_end >= 0 else len(raw)].rstrip()
            at = line + 3
            if any(text == b or text == b + b"--" for b in boundaries) and not text.endswith(b"--"):
                block = line_end + 1 if line_end >= 0 else -1
                break
        if block < 0:
            break
    pieces.append(view[emitted:])
    return pieces, extracted


def _parse_bytes(raw: bytes, limits: Limits | None = None) -> tuple[Message, dict[str, _Extracted]]:
    """The mail, parsed from its bytes in pieces: `BytesParser.parsebytes` first decodes all of it into
    one str and wraps that in a StringIO, which holds up to 4 bytes per character: ~90 MB for 23 MB.
    Large base64 leaves are read from the raw bytes instead (`_split_large_parts`)."""
    parser = BytesFeedParser(_CountingFactory((limits or Limits()).max_parts), policy=POLICY)
    token = secrets.token_hex(8)  # a marker the sender cannot have written
    pieces, extracted = (
        _split_large_parts(raw, token) if len(raw) >= LARGE_PART_BYTES else ([memoryview(raw)], {})
    )
    for piece in pieces:
        for start in range(0, len(piece), _FEED_CHUNK):
            parser.feed(bytes(piece[start : start + _FEED_CHUNK]))
    return parser.close(), extracted


def _attachments(
    leaves: list[Message], body: Message | None, max_bytes: int, extracted: dict[str, _Extracted]
) -> tuple[list[Attachment], int, int, int]:
    """(attachments, omitted past MAX_ATTACHMENTS, over max_bytes, decoded bytes in all)."""
    out: list[Attachment] = []
    omitted = over = total = 0
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
        # Ours is the one with this parse's token; a sender may have written the header name too.
        marker = next((m for m in _all_values(leaf, _MARKER) if m in extracted), None)
        if marker is not None:
            size, sha256 = extracted[marker].size, extracted[marker].sha256
        else:
            data = _attachment_bytes(leaf)
            size, sha256 = len(data), hashlib.sha256(data).hexdigest()
            del data
        total += size
        if size > max_bytes:
            over += 1
        out.append(
            Attachment(
                filename=(name or f"bijlage-{i}")[:500],
                content_type=ctype[:200],
                size=size,
                sha256=sha256,
            )
        )
    return out, omitted, over, total


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


# X-Auto-Response-Suppress values that only an automatic mail asks for (Exchange puts `All` or `OOF`
# on its own out-of-office replies); DR, NDR, RN and NRN alone only suppress our acknowledgement.
_SUPPRESS_AUTOMATIC = frozenset({"all", "oof", "autoreply"})


def auto_subject(subject: str, prefixes: tuple[str, ...]) -> bool:
    """The subject starts with one of `prefixes` (casefolded) before a colon, a dash or its end, in
    brackets or not ("Automatisch antwoord: …", "Réponse automatique : …", "[Out of office]")."""
    text = subject.casefold().lstrip(" \t")
    bracketed = text.startswith("[")
    text = text.lstrip("[ \t")
    for prefix in prefixes:
        if text.startswith(prefix):
            rest = text[len(prefix) :].lstrip(" \t")
            if not rest or rest[0] in ":-\u2013" or (bracketed and rest[0] == "]"):
                return True
    return False


def _automatic(
    msg: Message,
    leaves: list[Message],
    sender: str,
    envelope_from: str | None,
    *,
    auto_subjects: tuple[str, ...] = (),
    own_addresses: frozenset[str] = frozenset(),
) -> str | None:
    """Why this mail was sent by a machine (RFC 3834 and common practice), or None. The reason is a
    fixed text: it is logged and counted, so it names a header or a rule, never a value."""
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
    if header(msg, "x-loop") is not None:
        return "X-Loop header (passed an automatic responder)"
    suppress = {v.strip().lower() for v in (header(msg, "x-auto-response-suppress") or "").split(",")}
    if suppress & _SUPPRESS_AUTOMATIC:
        return "X-Auto-Response-Suppress: an automatic reply's value"
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
    if sender and sender in own_addresses:
        return "sent by this service (From is one of its own addresses)"
    if auto_subjects and auto_subject(header(msg, "subject") or "", auto_subjects):
        return "subject of an automatic reply (MAIL_AUTO_SUBJECTS)"
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


def parse_mail(
    raw: bytes,
    *,
    max_attachment_bytes: int,
    envelope_from: str | None = None,
    limits: Limits | None = None,
    auto_subjects: tuple[str, ...] = (),
    own_addresses: frozenset[str] = frozenset(),
) -> ParsedMail:
    """The parts of one mail. Raises MalformedMail (MailTooComplex past a limit) with a fixed reason."""
    limits = limits or Limits()
    if not raw.strip():
        raise MalformedMail("empty message")
    msg, extracted = _parse_bytes(raw, limits)
    assert isinstance(msg, EmailMessage)
    if not msg.keys():
        raise MalformedMail("no header fields (not an RFC 5322 message)")
    leaves = _leaves(msg, limits)
    body_part = _body_part(msg, leaves)
    body = ""
    damaged = unreadable = False
    if body_part is not None:
        text, damaged = _decoded_text(body_part)
        body = html_to_text(text) if body_part.get_content_subtype() == "html" else text
        del text
    body = tidy(body)
    if damaged and (not body or not _readable(body)):
        # Never the encoded text or mojibake as the resident's question: say what happened.
        body, unreadable = UNREADABLE_BODY, True
    truncated = len(body) > MAX_BODY_CHARS
    sender, sender_invalid, address = _sender(msg)
    attachments, omitted, over, decoded = _attachments(leaves, body_part, max_attachment_bytes, extracted)
    if decoded + len(body) > limits.max_decoded_bytes:
        raise MailTooComplex(f"more than {limits.max_decoded_bytes} bytes when decoded")
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
        automatic=_automatic(
            msg,
            leaves,
            address,
            envelope_from,
            auto_subjects=auto_subjects,
            own_addresses=own_addresses,
        ),
        suppress_ack=_suppress_ack(msg, address),
        header_recipients=recipients,
        body_damaged=damaged,
        body_unreadable=unreadable,
        return_path=header(msg, "return-path"),
    )
