"""The Redis client of every process: one server (`redis://…`) or a Redis Cluster (`redis+cluster://…`).

`REDIS_URL=redis+cluster://[user:password@]host:port[,host:port…][/]` names seed nodes of a cluster;
redis-py's cluster client learns the rest of the cluster from them and follows slot moves. The rest of
the service does not care which it has: every script and every transaction touches one hash slot (the
keys of one contact share `{<contact id>}`, a tenant's work lists `{<tenant>}`, the timers `{timers}`;
router/redis/keys.py), and pipelines without a transaction are split by the cluster client per node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterError, NoScriptError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.settings import cluster_nodes, is_cluster_url

# What the stores take: both have the same commands, pipelines and scripts.
RedisClient: TypeAlias = aioredis.Redis | RedisCluster


# The errors that mean "the store is not there now" (StoreUnavailable: retried, never a dead letter): a
# lost connection, and on a cluster a master that is down or slots that are moving.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
)


def redis_client(url: str, *, max_connections: int = 32) -> RedisClient:
    """A client for REDIS_URL. Bounded: the single-server pool waits for a free connection instead of
    raising under load (STYLE.md); the cluster client holds up to `max_connections` per node."""
    if is_cluster_url(url):
        nodes, user, password = cluster_nodes(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            username=user,
            password=password,
            max_connections=max_connections,
            socket_timeout=5,
            socket_connect_timeout=3,
            decode_responses=False,
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=10, socket_timeout=5, socket_connect_timeout=3
    )
    return aioredis.Redis(connection_pool=pool, decode_responses=False)


async def execute_pipeline(
    client: RedisClient, fill: Callable[[Any], None], scripts: Sequence[str]
) -> list[Any]:
    """`fill` a pipeline without a transaction and run it in one round trip (per node on a cluster).

    Scripts go by SHA (`queue_script`), without the SCRIPT EXISTS round trip that redis-py's own
    pipelines add before every run with scripts, and which its cluster pipeline does not do at all.
    When a server does not know them (restarted, scripts flushed, a new cluster node) they are loaded
    (on every master of a cluster) and the pipeline runs once more. Callers' pipelines must be
    idempotent for that: claims by the same token, version-checked changes, sets with scores."""
    for attempt in (1, 2):
        async with client.pipeline(transaction=False) as pipe:
            fill(pipe)
            try:
                return await pipe.execute()
            except NoScriptError:
                if attempt == 2:
                    raise
        for script in scripts:
            await client.script_load(script)
    raise AssertionError("unreachable")


async def config_per_primary(client: RedisClient, parameter: str) -> dict[str, Any]:
    """CONFIG GET `parameter` on every server that holds data: the one server ("" names it), or each
    primary of a cluster by host:port (the cluster client alone asks one node at random)."""
    if not isinstance(client, RedisCluster):
        return {"": (await client.config_get(parameter)).get(parameter)}
    await client.initialize()  # learns the nodes, if no command has yet
    out: dict[str, Any] = {}
    for node in client.get_primaries():
        reply = await client.config_get(parameter, target_nodes=node)
        out[node.name] = reply.get(parameter)
    return out


def queue_script(pipe: Any, sha: str, numkeys: int, *keys_and_args: Any) -> None:
    """EVALSHA in a pipeline. As a raw command: redis-py's cluster pipeline refuses its `evalsha` method
    (it cannot load a missing script there; `execute_pipeline` does), but routes the command itself by
    its first key like any other."""
    pipe.execute_command("EVALSHA", sha, numkeys, *keys_and_args)
