"""Queue depths and the broker's round trip, read on a metrics scrape (router/metrics/).

One connection of its own (named `metrics`), opened on the first scrape and kept; every queue is
declared passively (it must exist; nothing is created), one after the other on one channel. The list
of queues is fixed when the probe is made: the router's, and one per team and tenant of the rules, so
the number of series is bounded. The first declare's round trip is the broker's ping.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aio_pika
import aio_pika.abc

from router import logs
from router.amqp import connect as amqp_connect
from router.core import topology
from router.core.history import HISTORY_QUEUE
from router.core.metrics import DEPENDENCY_PING, DEPENDENCY_UP, QUEUE_CONSUMERS, QUEUE_MESSAGES, Sample
from router.core.topology import Names

log = logs.get("router.amqp.probes")


@dataclass(frozen=True)
class Watched:
    """A queue by its name, and its labels: `queue` (its kind), `tenant`, `team` ("" when none)."""

    name: str
    queue: str
    tenant: str = ""
    team: str = ""


def router_queues(names: Names, teams: Mapping[str, Sequence[str]]) -> list[Watched]:
    """router.contacts, router.dead, router.unroutable, every team queue and escalation queue."""
    out = [Watched(names(q), q) for q in (topology.ROUTER_QUEUE, topology.DEAD, topology.UNROUTABLE)]
    for tenant, team_ids in sorted(teams.items()):
        out += [Watched(names.team_queue(tenant, team), "team", tenant, team) for team in team_ids]
        out.append(Watched(names.escalation_queue(tenant), "escalations", tenant))
    return out


def history_queues(names: Names) -> list[Watched]:
    return [Watched(names(HISTORY_QUEUE), HISTORY_QUEUE)]


class QueueProbe:
    ttl = 5.0

    def __init__(self, url: str, queues: Sequence[Watched], *, timeout: float = 2.0):
        self.url = url
        self.queues = list(queues)
        self.timeout = timeout
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None

    async def _open(self) -> aio_pika.abc.AbstractChannel:
        if self._connection is None or self._connection.is_closed:
            self._connection = await amqp_connect.connect(
                self.url, timeout=self.timeout, client_properties={"connection_name": "metrics"}
            )
            self._channel = None
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel(publisher_confirms=False)
        return self._channel

    async def sample(self) -> list[Sample]:
        out: list[Sample] = []
        ping: float | None = None
        try:
            for watched in self.queues:
                channel = await self._open()
                started = time.perf_counter()
                try:
                    queue = await channel.declare_queue(watched.name, passive=True, timeout=self.timeout)
                except aio_pika.exceptions.ChannelClosed:
                    # Not declared (yet): the broker closed the channel; the next queue opens another.
                    continue
                if ping is None:
                    ping = time.perf_counter() - started
                result = queue.declaration_result
                labels = (watched.queue, watched.tenant, watched.team)
                out.append(Sample(QUEUE_MESSAGES, labels, float(result.message_count or 0)))
                out.append(Sample(QUEUE_CONSUMERS, labels, float(result.consumer_count or 0)))
        except Exception as exc:  # the broker away: say so, and start afresh on the next scrape
            log.warning("metrics_broker_probe_failed", error=type(exc).__name__)
            await self.close()
            return [Sample(DEPENDENCY_UP, ("broker",), 0.0)]
        out.append(Sample(DEPENDENCY_UP, ("broker",), 1.0))
        if ping is not None:
            out.append(Sample(DEPENDENCY_PING, ("broker",), ping))
        return out

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
