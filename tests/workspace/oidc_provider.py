"""A local OpenID Connect provider for the tests, on a loopback port: discovery, /authorize, /token,
/jwks, in the way a municipality's Keycloak or Entra ID answers them.

/authorize approves the configured user at once (no login page) and sends the browser back with a code;
/token gives the tokens for a code only with the client's secret and the PKCE verifier that matches the
challenge of /authorize, once. The ID token is signed RS256 with a key published at /jwks (joserfc,
the JOSE library of Authlib's author that Authlib 1.9 is built on: Authlib's own `authlib.jose` is
deprecated). A test makes the provider misbehave through its attributes: expired tokens, another
audience or nonce, a broken signature, a key that is not published.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode, urlparse

from aiohttp import web
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

REALM = "/realms/test"
# One key pair per test run: generating RSA keys is the slow part of starting a provider.
_KEYS: dict[str, RSAKey] = {}


def _key(kid: str) -> RSAKey:
    if kid not in _KEYS:
        _KEYS[kid] = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
    return _KEYS[kid]


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    issued: float
    used: bool = False


@dataclass
class LocalProvider:
    """The provider; `issuer` is known once `start` has run."""

    user: dict[str, Any]  # the claims of the user /authorize approves: sub, name, groups, ...
    client_id: str = "werkplek"
    client_secret: str = "test-client-secret"
    redirect_uris: set[str] = field(default_factory=set)
    id_token_seconds: int = 600
    access_token_seconds: int = 3600
    # Misbehaviour, set by a test: claims put over the ID token's own (e.g. {"aud": "other"}; None
    # leaves the claim out), a change
    # of the finished token (a broken signature), signing with a key /jwks does not publish.
    override: dict[str, Any] = field(default_factory=dict)
    tamper: Callable[[str], str] | None = None
    unpublished_key: bool = False
    # The key the provider signs with and publishes; a test rotates it by naming another.
    kid: str = "k1"
    issuer: str = ""
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _grants: dict[str, Grant] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        # Under a path, as Keycloak's realms are: the discovery document is the issuer's + /.well-known/.
        app.router.add_get(f"{REALM}/.well-known/openid-configuration", self.discovery)
        app.router.add_get(f"{REALM}/authorize", self.authorize)
        app.router.add_post(f"{REALM}/token", self.token)
        app.router.add_get(f"{REALM}/jwks", self.jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.issuer = f"http://127.0.0.1:{port}{REALM}"
        return self.issuer

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _url(self, path: str) -> str:
        return self.issuer + path

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": self._url("/authorize"),
                "token_endpoint": self._url("/token"),
                "jwks_uri": self._url("/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            }
        )

    async def jwks(self, request: web.Request) -> web.Response:
        return web.json_response(KeySet([_key(self.kid)]).as_dict(private=False))

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != self.client_id or q.get("redirect_uri") not in self.redirect_uris:
            # Never redirect to an unregistered address (RFC 6749, 4.1.2.1): answer the browser here.
            return web.Response(status=400, text="unknown client or redirect_uri")
        redirect_uri = q["redirect_uri"]
        if q.get("response_type") != "code" or "openid" not in q.get("scope", "").split():
            return _back(redirect_uri, error="invalid_request", state=q.get("state"))
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return _back(redirect_uri, error="invalid_request", state=q.get("state"))
        code = secrets.token_urlsafe(24)
        self._grants[code] = Grant(
            self.client_id, redirect_uri, q["code_challenge"], q.get("nonce"), time.time()
        )
        return _back(redirect_uri, code=code, state=q.get("state"))

    def _client(self, request: web.Request, form: dict[str, str]) -> str | None:
        """The authenticated client's id: HTTP Basic (RFC 6749, 2.3.1) or the form's client_secret."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            client_id, _, secret = base64.b64decode(value).decode().partition(":")
            client_id, secret = unquote(client_id), unquote(secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if client_id == self.client_id and secrets.compare_digest(secret, self.client_secret):
            return client_id
        return None

    async def token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(form)
        client = self._client(request, form)
        if client is None:
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        grant = self._grants.get(form.get("code", ""))
        if grant is None or grant.used or grant.client_id != client or time.time() - grant.issued > 60:
            return web.json_response({"error": "invalid_grant"}, status=400)
        grant.used = True
        if form.get("redirect_uri") != grant.redirect_uri:
            return web.json_response({"error": "invalid_grant"}, status=400)
        if not compare_s256_code_challenge(form.get("code_verifier", ""), grant.challenge):
            return web.json_response({"error": "invalid_grant", "error_description": "PKCE"}, status=400)
        access_token = secrets.token_urlsafe(32)
        return web.json_response(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": self.access_token_seconds,
                "id_token": self.id_token(grant.nonce, access_token),
            },
            headers={"Cache-Control": "no-store"},
        )

    def id_token(self, nonce: str | None, access_token: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "auth_time": now,
            "exp": now + self.id_token_seconds,
            "at_hash": create_half_hash(access_token, "RS256").decode(),
            **({"nonce": nonce} if nonce else {}),
            **self.user,
            **self.override,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        # An unpublished key signs under the published key's id: only the signature can tell.
        key = _key(f"{self.kid}-unpublished") if self.unpublished_key else _key(self.kid)
        token = jwt.encode({"alg": "RS256", "kid": self.kid}, claims, key)
        return self.tamper(token) if self.tamper else token


def _back(redirect_uri: str, **params: str | None) -> web.Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    separator = "&" if urlparse(redirect_uri).query else "?"
    return web.Response(status=302, headers={"Location": f"{redirect_uri}{separator}{query}"})
