"""Every exchange, queue and binding of the service, declared from this one module.

Declaring is idempotent: the service declares at start-up and `contact-router topology declare` does
the same by hand.
"""

from __future__ import annotations

from typing import Any

import aio_pika

from router.core.topology import CONTACTS, DEAD, ESCALATIONS, EVENTS, ROUTER_QUEUE, TEAMS, UNROUTABLE, Names


def quorum_args(
    *, dead_letter_exchange: str | None = None, delivery_limit: int | None = None
) -> dict[str, Any]:
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if dead_letter_exchange is not None:
        args["x-dead-letter-exchange"] = dead_letter_exchange
        # At-least-once dead-lettering needs reject-publish overflow (RabbitMQ docs, quorum queues).
        args["x-dead-letter-strategy"] = "at-least-once"
        args["x-overflow"] = "reject-publish"
    if delivery_limit is not None:
        # RabbitMQ 3.x quorum queues have no default limit: a poison message would loop forever.
        args["x-delivery-limit"] = delivery_limit
    return args


async def declare(channel: Any, names: Names, teams: dict[str, list[str]], delivery_limit: int) -> None:
    """Declare the whole topology on an aio-pika channel. `teams` maps tenant -> team ids."""
    topic = aio_pika.ExchangeType.TOPIC
    dead_x = await channel.declare_exchange(names(DEAD), aio_pika.ExchangeType.FANOUT, durable=True)
    dead_q = await channel.declare_queue(names(DEAD), durable=True, arguments=quorum_args())
    await dead_q.bind(dead_x)

    contacts = await channel.declare_exchange(names(CONTACTS), topic, durable=True)
    router_q = await channel.declare_queue(
        names(ROUTER_QUEUE),
        durable=True,
        arguments=quorum_args(dead_letter_exchange=names(DEAD), delivery_limit=delivery_limit),
    )
    await router_q.bind(contacts, routing_key="#")

    unroutable_x = await channel.declare_exchange(
        names(UNROUTABLE), aio_pika.ExchangeType.FANOUT, durable=True
    )
    unroutable_q = await channel.declare_queue(names(UNROUTABLE), durable=True, arguments=quorum_args())
    await unroutable_q.bind(unroutable_x)

    teams_x = await channel.declare_exchange(
        names(TEAMS), topic, durable=True, arguments={"alternate-exchange": names(UNROUTABLE)}
    )
    await channel.declare_exchange(names(EVENTS), topic, durable=True)
    escalations_x = await channel.declare_exchange(names(ESCALATIONS), topic, durable=True)
    for tenant, team_ids in sorted(teams.items()):
        for team in team_ids:
            q = await channel.declare_queue(
                names.team_queue(tenant, team), durable=True, arguments=quorum_args()
            )
            await q.bind(teams_x, routing_key=f"{tenant}.{team}")
        esc = await channel.declare_queue(
            names.escalation_queue(tenant), durable=True, arguments=quorum_args()
        )
        await esc.bind(escalations_x, routing_key=tenant)
