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

    def timers(self) -> str:
        """Sorted set of pending timers, scored by due time (epoch ms)."""
        return f"{self.prefix}timers"

    def timer_claims(self) -> str:
        return f"{self.prefix}timers:claimed"
