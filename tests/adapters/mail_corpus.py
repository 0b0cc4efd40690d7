"""A corpus of our own (issue 15, item 8): mails as Outlook, Exchange, Apple Mail, Gmail, Thunderbird and
old clients write them, and as the RFCs allow (5322, 2045-2049, 2047, 3834, 6532), each with what must
become of it. `test_mail_own_corpus.py` sends every one through SMTP and through IMAP.

`new` marks the cases that failed before issue 15 (answered 250 and dead-lettered, routed and
acknowledged, shown as base64, acknowledged twice, ...), checked by running the corpus through the
adapter of the commit before (4210483): these 33 of the 56 failed there, at least one of every kind of the
issue; the others pass on both and guard what worked (an RFC 3834 header, a reply to our acknowledgement).
Bytes are written as the wire has them: CRLF, raw 8-bit where a client sends raw 8-bit.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Literal

from adapters.mail.parse import UNREADABLE_BODY

# Message-IDs the router already knows (the test's ThreadLookup): a reply to one joins its contact.
KNOWN_IDS = frozenset({"<vraag-eerder@example.nl>"})
ACK_ID = "<ack.0123456789abcdef@ommen.nl>"
RESIDENT = "anna.devries@example.nl"
DATE = "Wed, 13 May 2026 10:00:00 +0200"


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    outcome: Literal["contact", "ignored", "refused"]
    envelope: str = RESIDENT  # MAIL FROM over SMTP; Return-Path over IMAP ("" is the null sender)
    new: bool = False  # failed before issue 15
    ack: bool | None = None  # contacts: an acknowledgement goes out (None: do not care)
    reason: str = ""  # ignored or refused: a part of the reason class / the refusal
    smtp: str = ""  # refused: the SMTP code
    sender_name: str | None = None
    sender_email: str | None = None
    subject: str | None = None
    body_has: tuple[str, ...] = ()
    body_lacks: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


def mail(
    *headers: tuple[str, str | bytes],
    body: str | bytes = "Ik heb een vraag over mijn paspoort.",
    frm: str | bytes | None = f"Anna de Vries <{RESIDENT}>",
    mid: str | None = None,
    content_type: str | None = "text/plain; charset=utf-8",
    cte: str | None = None,
) -> bytes:
    """A mail's bytes: the usual headers, then `headers` (raw bytes kept as they are), then the body."""
    lines: list[bytes] = []
    if frm is not None:
        lines.append(b"From: " + (frm if isinstance(frm, bytes) else frm.encode()))
    lines += [b"To: info@ommen.nl", b"Date: " + DATE.encode()]
    lines.append(
        b"Message-ID: " + (mid or f"<{abs(hash((headers, body, frm))) % 10**12}@example.nl>").encode()
    )
    if content_type is not None:
        lines += [b"MIME-Version: 1.0", b"Content-Type: " + content_type.encode()]
    if cte is not None:
        lines.append(b"Content-Transfer-Encoding: " + cte.encode())
    for name, value in headers:
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
    data = body if isinstance(body, bytes) else body.encode()
    return b"\r\n".join(lines) + b"\r\n\r\n" + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"


def subject(text: str) -> tuple[str, str]:
    return ("Subject", text)


def b64(text: str) -> str:
    return base64.encodebytes(text.encode()).decode()


def multipart(boundary: str, parts: list[bytes], subtype: str = "mixed") -> tuple[str, bytes]:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return f'multipart/{subtype}; boundary="{boundary}"', body + b"--" + boundary.encode() + b"--"


def nested(depth: int) -> tuple[str, bytes]:
    inner = b"Content-Type: text/plain\r\n\r\nDiep genest.\r\n"
    for level in range(depth, 0, -1):
        ctype, body = multipart(f"b{level}", [inner])
        inner = b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body
    ctype, body = multipart("b0", [inner])
    return ctype, body


def html(markup: str) -> bytes:
    return mail(subject("Vraag"), body=markup, content_type="text/html; charset=utf-8")


_PARTS_TYPE, _PARTS_BODY = multipart(
    "many", [b"Content-Type: text/plain\r\n\r\ndeel " + str(i).encode() for i in range(600)]
)
_DEEP_TYPE, _DEEP_BODY = nested(30)
_DSN_TYPE, _DSN_BODY = multipart(
    "dsn",
    [
        b"Content-Type: text/plain\r\n\r\nYour message could not be delivered.",
        b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.nl\r\n\r\n"
        b"Final-Recipient: rfc822; iemand@example.nl\r\nAction: failed\r\nStatus: 5.1.1",
    ],
    subtype='report; report-type="delivery-status"',
)
_MDN_TYPE, _MDN_BODY = multipart(
    "mdn",
    [
        b"Content-Type: text/plain\r\n\r\nGelezen: Paspoort",
        b"Content-Type: message/disposition-notification\r\n\r\nFinal-Recipient: rfc822; anna@example.nl\r\n"
        b"Disposition: manual-action/MDN-sent-manually; displayed",
    ],
    subtype='report; report-type="disposition-notification"',
)
_ALT_TYPE, _ALT_BODY = multipart(
    "alt",
    [
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nZie https://www.ommen.nl/afval",
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>Zie <a href="https://www.ommen.nl/afval">de site</a></p>',
    ],
    subtype="alternative",
)

CASES: list[Case] = [
    # -- ordinary mail (baselines) ---------------------------------------------------------------
    Case(
        "plain",
        mail(subject("Paspoort verlopen")),
        "contact",
        ack=True,
        subject="Paspoort verlopen",
        sender_email=RESIDENT,
        sender_name="Anna de Vries",
    ),
    Case("auto-submitted-no", mail(subject("Vraag"), ("Auto-Submitted", "no")), "contact", ack=True),
    Case(
        "rfc2047-subject-outlook",
        mail(("Subject", "=?utf-8?B?VnJhYWcgb3ZlciBkZSBzdHJhw59l?=")),
        "contact",
        subject="Vraag over de straße",
    ),
    Case(
        "apple-mail-flowed-qp",
        mail(
            subject("Vraag"),
            body="Hallo, ik woon in de Stra=C3=9Fe 1.=\n Dank u.",
            content_type="text/plain; charset=utf-8; format=flowed",
            cte="quoted-printable",
        ),
        "contact",
        body_has=("Straße 1. Dank u.",),
    ),
    Case(
        "multipart-alternative-gmail",
        mail(subject("Afval"), body=_ALT_BODY, content_type=_ALT_TYPE),
        "contact",
        body_has=("https://www.ommen.nl/afval",),
    ),
    Case(
        "word-afwezig-inside-the-subject", mail(subject("Mijn zoon was afwezig: ziek")), "contact", ack=True
    ),
    # -- raw 8-bit headers: RFC 6532 UTF-8 and legacy Windows-1252 ---------------------------------
    Case(
        "utf8-raw-from-name",
        mail(subject("Vraag"), frm="Jürgen Bäcker <jb@example.de>".encode()),
        "contact",
        new=True,
        ack=True,
        sender_name="Jürgen Bäcker",
        sender_email="jb@example.de",
    ),
    Case(
        "utf8-raw-subject",
        mail(("Subject", "Vraag over de Straße en één boom".encode())),
        "contact",
        subject="Vraag over de Straße en één boom",
    ),
    Case(
        "cp1252-raw-from-name",
        mail(subject("Vraag"), frm="Renée Müller <rm@example.nl>".encode("cp1252")),
        "contact",
        new=True,
        sender_name="Renée Müller",
    ),
    Case(
        "cp1252-raw-subject-euro",
        mail(("Subject", "Factuur €50 te veel".encode("cp1252"))),
        "contact",
        new=True,
        subject="Factuur €50 te veel",
    ),
    Case(
        "latin1-raw-quoted-name",
        mail(subject("Vraag"), frm='"Geneviève" <g@example.fr>'.encode("latin-1")),
        "contact",
        new=True,
        sender_name="Geneviève",
    ),
    Case(
        "body-without-charset-utf8",
        mail(subject("Vraag"), body="Één vraag over café".encode(), content_type=None),
        "contact",
        new=True,
        body_has=("Één vraag over café",),
    ),
    Case(
        "body-without-charset-cp1252",
        mail(subject("Vraag"), body="Één vraag over café".encode("cp1252"), content_type="text/plain"),
        "contact",
        new=True,
        body_has=("Één vraag over café",),
    ),
    Case(
        "body-ascii-declared-utf8-bytes",
        mail(
            subject("Vraag"),
            body="Groeten uit Zuidoost-Drenthé".encode(),
            content_type="text/plain; charset=us-ascii",
            cte="8bit",
        ),
        "contact",
        new=True,
        body_has=("Drenthé",),
    ),
    # -- automatic mail without RFC 3834 headers: subjects ----------------------------------------
    Case("nl-afwezig", mail(subject("Afwezig: Re: Paspoort")), "ignored", new=True, reason="subject"),
    Case(
        "nl-automatisch-antwoord-outlook",
        mail(subject("Automatisch antwoord: Paspoort verlopen")),
        "ignored",
        new=True,
        reason="subject",
    ),
    Case("nl-niet-aanwezig", mail(subject("Niet aanwezig")), "ignored", new=True, reason="subject"),
    Case(
        "nl-ooo-quoting-our-reference",
        mail(
            subject("Automatisch antwoord: Ontvangstbevestiging OMM-5KQ3-ZP7A"),
            ("In-Reply-To", ACK_ID),
            ("References", ACK_ID),
        ),
        "ignored",
        new=True,
        reason="subject",
    ),
    Case("en-out-of-office", mail(subject("Out of Office: question")), "ignored", new=True, reason="subject"),
    Case(
        "en-automatic-reply-exchange",
        mail(subject("Automatic reply: Paspoort")),
        "ignored",
        new=True,
        reason="subject",
    ),
    Case(
        "de-abwesenheitsnotiz",
        mail(subject("Abwesenheitsnotiz: Anfrage")),
        "ignored",
        new=True,
        reason="subject",
    ),
    Case(
        "fr-reponse-automatique",
        mail(("Subject", "=?utf-8?Q?R=C3=A9ponse_automatique_:_demande?=")),
        "ignored",
        new=True,
        reason="subject",
    ),
    Case(
        "bracketed-out-of-office",
        mail(subject("[Out of office] Re: vraag")),
        "ignored",
        new=True,
        reason="subject",
    ),
    # -- automatic mail by header --------------------------------------------------------------
    Case(
        "gmail-vacation",
        mail(subject("Re: Paspoort"), ("Auto-Submitted", "auto-replied")),
        "ignored",
        reason="Auto-Submitted: auto-replied",
    ),
    Case(
        "sieve-vacation-thunderbird",
        mail(subject("Auto: Paspoort"), ("Auto-Submitted", "auto-replied (vacation)")),
        "ignored",
        reason="Auto-Submitted",
    ),
    Case(
        "exchange-oof-suppress-all",
        mail(subject("Paspoort"), ("X-Auto-Response-Suppress", "All")),
        "ignored",
        new=True,
        reason="X-Auto-Response-Suppress",
    ),
    Case("x-autoreply", mail(subject("Re: vraag"), ("X-Autoreply", "yes")), "ignored", reason="x-autoreply"),
    Case(
        "x-autorespond",
        mail(subject("Re: vraag"), ("X-Autorespond", "yes")),
        "ignored",
        reason="x-autorespond",
    ),
    Case(
        "precedence-bulk",
        mail(subject("Nieuwsbrief"), ("Precedence", "bulk")),
        "ignored",
        reason="Precedence",
    ),
    Case(
        "precedence-auto-reply",
        mail(subject("Re: vraag"), ("Precedence", "auto_reply")),
        "ignored",
        reason="Precedence",
    ),
    Case(
        "list-id",
        mail(subject("[buurt] nieuws"), ("List-Id", "<buurt.example.nl>")),
        "ignored",
        reason="List-Id",
    ),
    Case(
        "bounce-null-sender-dsn",
        mail(
            subject("Undelivered Mail"),
            body=_DSN_BODY,
            content_type=_DSN_TYPE,
            frm="Mail Delivery System <MAILER-DAEMON@mx.example.nl>",
        ),
        "ignored",
        envelope="",
        reason="empty return path",
    ),
    Case(
        "mailer-daemon-sender",
        mail(subject("Delivery failure"), frm="MAILER-DAEMON@mx.example.nl"),
        "ignored",
        envelope="bounces@mx.example.nl",
        reason="mail system",
    ),
    Case(
        "read-receipt-mdn",
        mail(subject("Gelezen: Paspoort"), body=_MDN_BODY, content_type=_MDN_TYPE),
        "ignored",
        reason="report",
    ),
    # -- loops -----------------------------------------------------------------------------------
    Case(
        "x-loop",
        mail(subject("Re: vraag"), ("X-Loop", "info@ommen.nl")),
        "ignored",
        new=True,
        reason="X-Loop",
    ),
    Case(
        "from-our-own-mailbox",
        mail(subject("Doorgestuurd"), frm="Gemeente Ommen <info@ommen.nl>"),
        "ignored",
        new=True,
        reason="own addresses",
    ),
    Case(
        "from-our-ack-address",
        mail(subject("Ontvangstbevestiging"), frm="Gemeente Ommen <noreply@ommen.nl>"),
        "ignored",
        reason="own addresses",
    ),
    # -- no usable From -------------------------------------------------------------------------
    Case(
        "no-from-envelope-used",
        mail(subject("Vraag"), frm=None),
        "contact",
        new=True,
        ack=True,
        sender_email=RESIDENT,
        metadata={"mail.sender_from_envelope": "true"},
    ),
    Case(
        "undisclosed-recipients-from",
        mail(subject("Vraag"), frm="undisclosed-recipients:;"),
        "contact",
        new=True,
        ack=True,
        sender_email=RESIDENT,
    ),
    Case(
        "unbalanced-quote-from",
        mail(subject("Vraag"), frm='"Anna de Vries <broken@@example.nl>'),
        "contact",
        new=True,
        sender_email=RESIDENT,
        metadata={"mail.sender_from_envelope": "true"},
    ),
    Case(
        "name-only-from-bad-envelope",
        mail(subject("Vraag"), frm="Anna de Vries"),
        "refused",
        new=True,
        envelope="anna",
        smtp="550 5.1.7",
        reason="No valid sender address",
    ),
    # -- damaged transfer encodings --------------------------------------------------------------
    Case(
        "base64-missing-padding",
        mail(subject("Vraag"), body=b64("Hallo, mijn vraag gaat over afval.").rstrip("=\n"), cte="base64"),
        "contact",
        new=True,
        body_has=("mijn vraag gaat over afval",),
        metadata={"mail.body_damaged": "true"},
    ),
    Case(
        "base64-junk-inside",
        mail(subject("Vraag"), body="SGFsbG8sIG1p*am4gdnJhYWcgZ2FhdCBvdmVyIGFmdmFsLg==", cte="base64"),
        "contact",
        new=True,
        body_has=("Hallo",),
        metadata={"mail.body_damaged": "true"},
    ),
    Case(
        "base64-nothing-readable",
        mail(subject("Vraag"), body="!!!!@@@@####$$$$%%%%&&&&*", cte="base64"),
        "contact",
        new=True,
        body_has=(UNREADABLE_BODY,),
        body_lacks=("!!!!",),
        metadata={"mail.body_unreadable": "true"},
    ),
    Case(
        "qp-broken-escape",
        mail(subject("Vraag"), body="Prijs =E2=82=AC 5 en =ZZ kapot", cte="quoted-printable"),
        "contact",
        body_has=("Prijs € 5",),
    ),
    # -- replies ---------------------------------------------------------------------------------
    Case(
        "reply-to-our-ack",
        mail(subject("Re: Ontvangstbevestiging OMM-5KQ3-ZP7A"), ("In-Reply-To", ACK_ID)),
        "contact",
        ack=False,
        metadata={"mail.followup": "true"},
    ),
    Case(
        "reply-in-reply-to-known-mail",
        mail(
            subject("Re: Paspoort"),
            ("In-Reply-To", "<vraag-eerder@example.nl>"),
            ("References", "<vraag-eerder@example.nl>"),
        ),
        "contact",
        new=True,
        ack=False,
    ),
    Case(
        "reply-references-only-known",
        mail(subject("Aanvulling"), ("References", "<x@y> <vraag-eerder@example.nl>")),
        "contact",
        new=True,
        ack=False,
    ),
    Case(
        "reply-reference-in-subject",
        mail(subject("Aanvulling op OMM-5KQ3-ZP7A")),
        "contact",
        ack=False,
        metadata={"mail.followup": "true"},
    ),
    Case(
        "reply-to-unknown-mail-is-acknowledged",
        mail(subject("Re: nieuwsbrief"), ("In-Reply-To", "<onbekend@x.nl>")),
        "contact",
        ack=True,
    ),
    # -- HTML ------------------------------------------------------------------------------------
    Case(
        "html-link-target",
        html('<p>Zie <a href="https://www.ommen.nl/afval">deze pagina</a>.</p>'),
        "contact",
        new=True,
        body_has=("deze pagina", "https://www.ommen.nl/afval"),
    ),
    Case(
        "html-list-items",
        html("<p>Vragen:</p><ul><li>paspoort</li><li>rijbewijs</li></ul>"),
        "contact",
        new=True,
        body_has=("* paspoort", "* rijbewijs"),
    ),
    Case(
        "html-table-cells",
        html("<table><tr><td>Naam</td><td>Anna</td></tr><tr><td>Straat</td><td>Dorpsweg</td></tr></table>"),
        "contact",
        new=True,
        body_has=("Naam | Anna", "Straat | Dorpsweg"),
    ),
    Case(
        "outlook-html-style-and-script",
        html(
            "<html><head><style>p.MsoNormal{margin:0}</style></head><body>"
            "<!--[if gte mso 9]><xml>o</xml><![endif]-->"
            "<p class=MsoNormal>Goedemorgen,</p><script>alert(1)</script><p>Mijn vraag.</p></body></html>"
        ),
        "contact",
        body_has=("Goedemorgen,", "Mijn vraag."),
        body_lacks=("MsoNormal", "alert"),
    ),
    # -- limits ----------------------------------------------------------------------------------
    Case(
        "too-many-mime-parts",
        mail(subject("Veel"), body=_PARTS_BODY, content_type=_PARTS_TYPE),
        "refused",
        new=True,
        smtp="554 5.6.0",
        reason="MIME parts",
    ),
    Case(
        "mime-nested-too-deep",
        mail(subject("Diep"), body=_DEEP_BODY, content_type=_DEEP_TYPE),
        "refused",
        new=True,
        smtp="554 5.6.0",
        reason="nested",
    ),
]
