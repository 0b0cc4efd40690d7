"""The norm-compliance report from a history store: what `contact-router report` prints and what the
supervisor page asks for (`norm_report(...).as_dict()` is its JSON)."""

from __future__ import annotations

from datetime import datetime

from router.core.history import HistoryStore
from router.core.report import Report, ReportPeriod, compute, parse_report_period
from router.core.tenants import Tenant

__all__ = ["norm_report"]


async def norm_report(
    store: HistoryStore, tenant: Tenant, period: ReportPeriod | str, as_of: datetime
) -> Report:
    """The report of `tenant` for `period` (`2026Q4`, `2026`, `2026-11`) as the history knows it at
    `as_of` (an item not met by then is open; past its deadline, open past the deadline)."""
    if isinstance(period, str):
        period = parse_report_period(period)
    rows = await store.report_rows(tenant.id, period.first, period.end, as_of)
    return compute(rows, tenant=tenant.id, tenant_name=tenant.loaded.rules.name, period=period, as_of=as_of)
