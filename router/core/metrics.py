"""What the service counts, in plain Python: the metric families, their labels, and the bounds on every
label value. The port (`Metrics`) the core and the edges count through; `Recorder` implements it over
a `Sink` (router/metrics/ puts prometheus-client behind it); `NO_METRICS` counts nothing.

Labels never carry personal data and never grow without bound: a tenant is one of the rules' tenants, a
team one of that tenant's teams, a channel one of the known channels or one the rules name, a kind,
event, outcome or reason one of a fixed list here. Anything else is counted as "other", so a contact of
an unknown tenant or channel (or garbage on the router's queue) adds no series. Reasons are classes
derived from the reason's fixed text, never the text itself.

Events are counted where they are published, from the `OutMessage` (`<tenant>.<event>` on exchange
`events`): by the router once its transaction committed, and by the `Outbound` of case work and the
scheduler once the broker confirmed. An outbox entry relayed after a lost confirm is counted twice, as
its consumers see it twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import orjson

from router.core import topology
from router.core.contact import KNOWN_CHANNELS
from router.core.messages import OutMessage
from router.core.topology import Names

if TYPE_CHECKING:
    from router.core.tenants import Tenant

OTHER = "other"

# -- the fixed sets ---------------------------------------------------------------------------------

KINDS = ("acknowledge", "respond", "resolve", "callback")
# What the router did with a contact (router.core.routing: Routed.summary).
OUTCOMES = ("routed", "joined", "answered", "transferred", "callback_requested")
SOURCES = ("router", "adapter")
EVENTS = (
    "contact.received",
    "contact.routed",
    "contact.reply",
    "contact.transferred",
    "transfer.refused",
    "callback.requested",
    "callback.attempted",
    "callback.closed",
    "deadline.met",
    "deadline.extended",
    "deadline.warning",
    "deadline.breached",
    "contact.closed",
)
DEAD_REASONS = (
    "too_large",
    "malformed_json",
    "invalid_contact",
    "unknown_tenant",
    "automatic_mail",
    "malformed_input",
    "internal_error",
    OTHER,
)
IGNORED_REASONS = ("auto_reply", "bulk", "bounce", "own_mail", OTHER)
ROLES = ("serve", "router", "api", "scheduler", "history")
CONSUMERS = ("router", "history")
DEPENDENCIES = ("broker", "redis")
QUEUES = ("router.contacts", "router.dead", "router.unroutable", "team", "escalations", "history.events")

# Reason texts are fixed words (README, "Privacy"): their beginnings name the class. First match wins.
_DEAD_PREFIXES: tuple[tuple[str, str], ...] = (
    ("body too large", "too_large"),
    ("message too large", "too_large"),
    ("malformed json", "malformed_json"),
    ("malformed webhook json", "malformed_json"),
    ("invalid contact", "invalid_contact"),
    ("unknown tenant", "unknown_tenant"),
    ("no tenant for the recipients", "unknown_tenant"),
    ("automatic mail", "automatic_mail"),
    ("malformed mail", "malformed_input"),
    ("unparseable mail", "malformed_input"),
    ("refused mail", "malformed_input"),
    ("unexpected webhook payload", "malformed_input"),
    ("internal error", "internal_error"),
)
# The mail adapter's reasons for automatic mail (adapters/mail/parse.py `_automatic`).
_IGNORED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("auto-submitted", "auto_reply"),
    ("precedence: auto_reply", "auto_reply"),
    ("precedence:", "bulk"),
    ("x-auto", "auto_reply"),
    ("x-loop", "auto_reply"),
    ("subject of an automatic reply", "auto_reply"),
    ("list-id", "bulk"),
    ("empty return path", "bounce"),
    ("sender is a mail system", "bounce"),
    ("delivery or read report", "bounce"),
    ("sent by this service", "own_mail"),
)


def dead_reason_class(reason: str) -> str:
    """The class of a dead letter's reason (`DEAD_REASONS`), never its text."""
    return _classify(reason, _DEAD_PREFIXES)


def ignored_reason_class(reason: str) -> str:
    """The class of the reason a mail was ignored as automatic (`IGNORED_REASONS`)."""
    return _classify(reason, _IGNORED_PREFIXES)


def _classify(reason: str, prefixes: tuple[tuple[str, str], ...]) -> str:
    text = reason.strip().lower()
    for prefix, cls in prefixes:
        if text.startswith(prefix):
            return cls
    return OTHER


# -- the families -----------------------------------------------------------------------------------

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Family:
    """One metric: its full name (counters end in `_total`), type, help text and label names.
    `sampled` families are read on each scrape (a `Probe`); the others are counted as things happen."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    sampled: bool = False


def _f(
    name: str, kind: Kind, help: str, *labels: str, buckets: tuple[float, ...] = (), sampled: bool = False
) -> Family:
    return Family(f"contact_router_{name}", kind, help, labels, buckets, sampled)


CONTACTS_RECEIVED = _f(
    "contacts_received_total",
    "counter",
    "Contacts an entry point (API, channel adapter) handed to the broker, confirmed",
    "tenant",
    "channel",
)
CONTACTS_ROUTED = _f(
    "contacts_routed_total",
    "counter",
    "Contacts the router committed to a team queue, by what it did with them",
    "tenant",
    "channel",
    "team",
    "outcome",
)
ROUTING_LATENCY = _f(
    "routing_latency_seconds",
    "histogram",
    "From the contact's received_at to the commit of its team message",
    "tenant",
    "channel",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
DEAD_LETTERS = _f(
    "dead_letters_total",
    "counter",
    "Input put on router.dead, by who put it there and the class of the reason",
    "tenant",
    "source",
    "reason",
)
MAIL_IGNORED = _f(
    "mail_ignored_total",
    "counter",
    "Automatic mail taken and not routed (auto-replies, bounces, list mail), by reason class",
    "tenant",
    "reason",
    sampled=True,
)
EVENTS_PUBLISHED = _f(
    "events_total", "counter", "Events published on exchange events, by name", "tenant", "event"
)
TRANSFERS = _f(
    "transfers_total",
    "counter",
    "Contacts transferred from one team to another",
    "tenant",
    "from_team",
    "to_team",
)
TRANSFER_REFUSALS = _f(
    "transfer_refusals_total",
    "counter",
    "Transfers refused at the tenant's transfer limit",
    "tenant",
    "from_team",
    "to_team",
)
CALLBACKS_REQUESTED = _f(
    "callbacks_requested_total", "counter", "Callback requests made, by the team that calls", "tenant", "team"
)
DEADLINE_WARNINGS = _f(
    "deadline_warnings_total", "counter", "Deadline warnings fired", "tenant", "team", "kind"
)
DEADLINE_BREACHES = _f(
    "deadline_breaches_total", "counter", "Deadlines breached (escalated)", "tenant", "team", "kind"
)
# Read on each scrape.
INFO = _f("info", "gauge", "1 for each process, by its role", "role", "version", sampled=True)
CONSUMER_ATTACHED = _f(
    "consumer_attached",
    "gauge",
    "1 while this process's consumer is attached to its queue, else 0",
    "consumer",
    sampled=True,
)
QUEUE_MESSAGES = _f(
    "queue_messages",
    "gauge",
    "Messages ready in a queue (passive declare, cached a few seconds)",
    "queue",
    "tenant",
    "team",
    sampled=True,
)
QUEUE_CONSUMERS = _f(
    "queue_consumers", "gauge", "Consumers of a queue", "queue", "tenant", "team", sampled=True
)
CALLBACKS_OPEN = _f(
    "callbacks_open", "gauge", "Open callback requests in a team's work list", "tenant", "team", sampled=True
)
WORK_ITEMS_OPEN = _f(
    "work_items_open",
    "gauge",
    "Open items (contacts and callback requests) in a team's work list",
    "tenant",
    "team",
    sampled=True,
)
TIMERS_DUE = _f("timers_due", "gauge", "Deadline timers due and not yet fired", sampled=True)
OUTBOX_PENDING = _f(
    "outbox_pending", "gauge", "Contacts with case-work messages not yet published", sampled=True
)
DEPENDENCY_UP = _f(
    "dependency_up", "gauge", "1 when the dependency answered the last probe", "dependency", sampled=True
)
DEPENDENCY_PING = _f(
    "dependency_ping_seconds",
    "gauge",
    "Round trip of the last probe (Redis PING, a broker queue declare)",
    "dependency",
    sampled=True,
)
HISTORY_STORED = _f(
    "history_events_stored_total",
    "counter",
    "Events the history consumer stored (new rows; duplicates not counted)",
    sampled=True,
)
HISTORY_SEEN = _f(
    "history_events_seen_total", "counter", "Deliveries the history consumer acked", sampled=True
)

FAMILIES: tuple[Family, ...] = (
    CONTACTS_RECEIVED,
    CONTACTS_ROUTED,
    ROUTING_LATENCY,
    DEAD_LETTERS,
    MAIL_IGNORED,
    EVENTS_PUBLISHED,
    TRANSFERS,
    TRANSFER_REFUSALS,
    CALLBACKS_REQUESTED,
    DEADLINE_WARNINGS,
    DEADLINE_BREACHES,
    INFO,
    CONSUMER_ATTACHED,
    QUEUE_MESSAGES,
    QUEUE_CONSUMERS,
    CALLBACKS_OPEN,
    WORK_ITEMS_OPEN,
    TIMERS_DUE,
    OUTBOX_PENDING,
    DEPENDENCY_UP,
    DEPENDENCY_PING,
    HISTORY_STORED,
    HISTORY_SEEN,
)


# -- bounds -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """The label values allowed: the rules' tenants and their teams, the known channels."""

    teams: Mapping[str, frozenset[str]]
    channels: frozenset[str]

    @classmethod
    def of(cls, tenants: Mapping[str, Tenant], channels: Iterable[str] = ()) -> Bounds:
        """From the tenants' rules: their teams, and the channels the rules name (routes, norms) beside
        the known ones and `channels` (the installed adapters')."""
        named: set[str] = {*KNOWN_CHANNELS, *channels}
        teams: dict[str, frozenset[str]] = {}
        for tid, tenant in tenants.items():
            rules = tenant.loaded.rules
            teams[tid] = frozenset(rules.team_ids())
            for route in rules.routes:
                named.update(route.when.channel or ())
            named.update(norm.channel for norm in rules.norms.root if norm.channel)
        return cls(teams, frozenset(named))

    def tenant(self, tenant: str | None) -> str:
        return tenant if tenant is not None and tenant in self.teams else OTHER

    def team(self, tenant: str, team: str | None) -> str:
        """`tenant` as `tenant()` returned it."""
        known = self.teams.get(tenant)
        return team if known is not None and team is not None and team in known else OTHER

    def channel(self, channel: str | None) -> str:
        return channel if channel is not None and channel in self.channels else OTHER

    @staticmethod
    def one_of(value: object, allowed: Sequence[str]) -> str:
        return value if isinstance(value, str) and value in allowed else OTHER


# -- the port and its implementation -----------------------------------------------------------------


class Metrics(Protocol):
    """What the core and the edges count. Never raises; label values are bounded by the implementation."""

    def received(self, tenant: str, channel: str) -> None:
        """An entry point's contact, confirmed by the broker."""
        ...

    def routed(self, tenant: str, channel: str, team: str, outcome: str, seconds: float) -> None:
        """A contact committed by the router, `seconds` after its received_at."""
        ...

    def dead_lettered(self, routing_key: str, reason: str, source: str) -> None:
        """Input put on router.dead (`routing_key` `<tenant>.<channel>` as it came)."""
        ...

    def published(self, message: OutMessage) -> None:
        """A message published (committed or confirmed); events among them are counted."""
        ...


class NoMetrics:
    """Counts nothing: the default where nothing is wired."""

    def received(self, tenant: str, channel: str) -> None:
        return None

    def routed(self, tenant: str, channel: str, team: str, outcome: str, seconds: float) -> None:
        return None

    def dead_lettered(self, routing_key: str, reason: str, source: str) -> None:
        return None

    def published(self, message: OutMessage) -> None:
        return None


NO_METRICS = NoMetrics()


class Sink(Protocol):
    """Where counts go (router/metrics/ implements it with prometheus-client). `labels` are the values
    of `family.labels`, in that order, already bounded."""

    def inc(self, family: Family, labels: tuple[str, ...], amount: float = 1.0) -> None: ...

    def observe(self, family: Family, labels: tuple[str, ...], value: float) -> None: ...


_EVENT_SET = frozenset(EVENTS)
_OUTCOME_SET = frozenset(OUTCOMES)
# Events whose body is read for their team and kind labels; the rest are counted by name only.
_DETAILED = frozenset(
    ("contact.transferred", "transfer.refused", "callback.requested", "deadline.warning", "deadline.breached")
)


@dataclass
class Recorder:
    """`Metrics` over a `Sink`, with every label value bounded by `bounds`."""

    sink: Sink
    bounds: Bounds
    names: Names = field(default_factory=Names)

    def __post_init__(self) -> None:
        self._events = self.names(topology.EVENTS)

    def received(self, tenant: str, channel: str) -> None:
        b = self.bounds
        self.sink.inc(CONTACTS_RECEIVED, (b.tenant(tenant), b.channel(channel)))

    def routed(self, tenant: str, channel: str, team: str, outcome: str, seconds: float) -> None:
        b = self.bounds
        t, c = b.tenant(tenant), b.channel(channel)
        self.sink.inc(CONTACTS_ROUTED, (t, c, b.team(t, team), outcome if outcome in _OUTCOME_SET else OTHER))
        # A clock a little ahead at the entry point is allowed (README, "Accepted means routed").
        self.sink.observe(ROUTING_LATENCY, (t, c), max(seconds, 0.0))

    def dead_lettered(self, routing_key: str, reason: str, source: str) -> None:
        tenant, _, _channel = routing_key.partition(".")
        labels = (self.bounds.tenant(tenant), self.bounds.one_of(source, SOURCES), dead_reason_class(reason))
        self.sink.inc(DEAD_LETTERS, labels)

    def published(self, message: OutMessage) -> None:
        if message.exchange != self._events:
            return
        raw_tenant, _, name = message.routing_key.partition(".")
        b = self.bounds
        tenant = b.tenant(raw_tenant)
        event = name if name in _EVENT_SET else OTHER
        self.sink.inc(EVENTS_PUBLISHED, (tenant, event))
        if event not in _DETAILED:
            return
        try:
            body = orjson.loads(message.body)
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict):
            return
        team = b.team(tenant, _text(body.get("team")))
        if event == "contact.transferred":
            self.sink.inc(TRANSFERS, (tenant, b.team(tenant, _text(body.get("from_team"))), team))
        elif event == "transfer.refused":
            self.sink.inc(TRANSFER_REFUSALS, (tenant, team, b.team(tenant, _text(body.get("to_team")))))
        elif event == "callback.requested":
            self.sink.inc(CALLBACKS_REQUESTED, (tenant, team))
        else:
            family = DEADLINE_WARNINGS if event == "deadline.warning" else DEADLINE_BREACHES
            self.sink.inc(family, (tenant, team, b.one_of(body.get("kind"), KINDS)))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


# -- read on each scrape ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One value of a sampled family, its labels in the family's order."""

    family: Family
    labels: tuple[str, ...]
    value: float


class Probe(Protocol):
    """Something read on each scrape (cached by the exposition for `ttl` seconds); raises nothing
    it could catch: a dependency that does not answer is a sample saying so."""

    ttl: float

    async def sample(self) -> list[Sample]: ...
