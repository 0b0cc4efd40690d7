"""The actions of the Contact page. Each checks the CSRF token, the agent's tenant and team, calls the
same case-work service the JSON API uses (router/core/casework_service.py) with the signed-in agent's
id as `agent` and `by` (never a typed name), writes the audit and goes back to the page (303)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from router.core.casework import CALLBACK_OUTCOMES, CaseError
from router.core.phones import to_e164
from router.http.workspace import access, audit
from router.http.workspace.access import Refused, page
from router.http.workspace.context import PREFIX
from router.http.workspace.session import SignedInAgent, check_csrf

MAX_TEXT = 10_000


async def _form(request: web.Request) -> dict[str, str]:
    await check_csrf(request)
    form = await request.post()
    return {k: v.strip() for k, v in form.items() if isinstance(v, str)}


def _text(form: dict[str, str], name: str, label: str, *, required: bool = True) -> str | None:
    value = form.get(name) or None
    if required and value is None:
        raise Refused(422, f"Vul het veld '{label}' in.")
    if value is not None and len(value) > MAX_TEXT:
        raise Refused(422, f"Het veld '{label}' is te lang (ten hoogste {MAX_TEXT} tekens).")
    return value


def _back(cid: str, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{PREFIX}/contact/{cid}?gedaan={done}")


def _actor(agent: SignedInAgent) -> dict[str, Any]:
    return {
        "agent": agent.agent_id,
        "by": agent.agent_id,
        "agent_name": agent.display_name,
        "allowed": access.allowed(agent),
    }


async def _acting(request: web.Request) -> tuple[SignedInAgent, str, dict[str, str]]:
    """The agent, the contact id and the form, once the agent may act on the contact: it is with one
    of the agent's teams."""
    agent = access.signed_in(request)
    form = await _form(request)
    cid = request.match_info["id"]
    state = await access.contact_for(request, agent, cid)
    if state.fields.get("team") not in agent.teams:
        raise Refused(403, "Dit contact is bij een ander team. Alleen dat team kan ermee verder.")
    return agent, cid, form


@page
async def take(request: web.Request) -> web.StreamResponse:
    agent, cid, _ = await _acting(request)
    await access.casework(request).take(cid, **_actor(agent))
    await audit.record(request, agent, cid, "contact.taken")
    raise _back(cid, "opgepakt")


@page
async def transfer(request: web.Request) -> web.StreamResponse:
    agent, cid, form = await _acting(request)
    state = await access.contact_for(request, agent, cid)
    to_team = _text(form, "team", "Naar team")
    note = _text(form, "notitie", "Overdrachtsnotitie", required=False)
    try:
        result = await access.casework(request).transfer(
            cid,
            to_team=str(to_team),
            note=note,
            from_team=state.team,
            if_match=None,
            **_actor(agent),
        )
    except CaseError as exc:
        if exc.status == 409 and "callback_request" in exc.body:
            await audit.record(request, agent, cid, "transfer.refused")
            await audit.record(request, agent, cid, "callback.requested")
            raise _back(cid, "terugbellen-in-plaats") from exc
        raise
    await audit.record(request, agent, cid, "contact.transferred")
    done = "coordinerend" if result.get("outcome") == "sent_to_coordinating_team" else "overgedragen"
    if result["team"] in agent.teams:
        raise _back(cid, done)
    raise web.HTTPSeeOther(f"{PREFIX}/?gedaan={done}")


@page
async def request_callback(request: web.Request) -> web.StreamResponse:
    agent, cid, form = await _acting(request)
    phone = _text(form, "telefoon", "Telefoonnummer")
    try:
        phone = to_e164(str(phone))
    except (ValueError, ValidationError) as exc:
        message = "Dit telefoonnummer klopt niet. Schrijf het bijvoorbeeld als 06 12345678."
        raise Refused(422, message) from exc
    await access.casework(request).request_callback(
        cid,
        team=_text(form, "team", "Team", required=False),
        reason=str(_text(form, "reden", "Waarom terugbellen")),
        phone=phone,
        preferred_time=_text(form, "voorkeur", "Voorkeurstijd", required=False),
        **_actor(agent),
    )
    await audit.record(request, agent, cid, "callback.requested")
    raise _back(cid, "terugbelverzoek")


@page
async def record_attempt(request: web.Request) -> web.StreamResponse:
    agent = access.signed_in(request)
    form = await _form(request)
    cbid = request.match_info["id"]
    state, _cb = await access.callback_for(request, agent, cbid)
    outcome = form.get("uitkomst")
    if outcome not in CALLBACK_OUTCOMES:
        raise Refused(422, "Kies wat de uitkomst van het gesprek was.")
    await access.casework(request).record_attempt(
        cbid, outcome=outcome, note=_text(form, "notitie", "Notitie", required=False), **_actor(agent)
    )
    await audit.record(request, agent, state.cid, "callback.attempted")
    raise _back(state.cid, "poging")


@page
async def record_response(request: web.Request) -> web.StreamResponse:
    agent, cid, form = await _acting(request)
    kind = form.get("soort")
    if kind not in ("acknowledge", "respond"):
        raise Refused(422, "Kies of u de ontvangst bevestigde of reageerde.")
    await access.casework(request).record_response(
        cid, kind=kind, note=_text(form, "notitie", "Notitie", required=False), **_actor(agent)
    )
    await audit.record(request, agent, cid, f"response.{kind}")
    raise _back(cid, "reactie")


@page
async def extend(request: web.Request) -> web.StreamResponse:
    agent, cid, form = await _acting(request)
    kind = form.get("soort")
    if kind not in ("acknowledge", "respond", "resolve"):
        raise Refused(422, "Kies welke termijn u verlengt.")
    await access.casework(request).extend(
        cid, kind=kind, reason=str(_text(form, "reden", "Waarom meer tijd")), **_actor(agent)
    )
    await audit.record(request, agent, cid, "deadline.extended")
    raise _back(cid, "verlengd")


@page
async def close(request: web.Request) -> web.StreamResponse:
    agent, cid, form = await _acting(request)
    await access.casework(request).close(
        cid, resolution=str(_text(form, "oplossing", "Oplossing")), **_actor(agent)
    )
    await audit.record(request, agent, cid, "contact.closed")
    raise web.HTTPSeeOther(f"{PREFIX}/?gedaan=afgesloten")
