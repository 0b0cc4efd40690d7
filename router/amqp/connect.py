"""Every connection to RabbitMQ, to one broker or to any node of a cluster.

AMQP_URL names one broker or several nodes (router/broker_url.py). A connection goes to the next node
in turn (the first one picked at random per process, so that the processes of a deployment spread over
the nodes); a node that refuses is skipped, and a connection made after a loss goes to the node after
the one that was lost.

aio-pika's robust connection reconnects to its one URL only: `connect_robust` returns a subclass that
takes the next address for every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Awaitable
from typing import Any, NoReturn
from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from yarl import URL

from router.broker_url import SCHEMES, amqp_addresses
from router.tcp import reachable_at

# Where the next connection of a URL starts, per process.
_turns: dict[str, itertools.count[int]] = {}


class BrokerUnreachable(aiormq.exceptions.AMQPConnectionError):
    """No node of a multi-node AMQP_URL took the connection. An AMQPConnectionError (so also a
    ConnectionError and an OSError): every handler of a failed connection catches it as before. Its
    message names each node as host:port with its error, never the user or the password."""

    def __init__(self, failures: list[tuple[str, BaseException]]):
        self.failures = failures
        tried = "; ".join(f"{_node(address)}: {_reason(exc)}" for address, exc in failures)
        super().__init__(f"no node of AMQP_URL took the connection ({tried})")

    def __str__(self) -> str:
        return str(self.args[0])


def _node(address: str) -> str:
    parts = urlsplit(address)
    host = parts.hostname or "?"
    return f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _give_up(failures: list[tuple[str, BaseException]]) -> NoReturn:
    """No node took the connection: a single broker's own error (as before the cluster form), else
    one naming every node."""
    if len(failures) == 1:
        raise failures[0][1]
    raise BrokerUnreachable(failures) from failures[-1][1]


def _in_turn(url: str) -> list[str]:
    addresses = amqp_addresses(url)
    turn = _turns.setdefault(url, itertools.count(random.randrange(len(addresses))))
    start = next(turn) % len(addresses)
    return addresses[start:] + addresses[:start]


async def connect(url: str, **kwargs: Any) -> AbstractConnection:
    """aio_pika.connect to the first node, in turn, that takes the connection; raises the last node's
    error when it is one broker, BrokerUnreachable naming each node when none of several does."""
    failures: list[tuple[str, BaseException]] = []
    for address in _in_turn(url):
        try:
            connection: AbstractConnection = await aio_pika.connect(address, **kwargs)
            return connection
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            failures.append((address, exc))
    _give_up(failures)


class FailoverRobustConnection(aio_pika.RobustConnection):
    """A robust connection whose every (re)connection attempt goes to the next node."""

    def __init__(self, addresses: list[str], **kwargs: Any):
        self._addresses = addresses
        self._attempts = 0
        super().__init__(URL(addresses[0]), **kwargs)

    # aio-pika clears the transport right before each connection attempt, the first one and every
    # reconnection (RobustConnection's connection factory), and reads `url` once in it: the one hook
    # that sees every attempt. tests/test_amqp_connect.py fails if an aio-pika release moves it.
    @property
    def transport(self) -> Any:
        return self._failover_transport

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None and getattr(self, "url", None) is not None:  # not Connection.__init__'s
            address = URL(self._addresses[self._attempts % len(self._addresses)])
            self.url = address.with_password(self.url.password)
            self._attempts += 1
        self._failover_transport = value


async def connect_robust(url: str, **kwargs: Any) -> AbstractRobustConnection:
    """aio_pika.connect_robust over the nodes: the first attempt tries each node in turn, and the
    reconnections after a loss go round them."""
    timeout = kwargs.pop("timeout", None)
    failures: list[tuple[str, BaseException]] = []
    order = _in_turn(url)
    for i, address in enumerate(order):
        # This node first, then the others in the same turn, for its reconnections.
        connection = FailoverRobustConnection(order[i:] + order[:i], **kwargs)
        try:
            await connection.connect(timeout=timeout)
            return connection
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            failures.append((address, exc))
            with contextlib.suppress(Exception):
                await connection.close()
    _give_up(failures)


async def reachable(url: str, wait: float = 1.0) -> bool:
    """Whether any node accepts a TCP connection (the readiness check; the consumer's own check says
    whether it consumes)."""

    def one(address: str) -> Awaitable[bool]:
        parts = urlsplit(address)
        return reachable_at(parts.hostname or "", parts.port or SCHEMES[parts.scheme], wait)

    return any(await asyncio.gather(*(one(a) for a in amqp_addresses(url))))
