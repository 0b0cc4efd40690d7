"""The publisher port of the kit: the one path by which every adapter hands a Contact to the service.

A publish returns only after the broker confirmed it; otherwise it raises PublishError, and the adapter
must not tell the sender "accepted". The service supplies the implementation
(`router.amqp.publisher.AmqpContactPublisher`, or the embedded one); adapters never see the broker.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from router.core.contact import Contact


class PublishError(Exception):
    """The broker did not confirm the contact; the caller must not acknowledge it to the sender."""


class ContactPublisher(Protocol):
    async def publish(self, contact: Contact) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class DeadLetterSink(Protocol):
    """Where adapters put input they took from a sender but cannot turn into a contact."""

    async def dead_letter(self, body: bytes, reason: str, *, routing_key: str) -> None: ...
