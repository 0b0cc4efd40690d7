"""Phone numbers to E.164 with `phonenumbers` (libphonenumber's data), Dutch numbers by default."""

from __future__ import annotations

import phonenumbers

MAX_INPUT = 40


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
