"""PNG charts of the norm-compliance report (matplotlib, Agg backend: no display needed), for the HTML
report and for an annual report. matplotlib is the optional extra `charts`; `available()` says whether
it is installed, and the report is complete without it."""

from __future__ import annotations

import io
from typing import Any

from router.core.report import NormReport, Report, norms_with_items

COLOURS = {"on time": "#2e7d32", "late": "#f9a825", "open past deadline": "#c62828", "open": "#9e9e9e"}


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return out.getvalue()


def _shares(norm: NormReport) -> tuple[list[str], dict[str, list[float]]]:
    months = sorted(norm.months)
    labels = [m.strftime("%Y-%m") for m in months]
    shares: dict[str, list[float]] = {k: [] for k in COLOURS}
    for m in months:
        f = norm.months[m]
        whole = f.items or 1
        for key, part in zip(COLOURS, (f.on_time, f.late, f.overdue, f.open), strict=True):
            shares[key].append(100.0 * part / whole)
    return labels, shares


def norm_chart(norm: NormReport) -> bytes:
    """Stacked bars per month: the share of the norm's items met on time, late, open past the deadline."""
    plt = _pyplot()
    labels, shares = _shares(norm)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bottom = [0.0] * len(labels)
    for key, values in shares.items():
        ax.bar(labels, values, bottom=bottom, color=COLOURS[key], label=key)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for i, month in enumerate(sorted(norm.months)):
        ax.text(i, 101, f"n={norm.months[month].items}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 112)
    ax.set_ylabel("% of items")
    ax.set_title(norm.label, fontsize=10)
    ax.legend(fontsize=8, loc="lower right", ncols=2)
    return _png(fig)


def overview_chart(report: Report) -> bytes:
    """One bar per norm: the share of its items met on time in the whole period."""
    plt = _pyplot()
    norms = norms_with_items(report)
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(norms), 1) + 1.2))
    labels = [n.label for n in norms]
    values = [n.total.pct_on_time or 0.0 for n in norms]
    ax.barh(labels, values, color=COLOURS["on time"])
    for i, v in enumerate(values):
        ax.text(v + 1, i, f"{v:.1f} %", va="center", fontsize=8)
    ax.set_xlim(0, 110)
    ax.invert_yaxis()
    ax.set_xlabel("% met on time")
    ax.set_title(f"{report.tenant_name}, {report.period.label}: service norms met on time", fontsize=10)
    return _png(fig)


def charts(report: Report) -> dict[str, bytes]:
    """Every chart of the report by name ("overview", or a norm's label), for `Report.to_html`."""
    out = {"overview": overview_chart(report)}
    for norm in norms_with_items(report):
        out[norm.label] = norm_chart(norm)
    return out
