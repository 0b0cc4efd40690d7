"""The workspace's signed-in agent: a session cookie signed with SESSION_SECRET, and its CSRF token.

The cookie holds the agent as JSON, signed with HMAC-SHA256 (not encrypted: it holds nothing the agent
may not see). It lives only until `expires_at`; an expired or badly signed cookie is no session. Every
POST of the workspace checks the CSRF token (`check_csrf`): the session's own, or before sign-in a
short-lived signed one, so a page of another site cannot sign anyone in or act for them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from aiohttp import web

from router.core.casework import AGENT_ID_PATTERN

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSIONS",
    "SessionConfig",
    "SignedInAgent",
    "check_csrf",
    "configure",
    "csrf_token",
    "current_agent",
    "sign_in",
    "sign_out",
]

COOKIE = "werkplek_sessie"
COOKIE_PATH = "/werkplek/"
CSRF_FIELD = "csrf"  # the form field
CSRF_HEADER = "X-CSRF-Token"  # what htmx sends (hx-headers on <body>)
ROLES = frozenset({"agent", "supervisor"})
# A token for the sign-in form, before there is a session: valid this long.
ANONYMOUS_TOKEN_SECONDS = 3600
_AGENT_ID = re.compile(AGENT_ID_PATTERN)


@dataclass(frozen=True)
class SignedInAgent:
    tenant: str
    agent_id: str  # matches router.core.casework.AGENT_ID_PATTERN; never an e-mail or name
    display_name: str  # shown on pages and written to the contact's history only; never logged
    teams: frozenset[str]  # team ids of the tenant the agent works for
    roles: frozenset[str]  # subset of {"agent", "supervisor"}
    via: Literal["oidc", "development"]
    expires_at: datetime  # session end (UTC); an expired session is no session

    def __post_init__(self) -> None:
        if not _AGENT_ID.fullmatch(self.agent_id):
            raise ValueError("an agent id is letters, digits, '.', '_' or '-' (no e-mail address or name)")
        if not self.roles <= ROLES:
            raise ValueError(f"roles are a subset of {sorted(ROLES)}")
        if self.expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware (UTC)")

    @property
    def supervisor(self) -> bool:
        return "supervisor" in self.roles

    def __repr__(self) -> str:  # the display name stays out of logs and tracebacks
        return f"SignedInAgent(tenant={self.tenant!r}, agent_id={self.agent_id!r}, via={self.via!r})"


@dataclass(frozen=True)
class SessionConfig:
    secret: bytes
    lifetime: timedelta = timedelta(hours=9)  # a working day


SESSIONS = web.AppKey("workspace_sessions", SessionConfig)
# The session read from this request's cookie, once per request (None: none or not valid).
_CURRENT = "workspace_current_session"


def configure(app: web.Application, secret: bytes, lifetime: timedelta | None = None) -> None:
    """Put the session secret on the app (setup_workspace does this from SESSION_SECRET)."""
    if len(secret) < 16:
        raise ValueError("SESSION_SECRET must be at least 16 bytes")
    app[SESSIONS] = SessionConfig(secret, lifetime or SessionConfig.lifetime)


def _config(request: web.Request) -> SessionConfig:
    return request.config_dict[SESSIONS]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, payload: str) -> str:
    return _b64(hmac.new(secret, f"{purpose}|{payload}".encode(), hashlib.sha256).digest())


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _secure(request: web.Request) -> bool:
    """Secure, except plain http to a loopback address (a developer's own machine)."""
    return request.scheme != "http" or not _loopback(request.url.host)


def _encode(agent: SignedInAgent, csrf: str) -> dict[str, object]:
    return {
        "t": agent.tenant,
        "a": agent.agent_id,
        "n": agent.display_name,
        "g": sorted(agent.teams),
        "r": sorted(agent.roles),
        "v": agent.via,
        "e": int(agent.expires_at.timestamp()),
        "c": csrf,
    }


def sign_in(request: web.Request, response: web.StreamResponse, agent: SignedInAgent) -> None:
    """Set the signed session cookie (HttpOnly, SameSite=Lax, Secure unless http on loopback), with a
    fresh CSRF token. The session ends at `agent.expires_at`, or after the configured lifetime if that
    comes first."""
    config = _config(request)
    latest = datetime.now(UTC) + config.lifetime
    if agent.expires_at > latest:
        agent = SignedInAgent(**{**agent.__dict__, "expires_at": latest})
    csrf = secrets.token_urlsafe(24)
    payload = _b64(json.dumps(_encode(agent, csrf), separators=(",", ":")).encode())
    value = f"{payload}.{_mac(config.secret, 'session', payload)}"
    max_age = max(0, int((agent.expires_at - datetime.now(UTC)).total_seconds()))
    response.set_cookie(
        COOKIE,
        value,
        path=COOKIE_PATH,
        max_age=max_age,
        httponly=True,
        samesite="Lax",
        secure=_secure(request),
    )
    request[_CURRENT] = (agent, csrf)


def sign_out(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH)


def _read(request: web.Request) -> tuple[SignedInAgent, str] | None:
    if _CURRENT in request:
        current: tuple[SignedInAgent, str] | None = request[_CURRENT]
        return current
    found = _decode(request)
    request[_CURRENT] = found
    return found


def _decode(request: web.Request) -> tuple[SignedInAgent, str] | None:
    raw = request.cookies.get(COOKIE)
    if not raw or raw.count(".") != 1:
        return None
    payload, mac = raw.split(".")
    if not hmac.compare_digest(mac, _mac(_config(request).secret, "session", payload)):
        return None
    try:
        data = json.loads(_unb64(payload))
        agent = SignedInAgent(
            tenant=str(data["t"]),
            agent_id=str(data["a"]),
            display_name=str(data["n"]),
            teams=frozenset(str(t) for t in data["g"]),
            roles=frozenset(str(r) for r in data["r"]),
            via="oidc" if data["v"] == "oidc" else "development",
            expires_at=datetime.fromtimestamp(int(data["e"]), UTC),
        )
        csrf = str(data["c"])
    except (ValueError, KeyError, TypeError):
        return None
    if agent.expires_at <= datetime.now(UTC):
        return None
    return agent, csrf


def current_agent(request: web.Request) -> SignedInAgent | None:
    found = _read(request)
    return found[0] if found else None


def csrf_token(request: web.Request) -> str:
    """The token forms and htmx send back: the session's, or before sign-in a signed, short-lived one."""
    found = _read(request)
    if found:
        return found[1]
    stamp = str(int(time.time()))
    return f"{stamp}.{_mac(_config(request).secret, 'anonymous', stamp)}"


def _anonymous_ok(request: web.Request, token: str) -> bool:
    stamp, _, mac = token.partition(".")
    if not stamp.isdigit() or not hmac.compare_digest(mac, _mac(_config(request).secret, "anonymous", stamp)):
        return False
    return 0 <= time.time() - int(stamp) <= ANONYMOUS_TOKEN_SECONDS


async def check_csrf(request: web.Request) -> None:
    """Raise 403 unless the POST carries this session's token (form field or X-CSRF-Token header); a
    request without a session needs a valid token of the sign-in form. A foreign Origin is refused too."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin.split("://", 1)[-1] != request.host:
        raise web.HTTPForbidden(text="Deze actie komt niet van de werkplek zelf. Laad de pagina opnieuw.")
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        form = await request.post()
        value = form.get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    found = _read(request)
    if token and found and hmac.compare_digest(token, found[1]):
        return
    if token and not found and _anonymous_ok(request, token):
        return
    raise web.HTTPForbidden(text="Uw sessie is verlopen of de pagina is te oud. Laad de pagina opnieuw.")
