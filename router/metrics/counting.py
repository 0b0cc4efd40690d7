"""Counting at the edges: around the publishers every message of this process goes through.

- `counting_publisher`: the kit's publisher port (what the API's `POST /v1/contacts` and every channel
  adapter's `submit` publish through) counts a contact as received once the broker confirmed it, and a
  dead letter an adapter made once it is on `router.dead`.
- `CountingOutbound`: the `Outbound` of case work and the scheduler counts what it published (events
  among them: transfers, refusals, callback requests, deadline warnings and breaches) once confirmed.
"""

from __future__ import annotations

from adapters.kit.publisher import ContactPublisher, DeadLetterSink
from router.core.contact import Contact
from router.core.messages import OutMessage
from router.core.metrics import Metrics
from router.core.ports import Outbound


class CountingPublisher:
    def __init__(self, inner: ContactPublisher, metrics: Metrics):
        self.inner = inner
        self.metrics = metrics

    async def publish(self, contact: Contact) -> None:
        await self.inner.publish(contact)
        self.metrics.received(contact.tenant, contact.channel)

    async def close(self) -> None:
        await self.inner.close()


class CountingPublisherAndSink(CountingPublisher):
    """For a publisher that is also the adapters' dead-letter sink (the AMQP one)."""

    inner: ContactPublisher

    async def dead_letter(self, body: bytes, reason: str, *, routing_key: str) -> None:
        assert isinstance(self.inner, DeadLetterSink)
        await self.inner.dead_letter(body, reason, routing_key=routing_key)
        self.metrics.dead_lettered(routing_key, reason, "adapter")


def counting_publisher(inner: ContactPublisher, metrics: Metrics) -> CountingPublisher:
    """`inner`, counted; a dead-letter sink stays one (the kit takes such a publisher as its sink)."""
    if isinstance(inner, DeadLetterSink):
        return CountingPublisherAndSink(inner, metrics)
    return CountingPublisher(inner, metrics)


class CountingOutbound:
    def __init__(self, inner: Outbound, metrics: Metrics):
        self.inner = inner
        self.metrics = metrics

    async def publish(self, msg: OutMessage) -> None:
        await self.inner.publish(msg)
        self.metrics.published(msg)

    async def close(self) -> None:
        await self.inner.close()
