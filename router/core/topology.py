"""The names of every exchange, queue and header of the service: part of the public contract.

Names carry the settings' namespace prefix (empty in production). `router.amqp.declare` declares them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Public names; the README documents them as part of the contract.
CONTACTS = "contacts"  # topic exchange, key <tenant>.<channel>
ROUTER_QUEUE = "router.contacts"
DEAD = "router.dead"  # exchange and queue: contacts the router could not process, with a reason
UNROUTABLE = "router.unroutable"  # alternate exchange and queue of `teams`: nothing is silently dropped
TEAMS = "teams"  # topic exchange, key <tenant>.<team>
EVENTS = "events"  # topic exchange, key <tenant>.<event> (ommen.contact.routed, ...)
ESCALATIONS = "escalations"  # topic exchange, key <tenant>; queue escalations.<tenant>
# The Open Klant export (router.export.openklant): a queue per exported tenant,
# openklant.events.<tenant>, bound to `events` with <tenant>.<event>; its dead letters; the exchange a
# replay goes to.
OPENKLANT_QUEUE = "openklant.events"
OPENKLANT_DEAD = "openklant.dead"  # exchange and queue: events the export could not deliver, with a reason
OPENKLANT_REPLAY = "openklant.replay"  # topic exchange, bound to each tenant's queue with <tenant>.#

# Each dead-letter queue and the exchange `contact-router dlq replay` publishes its messages back to.
DEAD_LETTER_QUEUES = {DEAD: CONTACTS, OPENKLANT_DEAD: OPENKLANT_REPLAY}

# Headers the service sets.
H_IDEMPOTENCY = "x-idempotency-key"
H_DEAD_REASON = "x-dead-reason"
H_ORIGINAL_KEY = "x-original-routing-key"
H_CONTACT_ID = "x-contact-id"
H_RULE = "x-route-rule"


@dataclass(frozen=True)
class Names:
    prefix: str = ""

    def __call__(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def team_queue(self, tenant: str, team: str) -> str:
        return f"{self.prefix}team.{tenant}.{team}"

    def escalation_queue(self, tenant: str) -> str:
        return f"{self.prefix}escalations.{tenant}"

    def openklant_queue(self, tenant: str) -> str:
        return f"{self.prefix}{OPENKLANT_QUEUE}.{tenant}"
