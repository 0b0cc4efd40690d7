"""Mails for the tests, built with the standard library as a resident's mail program would."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

RESIDENT = "j.jansen@example.nl"
RESIDENT_NAME = "Jan Jansen"


def resident_mail(
    *,
    subject: str = "Paspoort verlopen",
    body: str = "Mijn paspoort is verlopen. Hoe vraag ik een nieuwe aan? Bel mij op 06 12345678.",
    to: str = "info@ommen.nl",
    sender: str = RESIDENT,
    name: str = RESIDENT_NAME,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    html: str | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="example.nl")
    msg["Date"] = "Wed, 13 May 2026 10:00:00 +0200"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg
