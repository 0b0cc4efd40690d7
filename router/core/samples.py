"""A handful of sample contacts for the demo run (`contact-router serve --demo`). Invented residents."""

from __future__ import annotations

import uuid
from datetime import datetime

from router.core.contact import Contact

_SAMPLES = [
    ("ommen", "mail", "Paspoort verlopen", "Mijn paspoort is verlopen, hoe vraag ik een nieuwe aan?"),
    ("ommen", "phone", "Boom op de weg", "Er ligt een omgevallen boom op de Stationsweg, dat is gevaarlijk."),
    ("ommen", "post", "Bezwaar", "Ik maak bezwaar tegen het besluit over mijn uitrit."),
    ("ommen", "social", "Ophaaldag", "Wanneer wordt de groene container geleegd?"),
    ("coevorden", "webform", "Losse stoeptegel", "Voor nummer 12 ligt een losse stoeptegel."),
    ("coevorden", "mail", "WOZ-waarde te hoog", "De WOZ-waarde van mijn woning klopt niet."),
    ("coevorden", "mail", "Vraag", "Kunt u mij vertellen wie mijn wijkagent is?"),
]


def sample_contacts(now: datetime) -> list[Contact]:
    run = uuid.uuid4().hex[:8]
    return [
        Contact.model_validate(
            {
                "tenant": tenant,
                "channel": channel,
                "received_at": now.isoformat(),
                "source": {"adapter": "demo", "native_id": f"demo-{run}-{i}"},
                "subject": subject,
                "body": body,
            }
        )
        for i, (tenant, channel, subject, body) in enumerate(_SAMPLES)
    ]
