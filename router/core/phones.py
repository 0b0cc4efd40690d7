"""Phone numbers in E.164 (`+31612345678`) with `phonenumbers` (libphonenumber's data), Dutch numbers by
default: the one form every part of the service stores, whoever typed the number (an adapter, an agent,
an integrator)."""

from __future__ import annotations

import re

import phonenumbers

MAX_INPUT = 40
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def to_e164(raw: str, region: str = "NL") -> str:
    """'06-12 34 56 78' → '+31612345678'. ValueError with a message fit for a field error."""
    if len(raw) > MAX_INPUT:
        raise ValueError(f"at most {MAX_INPUT} characters")
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number (e.g. 06 12345678 or +31 20 123 4567)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def e164_or_as_is(raw: str, region: str = "NL") -> str:
    """E.164 when `raw` is a valid number, else `raw` unchanged: for numbers the service keeps but did not
    check itself (a contact published to `contacts` directly), so nothing a sender wrote is lost."""
    if _E164.match(raw):  # what the adapters already send: no parsing on the router's hot path
        return raw
    try:
        return to_e164(raw, region)
    except ValueError:
        return raw
