"""What a resident sees of their question at /status/<reference>?t=<token> (issue 19): when and how it
came in, which department handles it, the date an answer is promised and why, extensions, and the steps
so far in plain Dutch (B1). Never a message, a name, a note, a phone number or an agent: the page is
reached by a link in a mail whose address nobody verified.

The token is HMAC-SHA256 of the contact id under the deployment's key secret (KEY_SECRET), its first 128
bits in base64url: a secret per contact that the adapter sending the acknowledgement and the API checking
the link both derive, so nothing of it is stored (a mail delivered twice gets the same link), a purge or
an erasure that removes the contact ends the link, and a new KEY_SECRET ends every link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from router.core.calendar.terms import Term, TermUnit
from router.core.calendar.workdays import TenantCalendar
from router.core.dutch import long_date, long_date_time
from router.core.notices import dutch_term

TOKEN_BYTES = 16  # 128 bits

CHANNELS = {
    "mail": "per e-mail",
    "webform": "via het formulier op de website",
    "phone": "per telefoon",
    "social": "via sociale media",
    "counter": "aan de balie",
    "chat": "via de chat",
    "letter": "per brief",
    "post": "per brief",
}

# The deadline a resident is promised an answer by, in this order (router/core/deadlines.py kinds).
ANSWER_KINDS = ("respond", "resolve")


def status_token(secret: bytes, cid: str) -> str:
    digest = hmac.new(secret, b"status\x1f" + cid.encode(), hashlib.sha256).digest()[:TOKEN_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_matches(secret: bytes, cid: str | None, presented: str) -> bool:
    """Whether `presented` is the token of `cid`, in the same time whether or not the reference was
    known (cid None): an unknown reference must not answer faster than a wrong token."""
    expected = status_token(secret, cid if cid is not None else "\x00no such contact")
    same = hmac.compare_digest(expected.encode(), presented.encode("utf-8", "surrogatepass"))
    return same and cid is not None


def status_url(base_url: str, reference: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/status/{reference}?t={token}"


@dataclass(frozen=True)
class Step:
    at: datetime
    text: str


@dataclass(frozen=True)
class StatusView:
    reference: str
    received_at: datetime
    channel: str
    department: str
    closed: bool
    answer_by: datetime | None = None
    answer_by_text: str | None = None
    answer_reason: str | None = None
    answered_at: datetime | None = None
    extended_from_text: str | None = None
    steps: list[Step] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "received_at": self.received_at.isoformat(),
            "channel": self.channel,
            "department": self.department,
            "status": "afgerond" if self.closed else "in behandeling",
            "answer_by": self.answer_by.isoformat() if self.answer_by else None,
            "answer_by_text": self.answer_by_text,
            "answer_reason": self.answer_reason,
            "answered_at": self.answered_at.isoformat() if self.answered_at else None,
            "extended_from": self.extended_from_text,
            "steps": [{"at": s.at.isoformat(), "text": s.text} for s in self.steps],
        }


def _when(at: datetime, term: Term | None, zone: str) -> str:
    hours = term is not None and term.unit is TermUnit.HOURS
    return long_date_time(at, zone) if hours else long_date(at, zone)


def answer_reason(calendar: TenantCalendar, received_at: datetime, term_text: str, zone: str) -> str:
    """Why that date: the norm's term, counted how, and which days did not count."""
    try:
        term = Term.parse(term_text)
    except ValueError:
        return "Dit is de termijn die de gemeente voor deze vraag belooft."
    text = f"De gemeente belooft een antwoord binnen {dutch_term(term)}."
    if term.unit is TermUnit.WORKDAYS:
        text += " Zaterdag, zondag en feestdagen tellen niet mee."
        skipped = [s for s in calendar.explain(received_at, term).skipped if s.reason != "weekend"]
        if skipped:
            days = ", ".join(
                f"{long_date(datetime.combine(s.day, datetime.min.time()), zone)} ({_why(s.reason)})"
                for s in skipped
            )
            text += f" Deze {'dag telt' if len(skipped) == 1 else 'dagen tellen'} ook niet mee: {days}."
    return text


def _why(reason: str) -> str:
    """A holiday's Dutch name or the municipality's own reason for a closing day, as the rules say it."""
    return "geen werkdag" if reason.startswith("no office hours on") else reason


def steps(history: Iterable[Mapping[str, Any]], departments: Mapping[str, str], zone: str) -> list[Step]:
    """The history in words a resident understands, without who did it or what was written."""
    out: list[Step] = []
    for entry in history:
        at = datetime.fromisoformat(str(entry.get("at")))
        event = entry.get("event")
        team = departments.get(str(entry.get("team") or ""), "")
        text: str | None = None
        if event in ("contact.routed", "contact.transferred", "contact.reassigned"):
            text = f"Uw vraag is doorgestuurd naar de afdeling {team}." if team else "Uw vraag is verstuurd."
        elif event == "contact.taken":
            text = "Een medewerker is met uw vraag bezig."
        elif event == "contact.reply":
            text = "Uw aanvulling is bij uw vraag gevoegd."
        elif event == "callback.requested":
            text = "Wij bellen u terug."
        elif event == "callback.attempted":
            text = "Wij hebben geprobeerd u te bellen."
        elif event in ("deadline.met", "deadline.met_late"):
            kind = entry.get("kind")
            if kind == "acknowledge":
                text = "Wij hebben de ontvangst van uw vraag bevestigd."
            elif kind in ANSWER_KINDS:
                text = "Wij hebben u antwoord gegeven."
        elif event == "deadline.extended":
            due = entry.get("due") if entry.get("kind") in ANSWER_KINDS else None
            text = "Wij hebben meer tijd nodig." + (
                f" U krijgt uiterlijk {long_date(datetime.fromisoformat(str(due)), zone)} antwoord."
                if due
                else ""
            )
        elif event == "contact.closed":
            text = "Uw vraag is afgehandeld."
        if text is not None:
            out.append(Step(at, text))
    return out


def status_view(
    *,
    reference: str,
    fields: Mapping[str, str],
    contact: Mapping[str, Any],
    history: Iterable[Mapping[str, Any]],
    departments: Mapping[str, str],
    calendar: TenantCalendar,
    zone: str,
) -> StatusView:
    """The page's content from the contact's state (its hash fields, its parsed JSON, its history)."""
    received_at = datetime.fromisoformat(fields.get("received_at") or str(contact["received_at"]))
    channel = str(fields.get("channel") or contact.get("channel") or "")
    deadlines: list[dict[str, Any]] = json.loads(fields.get("deadlines") or "[]")
    answer = next((d for k in ANSWER_KINDS for d in deadlines if d.get("kind") == k), None)
    answer_by = answer_text = reason = extended = None
    answered_at = None
    if answer is not None:
        term = None
        try:
            term = Term.parse(str(answer.get("term") or ""))
        except ValueError:
            pass
        answer_by = datetime.fromisoformat(str(answer["due"]))
        answer_text = _when(answer_by, term, zone)
        reason = answer_reason(calendar, received_at, str(answer.get("term") or ""), zone)
        if answer.get("original_due"):
            extended = _when(datetime.fromisoformat(str(answer["original_due"])), term, zone)
        met = fields.get(f"met:{answer['kind']}")
        answered_at = datetime.fromisoformat(met) if met else None
    return StatusView(
        reference=reference,
        received_at=received_at,
        channel=CHANNELS.get(channel, channel),
        department=departments.get(str(fields.get("team") or ""), "de gemeente"),
        closed=fields.get("status") == "closed",
        answer_by=answer_by,
        answer_by_text=answer_text,
        answer_reason=reason,
        answered_at=answered_at,
        extended_from_text=extended,
        steps=steps(history, departments, zone),
    )
