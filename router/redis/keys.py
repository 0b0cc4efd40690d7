"""Every Redis key of the service, in one place.

Keys of one contact share the hash tag {<id>} so that each Lua script touches one hash slot and the
same code runs on Redis Cluster.

Strings a sender chooses (a mail's Message-ID holds the sender's address as often as not) never appear in
a key name as they are: `hashed` turns them into a keyed hash (HMAC-SHA256 with the deployment's
`KEY_SECRET`), so that key names can be shown in monitoring, slow logs and `redis-cli --scan` without
showing who wrote, and cannot be reversed by hashing guesses without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

# Used when KEY_SECRET is not set (development, tests, the embedded demo); the service warns about it.
DEVELOPMENT_SECRET = b"contact-router development key secret"


@dataclass(frozen=True)
class Keys:
    prefix: str = ""
    secret: bytes = field(default=DEVELOPMENT_SECRET, repr=False)

    def hashed(self, *parts: str) -> str:
        """A keyed hash of sender-chosen strings, for key names (128 bits, hex)."""
        message = "\x1f".join(parts).encode("utf-8", "surrogatepass")
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:32]

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
        """Mail Message-ID -> contact id, for threading replies; the Message-ID as a keyed hash."""
        return f"{self.prefix}thread:{tenant}:{self.hashed(tenant, message_id)}"

    def rate_bucket(self, key: str) -> str:
        """Hash: a web-form token bucket; `key` names the client (already hashed, and hashed again here
        with the secret, so that a client address cannot be found by hashing all of IPv4)."""
        return f"{self.prefix}webform:rate:{self.hashed('webform-rate', key)}"

    def team_items(self, tenant: str, team: str) -> str:
        """Sorted set of open contact ids of a team, scored by the soonest deadline (epoch ms)."""
        return f"{self.prefix}team:{{{tenant}}}:{team}:open"

    def team_heads(self, tenant: str, team: str) -> str:
        """Hash: member of the team's list -> its head (router/redis/heads.py), no personal data."""
        return f"{self.prefix}team:{{{tenant}}}:{team}:heads"

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

    # A router's three keys share the slot {<router id>}: its heartbeat and the repair's lock on it are
    # set by scripts that look at each other (router/redis/store.py, HEARTBEAT and LOCK_RESOLUTION).

    def router_alive(self, router_id: str) -> str:
        """A router's heartbeat (expires when the router is gone)."""
        return f"{self.prefix}router:{{{router_id}}}:alive"

    def router_committed(self, router_id: str) -> str:
        """Set: the batches of a router that is gone that its broker commits show were committed."""
        return f"{self.prefix}router:{{{router_id}}}:committed"

    def routers_known(self) -> str:
        """Set: ids of routers that have started and were neither stopped cleanly nor settled as gone."""
        return f"{self.prefix}routers:known"

    def router_resolving(self, router_id: str) -> str:
        """Lock: one router at a time finds out what a gone router committed."""
        return f"{self.prefix}router:{{{router_id}}}:resolving"

    def timers(self) -> str:
        """Sorted set of pending timers '<subject>|<kind>|<phase>', scored by due time (epoch ms)."""
        return f"{self.prefix}{{timers}}:due"

    def timer_claims(self) -> str:
        """Timers being fired, scored by when the claim lapses (wall-clock ms). Same slot as timers()."""
        return f"{self.prefix}{{timers}}:claimed"

    # -- retention and erasure (router/redis/privacy.py) ----------------------------------------------

    def closed(self, tenant: str) -> str:
        """Sorted set of a tenant's closed contact ids, scored by when each was closed (epoch ms): where
        the purge finds what is past its term. Entries of reopened contacts are dropped when found."""
        return f"{self.prefix}closed:{{{tenant}}}"

    def resident(self, tenant: str, kind: str, value: str) -> str:
        """Set of the contact ids of one resident of a tenant, by `kind` 'email' (a lower-cased address),
        'phone' (E.164) or 'social' ('<platform>:<sender id>'); the value as a keyed hash, never in the
        name as it is. All of a tenant's share the hash tag {<tenant>}."""
        return f"{self.prefix}resident:{{{tenant}}}:{kind}:{self.hashed('resident', tenant, kind, value)}"

    def purge_pending(self) -> str:
        """Hash: contact id -> what is left to remove after its own keys were deleted (index entries,
        thread and reference keys), so that a purge or erasure stopped half-way is finished later."""
        return f"{self.prefix}purge:pending"

    def purge_lock(self) -> str:
        """Lock: one process at a time runs the periodic purge."""
        return f"{self.prefix}purge:lock"

    def timer_claim_dues(self) -> str:
        """Hash: the due time of each claimed timer (router/redis/scheduler.py). Same slot as timers()."""
        return f"{self.timer_claims()}:due"
