"""The agent workspace: server-rendered pages under /werkplek/ in the API's app (docs/workspace.md).

`setup_workspace(app, config)` adds the pages, their static files (NL Design System CSS, htmx: copied
from the npm registry with their licences, no build step) and the templates (Jinja2, autoescaped).
Engineer-facing texts are English; what agents read is plain Dutch.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from router import logs
from router.http.workspace import actions, dashboard, pages, status, texts
from router.http.workspace.context import PREFIX, WORKSPACE, WorkspaceConfig
from router.http.workspace.live import LIVE, LiveHub
from router.http.workspace.session import configure

__all__ = ["PREFIX", "WorkspaceConfig", "dev_signin_refused", "session_secret", "setup_workspace"]

log = logs.get("router.http.workspace")
HERE = Path(__file__).parent


def session_secret(configured: str, *, embedded: bool) -> bytes:
    """SESSION_SECRET, or one made for this process (said in the log: sessions end when it stops and
    do not carry to another process)."""
    if configured:
        if len(configured) < 16:
            raise ValueError("SESSION_SECRET must be at least 16 characters")
        return configured.encode()
    log.warning(
        "session_secret_generated",
        setting="SESSION_SECRET",
        message="no SESSION_SECRET: this process made its own; workspace sessions end when it stops"
        + ("" if embedded else " and do not work across several API processes"),
    )
    return secrets.token_bytes(32)


def dev_signin_refused(dev_signin: bool, oidc_tenants: frozenset[str]) -> str | None:
    """Why the process must not start: the development sign-in is on while a provider is configured."""
    if dev_signin and oidc_tenants:
        return (
            "WORKSPACE_DEV_SIGNIN is on while an OpenID provider is configured for "
            f"{', '.join(sorted(oidc_tenants))}: turn the development sign-in off "
            "(WORKSPACE_DEV_SIGNIN=false)"
        )
    return None


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """Pages with residents' data are never cached, framed or sniffed; scripts and styles only ours."""
    if not request.path.startswith(f"{PREFIX}/"):
        return
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )


def setup_workspace(app: web.Application, config: WorkspaceConfig) -> None:
    """Add the workspace to the API's app. ValueError when it must not run (see `dev_signin_refused`)."""
    if (why := dev_signin_refused(config.dev_signin, config.oidc_tenants)) is not None:
        raise ValueError(why)
    app[WORKSPACE] = config
    app[LIVE] = config.live
    configure(app, config.secret)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(duration=texts.duration, moment=texts.moment, term=texts.term)
    app.on_response_prepare.append(_headers)
    if config.history is None:
        log.warning(
            "workspace_audit_off",
            setting="HISTORY_URL",
            message="no history store: views and actions in the workspace are not written to an audit log",
        )
    if config.dev_signin:
        log.warning("workspace_dev_signin_on", message="the development sign-in (demo agents) is on")
    r = app.router
    r.add_get(PREFIX, _to_start)
    r.add_get(f"{PREFIX}/", pages.work_list_page)
    r.add_get(f"{PREFIX}/lijst", pages.work_list_fragment)
    r.add_get(f"{PREFIX}/aanmelden", pages.sign_in_page)
    r.add_post(f"{PREFIX}/aanmelden/ontwikkeling", pages.dev_sign_in)
    r.add_post(f"{PREFIX}/afmelden", pages.sign_out_action)
    r.add_get(f"{PREFIX}/live", pages.live_stream)
    r.add_get(f"{PREFIX}/contact/{{id}}", pages.contact_page)
    r.add_post(f"{PREFIX}/contact/{{id}}/oppakken", actions.take)
    r.add_post(f"{PREFIX}/contact/{{id}}/overdragen", actions.transfer)
    r.add_post(f"{PREFIX}/contact/{{id}}/terugbelverzoek", actions.request_callback)
    r.add_post(f"{PREFIX}/contact/{{id}}/reactie", actions.record_response)
    r.add_post(f"{PREFIX}/contact/{{id}}/verlengen", actions.extend)
    r.add_post(f"{PREFIX}/contact/{{id}}/afsluiten", actions.close)
    r.add_post(f"{PREFIX}/terugbelverzoek/{{id}}/poging", actions.record_attempt)
    r.add_get(status.PATH, status.status_page)
    r.add_get(f"{PREFIX}/overzicht", dashboard.dashboard_page)
    r.add_get(f"{PREFIX}/overzicht/teams", dashboard.dashboard_fragment)
    r.add_static(f"{PREFIX}/static", HERE / "static", append_version=True)
    r.add_routes(config.oidc_routes)


async def _to_start(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(f"{PREFIX}/")


__all__ += ["LiveHub"]
