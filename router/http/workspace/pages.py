"""The pages: sign-in, Werkvoorraad (the team's work list), Contact, the live stream."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from router.core.casework import CALLBACK_OUTCOMES, public_callback
from router.core.contact import Contact
from router.http.context import CTX
from router.http.residents import related_of
from router.http.workspace import access, audit, live, texts, views
from router.http.workspace.access import Refused, base, page
from router.http.workspace.context import PREFIX, WORKSPACE
from router.http.workspace.demo import demo_agents
from router.http.workspace.session import check_csrf, sign_in, sign_out

# -- signing in -------------------------------------------------------------------------------------


@page
async def sign_in_page(request: web.Request) -> web.StreamResponse:
    config = request.app[WORKSPACE]
    tenants = request.app[CTX].tenants
    providers = [(t, tenants[t].loaded.rules.name) for t in sorted(config.oidc_tenants) if t in tenants]
    agents = demo_agents(tenants) if config.dev_signin else []
    by_tenant: dict[str, list[Any]] = {}
    for a in agents:
        by_tenant.setdefault(a.tenant, []).append(a)
    return aiohttp_jinja2.render_template(
        "aanmelden.html",
        request,
        base(
            request,
            providers=providers,
            demo=[(t, tenants[t].loaded.rules.name, by_tenant[t]) for t in sorted(by_tenant)],
        ),
    )


@page
async def dev_sign_in(request: web.Request) -> web.StreamResponse:
    if not request.app[WORKSPACE].dev_signin:
        raise Refused(404, "De ontwikkel-aanmelding staat uit.")
    await check_csrf(request)
    form = await request.post()
    chosen = str(form.get("agent", ""))
    found = next((a for a in demo_agents(request.app[CTX].tenants) if a.agent_id == chosen), None)
    if found is None:
        raise Refused(422, "Kies een demo-medewerker uit de lijst.")
    response = web.HTTPSeeOther(f"{PREFIX}/")
    sign_in(request, response, found.signed_in())
    access.log.info("workspace_signed_in", agent=found.agent_id, tenant=found.tenant, via="development")
    raise response


@page
async def sign_out_action(request: web.Request) -> web.StreamResponse:
    await check_csrf(request)
    response = web.HTTPSeeOther(access.SIGN_IN)
    sign_out(response)
    raise response


# -- Werkvoorraad -----------------------------------------------------------------------------------


async def _work_list(request: web.Request) -> dict[str, Any]:
    agent = access.signed_in(request)
    team = access.team_of_agent(agent, request.query.get("team") or None)
    tenant = request.app[CTX].tenants[agent.tenant]
    channel = request.query.get("kanaal") or None
    category = request.query.get("categorie") or None
    page_no = _page_number(request.query.get("pagina"))
    now = request.app[CTX].clock.now()
    listed = await views.read_page(
        access.casework(request),
        tenant,
        team,
        now,
        channel=channel,
        category=category,
        page=page_no,
        page_size=views.PAGE_SIZE,
    )
    teams = [(t.id, t.name) for t in tenant.loaded.rules.teams if t.id in agent.teams]
    # The page's own address without its page number: the paging links add theirs.
    kept = [(k, v) for k, v in request.query.items() if k != "pagina"]
    return base(
        request,
        work=listed,
        team=team,
        team_name=dict(teams)[team],
        teams=teams,
        channel=channel,
        category=category,
        zone=tenant.calendar.zone,
        query=request.query_string,
        paging_query=urlencode(kept),
        page_size=views.PAGE_SIZE,
        done=texts.DONE.get(request.query.get("gedaan") or ""),
    )


def _page_number(raw: str | None) -> int:
    """?pagina=N; anything else is the first page (an old link must not break the list)."""
    try:
        return max(1, int(raw or "1"))
    except ValueError:
        return 1


@page
async def work_list_page(request: web.Request) -> web.StreamResponse:
    values = await _work_list(request)
    return aiohttp_jinja2.render_template("werkvoorraad.html", request, values)


@page
async def work_list_fragment(request: web.Request) -> web.StreamResponse:
    """The list alone: what the page fetches again when an event says it changed."""
    values = await _work_list(request)
    return aiohttp_jinja2.render_template("_werklijst.html", request, values)


# -- Contact ----------------------------------------------------------------------------------------


@page
async def contact_page(request: web.Request) -> web.StreamResponse:
    agent = access.signed_in(request)
    cid = request.match_info["id"]
    state = await access.contact_for(request, agent, cid)
    await audit.record(request, agent, cid, "contact.viewed")
    tenant = request.app[CTX].tenants[agent.tenant]
    now = request.app[CTX].clock.now()
    contact = Contact.model_validate_json(state.fields["contact"])
    rules = tenant.loaded.rules
    callbacks = [public_callback(cb) for _, cb in sorted(state.callbacks.items())]
    term = rules.callback_term()
    callback_due = tenant.deadline("callback", term, now).due if term is not None else None
    history = await access.casework(request).history(cid)
    team_names = {t.id: t.name for t in rules.teams}
    # The same resident's other contacts (by address, number or social handle), across channels; a link
    # only where the agent may open it (their team's), the others named without one.
    others = await related_of(request.app[CTX], cid, state.fields)
    related = [(r, r.team in agent.teams) for r in others]
    done = request.query.get("gedaan")
    return aiohttp_jinja2.render_template(
        "contact.html",
        request,
        base(
            request,
            state=state,
            contact=contact,
            fields=state.fields,
            deadlines=views.deadlines(tenant, state, now),
            hops=views.hops(state),
            callbacks=callbacks,
            history=list(reversed(history)),
            related=related,
            related_months=rules.residents.related_months,
            offer=views.transfer_offer(tenant, state),
            transfer_limit=rules.transfer_limit,
            teams=[(t.id, t.name) for t in rules.teams],
            team_names=team_names,
            callback_due=texts.moment(callback_due, tenant.calendar.zone) if callback_due else None,
            outcomes=[(o, texts.OUTCOMES[o]) for o in CALLBACK_OUTCOMES],
            zone=tenant.calendar.zone,
            done=texts.DONE.get(done or ""),
            owner=state.fields.get("owner") or None,
            owner_name=state.fields.get("owner_name") or None,
            mine=state.fields.get("owner") == agent.agent_id,
            can_act=state.fields.get("team") in agent.teams and state.status == "routed",
        ),
    )


# -- live -------------------------------------------------------------------------------------------


@page
async def live_stream(request: web.Request) -> web.StreamResponse:
    agent = access.signed_in(request)
    return await live.stream(request, agent)
