"""API keys for systems (integrators, telephony, back offices): the kit's Authenticator, and the API's own
check of a route's scope.

Keys are looked up by their SHA-256 digest (`router.settings.parse_api_keys` hashes plaintext keys at
load, or takes the digest as configured), so no key needs to be kept in the clear.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import get_args

from aiohttp import web

from adapters.kit.http import UNAUTHENTICATED, Scope, lacks_scope
from router import logs
from router.core.ports import ContactRecord
from router.http.context import CTX
from router.settings import SCOPES, Credential, key_digest

log = logs.get("router.http.auth")

assert get_args(Scope) == SCOPES  # the kit's scope names are the settings' names


class ApiKeys:
    """The kit's Authenticator on API keys: `X-API-Key: <key>` or `Authorization: Bearer <key>` (the
    scheme in any case)."""

    def __init__(self, credentials: Mapping[str, Credential]):
        self.credentials = credentials  # SHA-256 hex digest of the key -> credential

    def caller(self, request: web.Request) -> Credential | None:
        key = request.headers.get("X-API-Key")
        if key is None:
            scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
            if scheme.lower() == "bearer":
                key = token
        key = key.strip() if key else None
        if not key:
            return None
        return self.credentials.get(key_digest(key))

    def warn_unscoped(self) -> None:
        """One warning per credential configured without scopes (its name only, never its key)."""
        for name in sorted({c.name for c in self.credentials.values() if not c.scoped}):
            log.warning(
                "api_key_without_scopes",
                credential=name,
                message="this key may submit, act as an agent and read every contact of its tenants; "
                "name its scopes in API_KEYS (name:key:tenants:scopes)",
            )


def require_credential(request: web.Request, scope: Scope) -> Credential:
    """The credential the request names, if it has `scope`: 401 without a known key, 403 without the
    scope. The tenant is the handler's to check (another tenant's contact is a 404, as if absent)."""
    cred = ApiKeys(request.app[CTX].credentials).caller(request)
    if cred is None:
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": UNAUTHENTICATED}), content_type="application/json"
        )
    if not cred.permits(scope):
        raise web.HTTPForbidden(
            text=json.dumps({"error": lacks_scope(scope)}), content_type="application/json"
        )
    return cred


async def readable_contact(request: web.Request) -> ContactRecord | None:
    """The contact the route's `{id}` names, if a credential with scope `read` may see it; None when
    there is none or it is another tenant's (which must look exactly like a missing one)."""
    cred = require_credential(request, "read")
    record = await request.app[CTX].store.get(request.match_info["id"])
    if record is None or "tenant" not in record.fields or not cred.allows(record.fields["tenant"]):
        return None
    return record
