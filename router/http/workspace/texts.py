"""What agents read: plain Dutch (B1) labels for codes, dates and durations.

Codes stay codes everywhere else (events, logs, the API); only the pages translate them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

_DAYS = ("ma", "di", "wo", "do", "vr", "za", "zo")
_MONTHS = ("jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec")

DEADLINE_KINDS = {
    "acknowledge": "Ontvangst bevestigen",
    "respond": "Reageren",
    "resolve": "Afhandelen",
    "callback": "Terugbellen",
}

CHANNELS = {
    "mail": "E-mail",
    "webform": "Webformulier",
    "phone": "Telefoon",
    "social": "Sociale media",
    "counter": "Balie",
    "chat": "Chat",
    "letter": "Brief",
}

HISTORY_EVENTS = {
    "contact.received": "Binnengekomen",
    "contact.routed": "Naar team gestuurd",
    "contact.transferred": "Overgedragen",
    "contact.reassigned": "Doorgezet door het coördinerende team",
    "contact.taken": "Opgepakt",
    "contact.closed": "Afgesloten",
    "contact.reply": "Reactie van de inwoner",
    "contact.merged": "Toegevoegd aan een ander contact",
    "transfer.refused": "Overdracht geweigerd (maximum bereikt)",
    "callback.requested": "Terugbelverzoek gemaakt",
    "callback.asked_again": "Terugbelverzoek opnieuw gevraagd",
    "callback.attempted": "Terugbelpoging",
    "callback.closed": "Terugbelverzoek afgesloten",
    "deadline.breached": "Termijn verlopen",
    "deadline.extended": "Termijn verlengd",
    "response.recorded": "Reactie vastgelegd",
}

# A contact's status, as the list of a resident's other contacts shows it.
STATUSES = {
    "routing": "Wordt verdeeld",
    "routed": "Open",
    "closed": "Afgesloten",
    "merged": "Toegevoegd aan een ander contact",
}

# What the KCC did on the line, for a phone note added to an open contact of the same resident.
PHONE_OUTCOMES = {
    "answered": "Het KCC heeft de vraag aan de telefoon al beantwoord",
    "transferred": "Het KCC heeft de beller doorverbonden",
}

OUTCOMES = {"reached": "Bereikt", "no_answer": "Niet opgenomen", "wrong_number": "Verkeerd nummer"}

# What an action answers, shown once after it (?gedaan=<code>).
DONE = {
    "opgepakt": "U heeft dit contact opgepakt. Collega's zien dat u ermee bezig bent.",
    "overgedragen": "Het contact is overgedragen.",
    "coordinerend": "Het maximum aantal overdrachten is bereikt. Het contact is naar het "
    "coördinerende team gegaan. Dat team zet het bij het juiste team neer.",
    "terugbelverzoek": "Het terugbelverzoek is gemaakt.",
    "terugbellen-in-plaats": "Overdragen mag niet meer. Er is een terugbelverzoek gemaakt voor het "
    "andere team. De inwoner wordt teruggebeld.",
    "poging": "De terugbelpoging is vastgelegd.",
    "reactie": "De reactie is vastgelegd.",
    "verlengd": "De termijn is verlengd. De inwoner krijgt daarover bericht.",
    "afgesloten": "Het contact is afgesloten.",
}

# The calendar's reasons (router/core/calendar/workdays.py `explain`), by how they start.
_DAY_ZERO = {
    "received at or after closing time": "binnengekomen na sluitingstijd: dag 0 is de volgende werkdag",
    "received on a non-workday": "binnengekomen op een dag zonder werktijd: dag 0 is de volgende werkdag",
    "received on a workday before opening time": "binnengekomen voor openingstijd: die dag is dag 0",
    "received on a workday before closing time": "binnengekomen tijdens werktijd: die dag is dag 0",
    "calendar days count from the date of receipt": "kalenderdagen tellen vanaf de dag van binnenkomst",
    "hour terms run around the clock": "uren tellen door, ook buiten werktijd, vanaf het moment van "
    "binnenkomst",
    "the deadline is the moment of receipt": "de termijn is het moment van binnenkomst",
}

_UNITS = {
    "workdays": "werkdagen",
    "workday": "werkdag",
    "hours": "uur",
    "hour": "uur",
    "days": "dagen",
    "day": "dag",
    "weeks": "weken",
    "week": "week",
    "immediately": "direct",
}


def day_zero_reason(reason: str) -> str:
    """The calendar's reason in Dutch where we know its wording; as written otherwise."""
    for start, dutch in _DAY_ZERO.items():
        if reason.startswith(start):
            return dutch
    return reason


def skipped_reason(reason: str) -> str:
    if reason.startswith("no office hours on"):
        return "geen werktijd op die dag"
    return {"weekend": "weekend"}.get(reason, reason)


def term(text: str | None) -> str:
    """'3 workdays + 2 weeks' → '3 werkdagen + 2 weken'."""
    if not text:
        return "—"
    return " ".join(_UNITS.get(word, word) for word in text.split())


def moment(value: datetime | str | None, zone: tzinfo) -> str:
    """'wo 13 mei 2026, 10:00' in the tenant's time zone."""
    if value is None or value == "":
        return "—"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    at = at.astimezone(zone)
    return f"{_DAYS[at.weekday()]} {at.day} {_MONTHS[at.month - 1]} {at.year}, {at:%H:%M}"


def duration(seconds: int | float | None) -> str:
    """'2 dagen 3 uur', '4 uur 10 min', '25 min'; 'te laat: …' once negative."""
    if seconds is None:
        return "—"
    late = seconds < 0
    left = timedelta(seconds=abs(int(seconds)))
    days, rest = left.days, left.seconds
    hours, minutes = rest // 3600, rest % 3600 // 60
    if days:
        text = f"{days} {'dag' if days == 1 else 'dagen'} {hours} uur"
    elif hours:
        text = f"{hours} uur {minutes} min"
    else:
        text = f"{minutes} min"
    return f"{text} te laat" if late else text
