"""Probes that read this process's own objects on each scrape (the broker's and Redis's are in
router/amqp/probes.py and router/redis/probes.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

from router.core.metrics import (
    CONSUMER_ATTACHED,
    HISTORY_SEEN,
    HISTORY_STORED,
    MAIL_IGNORED,
    Bounds,
    Sample,
    ignored_reason_class,
)


class ConsumerProbe:
    """`contact_router_consumer_attached{consumer}`: 1 while `attached()` says so."""

    ttl = 0.0

    def __init__(self, consumer: str, attached: Callable[[], bool]):
        self.consumer = consumer
        self.attached = attached

    async def sample(self) -> list[Sample]:
        return [Sample(CONSUMER_ATTACHED, (self.consumer,), 1.0 if self.attached() else 0.0)]


class HistoryProbe:
    """The history consumer's counts and whether it is attached (router/amqp/history.py)."""

    ttl = 0.0

    def __init__(self, consumer: object):
        self.consumer = consumer

    async def sample(self) -> list[Sample]:
        c = self.consumer
        return [
            Sample(CONSUMER_ATTACHED, ("history",), 1.0 if getattr(c, "ready", False) else 0.0),
            Sample(HISTORY_STORED, (), float(getattr(c, "stored", 0))),
            Sample(HISTORY_SEEN, (), float(getattr(c, "seen", 0))),
        ]


class IgnoredMailProbe:
    """`contact_router_mail_ignored_total{tenant, reason}` from the adapters that count the automatic
    mail they take and do not route: an `ignored` Counter of (tenant, reason text), as the mail adapter
    keeps it. The reason text becomes its class; tenants are bounded."""

    ttl = 0.0

    def __init__(self, adapters: Mapping[str, object], bounds: Bounds):
        self.adapters = adapters
        self.bounds = bounds

    async def sample(self) -> list[Sample]:
        totals: Counter[tuple[str, str]] = Counter()
        for adapter in self.adapters.values():
            ignored = getattr(adapter, "ignored", None)
            if not isinstance(ignored, Counter):
                continue
            for key, n in ignored.items():
                if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
                    totals[(self.bounds.tenant(key[0]), ignored_reason_class(key[1]))] += n
        return [Sample(MAIL_IGNORED, labels, float(n)) for labels, n in sorted(totals.items())]
