"""Every Redis key of the service, in one place.

Keys of one contact share the hash tag {<id>} so that each Lua script touches one hash slot and the
same code runs on Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = ""

    def contact(self, cid: str) -> str:
        """Hash: the contact's JSON, status, team, transfer count, claim lease."""
        return f"{self.prefix}contact:{{{cid}}}"

    def history(self, cid: str) -> str:
        """List of JSON events: routed, transferred, notes, callback attempts, closed."""
        return f"{self.prefix}contact:{{{cid}}}:history"

    def reference(self, reference: str) -> str:
        """Reference number (OMM-XXXX-XXXX) -> contact id, for replies that quote it."""
        return f"{self.prefix}ref:{reference}"

    def thread(self, tenant: str, message_id: str) -> str:
        """Mail Message-ID -> contact id, for threading replies."""
        return f"{self.prefix}thread:{tenant}:{message_id}"

    def team_items(self, tenant: str, team: str) -> str:
        """Sorted set of open contact ids of a team, scored by the soonest deadline (epoch ms)."""
        return f"{self.prefix}team:{{{tenant}}}:{team}:open"

    def callback(self, cid: str, n: int) -> str:
        """Hash: one callback request of a contact (same slot as the contact)."""
        return f"{self.prefix}contact:{{{cid}}}:callback:{n}"

    def outbox(self, cid: str) -> str:
        """List of messages a state change still has to publish (transactional outbox)."""
        return f"{self.prefix}contact:{{{cid}}}:outbox"

    def outbox_pending(self) -> str:
        """Sorted set of contact ids with unpublished outbox entries, scored by when they were added."""
        return f"{self.prefix}outbox:pending"

    def routing_pending(self) -> str:
        """Sorted set of contact ids claimed and not yet recorded as routed, scored by when they were
        claimed (wall-clock ms): what the in-doubt repair looks at."""
        return f"{self.prefix}routing:pending"

    def router_alive(self, router_id: str) -> str:
        """A router's heartbeat (expires when the router is gone)."""
        return f"{self.prefix}router:{router_id}:alive"

    def router_committed(self, router_id: str) -> str:
        """Set: the batches of a router that is gone that its broker commits show were committed."""
        return f"{self.prefix}router:{router_id}:committed"

    def router_resolving(self, router_id: str) -> str:
        """Lock: one router at a time finds out what a gone router committed."""
        return f"{self.prefix}router:{router_id}:resolving"

    def timers(self) -> str:
        """Sorted set of pending timers '<subject>|<kind>|<phase>', scored by due time (epoch ms)."""
        return f"{self.prefix}{{timers}}:due"

    def timer_claims(self) -> str:
        """Timers being fired, scored by when the claim lapses (wall-clock ms). Same slot as timers()."""
        return f"{self.prefix}{{timers}}:claimed"
