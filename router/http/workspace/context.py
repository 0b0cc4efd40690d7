"""What the workspace's handlers share, on the app under WORKSPACE."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from adapters.kit.ratelimit import RateLimiter
from router.core.history import HistoryStore
from router.http.workspace.live import LiveHub

PREFIX = "/werkplek"


@dataclass
class WorkspaceConfig:
    # Signs the session cookies (SESSION_SECRET; made per process when unset).
    secret: bytes
    # The development sign-in (pick a demo agent) is offered.
    dev_signin: bool
    # Tenants with an OpenID provider: their sign-in page offers "Aanmelden bij <gemeente>".
    oidc_tenants: frozenset[str] = frozenset()
    # The history store: the audit log of every view and action, and the quarter's norm compliance.
    history: HistoryStore | None = None
    live: LiveHub = field(default_factory=LiveHub)
    # The OpenID routes (router/http/workspace/oidc.py), added with the pages.
    oidc_routes: list[web.RouteDef] = field(default_factory=list)
    # The residents' status page (router/http/workspace/status.py): the key its links' tokens are
    # derived with (KEY_SECRET, as the adapters that send the links use it), and its limit per client.
    status_secret: bytes = b""
    status_limiter: RateLimiter | None = None


WORKSPACE = web.AppKey("workspace", WorkspaceConfig)
