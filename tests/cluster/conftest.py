"""Fixtures of the cluster suite: three RabbitMQ nodes of its own and a private Redis.

The suite starts a cluster (about 40 s on a 2-core machine) and runs for minutes: it runs when `-m`
names the marker (`scripts/cluster-suite`), and is deselected, as pytest reports, otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.rabbit_cluster import RabbitCluster
from tests.faults.helpers import PrivateRedis


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "broker_cluster" in (config.getoption("markexpr") or ""):
        return
    chosen = [i for i in items if i.get_closest_marker("broker_cluster") is None]
    if len(chosen) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("broker_cluster")])
        items[:] = chosen


@pytest.fixture
def rabbit_cluster() -> Iterator[RabbitCluster]:
    cluster = RabbitCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis").start()
    yield redis
    redis.stop()
