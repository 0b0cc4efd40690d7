"""router/core/residents.py: which open contact a new one joins, and the resident's other contacts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from router.core.contact import Contact
from router.core.erasure import identities
from router.core.residents import RULE, identity_keys, may_link, months_before, open_link, related
from router.core.rules import Residents

NOW = datetime(2026, 5, 13, 8, 0, tzinfo=UTC)
ON = Residents()


def new(channel: str = "mail", **metadata: str) -> Contact:
    return Contact.model_validate(
        {
            "tenant": "ommen",
            "channel": channel,
            "received_at": NOW.isoformat(),
            "source": {"adapter": "test", "native_id": "n1"},
            "body": "Paspoort",
            "sender": {"email": "A@B.nl", "phone": "0612345678", "handle": "WhatsApp:316"},
            "metadata": metadata,
        }
    )


def row(**fields: str) -> dict[str, str]:
    base = {
        "tenant": "ommen",
        "channel": "mail",
        "status": "routed",
        "category": "reisdocument",
        "team": "burgerzaken",
        "received_at": "2026-05-01T08:00:00+00:00",
        "committed": "1",
    }
    return base | fields


def test_identity_keys_are_address_number_and_handle_never_a_name() -> None:
    assert identity_keys(new()) == [
        ("email", "a@b.nl"),
        ("phone", "+31612345678"),
        ("social", "whatsapp:316"),
    ]
    assert identities({"sender": {"name": "Jan", "handle": "  "}}) == []


def test_the_earliest_open_contact_of_the_same_category_is_joined() -> None:
    candidates: list[tuple[str, Any]] = [
        ("later", row(received_at="2026-05-10T08:00:00+00:00")),
        ("first", row()),
        ("other-category", row(category="afval", received_at="2026-04-01T08:00:00+00:00")),
    ]
    link = open_link(new(), "reisdocument", candidates, ON, NOW)
    assert link is not None
    assert link.join() == {"id": "first", "team": "burgerzaken", "rule": RULE, "category": "reisdocument"}


def test_what_is_never_joined() -> None:
    contact = new()
    never = [
        ("closed", row(status="closed")),
        ("merged", row(status="merged")),
        ("routing", row(committed="")),
        ("elsewhere", row(tenant="coevorden")),
        ("old", row(received_at="2025-11-12T08:00:00+00:00")),  # more than six months before
        ("future", row(received_at="2026-05-14T08:00:00+00:00")),
        ("afval", row(category="afval")),
        ("broken", row(received_at="not a date")),
        ("teamless", row(team="")),
        (contact.cid, row()),  # itself (a re-sent copy)
    ]
    assert open_link(contact, "reisdocument", never, ON, NOW) is None
    assert open_link(contact, None, [("first", row())], ON, NOW) is None  # no category: nothing to match


def test_the_tenant_setting_and_callback_notes() -> None:
    off = Residents(link_open_same_category=False)
    assert open_link(new(), "reisdocument", [("first", row())], off, NOW) is None
    assert not may_link(new("phone", **{"phone.outcome": "colleague_unavailable"}), "reisdocument", ON)
    assert may_link(new("phone", **{"phone.outcome": "answered"}), "reisdocument", ON)


def test_months_before_counts_calendar_months() -> None:
    assert months_before(datetime(2026, 8, 31, 12, tzinfo=UTC), 6) == datetime(2026, 2, 28, 12, tzinfo=UTC)
    assert months_before(datetime(2026, 1, 15, tzinfo=UTC), 1) == datetime(2025, 12, 15, tzinfo=UTC)


def test_related_lists_the_tenants_other_contacts_newest_first() -> None:
    candidates: list[tuple[str, Any]] = [
        ("3f0b4a3e-0000-4000-8000-000000000001", row(status="closed")),
        ("3f0b4a3e-0000-4000-8000-000000000002", row(received_at="2026-05-12T08:00:00+00:00", category="")),
        ("3f0b4a3e-0000-4000-8000-000000000003", row(tenant="coevorden")),
        ("3f0b4a3e-0000-4000-8000-000000000004", row(received_at="2025-01-01T08:00:00+00:00")),
        ("3f0b4a3e-0000-4000-8000-000000000005", row(committed="")),
        ("self", row()),
    ]
    found = related("self", "ommen", candidates, ON, NOW)
    assert [r.id[-1] for r in found] == ["2", "1"]
    assert found[0].category is None and found[1].status == "closed"
    assert found[1].as_dict()["reference"] == found[1].reference and found[1].reference.startswith("OMM-")
