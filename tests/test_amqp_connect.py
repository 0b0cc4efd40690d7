"""AMQP_URL with several nodes: parsing, its check in the settings, and connections that go to the
next node (against the real broker: a closed port first, then 127.0.0.1:5672)."""

from __future__ import annotations

import asyncio

import aiormq
import pytest
from pydantic import ValidationError

from router.amqp import connect as amqp_connect
from router.broker_url import AmqpUrlError, amqp_addresses
from router.settings import Settings
from tests.faults.helpers import TcpProxy, free_port

from .conftest import AMQP_URL


def test_one_url_per_node_with_the_user_vhost_and_options_of_the_whole() -> None:
    url = "amqp://guest:p%40ss@10.0.0.1:5673,node-2,[::1]:5675/prod?heartbeat=5"
    assert amqp_addresses(url) == [
        "amqp://guest:p%40ss@10.0.0.1:5673/prod?heartbeat=5",
        "amqp://guest:p%40ss@node-2:5672/prod?heartbeat=5",
        "amqp://guest:p%40ss@[::1]:5675/prod?heartbeat=5",
    ]
    assert amqp_addresses("amqps://h/") == ["amqps://h:5671/"]
    assert amqp_addresses("amqp://guest:guest@127.0.0.1:5672/") == ["amqp://guest:guest@127.0.0.1:5672/"]


@pytest.mark.parametrize(
    "url",
    [
        "amqp://u:secret@a:1,,b:2/",
        "amqp://u:secret@a:99999/",
        "amqp://u:secret@a:x/",
        "http://a/",
        "amqp://::1/",
    ],
)
def test_a_malformed_amqp_url_stops_the_settings_without_the_password(url: str) -> None:
    with pytest.raises(AmqpUrlError):
        amqp_addresses(url)
    with pytest.raises(ValidationError) as failed:
        Settings(amqp_url=url)
    assert "AMQP_URL" in str(failed.value)
    assert "secret" not in str(failed.value)


def nodes(*ports: int) -> str:
    return "amqp://guest:guest@" + ",".join(f"127.0.0.1:{p}" for p in ports) + "/"


BROKER = int(AMQP_URL.rsplit(":", 1)[1].strip("/"))


async def test_connect_skips_a_node_that_refuses(servers: None) -> None:
    """The first node a dead loopback port, the second the real broker: every connection, plain or
    robust, lands on the live one (twice each: whichever node the turn starts at)."""
    url = nodes(free_port(), BROKER)
    for _ in range(2):
        connection = await amqp_connect.connect(url, client_properties={"connection_name": "test:failover"})
        assert connection.transport is not None
        assert connection.url.port == BROKER
        channel = await connection.channel()
        await channel.declare_queue(exclusive=True)
        await connection.close()
    for _ in range(2):
        robust = await amqp_connect.connect_robust(url, timeout=5)
        assert robust.url.port == BROKER
        await (await robust.channel()).declare_queue(exclusive=True)
        await robust.close()


async def test_no_node_answers_an_error_naming_each_node_and_no_password() -> None:
    dead = [free_port(), free_port()]
    url = "amqp://router-user:s3cr3t-pw@" + ",".join(f"127.0.0.1:{p}" for p in dead) + "/"
    for attempt in (amqp_connect.connect, amqp_connect.connect_robust):
        with pytest.raises(amqp_connect.BrokerUnreachable) as failed:
            await attempt(url, timeout=2)
        message = str(failed.value)
        assert message.startswith("no node of AMQP_URL took the connection"), message
        for port in dead:
            assert f"127.0.0.1:{port}: AMQPConnectionError" in message, message
        assert "s3cr3t-pw" not in message and "router-user" not in message, message
        assert "s3cr3t-pw" not in repr(failed.value)
        # Caught where a failed connection was caught before: an OSError and an AMQP error.
        assert isinstance(failed.value, OSError) and isinstance(failed.value, aiormq.exceptions.AMQPError)
    assert not await amqp_connect.reachable(url)


async def test_one_dead_broker_raises_its_own_error_as_before() -> None:
    with pytest.raises(aiormq.exceptions.AMQPConnectionError) as failed:
        await amqp_connect.connect(nodes(free_port()), timeout=2)
    assert not isinstance(failed.value, amqp_connect.BrokerUnreachable)


async def test_connections_take_the_nodes_in_turn(servers: None) -> None:
    """Two proxies in front of the one broker stand for two nodes: four connections, two on each."""
    proxies = [TcpProxy(target_port=BROKER).start() for _ in range(2)]
    try:
        url = nodes(*(p.port for p in proxies))
        connections = [await amqp_connect.connect(url) for _ in range(4)]
        assert [p.accepted for p in proxies] == [2, 2]
        for c in connections:
            await c.close()
    finally:
        for p in proxies:
            p.close()


async def test_a_robust_connection_reconnects_to_the_next_node(servers: None) -> None:
    """The node of a robust connection goes away (its proxy drops the connection and refuses new ones):
    the connection comes back on the other node by itself, channel and all."""
    proxies = [TcpProxy(target_port=BROKER).start() for _ in range(2)]
    try:
        url = nodes(*(p.port for p in proxies))
        connection = await amqp_connect.connect_robust(url, timeout=5, reconnect_interval=0.2)
        channel = await connection.channel()
        first = next(p for p in proxies if p.accepted)
        other = next(p for p in proxies if p is not first)
        reconnected = asyncio.Event()
        connection.reconnect_callbacks.add(lambda *_: reconnected.set())
        first.cut()
        await asyncio.wait_for(reconnected.wait(), 10)
        assert other.accepted == 1
        await asyncio.wait_for(channel.declare_queue(exclusive=True), 10)
        await connection.close()
    finally:
        for p in proxies:
            p.close()
    assert await amqp_connect.reachable(nodes(free_port(), BROKER))
