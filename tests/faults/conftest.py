"""Fixtures of the fault suite: a private Redis and a TCP proxy in front of the shared RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.helpers import PrivateRedis, TcpProxy


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis").start()
    yield redis
    redis.stop()


@pytest.fixture
def amqp_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy().start()
    yield proxy
    proxy.close()
