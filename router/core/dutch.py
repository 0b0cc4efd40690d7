"""Dates in plain Dutch, without depending on the machine's locale ("donderdag 21 mei 2026")."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

WEEKDAYS = ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag")
MONTHS = (
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
)


def long_date(at: datetime, zone: str = "Europe/Amsterdam") -> str:
    local = at.astimezone(ZoneInfo(zone))
    return f"{WEEKDAYS[local.weekday()]} {local.day} {MONTHS[local.month - 1]} {local.year}"


def long_date_time(at: datetime, zone: str = "Europe/Amsterdam") -> str:
    local = at.astimezone(ZoneInfo(zone))
    return f"{long_date(at, zone)} om {local:%H.%M} uur"
