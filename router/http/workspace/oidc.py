"""Sign-in to the workspace with the tenant's OpenID Connect provider: the authorization code flow with
PKCE (docs/workspace.md, "Sign-in").

`/werkplek/oidc/<tenant>/start` sends the browser to the provider with a fresh state, nonce and PKCE
challenge, kept in a short-lived signed cookie of that tenant's path; `/werkplek/oidc/<tenant>/callback`
takes the code back, redeems it with the client secret and the PKCE verifier, and accepts the ID token
only when its signature verifies against the provider's JWKS and its issuer, audience, expiry and nonce
are right. The tenant's rules (`agents:`) turn the token's groups into teams and roles; whoever is in
none of them is refused. Every refusal is a plain Dutch page and leaves no session.

Authlib does the protocol's parts (PKCE challenge, client authentication, the ID-token claim rules)
and joserfc, the JOSE library Authlib itself is built on, verifies the signature; the provider's
endpoints are called with aiohttp, the client the service already has.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlparse

import aiohttp
import aiohttp_jinja2
from aiohttp import web
from authlib.common.security import generate_token
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from router import logs
from router.core.casework import AGENT_ID_PATTERN
from router.core.rules import AgentMapping
from router.core.tenants import Tenant
from router.http.workspace import session
from router.settings import OidcProvider, Settings, loopback_host, oidc_variable

__all__ = ["FLOW_COOKIE", "configured_tenants", "oidc_routes"]

log = logs.get("router.http.workspace.oidc")

# The state, nonce and PKCE verifier between start and callback; one per tenant path.
FLOW_COOKIE = "werkplek_oidc"
# How long a sign-in at the provider may take (typing a password, a second factor).
FLOW_SECONDS = 600
# Clock difference with the provider that is tolerated for `exp`, `iat` and `nbf`.
LEEWAY_SECONDS = 60
# Discovery is read again after this; keys are read again at once when a token names an unknown key
# (the provider rotated them), but not more often than KEYS_REFRESH_SECONDS.
METADATA_SECONDS = 3600
KEYS_REFRESH_SECONDS = 60
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
# Signatures of the provider's own keys only: never "none", never a secret shared with clients (HS*).
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# Without KEY_SECRET, agent ids derived from a subject are keyed with this (stable, but not secret).
_DEVELOPMENT_KEY = b"contact-router development key secret"
_AGENT_ID = re.compile(AGENT_ID_PATTERN)
# The callback's address holds the code and state: never cached, never sent on as a Referer.
_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def configured_tenants(settings: Settings) -> frozenset[str]:
    """The tenants whose agents sign in with their own provider (`OIDC_<TENANT>_*` set)."""
    return frozenset(settings.oidc)


class SignInRefused(Exception):
    """Why a sign-in ends without a session: `reason` is a fixed class for the log (never input),
    `text` the Dutch sentence the agent reads."""

    def __init__(self, reason: str, text: str, status: int = 403):
        super().__init__(reason)
        self.reason = reason
        self.text = text
        self.status = status


class ProviderUnavailable(Exception):
    """The provider did not answer, or answered something that is no OpenID Connect provider."""


@dataclass
class Provider:
    """One tenant's provider: its settings, its rules' mapping, and what was read from it (cached)."""

    tenant: str
    name: str  # the municipality's name, for the pages
    config: OidcProvider
    mapping: AgentMapping
    key_secret: bytes
    public_url: str
    _metadata: dict[str, Any] | None = field(default=None, repr=False)
    _metadata_at: float = 0.0
    _keys: KeySet | None = field(default=None, repr=False)
    _keys_at: float = 0.0

    async def metadata(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_SECONDS:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            data = await _get_json(http, url)
            self._check_metadata(data)
            self._metadata, self._metadata_at = data, time.monotonic()
        return self._metadata

    def _check_metadata(self, data: dict[str, Any]) -> None:
        # OpenID Connect Discovery 1.0, 4.3: the issuer in the document is the one configured, exactly.
        if data.get("issuer") != self.config.issuer:
            raise ProviderUnavailable("issuer_mismatch")
        issuer_scheme = urlparse(self.config.issuer).scheme
        for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = data.get(endpoint)
            if not isinstance(value, str) or urlparse(value).scheme not in ("https", issuer_scheme):
                raise ProviderUnavailable(f"no_{endpoint}")

    async def keys(self, http: aiohttp.ClientSession, *, refresh: bool = False) -> KeySet:
        stale = refresh and time.monotonic() - self._keys_at > KEYS_REFRESH_SECONDS
        if self._keys is None or stale:
            data = await _get_json(http, (await self.metadata(http))["jwks_uri"])
            try:
                self._keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise ProviderUnavailable("bad_jwks") from exc
            self._keys_at = time.monotonic()
        return self._keys

    def redirect_uri(self, request: web.Request) -> str:
        base = self.public_url or f"{request.scheme}://{request.host}"
        return f"{base}/werkplek/oidc/{self.tenant}/callback"

    def agent_id(self, subject: str) -> str:
        """The subject itself when it is an id of the agent pattern (no '@': never an e-mail address),
        else a short keyed hash of issuer and subject: stable across sign-ins, telling nothing."""
        if _AGENT_ID.fullmatch(subject):
            return subject
        message = f"{self.config.issuer}\n{subject}".encode()
        return "oidc-" + hmac.new(self.key_secret, message, hashlib.sha256).hexdigest()[:20]


async def _get_json(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    try:
        async with http.get(url, headers={"Accept": "application/json"}) as resp:
            if resp.status != 200:
                raise ProviderUnavailable(f"status_{resp.status}")
            data = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ProviderUnavailable(type(exc).__name__) from exc
    if not isinstance(data, dict):
        raise ProviderUnavailable("not_an_object")
    return data


# -- the flow cookie ---------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _flow_mac(request: web.Request, payload: str) -> str:
    # The session's secret, for another purpose than the session (the MAC covers the purpose).
    secret = request.config_dict[session.SESSIONS].secret
    return _b64(hmac.new(secret, f"oidc-flow|{payload}".encode(), hashlib.sha256).digest())


def _flow_path(tenant: str) -> str:
    return f"/werkplek/oidc/{tenant}/"


def _set_flow(request: web.Request, response: web.StreamResponse, tenant: str, flow: dict[str, Any]) -> None:
    payload = _b64(json.dumps(flow, separators=(",", ":")).encode())
    response.set_cookie(
        FLOW_COOKIE,
        f"{payload}.{_flow_mac(request, payload)}",
        path=_flow_path(tenant),
        max_age=FLOW_SECONDS,
        httponly=True,
        samesite="Lax",  # sent on the provider's top-level redirect back, not on a cross-site POST
        secure=_secure(request),
    )


def _read_flow(request: web.Request, tenant: str) -> dict[str, Any] | None:
    raw = request.cookies.get(FLOW_COOKIE, "")
    payload, _, mac = raw.partition(".")
    if not payload or not hmac.compare_digest(mac, _flow_mac(request, payload)):
        return None
    try:
        flow = json.loads(_unb64(payload))
    except ValueError:
        return None
    if not isinstance(flow, dict) or flow.get("t") != tenant or not isinstance(flow.get("e"), int):
        return None
    return flow if flow["e"] > time.time() else None


def _secure(request: web.Request) -> bool:
    """Secure, as the session cookie: except plain http to this machine (a developer's own)."""
    return request.scheme != "http" or not loopback_host(request.url.host)


# -- the pages -----------------------------------------------------------------------------------------


def _refusal(request: web.Request, status: int, title: str, text: str) -> web.Response:
    """A page in the workspace's layout: B1 Dutch, what happened and what to do, a way back to the
    sign-in. Plain HTML where the app has no templates (an app with the OpenID routes alone)."""
    try:
        aiohttp_jinja2.get_env(request.app)
    except RuntimeError:
        body = (
            '<!doctype html>\n<html lang="nl">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)} – Werkplek</title>\n</head>\n<body>\n<main>\n"
            f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(text)}</p>\n"
            '<p><a href="/werkplek/aanmelden">Terug naar aanmelden</a></p>\n</main>\n</body>\n</html>\n'
        )
        return web.Response(status=status, text=body, content_type="text/html", headers=_PRIVATE)
    values = {"agent": None, "tenant_name": None, "prefix": "/werkplek", "title": title, "message": text}
    response = aiohttp_jinja2.render_template("aanmelden_fout.html", request, values, status=status)
    response.headers.update(_PRIVATE)
    return response


def _refused(request: web.Request, provider: Provider, refusal: SignInRefused) -> web.Response:
    log.warning("oidc_sign_in_refused", tenant=provider.tenant, reason=refusal.reason)
    resp = _refusal(request, refusal.status, "Aanmelden is niet gelukt", refusal.text)
    resp.del_cookie(FLOW_COOKIE, path=_flow_path(provider.tenant))
    return resp


def _unavailable(request: web.Request, provider: Provider, exc: ProviderUnavailable) -> web.Response:
    log.warning("oidc_provider_unavailable", tenant=provider.tenant, reason=str(exc))
    return _refusal(
        request,
        503,
        "Aanmelden kan nu niet",
        f"De aanmeldpagina van {provider.name} is nu niet bereikbaar. Probeer het over een paar minuten "
        "opnieuw. Lukt het dan nog niet? Neem contact op met de servicedesk.",
    )


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, **_PRIVATE})


def _no_provider(request: web.Request) -> web.Response:
    return _refusal(
        request,
        404,
        "Aanmelden kan hier niet",
        "Voor deze gemeente kunt u zich op deze werkplek niet aanmelden.",
    )


_START_AGAIN = (
    "Uw aanmelding duurde te lang, of is in een ander venster begonnen. Begin opnieuw met aanmelden."
)
_NOT_CONFIRMED = "De gemeente heeft uw aanmelding niet bevestigd. Begin opnieuw met aanmelden."


# -- the handlers -------------------------------------------------------------------------------------


class _Handlers:
    def __init__(self, providers: Mapping[str, Provider]):
        self.providers = providers

    async def start(self, request: web.Request) -> web.StreamResponse:
        provider = self.providers.get(request.match_info["tenant"])
        if provider is None:
            return _no_provider(request)
        try:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
                metadata = await provider.metadata(http)
        except ProviderUnavailable as exc:
            return _unavailable(request, provider, exc)
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        redirect_uri = provider.redirect_uri(request)
        query = {
            "response_type": "code",
            "client_id": provider.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": provider.config.scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        endpoint = metadata["authorization_endpoint"]
        separator = "&" if urlparse(endpoint).query else "?"
        response = _redirect(f"{endpoint}{separator}{urlencode(query)}")
        flow = {"t": provider.tenant, "s": state, "n": nonce, "v": verifier, "r": redirect_uri}
        _set_flow(request, response, provider.tenant, {**flow, "e": int(time.time()) + FLOW_SECONDS})
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        provider = self.providers.get(request.match_info["tenant"])
        if provider is None:
            return _no_provider(request)
        try:
            agent = await self._sign_in(request, provider)
        except SignInRefused as refusal:
            return _refused(request, provider, refusal)
        except ProviderUnavailable as exc:
            return _unavailable(request, provider, exc)
        response = _redirect("/werkplek/")
        response.del_cookie(FLOW_COOKIE, path=_flow_path(provider.tenant))
        session.sign_in(request, response, agent)
        log.info(
            "agent_signed_in",
            tenant=agent.tenant,
            agent_id=agent.agent_id,
            teams=sorted(agent.teams),
            roles=sorted(agent.roles),
            via="oidc",
        )
        return response

    async def _sign_in(self, request: web.Request, provider: Provider) -> session.SignedInAgent:
        flow = _read_flow(request, provider.tenant)
        if flow is None:
            raise SignInRefused("flow_missing_or_expired", _START_AGAIN, 400)
        query = request.query
        if "error" in query:
            # The provider's own refusal (the user cancelled, or may not use this client): its code is
            # one of a fixed set; its description is not logged.
            raise SignInRefused(
                "provider_error",
                f"De aanmelding bij {provider.name} is afgebroken of geweigerd. Begin opnieuw met aanmelden.",
            )
        state = query.get("state", "")
        if not hmac.compare_digest(state.encode(), str(flow["s"]).encode()):
            raise SignInRefused("state_mismatch", _START_AGAIN, 400)
        code = query.get("code", "")
        if not code:
            raise SignInRefused("no_code", _NOT_CONFIRMED, 400)
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
            token = await self._redeem(http, provider, code, flow)
            claims = await self._id_token_claims(http, provider, token, str(flow["n"]))
        return self._agent(provider, claims, token)

    async def _redeem(
        self, http: aiohttp.ClientSession, provider: Provider, code: str, flow: dict[str, Any]
    ) -> dict[str, Any]:
        """The code for tokens at the token endpoint, with the client secret and the PKCE verifier."""
        metadata = await provider.metadata(http)
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
        form = urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": flow["r"],
                "code_verifier": flow["v"],
            }
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        secret = provider.config.client_secret.get_secret_value()
        auth = ClientAuth(provider.config.client_id, secret, method)
        url, headers, body = auth.prepare("POST", metadata["token_endpoint"], headers, form)
        try:
            async with http.post(url, data=body, headers=headers) as resp:
                data = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProviderUnavailable(type(exc).__name__) from exc
        if status != 200 or not isinstance(data, dict):
            error = data.get("error") if isinstance(data, dict) else None
            # invalid_grant and friends are fixed codes (RFC 6749, 5.2); anything else is not repeated.
            known = error if error in _TOKEN_ERRORS else "other"
            raise SignInRefused(f"token_refused:{known}", _NOT_CONFIRMED)
        if not isinstance(data.get("id_token"), str) or not isinstance(data.get("access_token"), str):
            raise SignInRefused("no_id_token", _NOT_CONFIRMED)
        return data

    async def _id_token_claims(
        self, http: aiohttp.ClientSession, provider: Provider, token: dict[str, Any], nonce: str
    ) -> CodeIDToken:
        metadata = await provider.metadata(http)
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in offered if a in ASYMMETRIC]
        registry = JWSRegistry(algorithms=algorithms, strict_check_header=False)
        try:
            try:
                decoded = jwt.decode(token["id_token"], await provider.keys(http), registry=registry)
            except InvalidKeyIdError:
                keys = await provider.keys(http, refresh=True)  # rotated since we last read them
                decoded = jwt.decode(token["id_token"], keys, registry=registry)
            client_id = provider.config.client_id
            params = {"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]}
            claims = CodeIDToken(
                decoded.claims,
                decoded.header,
                {
                    "iss": {"essential": True, "value": provider.config.issuer},
                    "aud": {"essential": True, "value": provider.config.client_id},
                    "nonce": {"essential": True},
                },
                params,
            )
            claims.validate(now=int(time.time()), leeway=LEEWAY_SECONDS)
        except ExpiredTokenError as exc:
            raise SignInRefused("id_token_expired", _NOT_CONFIRMED) from exc
        except (BadSignatureError, InvalidKeyIdError) as exc:
            raise SignInRefused("id_token_bad_signature", _NOT_CONFIRMED) from exc
        except JoseError as exc:
            # The error's name and the claim it names (iss, aud, nonce, ...), never a claim's value.
            claim = getattr(exc, "claim", None)
            reason = f"id_token_{exc.error}" + (f":{claim}" if isinstance(claim, str) else "")
            raise SignInRefused(reason, _NOT_CONFIRMED) from exc
        except (ValueError, TypeError) as exc:  # a token that is no JWS at all
            raise SignInRefused("id_token_malformed", _NOT_CONFIRMED) from exc
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise SignInRefused("id_token_no_subject", _NOT_CONFIRMED)
        return claims

    def _agent(
        self, provider: Provider, claims: Mapping[str, Any], token: Mapping[str, Any]
    ) -> session.SignedInAgent:
        access = provider.mapping.access(dict(claims))
        if access is None:
            raise SignInRefused(
                "no_mapped_group",
                f"U bent aangemeld bij {provider.name}, maar u hoort niet bij een team van de werkplek. "
                "Vraag uw teamleider of de servicedesk om u toe te voegen.",
            )
        # The session ends when the ID token does, or the access token if that is shorter.
        ends = float(claims["exp"])
        if isinstance(token.get("expires_in"), int | float) and token["expires_in"] > 0:
            ends = min(ends, time.time() + float(token["expires_in"]))
        agent_id = provider.agent_id(str(claims["sub"]))
        return session.SignedInAgent(
            tenant=provider.tenant,
            agent_id=agent_id,
            display_name=_display_name(claims) or agent_id,
            teams=access.teams,
            roles=access.roles,
            via="oidc",
            expires_at=datetime.fromtimestamp(int(ends), UTC),
        )


_TOKEN_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)


def _display_name(claims: Mapping[str, Any]) -> str | None:
    """The name to show: `name`, else given and family name, else a user name that is no e-mail address."""
    name = claims.get("name")
    if not isinstance(name, str) or not name.strip():
        parts = [claims.get(k) for k in ("given_name", "family_name")]
        name = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    if not name:
        username = claims.get("preferred_username")
        name = username if isinstance(username, str) and "@" not in username else ""
    return name.strip()[:200] or None


def oidc_routes(settings: Settings, tenants: Mapping[str, Tenant]) -> list[web.RouteDef]:
    """The sign-in routes of every tenant with a provider. ValueError, naming the variable or the rules,
    when a provider names a tenant without rules, or a tenant whose rules say nothing of its agents."""
    by_variable = {t.replace("-", "_"): t for t in tenants}
    key_secret = settings.key_secret_bytes()
    if settings.oidc and key_secret is None:
        log.warning(
            "oidc_without_key_secret",
            message="KEY_SECRET is unset: agent ids derived from a provider's subject are keyed with the "
            "development secret; set KEY_SECRET before agents sign in (changing it later changes their ids)",
        )
    providers: dict[str, Provider] = {}
    for name, config in sorted(settings.oidc.items()):
        tenant = by_variable.get(name)
        if tenant is None:
            raise ValueError(
                f"{oidc_variable(name, 'issuer')} names tenant '{name}', which has no rules "
                f"({', '.join(sorted(tenants))})"
            )
        rules = tenants[tenant].loaded.rules
        if rules.agents is None:
            raise ValueError(
                f"tenant '{tenant}' has an OpenID Connect provider ({oidc_variable(name, 'issuer')}) but its "
                f"rules ({tenants[tenant].loaded.file}) have no agents: section mapping groups to teams"
            )
        providers[tenant] = Provider(
            tenant, rules.name, config, rules.agents, key_secret or _DEVELOPMENT_KEY, settings.public_url
        )
    if not providers:
        return []
    handlers = _Handlers(providers)
    return [
        web.get("/werkplek/oidc/{tenant}/start", handlers.start, name="oidc_start"),
        web.get("/werkplek/oidc/{tenant}/callback", handlers.callback, name="oidc_callback"),
    ]
