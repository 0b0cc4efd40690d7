"""The session cookie and CSRF token (router/http/workspace/session.py), on a bare app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from router.http.workspace import dev_signin_refused, session
from router.http.workspace.session import SignedInAgent

SECRET = b"0123456789abcdef0123456789abcdef"


def agent(**changes: object) -> SignedInAgent:
    values: dict[str, object] = {
        "tenant": "ommen",
        "agent_id": "a-1",
        "display_name": "Anna de Vries",
        "teams": frozenset({"kcc"}),
        "roles": frozenset({"agent"}),
        "via": "oidc",
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    }
    values.update(changes)
    return SignedInAgent(**values)  # type: ignore[arg-type]


async def client_for(signed: SignedInAgent) -> TestClient[web.Request, web.Application]:
    async def login(request: web.Request) -> web.StreamResponse:
        response = web.Response(text="ok")
        session.sign_in(request, response, signed)
        return response

    async def me(request: web.Request) -> web.StreamResponse:
        found = session.current_agent(request)
        return web.json_response(
            None if found is None else {"id": found.agent_id, "teams": sorted(found.teams)}
        )

    async def act(request: web.Request) -> web.StreamResponse:
        await session.check_csrf(request)
        return web.Response(text="done")

    async def token(request: web.Request) -> web.StreamResponse:
        return web.Response(text=session.csrf_token(request))

    app = web.Application()
    session.configure(app, SECRET)
    app.router.add_get("/werkplek/login", login)
    app.router.add_get("/werkplek/me", me)
    app.router.add_get("/werkplek/token", token)
    app.router.add_post("/werkplek/act", act)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_a_signed_in_agent_round_trips_and_its_csrf_token_is_checked() -> None:
    client = await client_for(agent())
    try:
        r = await client.get("/werkplek/login")
        assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Lax" in r.headers["Set-Cookie"]
        assert "Anna" not in str(agent())  # the display name stays out of reprs (and so out of logs)
        assert await (await client.get("/werkplek/me")).json() == {"id": "a-1", "teams": ["kcc"]}
        token = await (await client.get("/werkplek/token")).text()
        assert (await client.post("/werkplek/act", data={"csrf": token})).status == 200
        assert (await client.post("/werkplek/act", headers={"X-CSRF-Token": token})).status == 200
        assert (await client.post("/werkplek/act", data={"csrf": token + "x"})).status == 403
        assert (await client.post("/werkplek/act")).status == 403
        foreign = {"X-CSRF-Token": token, "Origin": "https://evil.example"}
        assert (await client.post("/werkplek/act", headers=foreign)).status == 403
    finally:
        await client.close()


async def test_an_expired_session_is_no_session() -> None:
    """Signed correctly, but past its end: the cookie's own expiry aside, the payload says when."""
    past = agent(expires_at=datetime.now(UTC) - timedelta(seconds=5))
    client = await client_for(agent())
    try:
        await client.get("/werkplek/login")
        assert await (await client.get("/werkplek/me")).json() is not None
        client.session.cookie_jar.update_cookies(
            {"werkplek_sessie": session_value(past)}, client.make_url("/werkplek/")
        )
        assert await (await client.get("/werkplek/me")).json() is None
    finally:
        await client.close()


def session_value(signed: SignedInAgent) -> str:
    import json

    payload = session._b64(json.dumps(session._encode(signed, "t"), separators=(",", ":")).encode())
    return f"{payload}.{session._mac(SECRET, 'session', payload)}"


def test_an_agent_id_must_be_an_id_and_roles_known() -> None:
    with pytest.raises(ValueError, match="agent id"):
        agent(agent_id="anna@ommen.nl")
    with pytest.raises(ValueError, match="roles"):
        agent(roles=frozenset({"admin"}))


def test_development_sign_in_is_refused_beside_a_provider() -> None:
    assert dev_signin_refused(True, frozenset()) is None
    assert dev_signin_refused(False, frozenset({"ommen"})) is None
    why = dev_signin_refused(True, frozenset({"ommen"}))
    assert why is not None and "WORKSPACE_DEV_SIGNIN" in why and "ommen" in why
