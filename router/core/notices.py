"""What the resident is told when case work changes a promise: a term extended, a callback that could
not reach them. Plain Dutch (B1), short sentences, the reference number and dates only: nothing an agent
or the resident typed is repeated (an agent's reason may hold internal remarks, and the address a mail
goes to is not proof of who wrote).

A `Notice` goes out by e-mail from the service itself where it can (a mail contact with a sender address,
a tenant with an acknowledgement sender); otherwise the team gets it as a work item and tells the
resident (a letter, or its own mail).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from router.core.calendar.terms import Term, TermUnit
from router.core.dutch import long_date, long_date_time

NoticeChannel = Literal["email", "letter"]

_UNITS = {
    TermUnit.WORKDAYS: ("werkdag", "werkdagen"),
    TermUnit.HOURS: ("uur", "uur"),
    TermUnit.DAYS: ("dag", "dagen"),
    TermUnit.WEEKS: ("week", "weken"),
}
# What the resident asked for, and what the deadline brings, by category.
_SUBJECTS = {
    "bezwaar": ("uw bezwaar", "een beslissing op uw bezwaar"),
    "klacht": ("uw klacht", "een brief met de uitkomst van uw klacht"),
}
_DEFAULT_SUBJECT = ("uw vraag", "antwoord")


@dataclass(frozen=True)
class Notice:
    """One message to a resident. `to` is the address (e-mail) when the service mails it itself; it is
    never logged nor published in an event."""

    kind: Literal["deadline_extended", "callback_unreachable"]
    tenant: str
    contact_id: str
    reference: str
    channel: NoticeChannel
    subject: str
    text: str
    to: str | None = None

    def public(self, *, sent: bool) -> dict[str, object]:
        """What the API answers and the team item carries (the address stays out)."""
        return {
            "kind": self.kind,
            "channel": self.channel,
            "sent_by_service": sent,
            "subject": self.subject,
            "text": self.text,
        }


def dutch_term(term: Term) -> str:
    """'6 weeks' -> '6 weken', '1 workday' -> '1 werkdag'."""
    if term.unit is TermUnit.IMMEDIATELY:
        return "direct"
    one, many = _UNITS[term.unit]
    return f"{term.amount} {one if term.amount == 1 else many}"


def _date(due: datetime, term: Term, zone: str) -> str:
    return long_date_time(due, zone) if term.unit is TermUnit.HOURS else long_date(due, zone)


def _closing(tenant_name: str, phone: str | None) -> list[str]:
    lines = []
    if phone:
        lines += [f"Heeft u vragen? Bel ons dan op {phone}.", ""]
    return [*lines, "Met vriendelijke groet,", "", tenant_name]


def extension_text(
    *,
    tenant_name: str,
    reference: str,
    category: str | None,
    extension: Term,
    due: datetime,
    term: Term,
    zone: str,
    phone: str | None,
) -> tuple[str, str]:
    """(subject, text) of the notice that a term was extended."""
    what, outcome = _SUBJECTS.get(category or "", _DEFAULT_SUBJECT)
    subject = f"Wij hebben meer tijd nodig voor {what} ({reference})"
    lines = [
        "Beste meneer, mevrouw,",
        "",
        f"Wij hebben meer tijd nodig om {what} goed te behandelen. Daarom duurt het {dutch_term(extension)} "
        "langer dan wij eerst hebben gezegd.",
        "",
        f"U krijgt uiterlijk {_date(due, term, zone)} {outcome}.",
        "",
        f"Uw referentienummer is {reference}. Noem dit nummer als u ons belt of mailt.",
        "",
        *_closing(tenant_name, phone),
    ]
    return subject, "\n".join(lines) + "\n"


def unreachable_text(
    *, tenant_name: str, reference: str, attempts: int, phone: str | None
) -> tuple[str, str]:
    """(subject, text) of the notice that the callback could not reach the resident."""
    subject = f"Wij konden u niet bereiken ({reference})"
    times = "1 keer" if attempts == 1 else f"{attempts} keer"
    call = f"Wilt u ons bellen op {phone}?" if phone else "Wilt u contact met ons opnemen?"
    lines = [
        "Beste meneer, mevrouw,",
        "",
        "U heeft contact met ons gehad. Wij zouden u terugbellen.",
        f"Wij hebben {times} geprobeerd u te bellen. Dat is niet gelukt.",
        "",
        f"{call} Noem dan uw referentienummer: {reference}.",
        "",
        "Met vriendelijke groet,",
        "",
        tenant_name,
    ]
    return subject, "\n".join(lines) + "\n"
