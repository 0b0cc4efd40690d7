"""Sign-in to the workspace with the municipality's OpenID Connect provider (issue 18, item 1).

Each test runs the service's HTTP app (`router.service.build` + `create_app`, as `serve` does, on the
embedded backend: sign-in touches neither broker nor store) on a loopback port with the sign-in routes,
and a local provider per tenant (tests/workspace/oidc_provider.py) on another. A browser is an aiohttp
client with a cookie jar that follows the redirects one by one: start -> the provider's /authorize ->
the app's callback. What the agent then has is read back through `session.current_agent`, by a small
route of the test's own, as every workspace page reads it.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from router.core.clock import ManualClock
from router.core.rules import RulesError, load_dir
from router.core.tenants import load as load_tenants
from router.http.app import create_app
from router.http.workspace import oidc, session
from router.http.workspace.oidc import FLOW_COOKIE, configured_tenants, oidc_routes
from router.service import build
from router.settings import Settings
from tests.conftest import RULES
from tests.workspace.oidc_provider import LocalProvider

SESSION_SECRET = b"test-session-secret-of-32-bytes!"
AGENTS = {
    "ommen": """
agents:
  claim: groups
  teams:
    ommen-kcc: kcc
    ommen-burgerzaken: burgerzaken
  supervisors: [ommen-teamleiders]
""",
    "coevorden": """
agents:
  claim: realm_access.roles
  teams:
    coevorden-kcc: kcc
  supervisors: [coevorden-teamleiders]
""",
}
JAN = {
    "sub": "medewerker-17",
    "name": "Jan Jansen",
    "email": "jan.jansen@ommen.nl",
    "groups": ["ommen-kcc", "ommen-teamleiders", "iedereen"],
}
REFUSED_TITLE = "Aanmelden is niet gelukt"


def rules_with_agents(target: Path) -> Path:
    target.mkdir()
    for tenant, section in AGENTS.items():
        text = (RULES / f"{tenant}.yaml").read_text(encoding="utf-8")
        (target / f"{tenant}.yaml").write_text(text + section, encoding="utf-8")
    return target


@dataclass
class Answer:
    status: int
    text: str
    headers: dict[str, str]


@dataclass
class Workspace:
    """The running app, its providers and one browser."""

    server: TestServer
    providers: dict[str, LocalProvider]
    browser: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def to_provider(self, tenant: str) -> str:
        """Start a sign-in; where the provider sends the browser back to (the callback with code)."""
        start = await self.browser.get(self.url(f"/werkplek/oidc/{tenant}/start"), allow_redirects=False)
        assert start.status == 302, await start.text()
        authorize = await self.browser.get(start.headers["Location"], allow_redirects=False)
        assert authorize.status == 302, await authorize.text()
        return authorize.headers["Location"]

    async def get(self, url: str) -> Answer:
        resp = await self.browser.get(url, allow_redirects=False)
        return Answer(resp.status, await resp.text(), dict(resp.headers))

    async def sign_in(self, tenant: str, rewrite: Callable[[str], str] | None = None) -> Answer:
        back = await self.to_provider(tenant)
        return await self.get(rewrite(back) if rewrite else back)

    async def whoami(self) -> dict[str, Any] | None:
        resp = await self.browser.get(self.url("/werkplek/test/whoami"))
        return None if resp.status == 401 else await resp.json()

    def cookie(self, name: str) -> str | None:
        found = [c for c in self.browser.cookie_jar if c.key == name]
        return found[0].value if found else None


async def whoami(request: web.Request) -> web.Response:
    agent = session.current_agent(request)
    if agent is None:
        return web.json_response({"signed_in": False}, status=401)
    return web.json_response(
        {
            "tenant": agent.tenant,
            "agent_id": agent.agent_id,
            "display_name": agent.display_name,
            "teams": sorted(agent.teams),
            "roles": sorted(agent.roles),
            "via": agent.via,
            "expires_at": agent.expires_at.timestamp(),
        }
    )


def oidc_settings(rules_dir: Path, providers: dict[str, LocalProvider], **extra: Any) -> Settings:
    oidc = {
        t: {"issuer": p.issuer, "client_id": p.client_id, "client_secret": p.client_secret}
        for t, p in providers.items()
    }
    return Settings(rules_dir=rules_dir, key_secret="test-key-secret", oidc=oidc, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def providers() -> AsyncIterator[dict[str, LocalProvider]]:
    found = {
        "ommen": LocalProvider(user=dict(JAN), client_id="werkplek-ommen"),
        "coevorden": LocalProvider(
            user={"sub": "cv-3", "name": "Els de Vries", "realm_access": {"roles": ["coevorden-kcc"]}},
            client_id="werkplek-coevorden",
        ),
    }
    for provider in found.values():
        await provider.start()
    yield found
    for provider in found.values():
        await provider.close()


@pytest.fixture
async def workspace(
    tmp_path: Path, providers: dict[str, LocalProvider], clock: ManualClock
) -> AsyncIterator[Workspace]:
    settings = oidc_settings(rules_with_agents(tmp_path / "rules"), providers, namespace="oidc.")
    rt = await build(settings, with_router=False, embedded="always", clock=clock)
    app = create_app(rt.api_context())
    session.configure(app, SESSION_SECRET)
    app.router.add_routes(oidc_routes(settings, rt.tenants))
    app.router.add_get("/werkplek/test/whoami", whoami)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    for tenant, provider in providers.items():
        provider.redirect_uris.add(str(server.make_url(f"/werkplek/oidc/{tenant}/callback")))
    # unsafe: cookies for an IP address host (127.0.0.1), as a browser keeps them.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        yield Workspace(server, providers, browser)
    await server.close()
    await rt.close()


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def broken_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return ".".join((header, payload, signature[:middle] + flipped + signature[middle + 1 :]))


def session_payload(cookie: str) -> dict[str, Any]:
    payload = cookie.split(".")[0]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


async def assert_refused(ws: Workspace, answer: Answer, status: int = 403) -> None:
    """What the agent sees of a refused sign-in: a Dutch page that says so, and no session."""
    assert answer.status == status, answer.text
    assert answer.headers["Content-Type"].startswith("text/html")
    assert '<html lang="nl">' in answer.text
    assert REFUSED_TITLE in answer.text
    assert "/werkplek/aanmelden" in answer.text  # a way back
    assert ws.cookie(session.COOKIE) is None
    assert await ws.whoami() is None


# -- a good sign-in --------------------------------------------------------------------------------------


async def test_a_good_sign_in_sets_the_session_with_the_teams_and_roles_of_the_groups(
    workspace: Workspace,
) -> None:
    before = time.time()
    with capture_logs() as logged:
        answer = await workspace.sign_in("ommen")
    assert answer.status == 302, answer.text
    assert answer.headers["Location"] == "/werkplek/"
    me = await workspace.whoami()
    assert me is not None
    assert me["tenant"] == "ommen"
    assert me["agent_id"] == "medewerker-17"
    assert me["display_name"] == "Jan Jansen"
    assert me["teams"] == ["kcc"]  # "iedereen" maps to nothing
    assert me["roles"] == ["agent", "supervisor"]
    assert me["via"] == "oidc"
    # The session ends with the ID token (10 minutes here), not a working day later.
    assert before + 500 < me["expires_at"] <= before + 600 + 1
    # The flow's state is used up: the cookie is gone.
    assert workspace.cookie(FLOW_COOKIE) is None
    # The code was redeemed with the PKCE verifier (the provider checked it against the challenge).
    (request,) = workspace.providers["ommen"].token_requests
    assert len(request["code_verifier"]) >= 43
    signed_in = [e for e in logged if e["event"] == "agent_signed_in"]
    assert signed_in and signed_in[0]["agent_id"] == "medewerker-17"
    assert signed_in[0]["teams"] == ["kcc"]
    for value in ("Jan Jansen", "jan.jansen@ommen.nl"):
        assert value not in repr(logged)


async def test_the_session_cookie_is_httponly_samesite_and_holds_no_e_mail(workspace: Workspace) -> None:
    start = await workspace.browser.get(workspace.url("/werkplek/oidc/ommen/start"), allow_redirects=False)
    flow_cookie = start.cookies[FLOW_COOKIE]
    assert flow_cookie["httponly"] and flow_cookie["samesite"] == "Lax"
    assert flow_cookie["path"] == "/werkplek/oidc/ommen/"
    authorize = await workspace.browser.get(start.headers["Location"], allow_redirects=False)
    back = await workspace.browser.get(authorize.headers["Location"], allow_redirects=False)
    cookie = back.cookies[session.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert "jan.jansen@ommen.nl" not in json.dumps(session_payload(cookie.value))


async def test_a_subject_that_is_no_agent_id_becomes_a_stable_keyed_id_never_the_e_mail(
    workspace: Workspace,
) -> None:
    workspace.providers["ommen"].user = {**JAN, "sub": "jan.jansen@ommen.nl"}
    assert (await workspace.sign_in("ommen")).status == 302
    first = await workspace.whoami()
    assert first is not None
    assert first["agent_id"].startswith("oidc-") and "@" not in first["agent_id"]
    assert "jansen" not in first["agent_id"]
    workspace.browser.cookie_jar.clear()
    assert (await workspace.sign_in("ommen")).status == 302
    again = await workspace.whoami()
    assert again is not None and again["agent_id"] == first["agent_id"]


async def test_keys_the_provider_rotated_are_read_again(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await workspace.sign_in("ommen")).status == 302
    workspace.browser.cookie_jar.clear()
    workspace.providers["ommen"].kid = "k-rotated"  # a new key, published and signed with
    monkeypatch.setattr(oidc, "KEYS_REFRESH_SECONDS", 0)
    assert (await workspace.sign_in("ommen")).status == 302
    assert await workspace.whoami() is not None


async def test_public_url_is_where_the_provider_sends_the_browser_back(
    tmp_path: Path, providers: dict[str, LocalProvider], clock: ManualClock
) -> None:
    settings = oidc_settings(
        rules_with_agents(tmp_path / "rules"), providers, public_url="https://werkplek.ommen.nl/"
    )
    rt = await build(settings, with_router=False, embedded="always", clock=clock)
    app = create_app(rt.api_context())
    session.configure(app, SESSION_SECRET)
    app.router.add_routes(oidc_routes(settings, rt.tenants))
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as browser:
        start = await browser.get(server.make_url("/werkplek/oidc/ommen/start"), allow_redirects=False)
        query = dict(parse_qsl(urlsplit(start.headers["Location"]).query))
    await rt.close()
    assert query["redirect_uri"] == "https://werkplek.ommen.nl/werkplek/oidc/ommen/callback"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["scope"] == "openid profile" and query["client_id"] == "werkplek-ommen"


async def test_a_nested_groups_claim_maps_too(workspace: Workspace) -> None:
    assert (await workspace.sign_in("coevorden")).status == 302
    me = await workspace.whoami()
    assert me is not None
    assert (me["tenant"], me["teams"], me["roles"]) == ("coevorden", ["kcc"], ["agent"])


async def test_without_a_name_claim_the_name_is_never_an_e_mail_address(workspace: Workspace) -> None:
    workspace.providers["ommen"].user = {
        "sub": "m-9",
        "preferred_username": "m.smit@ommen.nl",
        "groups": ["ommen-burgerzaken"],
    }
    assert (await workspace.sign_in("ommen")).status == 302
    me = await workspace.whoami()
    assert me is not None
    assert me["display_name"] == "m-9" and me["teams"] == ["burgerzaken"] and me["roles"] == ["agent"]


# -- refusals -------------------------------------------------------------------------------------------


REFUSALS: dict[str, Callable[[LocalProvider], None]] = {
    "expired ID token": lambda p: setattr(p, "id_token_seconds", -300),
    "tampered signature": lambda p: setattr(p, "tamper", broken_signature),
    "signed with a key the provider does not publish": lambda p: setattr(p, "unpublished_key", True),
    "wrong audience": lambda p: p.override.update(aud="another-application"),
    "wrong issuer": lambda p: p.override.update(iss="http://127.0.0.1:9/realms/other"),
    "wrong nonce": lambda p: p.override.update(nonce="not-the-nonce-of-this-sign-in"),
    "no nonce": lambda p: p.override.update(nonce=None),
    "payload changed after signing": lambda p: setattr(
        p, "tamper", lambda t: ".".join((t.split(".")[0], _with_claim(t, "groups"), t.split(".")[2]))
    ),
    "in no mapped group": lambda p: setattr(p, "user", {**JAN, "groups": ["iedereen", "ommen-kcc-oud"]}),
    "no groups claim": lambda p: setattr(p, "user", {"sub": "x-1", "name": "X"}),
}


def _with_claim(token: str, claim: str) -> str:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims[claim] = ["ommen-kcc", "ommen-teamleiders", "ommen-burgerzaken"]
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_a_bad_id_token_or_a_user_in_no_mapped_group_is_refused_with_a_dutch_page_and_no_session(
    workspace: Workspace, case: str
) -> None:
    provider = workspace.providers["ommen"]
    REFUSALS[case](provider)
    with capture_logs() as logged:
        answer = await workspace.sign_in("ommen")
    await assert_refused(workspace, answer)
    refused = [e for e in logged if e["event"] == "oidc_sign_in_refused"]
    assert refused and refused[0]["tenant"] == "ommen"
    if "group" in case:
        assert "hoort niet bij een team" in answer.text
        assert refused[0]["reason"] == "no_mapped_group"
    else:
        assert "niet bevestigd" in answer.text
        assert refused[0]["reason"].startswith("id_token_")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired ID token", "id_token_expired"),
        ("tampered signature", "id_token_bad_signature"),
        ("signed with a key the provider does not publish", "id_token_bad_signature"),
        ("wrong audience", "id_token_invalid_claim:aud"),
        ("wrong issuer", "id_token_invalid_claim:iss"),
        ("wrong nonce", "id_token_invalid_claim:nonce"),
        ("no nonce", "id_token_missing_claim:nonce"),
    ],
)
async def test_each_refusal_is_logged_with_the_check_that_failed(
    workspace: Workspace, case: str, reason: str
) -> None:
    REFUSALS[case](workspace.providers["ommen"])
    with capture_logs() as logged:
        await assert_refused(workspace, await workspace.sign_in("ommen"))
    assert [e["reason"] for e in logged if e["event"] == "oidc_sign_in_refused"] == [reason]


async def test_a_wrong_state_is_refused(workspace: Workspace) -> None:
    answer = await workspace.sign_in("ommen", lambda url: with_query(url, state="someone-elses-state"))
    await assert_refused(workspace, answer, 400)
    assert "Begin opnieuw" in answer.text
    # Refused before the code was redeemed: a stolen code is not spent on the attacker's behalf.
    assert workspace.providers["ommen"].token_requests == []


async def test_a_code_of_another_sign_in_fails_the_pkce_check_at_the_provider(
    workspace: Workspace, providers: dict[str, LocalProvider]
) -> None:
    """Code injection: an attacker's code (for their own PKCE challenge) put into the victim's callback,
    with the victim's state. The provider refuses the victim's verifier for it; no session."""
    victim_back = await workspace.to_provider("ommen")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as attacker:
        start = await attacker.get(workspace.url("/werkplek/oidc/ommen/start"), allow_redirects=False)
        authorize = await attacker.get(start.headers["Location"], allow_redirects=False)
        attackers_code = dict(parse_qsl(urlsplit(authorize.headers["Location"]).query))["code"]
    with capture_logs() as logged:
        answer = await workspace.get(with_query(victim_back, code=attackers_code))
    await assert_refused(workspace, answer)
    (request,) = providers["ommen"].token_requests
    assert request["code"] == attackers_code  # redeemed with the victim's verifier, which does not fit
    assert [e["reason"] for e in logged if e["event"] == "oidc_sign_in_refused"] == [
        "token_refused:invalid_grant"
    ]


async def test_a_callback_without_the_flow_cookie_or_used_twice_is_refused(workspace: Workspace) -> None:
    back = await workspace.to_provider("ommen")
    assert (await workspace.get(back)).status == 302
    workspace.browser.cookie_jar.clear()
    await assert_refused(workspace, await workspace.get(back), 400)


async def test_a_sign_in_that_took_longer_than_the_flow_allows_is_refused(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    back = await workspace.to_provider("ommen")
    real = time

    class Later:
        """The time module as the callback sees it: the flow's ten minutes have passed."""

        monotonic = staticmethod(real.monotonic)

        @staticmethod
        def time() -> float:
            return real.time() + oidc.FLOW_SECONDS + 1

    monkeypatch.setattr(oidc, "time", Later)
    with capture_logs() as logged:
        await assert_refused(workspace, await workspace.get(back), 400)
    assert [e["reason"] for e in logged if e["event"] == "oidc_sign_in_refused"] == [
        "flow_missing_or_expired"
    ]
    assert workspace.providers["ommen"].token_requests == []


async def test_the_providers_own_refusal_is_a_dutch_page(workspace: Workspace) -> None:
    answer = await workspace.sign_in(
        "ommen", lambda url: with_query(url, error="access_denied", error_description="<script>")
    )
    await assert_refused(workspace, answer)
    assert "<script>" not in answer.text
    assert workspace.providers["ommen"].token_requests == []


async def test_an_unreachable_provider_is_a_dutch_page_that_says_try_again(
    workspace: Workspace, providers: dict[str, LocalProvider]
) -> None:
    await providers["ommen"].close()
    answer = await workspace.get(workspace.url("/werkplek/oidc/ommen/start"))
    assert answer.status == 503
    assert "Gemeente Ommen" in answer.text and "Probeer het over een paar minuten opnieuw" in answer.text
    assert await workspace.whoami() is None


async def test_an_issuer_that_is_not_the_providers_own_is_refused_before_any_redirect(
    tmp_path: Path, providers: dict[str, LocalProvider], clock: ManualClock
) -> None:
    """A trailing slash too many: the discovery document names another issuer (Discovery 1.0, 4.3),
    so no token of this provider could ever match; the start says the sign-in is unavailable."""
    settings = oidc_settings(rules_with_agents(tmp_path / "rules"), providers)
    settings = settings.model_copy(
        update={
            "oidc": {
                "ommen": settings.oidc["ommen"].model_copy(update={"issuer": providers["ommen"].issuer + "/"})
            }
        }
    )
    rt = await build(settings, with_router=False, embedded="always", clock=clock)
    app = create_app(rt.api_context())
    session.configure(app, SESSION_SECRET)
    app.router.add_routes(oidc_routes(settings, rt.tenants))
    with capture_logs() as logged:
        async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as browser:
            start = await browser.get(server.make_url("/werkplek/oidc/ommen/start"), allow_redirects=False)
            assert start.status == 503 and "niet bereikbaar" in await start.text()
    await rt.close()
    assert [e["reason"] for e in logged if e["event"] == "oidc_provider_unavailable"] == ["issuer_mismatch"]


async def test_a_tenant_without_a_provider_has_no_sign_in(workspace: Workspace) -> None:
    answer = await workspace.get(workspace.url("/werkplek/oidc/zwolle/start"))
    assert answer.status == 404 and "niet aanmelden" in answer.text


# -- tenants ------------------------------------------------------------------------------------------


async def test_a_session_of_one_tenant_never_acts_for_another(workspace: Workspace) -> None:
    assert (await workspace.sign_in("ommen")).status == 302
    me = await workspace.whoami()
    assert me is not None and me["tenant"] == "ommen"
    # The browser changes the tenant in its session cookie: no session at all.
    cookie = workspace.cookie(session.COOKIE)
    assert cookie is not None
    data = session_payload(cookie)
    forged = base64.urlsafe_b64encode(json.dumps({**data, "t": "coevorden"}).encode()).rstrip(b"=").decode()
    workspace.browser.cookie_jar.update_cookies(
        {session.COOKIE: f"{forged}.{cookie.split('.')[1]}"}, workspace.server.make_url("/werkplek/")
    )
    assert await workspace.whoami() is None
    # Signing in with the other tenant's provider replaces the session; teams and roles are that
    # tenant's alone (Ommen's supervisor role does not carry over).
    assert (await workspace.sign_in("coevorden")).status == 302
    me = await workspace.whoami()
    assert me is not None
    assert (me["tenant"], me["teams"], me["roles"]) == ("coevorden", ["kcc"], ["agent"])


async def test_one_tenants_sign_in_cannot_be_finished_at_anothers_callback(workspace: Workspace) -> None:
    back = await workspace.to_provider("ommen")
    parts = urlsplit(back)
    other = urlunsplit(parts._replace(path="/werkplek/oidc/coevorden/callback"))
    await assert_refused(workspace, await workspace.get(other), 400)
    assert workspace.providers["coevorden"].token_requests == []


async def test_a_user_of_a_shared_provider_is_refused_by_the_tenant_whose_groups_they_lack(
    tmp_path: Path, clock: ManualClock
) -> None:
    """One provider for two municipalities (a shared KCC), a client each: Ommen's user, with Ommen's
    groups, signs in at Coevorden's client and is refused there."""
    shared = LocalProvider(user=dict(JAN), client_id="werkplek")
    await shared.start()
    try:
        settings = oidc_settings(
            rules_with_agents(tmp_path / "rules"), {"ommen": shared, "coevorden": shared}
        )
        rt = await build(settings, with_router=False, embedded="always", clock=clock)
        app = create_app(rt.api_context())
        session.configure(app, SESSION_SECRET)
        app.router.add_routes(oidc_routes(settings, rt.tenants))
        app.router.add_get("/werkplek/test/whoami", whoami)
        async with TestServer(app, host="127.0.0.1") as server:
            shared.redirect_uris |= {str(server.make_url(f"/werkplek/oidc/{t}/callback")) for t in AGENTS}
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                ws = Workspace(server, {"coevorden": shared}, browser)
                answer = await ws.sign_in("coevorden")
                await assert_refused(ws, answer)
                assert "Gemeente Coevorden" in answer.text
        await rt.close()
    finally:
        await shared.close()


# -- configuration --------------------------------------------------------------------------------------


def test_providers_come_from_one_variable_per_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_OMMEN_ISSUER", "https://login.ommen.nl/realms/kcc")
    monkeypatch.setenv("OIDC_OMMEN_CLIENT_ID", "werkplek")
    monkeypatch.setenv("OIDC_OMMEN_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("OIDC_OMMEN_SCOPE", "openid profile groups")
    settings = Settings()
    assert configured_tenants(settings) == frozenset({"ommen"})
    provider = settings.oidc["ommen"]
    assert (provider.issuer, provider.client_id, provider.scope) == (
        "https://login.ommen.nl/realms/kcc",
        "werkplek",
        "openid profile groups",
    )
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"OIDC_OMMEN_ISSUER": "https://login.ommen.nl"}, "OIDC_OMMEN_CLIENT_ID, OIDC_OMMEN_CLIENT_SECRET"),
        (
            {
                "OIDC_OMMEN_ISSUER": "http://login.ommen.nl",
                "OIDC_OMMEN_CLIENT_ID": "w",
                "OIDC_OMMEN_CLIENT_SECRET": "s",
            },
            "OIDC_OMMEN_ISSUER: the issuer must be an https URL",
        ),
        (
            {
                "OIDC_OMMEN_ISSUER": "https://login.ommen.nl",
                "OIDC_OMMEN_CLIENT_ID": "w",
                "OIDC_OMMEN_CLIENT_SECRET": "geheim-123",
                "OIDC_OMMEN_SCOPE": "profile",
            },
            "OIDC_OMMEN_SCOPE: the scope must include 'openid'",
        ),
    ],
)
def test_an_incomplete_or_unsafe_provider_stops_the_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message) as caught:
        Settings()
    assert "geheim-123" not in str(caught.value)


def test_the_development_sign_in_is_refused_while_a_provider_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The refusal is the workspace's (`dev_signin_refused`, used by `setup_workspace` and at the
    start of serve); what it is fed is `configured_tenants`."""
    from router.http.workspace import dev_signin_refused as refused

    monkeypatch.setenv("OIDC_OMMEN_ISSUER", "https://login.ommen.nl/realms/kcc")
    monkeypatch.setenv("OIDC_OMMEN_CLIENT_ID", "werkplek")
    monkeypatch.setenv("OIDC_OMMEN_CLIENT_SECRET", "s3cret")
    why = refused(True, configured_tenants(Settings()))
    assert why is not None and "ommen" in why and "WORKSPACE_DEV_SIGNIN" in why
    monkeypatch.delenv("OIDC_OMMEN_ISSUER")
    monkeypatch.delenv("OIDC_OMMEN_CLIENT_ID")
    monkeypatch.delenv("OIDC_OMMEN_CLIENT_SECRET")
    assert refused(True, configured_tenants(Settings())) is None


def test_a_provider_for_a_tenant_without_rules_or_without_agents_stops_the_start(tmp_path: Path) -> None:
    provider = {"issuer": "https://login.example.nl", "client_id": "w", "client_secret": "s"}
    tenants = load_tenants(RULES)  # the shipped rules have no agents: section
    with pytest.raises(ValueError, match=r"OIDC_ZWOLLE_ISSUER names tenant 'zwolle', which has no rules"):
        oidc_routes(Settings(rules_dir=RULES, oidc={"zwolle": provider}), tenants)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"tenant 'ommen' has an OpenID Connect provider .* no agents: section"
    ):
        oidc_routes(Settings(rules_dir=RULES, oidc={"ommen": provider}), tenants)  # type: ignore[arg-type]
    assert oidc_routes(Settings(rules_dir=RULES), tenants) == []


def test_an_unknown_team_in_the_agents_section_is_refused_naming_tenant_team_and_line(tmp_path: Path) -> None:
    rules = rules_with_agents(tmp_path / "rules")
    path = rules / "ommen.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("ommen-burgerzaken: burgerzaken", "ommen-bz: bugerzaken")
    )
    with pytest.raises(RulesError) as caught:
        load_dir(rules)
    (problem,) = caught.value.problems
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "ommen-bz:" in text)
    assert (problem.file, problem.line) == (str(path), line)
    assert "tenant 'ommen'" in problem.reason and "team 'bugerzaken'" in problem.reason


def test_an_agents_section_without_groups_is_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    path = rules / "ommen.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\nagents: {claim: groups}\n")
    with pytest.raises(RulesError, match="at least one group"):
        load_dir(rules)


def test_the_mapping_reads_list_string_and_nested_claims() -> None:
    from router.core.rules import AgentMapping

    mapping = AgentMapping.model_validate({"teams": {"a": "kcc", "b": "burgerzaken"}, "supervisors": ["s"]})
    assert mapping.access({"groups": "a"}) is not None
    access = mapping.access({"groups": ["a", "b", "s", 7]})
    assert (
        access is not None
        and access.teams == {"kcc", "burgerzaken"}
        and access.roles == {"agent", "supervisor"}
    )
    supervisor_only = mapping.access({"groups": ["s"]})
    assert (
        supervisor_only is not None and supervisor_only.roles == {"supervisor"} and not supervisor_only.teams
    )
    assert mapping.access({"groups": {"a": True}}) is None
    assert mapping.access({}) is None
    url_claim = AgentMapping.model_validate({"claim": "https://ommen.nl/groups", "teams": {"a": "kcc"}})
    assert url_claim.access({"https://ommen.nl/groups": ["a"]}) is not None
