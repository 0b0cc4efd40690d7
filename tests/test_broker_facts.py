"""What the broker the suite runs against does, where the service's promises depend on it.

rabbitmq/rabbitmq-server#8966: a transaction whose publish a quorum queue rejects is committed anyway
(`commit-ok`, the message gone), where a confirm channel gets a nack. It is why the router publishes
with confirms instead of transactions on a RabbitMQ cluster (a channel's first publishes to a queue whose
leader just died are rejected that way; docs/architecture.md, "Commit modes"; RELIABILITY.md), and why
no queue the router publishes to in a transaction may have a length limit with `reject-publish` (by
argument or by an operator's policy). When this test fails, the broker has been fixed: revisit both.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from router.core.topology import Names


async def _count(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    count = queue.declaration_result.message_count
    assert count is not None
    return count


async def test_a_transaction_is_committed_although_a_quorum_queue_rejected_its_publishes(
    amqp: aio_pika.abc.AbstractConnection, namespace: str
) -> None:
    name = Names(namespace)("facts.full")
    channel = await amqp.channel()
    await channel.declare_queue(
        name,
        durable=True,
        arguments={"x-queue-type": "quorum", "x-max-length": 1, "x-overflow": "reject-publish"},
    )
    try:
        confirming = await amqp.channel(publisher_confirms=True)
        refused = 0
        for _ in range(4):  # until the queue is full and says so
            try:
                await confirming.default_exchange.publish(
                    aio_pika.Message(b"fill", delivery_mode=2), routing_key=name
                )
            except aio_pika.exceptions.DeliveryError:
                refused += 1
        assert refused > 0, "a confirm channel is told that the full queue refused the message"
        await asyncio.sleep(0.3)
        before = await _count(channel, name)

        transactional = await amqp.channel(publisher_confirms=False)
        tx = transactional.transaction()
        await tx.select()
        for i in range(3):
            await transactional.default_exchange.publish(
                aio_pika.Message(f"tx{i}".encode(), delivery_mode=2), routing_key=name
            )
        try:
            await tx.commit()
        except aio_pika.exceptions.AMQPError:
            pytest.fail("the broker now fails such a commit (#8966 fixed?): revisit RELIABILITY.md")
        await asyncio.sleep(0.3)
        assert await _count(channel, name) == before, "committed, and not one of the three is there"
    finally:
        await channel.queue_delete(name)
