"""The Redis client of every process: one server (`redis://…`) or a Redis Cluster (`redis+cluster://…`).

`REDIS_URL=redis+cluster://[user:password@]host:port[,host:port…][/]` names seed nodes of a cluster;
redis-py's cluster client learns the rest of the cluster from them and follows slot moves. The rest of
the service does not care which it has: every script and every transaction touches one hash slot (the
keys of one contact share `{<contact id>}`, a tenant's work lists `{<tenant>}`, the timers `{timers}`;
router/redis/keys.py), and pipelines without a transaction are split by the cluster client per node.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ClusterError, DataError, NoScriptError, SlotNotCoveredError, TryAgainError
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
    pool.connection_class = _batching(pool.connection_class)  # from_url chose TCP, TLS or a socket
    return aioredis.Redis(connection_pool=pool, decode_responses=False)


# Set while `execute_pipeline` reads a pipeline's replies under one deadline for all of them.
_ONE_DEADLINE: contextvars.ContextVar[bool] = contextvars.ContextVar("one_deadline", default=False)


_BATCHING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _batching(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """`base` with what the router's pipelines of hundreds of commands cost less with (bench --profile:
    18 µs of CPU per command in redis-py's own, 9 µs in these): commands packed by hiredis' C packer
    (redis-py does so only in its synchronous client), and inside `execute_pipeline` no timer per reply,
    which the pipeline's one deadline replaces."""
    if base in _BATCHING:
        return _BATCHING[base]

    class Batching(base):  # type: ignore[valid-type,misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            # As redis-py's synchronous HiredisRespSerializer: "CONFIG GET" is two arguments.
            if isinstance(args[0], str):
                args = (*args[0].encode().split(), *args[1:])
            elif b" " in args[0]:
                args = (*args[0].split(), *args[1:])
            try:
                return [hiredis.pack_command(args)]
            except TypeError as exc:  # what redis-py's own packer raises for a value it cannot send
                raise DataError(str(exc)) from exc

        def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
            return [b"".join(self.pack_command(*command)[0] for command in commands)]

        async def read_response(
            self,
            disable_decoding: bool = False,
            timeout: float | None = None,  # noqa: ASYNC109 (redis-py's signature)
            **kw: Any,
        ) -> Any:
            if timeout is None and _ONE_DEADLINE.get():
                timeout = math.inf  # redis-py: no timer of its own for this read
            return await super().read_response(disable_decoding, timeout, **kw)

    Batching.__name__ = Batching.__qualname__ = f"Batching{base.__name__}"
    return _BATCHING.setdefault(base, Batching)


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
                return await _with_one_deadline(client, pipe)
            except NoScriptError:
                if attempt == 2:
                    raise
        for script in scripts:
            await client.script_load(script)
    raise AssertionError("unreachable")


async def _with_one_deadline(client: RedisClient, pipe: Any) -> list[Any]:
    """Run `pipe` with the socket timeout as one deadline for all its replies, not one per reply. A
    deadline that passes disconnects the connection mid-read (redis-py does that on any interruption)
    and raises TimeoutError, which is in UNAVAILABLE like redis-py's own."""
    replies: list[Any]
    if isinstance(client, RedisCluster):
        replies = await pipe.execute()
        return replies
    deadline = client.connection_pool.connection_kwargs.get("socket_timeout")
    token = _ONE_DEADLINE.set(deadline is not None)
    try:
        async with asyncio.timeout(deadline):
            replies = await pipe.execute()
            return replies
    finally:
        _ONE_DEADLINE.reset(token)


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
