"""The supervisor's overview (role supervisor): per team the open items, those at risk and overdue,
open callback requests, breaches today and this week and refused transfers (from the history store),
this quarter's norm compliance (router/core/report.py), and the items at risk with who has them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from router.core.report import ReportPeriod, compute, parse_report_period
from router.core.tenants import Tenant
from router.http.context import CTX
from router.http.workspace import access, texts, views
from router.http.workspace.access import base, page
from router.http.workspace.context import WORKSPACE


@dataclass
class TeamFigures:
    team: str
    name: str
    open: int = 0
    at_risk: int = 0
    overdue: int = 0
    callbacks: int = 0
    breaches_today: int | None = None
    breaches_week: int | None = None
    refused_week: int | None = None
    risky: list[views.Row] = field(default_factory=list)  # the first RISKY_SHOWN of them
    risky_total: int = 0


# Items at risk listed per team: the soonest first; the count covers them all.
RISKY_SHOWN = 100


def quarter_of(now: datetime) -> ReportPeriod:
    return parse_report_period(f"{now.year}Q{(now.month - 1) // 3 + 1}")


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


async def _figures(request: web.Request, tenant: Tenant, teams: list[tuple[str, str]]) -> dict[str, Any]:
    now = request.app[CTX].clock.now().astimezone(tenant.calendar.zone)
    service = access.casework(request)
    out = []
    for team, name in teams:
        listed = await views.read_page(
            service, tenant, team, now, page_size=RISKY_SHOWN, states=("te-laat", "risico")
        )
        figures = TeamFigures(
            team,
            name,
            open=listed.total_contacts,
            at_risk=listed.at_risk,
            overdue=listed.overdue,
            callbacks=listed.total_callbacks,
            risky=listed.contacts + listed.callbacks,
            risky_total=listed.at_risk + listed.overdue,
        )
        out.append(figures)
    history = request.app[WORKSPACE].history
    compliance = None
    if history is not None:
        today = _day_start(now)
        week = today - timedelta(days=today.weekday())
        names = ["deadline.breached", "transfer.refused"]
        today_counts = await history.event_counts(tenant.id, names, today)
        week_counts = await history.event_counts(tenant.id, names, week)
        for f in out:
            f.breaches_today = today_counts.get(("deadline.breached", f.team), 0)
            f.breaches_week = week_counts.get(("deadline.breached", f.team), 0)
            f.refused_week = week_counts.get(("transfer.refused", f.team), 0)
        # As `contact-router report` computes it (router/history/report.py), from the store's rows.
        period = quarter_of(now)
        found = await history.report_rows(tenant.id, period.first, period.end, now)
        report = compute(
            found, tenant=tenant.id, tenant_name=tenant.loaded.rules.name, period=period, as_of=now
        )
        compliance = [
            {
                "label": texts.DEADLINE_KINDS.get(n.kind, n.kind),
                "channel": texts.CHANNELS.get(n.channel or "", n.channel or "alle kanalen"),
                "term": n.term,
                "items": n.total.items,
                "pct": n.total.pct_on_time,
            }
            for n in report.norms
        ]
    quarter = quarter_of(now).label
    return {"figures": out, "compliance": compliance, "quarter": quarter, "zone": tenant.calendar.zone}


async def _values(request: web.Request) -> dict[str, Any]:
    agent = access.supervisor(request)
    tenant = request.app[CTX].tenants[agent.tenant]
    teams = [(t.id, t.name) for t in tenant.loaded.rules.teams if t.id in agent.teams]
    return base(request, **await _figures(request, tenant, teams))


@page
async def dashboard_page(request: web.Request) -> web.StreamResponse:
    return aiohttp_jinja2.render_template("overzicht.html", request, await _values(request))


@page
async def dashboard_fragment(request: web.Request) -> web.StreamResponse:
    return aiohttp_jinja2.render_template("_overzicht_teams.html", request, await _values(request))
