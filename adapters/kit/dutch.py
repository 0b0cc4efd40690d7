"""Dates in plain Dutch ("donderdag 21 mei 2026"): the core's (`router.core.dutch`), kept here for the
kit's users."""

from __future__ import annotations

from router.core.dutch import MONTHS, WEEKDAYS, long_date, long_date_time

__all__ = ["MONTHS", "WEEKDAYS", "long_date", "long_date_time"]
