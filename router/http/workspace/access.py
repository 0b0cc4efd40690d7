"""Who may see and do what: a signed-in agent sees and acts on the items of their own tenant and teams
only. Another tenant's contact looks exactly like a missing one (404); a contact of the agent's tenant
that is with another team is refused (403)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from router import logs
from router.core.casework import CaseError, CaseState, parse_callback_id
from router.core.casework_service import Casework
from router.core.ports import StoreUnavailable
from router.http.context import CTX
from router.http.workspace import texts
from router.http.workspace.context import PREFIX
from router.http.workspace.session import SignedInAgent, csrf_token, current_agent

log = logs.get("router.http.workspace")

SIGN_IN = f"{PREFIX}/aanmelden"


class Refused(Exception):
    """A page that cannot be shown or an action that cannot be done, said in plain Dutch."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def casework(request: web.Request) -> Casework:
    found = request.app[CTX].casework
    if found is None:
        raise Refused(503, "De werkplek kan nu geen contacten laden. Probeer het later opnieuw.")
    return found


def signed_in(request: web.Request) -> SignedInAgent:
    """The signed-in agent; a page asked for without a session goes to the sign-in page."""
    agent = current_agent(request)
    if agent is None:
        if request.method == "GET" and "HX-Request" not in request.headers:
            raise web.HTTPSeeOther(SIGN_IN)
        raise Refused(401, "U bent niet (meer) aangemeld. Meld u opnieuw aan.")
    if agent.tenant not in request.app[CTX].tenants:
        raise Refused(403, "Uw gemeente is niet (meer) bekend in deze werkplek.")
    return agent


def supervisor(request: web.Request) -> SignedInAgent:
    agent = signed_in(request)
    if not agent.supervisor:
        raise Refused(403, "Dit overzicht is alleen voor teamleiders.")
    return agent


def allowed(agent: SignedInAgent) -> Callable[[str], bool]:
    """The case-work service's tenant check for this agent."""
    return lambda tenant: tenant == agent.tenant


def team_of_agent(agent: SignedInAgent, team: str | None) -> str:
    """The team whose work list is asked for: one of the agent's teams (403 otherwise)."""
    if team is None:
        return sorted(agent.teams)[0]
    if team not in agent.teams:
        raise Refused(403, "U werkt niet in dit team. U kunt de werkvoorraad van dit team niet zien.")
    return team


async def contact_for(request: web.Request, agent: SignedInAgent, cid: str) -> CaseState:
    """The contact if the agent may see it: 404 for one of another tenant (or none), 403 for one of
    another team of the agent's tenant. A contact is the agent's team's while it is with that team or
    has an open callback request for it."""
    state = await casework(request).load(cid)
    if state is None or "tenant" not in state.fields or state.tenant != agent.tenant:
        raise Refused(404, "Dit contact bestaat niet of u mag het niet zien.")
    teams = {state.fields.get("team")} | {
        cb.get("team") for cb in state.callbacks.values() if cb.get("status") == "open"
    }
    if not teams & agent.teams:
        raise Refused(403, "Dit contact is bij een ander team. U kunt het niet openen.")
    return state


async def callback_for(
    request: web.Request, agent: SignedInAgent, cbid: str
) -> tuple[CaseState, dict[str, str]]:
    parsed = parse_callback_id(cbid)
    if parsed is None:
        raise Refused(404, "Dit terugbelverzoek bestaat niet.")
    state = await casework(request).load(parsed[0])
    cb = state.callbacks.get(parsed[1]) if state is not None else None
    if state is None or cb is None or state.fields.get("tenant") != agent.tenant:
        raise Refused(404, "Dit terugbelverzoek bestaat niet of u mag het niet zien.")
    if cb.get("team") not in agent.teams and state.fields.get("team") not in agent.teams:
        raise Refused(403, "Dit terugbelverzoek is voor een ander team.")
    return state, cb


def base(request: web.Request, **values: Any) -> dict[str, Any]:
    agent = current_agent(request)
    tenants = request.app[CTX].tenants
    return {
        "agent": agent,
        "tenant_name": tenants[agent.tenant].loaded.rules.name if agent and agent.tenant in tenants else None,
        "csrf": csrf_token(request),
        "prefix": PREFIX,
        "texts": texts,
        **values,
    }


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    values = base(request, message=message, status=status)
    return aiohttp_jinja2.render_template("fout.html", request, values, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(handler: Handler) -> Handler:
    """A workspace handler: refusals and failures become a page in Dutch (never the API's JSON)."""

    @wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPRedirection:
            raise
        except Refused as exc:
            return error_page(request, exc.status, exc.message)
        except web.HTTPException as exc:
            return error_page(request, exc.status, exc.text or "Dit lukte niet.")
        except CaseError as exc:
            return error_page(request, exc.status, case_message(exc))
        except StoreUnavailable:
            return error_page(request, 503, "De gegevens zijn even niet bereikbaar. Probeer het zo opnieuw.")
        except Exception:
            resource = request.match_info.route.resource
            log.exception("workspace_error", route=resource.canonical if resource else None)
            return error_page(request, 500, "Er ging iets mis in de werkplek. Probeer het opnieuw.")

    return wrapped


def case_message(exc: CaseError) -> str:
    """A refusal of the case-work service, in Dutch for the agent."""
    body: dict[str, Any] = exc.body
    if exc.status == 409 and "owner" in body:
        return f"Een collega ({body['owner']}) heeft dit contact al opgepakt."
    if exc.status == 409 and "closed" in str(body.get("error")):
        return "Dit contact is al afgesloten."
    if exc.status == 409:
        return "Dit kan nu niet: het contact is intussen veranderd of al verder. Bekijk het contact opnieuw."
    if exc.status == 422:
        fields = body.get("fields") or []
        names = ", ".join(str(f.get("field")) for f in fields) or "het formulier"
        return f"Niet alles is goed ingevuld ({names}). Controleer het formulier."
    if exc.status == 404:
        return "Dit contact bestaat niet of u mag het niet zien."
    return "Dit lukte niet. Laad de pagina opnieuw en probeer het nog eens."
