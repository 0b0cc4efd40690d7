"""What the benchmark feeds the router: realistic contacts (1–2 KB of JSON) and generated rules.

Contacts are seeded, so two runs route the same mix: mail, web forms, social media, phone notes
(some answered, transferred or to be called back), letters; Dutch text with the keywords residents
use, a sender, metadata and attachment metadata, and a few mail replies that carry a Message-ID the
router looks up (and does not find).
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from router.core.contact import contact_id

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
TENANTS = ("ommen", "coevorden")

# (subject, a sentence that carries the keyword a route looks for); the last ones match no route.
_TOPICS = [
    ("Paspoort verlopen", "Mijn paspoort is verlopen en ik ga over drie weken op reis."),
    ("Losse stoeptegel", "Voor ons huis ligt een losse stoeptegel waar al iemand over gestruikeld is."),
    ("WOZ-waarde te hoog", "De WOZ-waarde van onze woning is veel hoger dan vergelijkbare huizen."),
    ("Bezwaar", "Ik wil bezwaar maken tegen het besluit over de uitrit."),
    ("Container niet geleegd", "De groene container is deze week weer niet geleegd op de ophaaldag."),
    ("Vraag over de aanslag", "Ik begrijp de aanslag afvalstoffenheffing niet, kan iemand het uitleggen?"),
    ("Verhuizing doorgeven", "Wij zijn verhuisd en willen onze adreswijziging doorgeven."),
    ("Dakkapel", "Heb ik een omgevingsvergunning nodig voor een dakkapel aan de achterkant?"),
    ("Hulp in huis", "Mijn moeder heeft huishoudelijke hulp nodig via de wmo."),
    ("Omgevallen boom", "Er ligt een omgevallen boom over het fietspad, dat is gevaarlijk."),
    ("Factuur", "Ik heb een betalingsherinnering gekregen voor een factuur die al betaald is."),
    ("Klacht over behandeling", "Ik wil een klacht indienen over hoe ik aan de balie ben behandeld."),
    ("Vraag", "Kunt u mij vertellen wanneer het gemeentehuis op zaterdag open is?"),
    ("Informatie", "Ik zoek informatie over de plannen voor het nieuwe dorpshuis."),
]
_FILLER = (
    "Ik heb eerder al gebeld maar ben toen niet verder geholpen. Graag hoor ik zo snel mogelijk van u "
    "wat de mogelijkheden zijn en welke stappen ik moet nemen. Overdag ben ik het best bereikbaar op "
    "mijn mobiele nummer, 's avonds liever per e-mail. Alvast hartelijk dank voor de moeite en voor "
    "het meedenken. Mocht u nog gegevens of foto's nodig hebben, dan stuur ik die graag na. "
)
_NAMES = ["J. de Vries", "M. Jansen", "A. Bakker", "P. Visser", "S. Smit", "K. Meijer", "R. de Boer"]
_CHANNELS = ["mail"] * 35 + ["webform"] * 25 + ["social"] * 15 + ["phone"] * 15 + ["post"] * 10


def contact_body(rng: random.Random, tenant: str, native_id: str, received_at: datetime) -> dict[str, Any]:
    channel = rng.choice(_CHANNELS)
    subject, sentence = rng.choice(_TOPICS)
    name = rng.choice(_NAMES)
    filler = _FILLER * rng.randint(2, 4)
    body = f"Geachte heer/mevrouw,\n\n{sentence} {filler}\n\nMet vriendelijke groet,\n{name}"
    metadata: dict[str, str] = {"bench.run": "1", "received.via": channel}
    sender: dict[str, Any] = {"name": name}
    if channel == "mail":
        sender["email"] = f"inwoner{rng.randint(1, 99999)}@example.nl"
        metadata["thread.message_id"] = f"<{uuid.UUID(int=rng.getrandbits(128))}@mail.example.nl>"
        if rng.random() < 0.05:  # a reply: the router looks the Message-ID up (and finds nothing)
            metadata["thread.in_reply_to"] = f"<{uuid.UUID(int=rng.getrandbits(128))}@gemeente.example.nl>"
    elif channel == "webform":
        sender["email"] = f"inwoner{rng.randint(1, 99999)}@example.nl"
        sender["phone"] = f"+316{rng.randint(10000000, 99999999)}"
        metadata["form"] = "melding-openbare-ruimte" if rng.random() < 0.2 else "contactformulier"
    elif channel == "social":
        sender["handle"] = f"@inwoner{rng.randint(1, 99999)}"
        metadata["social.platform"] = "facebook"
        metadata["social.message_type"] = "direct"
    elif channel == "phone":
        sender["phone"] = f"+3152{rng.randint(1000000, 9999999)}"
        metadata["phone.agent"] = f"kcc-{rng.randint(1, 20)}"
        roll = rng.random()
        if roll < 0.3:
            metadata["phone.outcome"] = "answered"
        elif roll < 0.45:
            metadata["phone.outcome"] = "transferred"
            metadata["phone.to_team"] = "burgerzaken"
        elif roll < 0.6:
            metadata["phone.outcome"] = "colleague_unavailable"
            metadata["phone.note"] = "Graag terugbellen over de vraag."
    attachments = []
    if channel in ("mail", "webform") and rng.random() < 0.4:
        attachments.append(
            {
                "filename": f"foto-{rng.randint(1, 999)}.jpg",
                "content_type": "image/jpeg",
                "size": rng.randint(50_000, 4_000_000),
                "sha256": f"{rng.getrandbits(256):064x}",
            }
        )
    return {
        "tenant": tenant,
        "channel": channel,
        "received_at": received_at.isoformat(),
        "source": {"adapter": "bench", "native_id": native_id},
        "sender": sender,
        "subject": subject,
        "body": body,
        "attachments": attachments,
        "metadata": metadata,
    }


def make_contacts(
    n: int, *, seed: int = 7, tenants: tuple[str, ...] = TENANTS, run: str | None = None
) -> list[tuple[str, str, bytes]]:
    """n contacts as (routing key, contact id, JSON body); ids are unique per run."""
    rng = random.Random(seed)
    run = run or uuid.uuid4().hex[:8]
    now = datetime.now(UTC).replace(microsecond=0)
    out = []
    for i in range(n):
        tenant = tenants[i % len(tenants)]
        native = f"bench-{run}-{i}"
        # Received over the last two hours (a backlog after an outage): no two deadlines alike by accident.
        received = now - timedelta(seconds=rng.randint(0, 7200))
        body = contact_body(rng, tenant, native, received)
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        out.append((f"{tenant}.{body['channel']}", contact_id(tenant, "bench", native), raw))
    return out


def write_rules(target: Path, n_routes: int, *, seed: int = 11) -> Path:
    """A rules dir with one tenant, `ommen`, whose first 10 routes are Ommen's own and which has
    `n_routes` routes in all: the generated ones (keywords of one to three words, some with a channel
    or sender domain, none matching the bench contacts) come first, so every contact walks past them
    and takes the same decision as with 10 routes."""
    spec = yaml.safe_load((RULES / "ommen.yaml").read_text(encoding="utf-8"))
    real = spec["routes"][:10]
    rng = random.Random(seed)
    teams = [t["id"] for t in spec["teams"]]
    generated = []
    for i in range(max(0, n_routes - len(real))):
        words = [f"trefwoord{i}x{k}" for k in range(rng.randint(1, 4))]
        keywords = [" ".join(words[: rng.randint(1, min(3, len(words)))])] + [
            f"term{i}y{k}" for k in range(rng.randint(1, 6))
        ]
        when: dict[str, Any] = {"keywords": keywords}
        if i % 7 == 0:
            when["channel"] = ["mail", "webform"]
        if i % 11 == 0:
            when = {"sender_domain": [f"organisatie{i}.nl"]}
        generated.append({"name": f"gegenereerd-{i}", "team": rng.choice(teams), "when": when})
    spec["routes"] = generated + real
    target.mkdir(parents=True, exist_ok=True)
    (target / "ommen.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), "utf-8")
    return target
