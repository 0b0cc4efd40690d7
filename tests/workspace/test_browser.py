"""The workspace in a real browser: Debian's headless chromium driven by Playwright (never a browser
Playwright downloads), axe-core (vendored under tests/workspace/vendor/) on every page with 0
violations of WCAG 2.1 A/AA, and the agent's day end to end: sign in → an item appears live →
transfer → the next transfer is offered as a callback → record an attempt → close. Screenshots of each
page go to tests/screenshots/ (git-ignored) for a reviewer to look at."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from router.core.clock import ManualClock
from router.settings import Settings
from tests.harness import PHONE, wait_routed
from tests.workspace.conftest import Workspace, open_workspace

HERE = Path(__file__).parent
AXE = HERE / "vendor" / "axe-core" / "axe.min.js"
SHOTS = HERE.parent / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:  # never a silent skip
        pytest.fail("chromium is not installed: run scripts/test-tools (apt-get install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def live_ws(settings: Settings, clock: ManualClock, tmp_path: Path) -> AsyncIterator[Workspace]:
    async with open_workspace("embedded", settings, clock, tmp_path / "history.sqlite") as ws:
        yield ws


async def check(page: Page, name: str) -> None:
    """axe-core on the page as it is now: no violation of WCAG 2.1 A/AA; and a screenshot."""
    await page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = await page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG
    )
    problems = [
        f"{v['id']}: {v['help']} ({', '.join(n['target'][0] for n in v['nodes'][:3])})"
        for v in result["violations"]
    ]
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert problems == [], f"{name}: {problems}"


async def sign_in(page: Page, base: str, tenant: str, label: str) -> None:
    await page.goto(f"{base}/werkplek/")
    await expect(page.get_by_role("heading", name="Aanmelden", exact=True)).to_be_visible()
    form = page.locator("form", has_text=f"{tenant}: kies een demo-medewerker")
    await form.get_by_label(label, exact=True).check()
    await form.get_by_role("button").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Werkvoorraad")


async def sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Afmelden").click()
    await expect(page.get_by_role("heading", name="Aanmelden", exact=True)).to_be_visible()


async def test_an_agents_day_end_to_end_with_axe_on_every_page(live_ws: Workspace, browser: Browser) -> None:
    ws = live_ws
    context = await browser.new_context(bypass_csp=True, locale="nl-NL")  # axe is injected as a script
    page = await context.new_page()
    await page.goto(f"{ws.base}/werkplek/")
    await check(page, "1-aanmelden")
    # Keyboard first: the first Tab reaches the skip link.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Direct naar de inhoud"

    await sign_in(page, ws.base, "Gemeente Ommen", "Burgerzaken")
    await expect(page.get_by_text("Geen open contacten")).to_be_visible()
    await check(page, "2-werkvoorraad-leeg")

    # An item appears live, without a reload.
    text = "Mijn paspoort is verlopen, kan ik een afspraak maken?"
    contact = ws.h.contact("ommen", "phone", text, phone=PHONE)
    await ws.rt.publisher.publish(contact)
    link = page.locator(f"a[href='/werkplek/contact/{contact.cid}']")
    await expect(link).to_be_visible(timeout=5000)
    await check(page, "3-werkvoorraad")

    await link.click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Contact")
    await expect(page.get_by_text("dit is de laatste overdracht die mag")).to_be_visible()
    await check(page, "4-contact")
    await page.get_by_role("button", name="Ik pak dit op").click()
    await expect(page.get_by_text("U heeft dit contact opgepakt.").first).to_be_visible()

    await page.get_by_label("Naar team").select_option(label="Belastingen")
    await page.get_by_label("Notitie voor de collega").fill("Vraag over de aanslag")
    await page.get_by_role("button", name="Overdragen", exact=True).click()
    await expect(page.get_by_text("Het contact is overgedragen.")).to_be_visible()
    await expect(link).to_have_count(0)

    # The team lead (all teams) opens it: a next transfer is offered as a callback request instead.
    await sign_out(page)
    await sign_in(page, ws.base, "Gemeente Ommen", "Teamleider (alle teams)")
    await page.goto(f"{ws.base}/werkplek/contact/{contact.cid}")
    await expect(page.get_by_role("heading", name="Overdragen kan niet meer")).to_be_visible()
    assert await page.get_by_label("Telefoonnummer").input_value() == "+31612345678"
    await expect(page.get_by_text("moet uiterlijk")).to_be_visible()
    await check(page, "5-contact-terugbellen-in-plaats-van-overdragen")
    await page.get_by_label("Welk team belt terug?").select_option(label="Vergunningen")
    await page.get_by_label("Waarom terugbellen?").fill("Wil weten of een dakkapel mag")
    await page.get_by_role("button", name="Terugbelverzoek maken").click()
    await expect(page.get_by_text("Het terugbelverzoek is gemaakt.")).to_be_visible()

    await page.get_by_label("Niet opgenomen").check()
    await page.get_by_role("button", name="Poging vastleggen").click()
    await expect(page.get_by_text("De terugbelpoging is vastgelegd.")).to_be_visible()
    await expect(page.get_by_text("Pogingen: 1")).to_be_visible()
    await check(page, "6-contact-na-poging")

    await page.get_by_label("Hoe is de vraag opgelost?").fill("Uitgelegd hoe een afspraak werkt")
    await page.get_by_role("button", name="Contact afsluiten").click()
    await expect(page.get_by_text("Het contact is afgesloten.")).to_be_visible()

    await page.get_by_role("link", name="Overzicht teams").click()
    await expect(page.get_by_role("heading", name="Overzicht teams")).to_be_visible()
    await check(page, "7-overzicht-teams")
    await context.close()

    # The audit shows every view and action of this test, attributed to the signed-in agents.
    audit = await ws.history.audit_log(contact_id=contact.cid)
    actions = [(e.action, e.agent) for e in audit if e.action != "contact.viewed"]
    assert actions == [
        ("contact.taken", "demo-ommen-burgerzaken"),
        ("contact.transferred", "demo-ommen-burgerzaken"),
        ("callback.requested", "demo-ommen-teamleider"),
        ("callback.attempted", "demo-ommen-teamleider"),
        ("contact.closed", "demo-ommen-teamleider"),
    ]
    viewers = {e.agent for e in audit if e.action == "contact.viewed"}
    assert viewers == {"demo-ommen-burgerzaken", "demo-ommen-teamleider"}
    assert all(e.credential == "workspace-development" for e in audit)


async def test_an_error_page_passes_axe_too(live_ws: Workspace, browser: Browser) -> None:
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    await sign_in(page, live_ws.base, "Gemeente Coevorden", "Burgerzaken")
    await page.goto(f"{live_ws.base}/werkplek/contact/00000000-0000-4000-8000-000000000000")
    await expect(page.get_by_role("heading", name="Dit lukte niet")).to_be_visible()
    await check(page, "8-fout")
    await context.close()


@pytest.fixture
async def resident_ws(settings: Settings, clock: ManualClock, tmp_path: Path) -> AsyncIterator[Workspace]:
    async with open_workspace("embedded", settings, clock, tmp_path / "history.sqlite", adapters=True) as ws:
        yield ws


async def test_a_resident_follows_the_acknowledgements_link_to_the_expected_date(
    resident_ws: Workspace, browser: Browser
) -> None:
    """Issue 19: the web form's acknowledgement carries the status link; the page shows the expected
    date in a real browser; a wrong token shows what an unknown reference shows; axe on both."""
    ws = resident_ws
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{ws.base}/v1/channels/webform/ommen",
            json={
                "name": "Fenna Oosterhuis",
                "email": "fenna@example.nl",
                "message": "Mijn paspoort is verlopen",
            },
        ) as r:
            assert r.status == 202
            receipt = await r.json()
    await wait_routed(ws.rt, receipt["id"])
    assert ws.adapters is not None
    await ws.adapters.drain(5)
    [ack] = ws.acks.sent
    text = str(ack.get_content())
    [link] = [line for line in text.splitlines() if "/status/" in line]
    assert link == receipt["status_url"]  # the mail and the web page give the same link
    path = link[link.index("/status/") :]
    assert path.startswith(f"/status/{receipt['reference']}?t=") and len(path.split("?t=")[1]) >= 22

    context = await browser.new_context(bypass_csp=True, locale="nl-NL")
    page = await context.new_page()
    await page.goto(ws.base + path)
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Uw vraag {receipt['reference']}")
    await expect(page.get_by_text(receipt["expected_answer_text"])).to_be_visible()
    await expect(page.get_by_text("De afdeling Burgerzaken", exact=True)).to_be_visible()
    assert "Fenna" not in await page.content() and "Paspoort" not in await page.content()
    await check(page, "9-status-inwoner")

    wrong = await context.new_page()
    unknown = await context.new_page()
    await wrong.goto(ws.base + path[:-3] + "abc")
    await unknown.goto(f"{ws.base}/status/OMM-AAAA-AAAA?t={path.split('?t=')[1]}")
    await expect(wrong.get_by_role("heading", level=1)).to_have_text("Wij kunnen deze vraag niet vinden")
    assert await wrong.content() == await unknown.content()
    await check(wrong, "10-status-onbekend")
    await context.close()
