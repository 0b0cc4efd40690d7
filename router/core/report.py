"""The norm-compliance report: per service norm and per month, how many promises were kept on time.

Pure computation over plain rows (`ReportRow`: items of one norm in one month with one status and one
time to meet, counted), which a history store groups for it (`HistoryStore.report_rows`,
router/core/history.py); rendering as JSON, CSV and HTML (the charts are PNGs made elsewhere,
router/history/charts.py, and passed in). `DEFINITIONS` says what the figures mean, and every format
carries it.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

__all__ = [
    "DEFINITIONS",
    "STATUSES",
    "Figures",
    "NormReport",
    "Report",
    "ReportPeriod",
    "ReportRow",
    "compute",
    "fold",
    "parse_report_period",
    "percentile",
]

Status = Literal["on_time", "late", "overdue", "open"]
STATUSES: tuple[Status, ...] = ("on_time", "late", "overdue", "open")
KIND_ORDER = ("acknowledge", "respond", "resolve", "callback")

DEFINITIONS: tuple[tuple[str, str], ...] = (
    (
        "item",
        "One promise to a resident: a deadline of a contact (acknowledge, respond, resolve) as the "
        "norms of the rules set it when the contact was routed, or a callback request. Items are "
        "counted in the month (Europe/Amsterdam, or the municipality's time zone) in which their term "
        "started: the receipt of the contact, or the moment the callback was requested.",
    ),
    (
        "norm",
        "The rule of the municipality's norms that set the term: its kind, its channel and category "
        "when it is limited to one (a norm for a category applies on every channel), and the term.",
    ),
    (
        "met",
        "Acknowledge and respond: an agent recorded that the resident got it (the moment it was "
        "recorded). Callback: an attempt reached the resident. Every kind: the contact was closed. A "
        "term of 'immediately' is met at receipt by the channel's automatic acknowledgement.",
    ),
    (
        "met on time / met late",
        "Met at or before the deadline / after it. Percentages are of all items of the norm.",
    ),
    (
        "open past the deadline",
        "Not met when the report was made, and the deadline has passed; 'open within the term': not "
        "met, deadline still ahead.",
    ),
    (
        "extended term",
        "A term with an extension ('12 weeks + 6 weeks') is measured against its base term (the "
        "deadline the resident was given); an item met after it but within base plus extension is met "
        "late, and counted apart as 'late, within the extension'.",
    ),
    (
        "paused term",
        "The service records no pause (opschorting) of a term: no term is paused in these figures.",
    ),
    (
        "time to meet",
        "From the start of the term to the moment it was met, on the clock of the term: for a term in "
        "workdays the office hours of the municipality's workdays in between (weekends, holidays and "
        "closing days do not count), for hours, days and weeks the time on the clock. Median and 90th "
        "percentile over the items met (on time or late), nearest rank: the shortest time within which "
        "at least half (nine in ten) of them were met. Rounded to the minute.",
    ),
)


# -- periods ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportPeriod:
    """Whole months: `2026Q4` (a quarter), `2026` (a year), `2026-11` (a month)."""

    label: str
    months: tuple[date, ...]

    @property
    def first(self) -> date:
        return self.months[0]

    @property
    def end(self) -> date:
        """The first day after the period."""
        return add_months(self.months[-1], 1)


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


_PERIOD = re.compile(r"^(\d{4})(?:-?Q([1-4])|-(\d{2}))?$")


def parse_report_period(text: str) -> ReportPeriod:
    match = _PERIOD.match(text.strip().upper())
    if match is None or not 1900 <= int(match.group(1)) <= 2999:
        raise ValueError(f"expected a period like 2026Q4, 2026 or 2026-11, got {text!r}")
    year = int(match.group(1))
    if match.group(2):
        quarter = int(match.group(2))
        start, count, label = date(year, 3 * quarter - 2, 1), 3, f"{year}Q{quarter}"
    elif match.group(3):
        month = int(match.group(3))
        if not 1 <= month <= 12:
            raise ValueError(f"expected a month 01 to 12, got {text!r}")
        start, count, label = date(year, month, 1), 1, f"{year}-{month:02d}"
    else:
        start, count, label = date(year, 1, 1), 12, str(year)
    return ReportPeriod(label, tuple(add_months(start, i) for i in range(count)))


# -- the figures ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportRow:
    """`count` items of one norm that started in `month`, with one status as of the report's moment;
    `times`: (minutes to meet, how many) of those of them that were met, ascending."""

    month: date
    kind: str
    norm_channel: str | None
    norm_category: str | None
    term: str
    status: Status
    within_extension: bool
    count: int
    times: tuple[tuple[int, int], ...] = ()

    def key(self) -> tuple[Any, ...]:
        return (
            self.month,
            self.kind,
            self.norm_channel,
            self.norm_category,
            self.term,
            self.status,
            self.within_extension,
        )


def fold(rows: Iterable[tuple[tuple[Any, ...], int | None, int]]) -> list[ReportRow]:
    """ReportRows from (key, minutes or None, count) groups, key as `ReportRow.key`: one row per key
    with its times gathered (what a store without array aggregates returns)."""
    counts: dict[tuple[Any, ...], int] = {}
    times: dict[tuple[Any, ...], dict[int, int]] = {}
    for key, minutes, n in rows:
        counts[key] = counts.get(key, 0) + n
        if minutes is not None:
            per = times.setdefault(key, {})
            per[minutes] = per.get(minutes, 0) + n
    out = []
    for key, n in counts.items():
        month, kind, channel, category, term, status, within = key
        histogram = tuple(sorted(times.get(key, {}).items()))
        out.append(ReportRow(month, kind, channel, category, term, status, within, n, histogram))
    return out


def percentile(values: Iterable[tuple[int, int]], p: float) -> int | None:
    """Nearest rank over (value, count) pairs: the smallest value with at least `p` of all at or below."""
    pairs = sorted((v, c) for v, c in values if c > 0)
    total = sum(c for _, c in pairs)
    if total == 0:
        return None
    rank = max(math.ceil(p * total), 1)
    seen = 0
    for value, count in pairs:
        seen += count
        if seen >= rank:
            return value
    return pairs[-1][0]


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


@dataclass
class Figures:
    items: int = 0
    on_time: int = 0
    late: int = 0
    late_within_extension: int = 0
    overdue: int = 0
    open: int = 0
    # (minutes, count) of the items met, for the percentiles.
    times: dict[int, int] = field(default_factory=dict, repr=False)

    def add(self, row: ReportRow) -> None:
        self.items += row.count
        if row.status == "on_time":
            self.on_time += row.count
        elif row.status == "late":
            self.late += row.count
            if row.within_extension:
                self.late_within_extension += row.count
        elif row.status == "overdue":
            self.overdue += row.count
        else:
            self.open += row.count
        if row.status in ("on_time", "late"):
            for minutes, n in row.times:
                self.times[minutes] = self.times.get(minutes, 0) + n

    @property
    def pct_on_time(self) -> float | None:
        return _pct(self.on_time, self.items)

    @property
    def pct_late(self) -> float | None:
        return _pct(self.late, self.items)

    @property
    def pct_overdue(self) -> float | None:
        return _pct(self.overdue, self.items)

    @property
    def median_minutes(self) -> int | None:
        return percentile(self.times.items(), 0.5)

    @property
    def p90_minutes(self) -> int | None:
        return percentile(self.times.items(), 0.9)

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "met_on_time": self.on_time,
            "met_late": self.late,
            "met_late_within_extension": self.late_within_extension,
            "open_past_deadline": self.overdue,
            "open_within_term": self.open,
            "pct_met_on_time": self.pct_on_time,
            "pct_met_late": self.pct_late,
            "pct_open_past_deadline": self.pct_overdue,
            "median_minutes_to_meet": self.median_minutes,
            "p90_minutes_to_meet": self.p90_minutes,
        }


def clock_of(term: str) -> str:
    return "office hours of workdays" if "workday" in term else "elapsed time"


@dataclass
class NormReport:
    kind: str
    channel: str | None
    category: str | None
    term: str
    months: dict[date, Figures]
    total: Figures

    @property
    def clock(self) -> str:
        return clock_of(self.term)

    @property
    def label(self) -> str:
        where = " · ".join(x for x in (self.channel, self.category) if x) or "every contact"
        return f"{self.kind} · {where} · {self.term}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "channel": self.channel,
            "category": self.category,
            "term": self.term,
            "clock": self.clock,
            "total": self.total.as_dict(),
            "months": [{"month": m.strftime("%Y-%m"), **f.as_dict()} for m, f in sorted(self.months.items())],
        }


def _norm_order(key: tuple[str, str | None, str | None, str]) -> tuple[Any, ...]:
    kind, channel, category, term = key
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return (rank, kind, channel or "", category or "", term)


@dataclass
class Report:
    tenant: str
    tenant_name: str
    period: ReportPeriod
    as_of: datetime
    norms: list[NormReport]

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "tenant_name": self.tenant_name,
            "period": self.period.label,
            "months": [m.strftime("%Y-%m") for m in self.period.months],
            "as_of": self.as_of.isoformat(),
            "definitions": dict(DEFINITIONS),
            "norms": [n.as_dict() for n in self.norms],
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        fields = list(Figures().as_dict())
        writer.writerow(["kind", "channel", "category", "term", "clock", "month", *fields])
        for norm in self.norms:
            head = [norm.kind, norm.channel or "", norm.category or "", norm.term, norm.clock]
            for month, figures in sorted(norm.months.items()):
                writer.writerow([*head, month.strftime("%Y-%m"), *_cells(figures)])
            writer.writerow([*head, self.period.label, *_cells(norm.total)])
        return out.getvalue()

    def to_html(self, charts: Mapping[str, bytes] | None = None) -> str:
        """A page for an annual report; `charts` (PNG bytes by name: "overview", or a norm's label)
        are shown inline."""
        return _html(self, charts or {})


def _cells(f: Figures) -> list[Any]:
    return ["" if v is None else v for v in f.as_dict().values()]


def compute(
    rows: Iterable[ReportRow], *, tenant: str, tenant_name: str, period: ReportPeriod, as_of: datetime
) -> Report:
    """The report of `period` from the store's rows (rows outside the period's months are ignored)."""
    months = set(period.months)
    by_norm: dict[tuple[str, str | None, str | None, str], NormReport] = {}
    for row in rows:
        if row.month not in months:
            continue
        key = (row.kind, row.norm_channel, row.norm_category, row.term)
        norm = by_norm.get(key)
        if norm is None:
            norm = NormReport(*key, months={m: Figures() for m in period.months}, total=Figures())
            by_norm[key] = norm
        norm.months[row.month].add(row)
        norm.total.add(row)
    norms = [by_norm[k] for k in sorted(by_norm, key=_norm_order)]
    return Report(tenant, tenant_name, period, as_of, norms)


# -- HTML -------------------------------------------------------------------------------------------


def hours(minutes: int | None) -> str:
    """'3:05' (hours and minutes), or '–' when there is nothing to show."""
    return "–" if minutes is None else f"{minutes // 60}:{minutes % 60:02d}"


def _pct_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#1a1a1a}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}th,td{border:1px solid #bbb;padding:0.25rem 0.5rem}
td{text-align:right}td:first-child,th{text-align:left}tr.total td{font-weight:bold}
dt{font-weight:bold;margin-top:0.5rem}img{max-width:100%}
"""

_HEAD = (
    "month",
    "items",
    "met on time",
    "met late",
    "of which within extension",
    "open past deadline",
    "open within term",
    "median time to meet (h:mm)",
    "p90 time to meet (h:mm)",
)


def _row(label: str, f: Figures, css: str = "") -> str:
    cells = [
        str(f.items),
        f"{f.on_time} ({_pct_text(f.pct_on_time)})",
        f"{f.late} ({_pct_text(f.pct_late)})",
        str(f.late_within_extension),
        f"{f.overdue} ({_pct_text(f.pct_overdue)})",
        str(f.open),
        hours(f.median_minutes),
        hours(f.p90_minutes),
    ]
    tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
    return f"<tr{css}><td>{html.escape(label)}</td>{tds}</tr>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _html(report: Report, charts: Mapping[str, bytes]) -> str:
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Service norms {e(report.tenant_name)} {e(report.period.label)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Service norms kept: {e(report.tenant_name)}, {e(report.period.label)}</h1>",
        f"<p>As of {e(report.as_of.strftime('%Y-%m-%d %H:%M %Z'))}. Definitions at the end.</p>",
    ]
    if "overview" in charts:
        parts.append(_img(charts["overview"], "share of items met on time per norm"))
    if not report.norms:
        parts.append("<p>No items in this period.</p>")
    head = "".join(f"<th>{e(h)}</th>" for h in _HEAD)
    for norm in report.norms:
        parts.append(f"<h2>{e(norm.label)}</h2><p>Time to meet: {e(norm.clock)}.</p>")
        if norm.label in charts:
            parts.append(_img(charts[norm.label], f"{norm.label} per month"))
        rows = [_row(m.strftime("%Y-%m"), f) for m, f in sorted(norm.months.items())]
        rows.append(_row(report.period.label, norm.total, ' class="total"'))
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    parts.append("<h2>Definitions</h2><dl>")
    parts += [f"<dt>{e(term)}</dt><dd>{e(text)}</dd>" for term, text in DEFINITIONS]
    parts.append("</dl></body></html>")
    return "\n".join(parts)


def norms_with_items(report: Report) -> Sequence[NormReport]:
    return [n for n in report.norms if n.total.items]
