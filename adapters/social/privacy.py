"""Burgerservicenummers (BSN) in free text: found with the eleven-test ("elfproef") and masked.

A BSN is 9 digits d1..d9 with 9*d1 + 8*d2 + ... + 2*d8 - 1*d9 divisible by 11 (and not all zeros).
Residents write them with spaces, dots or dashes between groups; those forms are found too. About one
random 9-digit number in eleven passes the test: masking such an order number by mistake is the price
of never letting a real BSN through.
"""

from __future__ import annotations

import re

# Nine digits, optionally one separator between any two, not part of a longer number.
_CANDIDATE = re.compile(r"(?<![\d])\d(?:[ .\-]?\d){8}(?![\d])")
MASK = "*********"


def elfproef(digits: str) -> bool:
    if len(digits) != 9 or not digits.isdigit() or digits == "000000000":
        return False
    weights = (9, 8, 7, 6, 5, 4, 3, 2, -1)
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11 == 0


def mask_bsn(text: str) -> tuple[str, int]:
    """The text with every BSN replaced by asterisks, and how many were masked."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        digits = re.sub(r"\D", "", match.group(0))
        if elfproef(digits):
            count += 1
            return MASK
        return match.group(0)

    return _CANDIDATE.sub(replace, text), count
