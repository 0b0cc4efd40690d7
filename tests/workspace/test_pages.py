"""The workspace as an agent uses it, over HTTP with real cookies: sign in (development), the work
list, the contact page, every action through the case-work service, CSRF, tenant and team isolation,
and the audit of every view and action. Runs on both backends (fixture `ws`)."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from yarl import URL

from router.http.workspace import views
from tests.harness import PHONE
from tests.workspace.conftest import Workspace

BZ = "demo-ommen-burgerzaken"
KCC = "demo-ommen-kcc"
BELASTINGEN = "demo-ommen-belastingen"
LEAD = "demo-ommen-teamleider"
COEVORDEN_BZ = "demo-coevorden-burgerzaken"


async def test_sign_in_page_offers_demo_agents_and_sets_a_safe_cookie(ws: Workspace) -> None:
    b = await ws.browser()
    status, page = await b.get("/werkplek/")  # not signed in: to the sign-in page
    assert status == 200 and "Ontwikkel-aanmelding" in page and BZ in page and "Teamleider" in page
    async with b.session.post(
        ws.base + "/werkplek/aanmelden/ontwikkeling",
        data={"agent": BZ, "csrf": b.csrf},
        allow_redirects=False,
    ) as r:
        assert r.status == 303 and r.headers["Location"] == "/werkplek/"
        cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/werkplek/" in cookie
    assert "Secure" not in cookie  # plain http on loopback only
    status, page = await b.get("/werkplek/")
    assert status == 200 and "Werkvoorraad Burgerzaken" in page and "Demo medewerker Burgerzaken" in page


async def test_sign_in_without_csrf_token_is_refused(ws: Workspace) -> None:
    b = await ws.browser()
    await b.get("/werkplek/aanmelden")
    status, page, _ = await b.post("/werkplek/aanmelden/ontwikkeling", {"agent": BZ}, csrf=False)
    assert status == 403 and "Laad de pagina opnieuw" in page
    status, page = await b.get("/werkplek/")
    assert "Aanmelden" in page and "Werkvoorraad" not in page.split("<main")[1]


async def test_a_tampered_session_cookie_is_no_session(ws: Workspace) -> None:
    b = await ws.browser(BZ)
    cookie = next(c for c in b.session.cookie_jar if c.key == "werkplek_sessie")
    payload, mac = cookie.value.split(".")
    b.session.cookie_jar.clear()
    b.session.cookie_jar.update_cookies(
        {"werkplek_sessie": payload[:-2] + "xx." + mac}, URL(ws.base + "/werkplek/")
    )
    status, page = await b.get("/werkplek/")
    assert status == 200 and "Ontwikkel-aanmelding" in page  # back at the sign-in page


async def test_work_list_shows_the_teams_items_soonest_first_with_the_callback_phone(ws: Workspace) -> None:
    cid = await ws.contact("ommen", "phone", "Mijn paspoort is verlopen")
    b = await ws.browser(BZ)
    status, page = await b.get("/werkplek/")
    assert status == 200 and f"/werkplek/contact/{cid}" in page
    other = await ws.browser(BELASTINGEN)
    _, page = await other.get("/werkplek/")
    assert cid not in page
    # Another team's work list is not this agent's to see.
    status, page = await other.get("/werkplek/?team=burgerzaken")
    assert status == 403 and "U werkt niet in dit team" in page
    # A callback request appears with its phone number and preferred time.
    await b.get(f"/werkplek/contact/{cid}")
    status, _, _ = await b.post(
        f"/werkplek/contact/{cid}/terugbelverzoek",
        {
            "team": "burgerzaken",
            "telefoon": "06 12345678",
            "voorkeur": "na 14:00",
            "reden": "Vraag over afspraak",
        },
    )
    assert status == 200
    _, page = await b.get("/werkplek/")
    assert "+31612345678" in page and "na 14:00" in page and "Terugbelverzoeken (1)" in page


async def test_a_long_work_list_comes_in_pages_counted_whole_overdue_first(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18, item 6: thousands of items are paged (views.PAGE_SIZE, 3 here); the counts above the
    list cover all of them, the filters and the page number travel together."""
    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    # Seven residents (one number each): one resident's second question on the same category would
    # join their first (issue 19).
    late = [
        await ws.contact("ommen", "mail", f"Mijn paspoort is verlopen ({n})", phone=f"+3161000000{n}")
        for n in range(2)
    ]
    ws.h.clock.advance(timedelta(days=40))  # every term of those two has passed
    mails = [
        await ws.contact("ommen", "mail", f"Paspoort verlopen, nummer {n}", phone=f"+3162000000{n}")
        for n in range(3)
    ]
    forms = [
        await ws.contact("ommen", "webform", f"Paspoort kwijt, nummer {n}", phone=f"+3163000000{n}")
        for n in range(2)
    ]
    b = await ws.browser(BZ)

    _, page = await b.get("/werkplek/")
    assert "7 open items: 2 te laat, 0 bijna te laat. U ziet 1 tot en met 3" in page
    assert "Contacten (7)" in page and "Pagina 1 van 3" in page
    shown = [cid for cid in late + mails + forms if f"/werkplek/contact/{cid}" in page]
    assert len(shown) == 3 and set(late) <= set(shown)  # overdue first
    assert 'href="/werkplek/?pagina=2"' in page and 'rel="prev"' not in page

    _, page = await b.get("/werkplek/?pagina=3")
    assert "U ziet 7 tot en met 7" in page and 'rel="next"' not in page
    assert sum(f"/werkplek/contact/{cid}" in page for cid in late + mails + forms) == 1
    _, beyond = await b.get("/werkplek/?pagina=99")  # an old link: the last page
    assert "Pagina 3 van 3" in beyond
    _, bad = await b.get("/werkplek/?pagina=twee")  # not a number: the first page
    assert "Pagina 1 van 3" in bad

    _, page = await b.get("/werkplek/?kanaal=webform")
    assert "2 open items: 0 te laat" in page and "Pagina" not in page
    assert all(f"/werkplek/contact/{cid}" in page for cid in forms)
    _, page = await b.get("/werkplek/?kanaal=mail")
    assert "5 open items: 2 te laat" in page and 'href="/werkplek/?kanaal=mail&amp;pagina=2"' in page


async def test_contact_page_shows_message_deadlines_with_explanation_and_is_audited(ws: Workspace) -> None:
    cid = await ws.contact("ommen", "webform", "Mijn paspoort is verlopen <script>alert(1)</script>")
    b = await ws.browser(BZ)
    status, page = await b.get(f"/werkplek/contact/{cid}")
    assert status == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "Hoe is deze termijn berekend?" in page and "Webformulier" in page
    assert "<strong>Reageren</strong>" in page and "5 werkdagen" in page and "Dag 0:" in page
    assert "Ik pak dit op" in page
    assert ("contact.viewed", BZ, "workspace-development") in await ws.audit(cid)


async def test_other_tenant_gets_404_and_other_team_403_for_views_and_actions(ws: Workspace) -> None:
    cid = await ws.contact("ommen", "phone", "Mijn paspoort is verlopen")
    stranger = await ws.browser(COEVORDEN_BZ)
    status, page = await stranger.get(f"/werkplek/contact/{cid}")
    assert status == 404 and "bestaat niet" in page
    colleague = await ws.browser(BELASTINGEN)
    status, _ = await colleague.get(f"/werkplek/contact/{cid}")
    assert status == 403
    before = await ws.fields(cid)
    for browser, expected in ((stranger, 404), (colleague, 403)):
        await browser.get("/werkplek/")
        for action, form in (
            ("oppakken", {}),
            ("overdragen", {"team": "kcc"}),
            ("afsluiten", {"oplossing": "klaar"}),
            ("terugbelverzoek", {"telefoon": "0612345678", "reden": "x"}),
        ):
            status, _, _ = await browser.post(f"/werkplek/contact/{cid}/{action}", form)
            assert status == expected, (action, status)
    after = await ws.fields(cid)
    assert after["team"] == before["team"] == "burgerzaken" and after.get("owner", "") == ""
    assert after["status"] == "routed" and after["version"] == before["version"]
    assert await ws.audit(cid) == []  # nothing was seen, nothing was done


async def test_a_post_without_the_sessions_csrf_token_changes_nothing(ws: Workspace) -> None:
    cid = await ws.contact("ommen", "phone", "Mijn paspoort is verlopen")
    b = await ws.browser(BZ)
    await b.get(f"/werkplek/contact/{cid}")
    status, _, _ = await b.post(f"/werkplek/contact/{cid}/afsluiten", {"oplossing": "x"}, csrf=False)
    assert status == 403
    async with b.session.post(
        ws.base + f"/werkplek/contact/{cid}/afsluiten", data={"oplossing": "x", "csrf": "forged"}
    ) as r:
        assert r.status == 403
    assert (await ws.fields(cid))["status"] == "routed"


async def test_take_transfer_callback_attempt_close_as_the_signed_in_agent(ws: Workspace) -> None:
    cid = await ws.contact("ommen", "phone", "Mijn paspoort is verlopen", phone=PHONE)
    bz = await ws.browser(BZ)
    _, page = await bz.get(f"/werkplek/contact/{cid}")
    assert "dit is de laatste overdracht die mag" in page  # ommen allows one transfer
    status, page, _ = await bz.post(f"/werkplek/contact/{cid}/oppakken")
    assert status == 200 and "U heeft dit contact opgepakt" in page
    assert (await ws.fields(cid))["owner"] == BZ
    # A colleague of the same team sees who has it and cannot take it.
    other = await ws.browser(LEAD)
    _, page = await other.get(f"/werkplek/contact/{cid}")
    assert "Demo medewerker Burgerzaken heeft dit contact al opgepakt" in page
    status, page, _ = await other.post(f"/werkplek/contact/{cid}/oppakken")
    assert status == 409 and BZ in html.unescape(page)

    status, page, path = await bz.post(
        f"/werkplek/contact/{cid}/overdragen", {"team": "belastingen", "notitie": "Gaat over de aanslag"}
    )
    assert status == 200 and path == "/werkplek/?gedaan=overgedragen"
    fields = await ws.fields(cid)
    assert fields["team"] == "belastingen" and fields["transfers"] == "1" and fields["owner"] == ""

    # The next transfer is offered as a callback request.
    bel = await ws.browser(BELASTINGEN)
    _, page = await bel.get(f"/werkplek/contact/{cid}")
    assert "Overdragen kan niet meer" in page and "Gaat over de aanslag" in page
    assert 'value="+31612345678"' in page  # the callback form has the sender's phone prefilled
    assert "moet uiterlijk" in page  # the due date is shown before saving
    status, page, _ = await bel.post(
        f"/werkplek/contact/{cid}/terugbelverzoek",
        {"team": "vergunningen", "telefoon": "+31612345678", "reden": "Vraag over dakkapel"},
    )
    assert status == 200 and "Het terugbelverzoek is gemaakt" in page
    lead = await ws.browser(LEAD)
    _, page = await lead.get(f"/werkplek/contact/{cid}")
    cbid = f"{cid}-cb1"
    assert f"/werkplek/terugbelverzoek/{cbid}/poging" in page
    status, page, _ = await lead.post(f"/werkplek/terugbelverzoek/{cbid}/poging", {"uitkomst": "no_answer"})
    assert status == 200 and "De terugbelpoging is vastgelegd" in page and "Pogingen: 1" in page

    status, page, path = await bel.post(f"/werkplek/contact/{cid}/afsluiten", {"oplossing": "Uitgelegd"})
    assert status == 200 and path == "/werkplek/?gedaan=afgesloten"
    fields = await ws.fields(cid)
    assert fields["status"] == "closed" and fields["resolution"] == "Uitgelegd"

    # The history names the agents by id (and display name), never a typed name; the audit has it all.
    record = await ws.rt.store.get(cid)
    assert record is not None
    taken = next(e for e in record.history if e.get("event") == "contact.taken")
    assert taken["agent"] == BZ and taken["by"] == BZ
    audit = await ws.audit(cid)
    # Every view (also the page shown after an action) and every action, in order.
    assert [a for a, _, _ in audit if a != "contact.viewed"] == [
        "contact.taken",
        "contact.transferred",
        "callback.requested",
        "callback.attempted",
        "contact.closed",
    ]
    assert sum(1 for a, _, _ in audit if a == "contact.viewed") == 7
    assert {agent for _, agent, _ in audit} == {BZ, LEAD, BELASTINGEN}


async def test_a_transfer_past_the_limit_becomes_a_callback_request(ws: Workspace) -> None:
    cid = await ws.contact("ommen", "phone", "Mijn paspoort is verlopen")
    bz = await ws.browser(BZ)
    await bz.get(f"/werkplek/contact/{cid}")
    await bz.post(f"/werkplek/contact/{cid}/overdragen", {"team": "belastingen"})
    bel = await ws.browser(BELASTINGEN)
    await bel.get(f"/werkplek/contact/{cid}")
    # A stale form (opened before the limit was reached) still cannot transfer: the service refuses.
    status, page, _ = await bel.post(f"/werkplek/contact/{cid}/overdragen", {"team": "vergunningen"})
    assert status == 200 and "Er is een terugbelverzoek gemaakt" in page
    fields = await ws.fields(cid)
    assert fields["team"] == "belastingen" and fields["transfers"] == "1"
    assert ("transfer.refused", BELASTINGEN, "workspace-development") in await ws.audit(cid)


async def test_supervisor_overview_is_for_supervisors(ws: Workspace) -> None:
    await ws.contact("ommen", "phone", "Mijn paspoort is verlopen")
    agent = await ws.browser(BZ)
    status, page = await agent.get("/werkplek/overzicht")
    assert status == 403 and "alleen voor teamleiders" in page
    lead = await ws.browser(LEAD)
    status, page = await lead.get("/werkplek/overzicht")
    assert status == 200 and "Overzicht teams" in page and "Burgerzaken" in page
    assert "Normen gehaald in 2026Q2" in page


async def test_bad_input_gets_a_clear_dutch_message(ws: Workspace) -> None:
    cid = await ws.contact("ommen", "phone", "Mijn paspoort is verlopen")
    b = await ws.browser(BZ)
    await b.get(f"/werkplek/contact/{cid}")
    status, page, _ = await b.post(f"/werkplek/contact/{cid}/afsluiten", {"oplossing": ""})
    assert status == 422 and "Vul het veld &#39;Oplossing&#39; in" in page
    status, page, _ = await b.post(
        f"/werkplek/contact/{cid}/terugbelverzoek", {"telefoon": "bel me", "reden": "x"}
    )
    assert status == 422 and "telefoonnummer klopt niet" in page
    assert (await ws.fields(cid))["status"] == "routed"
