"""The router with publisher confirms instead of transactions (ROUTER_COMMIT=confirms, the default when
AMQP_URL names a cluster's nodes; docs/architecture.md, "Commit modes"), on the machine's broker. What a
team must be able to rely on: no contact lost whatever the broker refuses or when the connection goes;
every contact routed once in the store; an item in its team queue twice only after a batch that failed
before its commit marker was confirmed, and then with the same message_id, so the team's consumer can
drop it.
"""

from __future__ import annotations

import asyncio
import collections
import subprocess
from typing import Any

import aio_pika
import pytest

from router.amqp import consumer as amqp_router
from router.core.topology import TEAMS, Names
from router.service import build, start
from router.settings import Settings
from tests.conftest import drain
from tests.test_commit_in_doubt import publish, wait_routed

TEAM = ("ommen", "burgerzaken")


def confirms(settings: Settings) -> Settings:
    return settings.model_copy(update={"router_commit": "confirms"})


def test_auto_means_confirms_for_a_cluster_and_transactions_for_one_node(settings: Settings) -> None:
    assert not settings.router_confirms
    cluster = settings.model_copy(update={"amqp_url": "amqp://guest:guest@n1:5672,n2:5672,n3:5672/"})
    assert cluster.router_confirms
    assert not cluster.model_copy(update={"router_commit": "transactions"}).router_confirms
    assert confirms(settings).router_confirms


async def test_routes_each_contact_once_with_a_quorum_marker_queue(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> None:
    rt = await build(confirms(settings), with_router=True, embedded="never")
    await start(rt)
    try:
        ids = await publish(amqp, rt.names, 30)
        assert await wait_routed(rt, ids) == ["routed"] * 30
        msgs = await drain(amqp, rt.names.team_queue(*TEAM))
        assert sorted(str(m.message_id) for m in msgs) == sorted(ids)
        router = rt.router
        assert router is not None and router.confirms
        listed = await asyncio.to_thread(
            lambda: (
                subprocess.run(
                    ["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name", "type"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
        )
        types = dict(line.split("\t")[:2] for line in listed.splitlines() if "\t" in line)
        assert types[router.marker_queue] == "quorum"  # it outlives the node it was declared on
    finally:
        await rt.close()


@pytest.mark.parametrize("lost_at", ["before_marker", "marker_unheard"])
async def test_a_connection_lost_mid_batch_loses_nothing(
    settings: Settings,
    amqp: aio_pika.abc.AbstractConnection,
    redis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    lost_at: str,
) -> None:
    """The connection goes after the batch's items were confirmed: before its marker was sent (the batch
    is routed again: its items may be there twice, never missing), or after the marker was confirmed
    but before the router heard it (the marker tells: exactly once)."""
    real = amqp_router.AmqpConfirms._confirmed
    calls: list[int] = []

    async def lose_the_connection(self: amqp_router.AmqpConfirms, futures: list[Any]) -> None:
        # A batch's first wait is for its items, the second for its marker; only the first batch fails.
        calls.append(len(futures))
        await real(self, futures)
        if len(calls) == (1 if lost_at == "before_marker" else 2):
            await self.channel.close()
            raise ConnectionError("connection lost before the router heard the confirm")

    monkeypatch.setattr(amqp_router.AmqpConfirms, "_confirmed", lose_the_connection)
    rt = await build(confirms(settings), with_router=True, embedded="never")
    await start(rt)
    try:
        ids = await publish(amqp, rt.names, 5)
        assert await wait_routed(rt, ids) == ["routed"] * 5
        await asyncio.sleep(0.5)  # the redelivered inputs are found routed and acked
        msgs = await drain(amqp, rt.names.team_queue(*TEAM))
        seen = collections.Counter(str(m.message_id) for m in msgs)
        assert set(seen) == set(ids)  # none lost
        if lost_at == "marker_unheard":
            assert all(n == 1 for n in seen.values()), seen
        else:
            assert all(n <= 2 for n in seen.values()), seen
    finally:
        await rt.close()


async def test_a_publish_the_broker_refuses_is_routed_again_once_it_takes_it(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any
) -> None:
    """A real nack: a second queue on the team's binding that refuses everything (reject-publish at
    length 0) makes the broker nack every team item. Nothing is acked meanwhile; once the queue is
    gone, every contact is routed and in its team queue."""
    rt = await build(confirms(settings), with_router=True, embedded="never")
    await start(rt)
    channel = await amqp.channel()
    refusing = await channel.declare_queue(
        f"{rt.names(TEAMS)}.refusing",
        durable=True,
        arguments={"x-queue-type": "classic", "x-max-length": 0, "x-overflow": "reject-publish"},
    )
    await refusing.bind(rt.names(TEAMS), routing_key=".".join(TEAM))
    try:
        ids = await publish(amqp, rt.names, 5)
        await asyncio.sleep(2.0)
        statuses = [(await rt.store.get(cid)) for cid in ids]
        assert not any(r is not None and r.fields.get("status") == "routed" for r in statuses)
        # Each nack ends the session (a new one is attached after a back-off): nothing acked meanwhile.
        assert rt.router is not None and rt.router.attachments >= 2
        await refusing.delete(if_unused=False, if_empty=False)
        assert await wait_routed(rt, ids) == ["routed"] * 5
        msgs = await drain(amqp, rt.names.team_queue(*TEAM))
        assert set(str(m.message_id) for m in msgs) == set(ids)
    finally:
        await channel.close()
        await rt.close()


async def test_a_batch_given_up_is_a_lost_connection_each_time_it_is_settled(settings: Settings) -> None:
    """A batch whose connection went while it was being published is given up (its task cancelled), and
    the session's end settles it a second time: both times a connection error, which rebuilds the
    session; a CancelledError there once ended the router silently (its process alive, nothing routed;
    found by the test above, one run in eight)."""
    router = amqp_router.AmqpRouter(settings.amqp_url, Names(settings.namespace), None, None)  # type: ignore[arg-type]
    outgoing = amqp_router._Outgoing(None)  # type: ignore[arg-type]
    outgoing.task = asyncio.create_task(asyncio.sleep(60))
    lost = asyncio.Event()
    lost.set()
    with pytest.raises(ConnectionError):
        await router._settle(outgoing, lost)
    assert outgoing.task.cancelled()
    with pytest.raises(ConnectionError):
        await router._settle(outgoing, lost)
