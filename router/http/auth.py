"""API keys for systems (integrators, telephony): the kit's Authenticator, and the API's own check."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

from adapters.kit.http import UNAUTHENTICATED
from router.http.context import CTX
from router.settings import Credential


class ApiKeys:
    """The kit's Authenticator on API keys: `X-API-Key: <key>` or `Authorization: Bearer <key>`."""

    def __init__(self, credentials: Mapping[str, Credential]):
        self.credentials = credentials

    def caller(self, request: web.Request) -> Credential | None:
        key = request.headers.get("X-API-Key")
        auth = request.headers.get("Authorization", "")
        if key is None and auth.startswith("Bearer "):
            key = auth.removeprefix("Bearer ").strip()
        if not key:
            return None
        return self.credentials.get(key)


def require_credential(request: web.Request) -> Credential:
    cred = ApiKeys(request.app[CTX].credentials).caller(request)
    if cred is None:
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": UNAUTHENTICATED}), content_type="application/json"
        )
    return cred
