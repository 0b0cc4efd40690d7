"""The contact page's "Andere contacten van deze inwoner" (issue 19): the same resident's other contacts
across channels, each linked only where the agent may open it; another municipality's never."""

from __future__ import annotations

from datetime import timedelta

from router.core.contact import reference_for
from tests.workspace.conftest import Workspace

BZ = "demo-ommen-burgerzaken"
NUMBER = "+31655500011"


async def test_the_contact_page_lists_the_residents_other_contacts(ws: Workspace) -> None:
    passport = await ws.contact("ommen", "mail", "Mijn paspoort is verlopen", phone=NUMBER)
    ws.h.clock.advance(timedelta(minutes=1))
    moving = await ws.contact("ommen", "webform", "Ik ga verhuizen naar Ommen", phone=NUMBER)
    ws.h.clock.advance(timedelta(minutes=1))
    waste = await ws.contact("ommen", "phone", "Mijn container is niet geleegd", phone=NUMBER)
    elsewhere = await ws.contact("coevorden", "mail", "Vraag over verhuizen", phone=NUMBER)
    stranger = await ws.contact("ommen", "mail", "Ik ga verhuizen", phone="+31655500022")
    b = await ws.browser(BZ)
    status, page = await b.get(f"/werkplek/contact/{passport}")
    assert status == 200
    section = page.split("Andere contacten van deze inwoner", 1)[1].split("Geschiedenis", 1)[0]
    # Burgerzaken's own: a link; Openbare ruimte's: named, no link.
    assert f'href="/werkplek/contact/{moving}"' in section and reference_for("ommen", moving) in section
    assert reference_for("ommen", waste) in section and f"/werkplek/contact/{waste}" not in section
    assert "bij een ander team" in section and "Openbare ruimte" in section
    assert "Webformulier" in section and "Telefoon" in section and "Open" in section
    # Another municipality's contact of the same number, and another resident's: not there.
    assert elsewhere not in page and reference_for("coevorden", elsewhere) not in page
    assert stranger not in section and reference_for("ommen", stranger) not in section
    # Newest first.
    assert section.index(reference_for("ommen", waste)) < section.index(reference_for("ommen", moving))

    _, alone = await b.get(f"/werkplek/contact/{stranger}")
    assert "Geen andere contacten van deze inwoner gevonden." in alone
