"""The cluster suite: a stream of contacts through two routers on a three-node RabbitMQ cluster while
the broker's nodes are killed. Afterwards nothing may be lost, nothing routed twice in the store, every
contact `routed` in Redis; the routers publish with confirms (AMQP_URL names three nodes), so an item may
be in its team queue twice, with the same message_id, only if its first batch was given back uncommitted.

Faults, while contacts keep arriving (router, API and publisher given all three nodes in AMQP_URL):
  1. SIGKILL of the node that leads `router.contacts`: two of three are left, every quorum queue keeps
     its majority, routing goes on after a pause (a new leader, the clients on the node move);
  2. SIGKILL of a second node, not the one router 1 consumes on: one node left, no quorum queue has a
     majority. Routing must stop (and lose nothing), and router 1's /readyz must say it cannot route
     although its connection and consumer stay open;
  3. the first node back: majorities again, routing resumes;
  4. the second node back.

Figures are printed at the end and written to $CLUSTER_REPORT_JSON when it is set; size with
CLUSTER_CONTACTS (default 3000) and CLUSTER_STREAM_SECONDS (default 60).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
import redis.asyncio as aioredis

from router.amqp import connect as amqp_connect
from router.amqp.consumer import default_connection_name
from router.core.tenants import Tenant
from router.core.topology import DEAD, ROUTER_QUEUE, UNROUTABLE, Names
from router.redis.keys import Keys
from router.service import declare_topology
from router.settings import Settings
from tests.cluster.rabbit_cluster import RabbitCluster
from tests.conftest import RULES, new_namespace
from tests.faults.helpers import PrivateRedis, RouterProcess, free_port
from tests.faults.test_fault_suite import contact_body, team_queues

pytestmark = [pytest.mark.broker_cluster, pytest.mark.slow]

CONTACTS = int(os.environ.get("CLUSTER_CONTACTS", "3000"))
STREAM_SECONDS = float(os.environ.get("CLUSTER_STREAM_SECONDS", "60"))
# How long routing may pause after a node is killed while a majority is left, and after a majority is
# back: a new leader is elected within seconds, the clients reconnect with back-off up to 5 s.
RESUME_WITHIN = 30.0
# The minority window: how long the test holds one node alone before bringing one back.
MINORITY_SECONDS = 15.0


@dataclass
class Figures:
    contacts_sent: int = 0
    messages_published: int = 0
    publish_retries: int = 0
    publish_failures: dict[str, int] = field(default_factory=dict)
    routed: int = 0
    lost: int = 0
    routed_twice: int = 0
    delivered_twice: int = 0
    without_message_id: int = 0
    released_uncommitted: int = 0
    state_not_routed: int = 0
    dead_letters: int = 0
    unroutable: int = 0
    left_in_router_queue: int = 0
    replicas: dict[str, int] = field(default_factory=dict)
    pause_after_first_kill: float = 0.0
    routed_without_majority: int = 0
    resumed_after_majority_back: float = 0.0
    ready_while_two_nodes_left: dict[str, int] = field(default_factory=dict)
    ready_while_one_node_left: dict[str, int] = field(default_factory=dict)
    unready_after_second_kill: float = 0.0
    ready_after_majority_back: float = 0.0
    ready_at_end: int = 0
    node_memory_mb: dict[str, int] = field(default_factory=dict)
    team_queues: dict[str, str] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def render(self) -> str:
        return "\n".join(
            [
                "cluster suite figures",
                f"  contacts sent          {self.contacts_sent} ({self.messages_published} messages, "
                f"{self.publish_retries} re-sent after a failed publish: {self.publish_failures})",
                f"  routed                 {self.routed}",
                f"  lost                   {self.lost}",
                f"  routed twice           {self.routed_twice} (in the store); in a team queue twice "
                f"{self.delivered_twice} (same message_id; contacts of uncommitted batches: "
                f"{self.released_uncommitted}); without message_id {self.without_message_id}",
                f"  state not 'routed'     {self.state_not_routed}",
                f"  dead letters           {self.dead_letters}, unroutable {self.unroutable}, "
                f"left in router queue {self.left_in_router_queue}",
                f"  replicas per queue     {self.replicas}",
                f"  node 1 of 3 killed     longest pause in routing {self.pause_after_first_kill:.1f} s; "
                f"/readyz answers {self.ready_while_two_nodes_left}",
                f"  2 of 3 killed          routed meanwhile: {self.routed_without_majority}; /readyz 503 "
                f"after {self.unready_after_second_kill:.1f} s, then {self.ready_while_one_node_left}",
                f"  majority back          routing resumed {self.resumed_after_majority_back:.1f} s "
                f"after the node was started (its boot included), /readyz 200 after "
                f"{self.ready_after_majority_back:.1f} s",
                f"  /readyz at the end     {self.ready_at_end}",
                f"  node memory (MB)       {self.node_memory_mb}",
                f"  team queues            {self.team_queues}",
                f"  duration               {self.seconds:.1f} s",
                "  faults injected:",
                *(f"    - {f}" for f in self.faults),
            ]
        )


class FailoverPublisher:
    """Publishes the stream with publisher confirms over AMQP_URL's nodes: a publish that is not
    confirmed (its node died, or its queue has no majority) is sent again on a fresh connection, to
    the next node, until the broker confirms it."""

    def __init__(self, url: str, names: Names):
        self.url = url
        self.names = names
        self.sent = 0
        self.published = 0
        self.retries = 0
        self.failures: Counter[str] = Counter()
        self.expected: set[str] = set()
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def _ready_exchange(self) -> aio_pika.abc.AbstractExchange:
        while self._exchange is None:
            with contextlib.suppress(Exception):
                if self._connection is not None:
                    await asyncio.wait_for(self._connection.close(), 2)
            try:
                self._connection = await amqp_connect.connect(
                    self.url, timeout=5, client_properties={"connection_name": "cluster-publisher"}
                )
                channel = await self._connection.channel(publisher_confirms=True)
                self._exchange = await channel.get_exchange(self.names("contacts"))
            except Exception:
                await asyncio.sleep(0.5)
        return self._exchange

    async def _publish_all(self, chunk: list[tuple[bytes, str]]) -> None:
        while chunk:
            exchange = await self._ready_exchange()
            results = await asyncio.gather(
                *(self._publish(exchange, body, key) for body, key in chunk), return_exceptions=True
            )
            self.published += len(chunk)
            failed = [c for c, r in zip(chunk, results, strict=True) if r is not None]
            self.failures.update(type(r).__name__ for r in results if r is not None)
            if failed:
                self.retries += len(failed)
                self._exchange = None  # the next try goes to the next node
                await asyncio.sleep(0.5)
            chunk = failed

    @staticmethod
    async def _publish(exchange: aio_pika.abc.AbstractExchange, body: bytes, key: str) -> None:
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(uuid.uuid4()),
        )
        await exchange.publish(message, routing_key=key, timeout=5)

    async def run(self, total: int, seconds: float) -> None:
        run = uuid.uuid4().hex[:8]
        received_at = datetime.now(UTC).isoformat()
        start = time.monotonic()
        window = 50
        for i in range(0, total, window):
            chunk = []
            for n in range(i, min(total, i + window)):
                cid, body, key = contact_body(n, run, received_at)
                self.expected.add(cid)
                chunk.append((body, key))
            await self._publish_all(chunk)
            self.sent = min(total, i + window)
            ahead = start + seconds * self.sent / total - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()


class Readiness:
    """Polls a process's /readyz every quarter second: (time, status) of every answer."""

    def __init__(self, url: str):
        self.url = url
        self.answers: list[tuple[float, int]] = []

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            while True:
                try:
                    async with http.get(self.url) as resp:
                        self.answers.append((time.time(), resp.status))
                except (aiohttp.ClientError, TimeoutError):
                    self.answers.append((time.time(), 0))
                await asyncio.sleep(0.25)

    def between(self, start: float, end: float) -> Counter[int]:
        return Counter(status for t, status in self.answers if start <= t <= end)

    def first(self, status: int, after: float) -> float:
        """Seconds from `after` to the first answer `status` (-1: none)."""
        return next((t - after for t, s in self.answers if t >= after and s == status), -1.0)


def routed_times(routers: list[RouterProcess]) -> list[float]:
    """When each contact_routed line was logged (epoch seconds), over all routers, sorted."""
    out = []
    for proc in routers:
        for e in proc.events():
            if e.get("event") == "contact_routed" and "timestamp" in e:
                out.append(datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp())
    return sorted(out)


def longest_pause(times: list[float], start: float, end: float) -> float:
    """The longest time without a routed contact in [start, end], counted from `start`."""
    inside = [start, *(t for t in times if start < t < end)]
    return max((b - a for a, b in itertools.pairwise(inside)), default=end - start)


async def take_all(conn: aio_pika.abc.AbstractConnection, queue: str) -> list[bytes | None]:
    """Every message of `queue`, removed, as its message_id (bytes of the contact id). Consumed until
    nothing has come for 3 s: a count from a queue whose members just came back may be short."""
    channel = await conn.channel()
    await channel.set_qos(prefetch_count=1000)
    q = await channel.get_queue(queue, ensure=False)
    out: list[bytes | None] = []
    last = time.monotonic()

    async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal last
        out.append(msg.message_id.encode() if msg.message_id else None)
        last = time.monotonic()
        await msg.ack()

    tag = await q.consume(on_message)
    while True:
        await asyncio.sleep(0.2)
        if time.monotonic() - last >= 3:
            break
    await q.cancel(tag)
    await channel.close()
    return out


def await_queues_online(cluster: RabbitCluster, namespace: str, within: float = 90) -> None:
    """Until every quorum queue of the namespace has all its members online (after a node's restart
    they catch up first)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        out = cluster.ctl(
            cluster.nodes[0], "list_queues", "name", "type", "members", "online", "-q", "--no-table-headers"
        )
        rows = [line.split("\t") for line in out.splitlines() if line.startswith(namespace)]
        if rows and all(r[1] != "quorum" or r[2].count("@") == r[3].count("@") for r in rows if len(r) >= 4):
            return
        time.sleep(1)
    raise AssertionError(f"the namespace's quorum queues are not all online: {out[-1000:]}")


async def depth(conn: aio_pika.abc.AbstractConnection, queue: str) -> int:
    channel = await conn.channel()
    try:
        q = await channel.declare_queue(queue, passive=True, timeout=10)
        return int(q.declaration_result.message_count)
    finally:
        await channel.close()


def replicas(cluster: RabbitCluster, namespace: str) -> dict[str, int]:
    """Members of each of the namespace's quorum queues, as the cluster lists them."""
    out = cluster.ctl(
        cluster.nodes[0], "list_queues", "name", "type", "members", "-q", "--no-table-headers", "--silent"
    )
    rows = {}
    for line in out.splitlines():
        name, kind, members = [*line.split("\t"), "", ""][:3]
        if name.startswith(namespace) and kind == "quorum":
            rows[name.removeprefix(namespace)] = members.count("@")
    return rows


def node_of_consumer(cluster: RabbitCluster, names: Names, proc: RouterProcess) -> int:
    """The index (1-3) of the node the router process's consumer is connected to."""
    via = next(n for n in cluster.nodes if cluster.alive(n))
    wanted = f'"{default_connection_name(names).rsplit(":", 1)[0]}:{proc.pid}"'
    out = cluster.ctl(via, "list_connections", "pid", "client_properties", "-q", "--no-table-headers")
    for line in out.splitlines():
        pid, _, props = line.partition("\t")
        if wanted in props:
            node = pid.strip().lstrip("<").split(".", 1)[0]
            return next(n.index for n in cluster.nodes if n.name == node)
    raise AssertionError(f"no connection of {proc.name} on the cluster")


def leader_of(cluster: RabbitCluster, queue: str) -> int:
    """The index (1-3) of the node that leads `queue`."""
    via = next(n for n in cluster.nodes if cluster.alive(n))
    out = cluster.ctl(via, "list_queues", "name", "leader", "-q", "--no-table-headers", "--silent")
    for line in out.splitlines():
        name, _, leader = line.partition("\t")
        if name == queue:
            return next(n.index for n in cluster.nodes if n.name == leader.strip())
    raise AssertionError(f"{queue} has no leader: {out[-500:]}")


def quorum_status(cluster: RabbitCluster, namespace: str, taken: dict[str, str]) -> dict[str, str]:
    """`rabbitmq-queues quorum_status` of every team queue (each member's log and commit index), and
    where the cluster says each queue is led from: what to look at when a count is off."""
    leaders = cluster.ctl(
        cluster.nodes[0], "list_queues", "name", "leader", "messages", "-q", "--no-table-headers"
    )
    out = {"leaders": leaders}
    for queue in taken:
        out[queue] = cluster.queues(None, "quorum_status", namespace + queue)
    return out


def write_diagnosis(path: Path, diagnosis: dict[str, Any]) -> None:
    path.write_text(json.dumps(diagnosis, indent=2))


def write_report(figures: Figures) -> None:
    report = os.environ.get("CLUSTER_REPORT_JSON")
    if report:
        Path(report).write_text(json.dumps(asdict(figures), indent=2))


async def test_nothing_lost_nothing_routed_twice_when_broker_nodes_die(
    rabbit_cluster: RabbitCluster,
    private_redis: PrivateRedis,
    tenants: dict[str, Tenant],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    began = time.monotonic()
    cluster, figures = rabbit_cluster, Figures()
    namespace = new_namespace()
    names = Names(namespace)
    settings = Settings(
        amqp_url=cluster.url, redis_url=private_redis.url, rules_dir=RULES, namespace=namespace
    )
    await declare_topology(settings, tenants)
    figures.replicas = dict(Counter((await asyncio.to_thread(replicas, cluster, namespace)).values()))
    assert set(figures.replicas) == {3}, f"every quorum queue on all three nodes: {figures.replicas}"

    http_port = free_port()
    env = {
        "AMQP_URL": cluster.url,
        "REDIS_URL": private_redis.url,
        "NAMESPACE": namespace,
        "RULES_DIR": str(RULES),
        "CLAIM_LEASE_MS": "3000",
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
        "API_KEYS": "integrator:cluster-test-key:*:submit",
    }
    # Blocking cluster calls run in threads: the publisher and the readiness poller go on meanwhile.
    # Router 1 is `serve` (router, API, scheduler): its /readyz is the one checked.
    r1 = RouterProcess({**env, "HTTP_PORT": str(http_port)}, tmp_path / "router-1.log", "r1", "serve").start()
    r2 = RouterProcess(env, tmp_path / "router-2.log", "r2").start()
    routers = [r1, r2]
    readiness = Readiness(f"http://127.0.0.1:{http_port}/readyz")
    poller = asyncio.create_task(readiness.run())
    publisher = FailoverPublisher(cluster.url, names)
    stream: asyncio.Task[None] | None = None
    try:

        async def until(predicate: Any, within: float, what: str) -> None:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                for proc in routers:
                    assert proc.alive(), f"{proc.name} exited; see {proc.log}"
                if stream is not None and stream.done():
                    stream.result()
                if predicate():
                    return
                await asyncio.sleep(0.25)
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")

        def attached() -> bool:
            return all(sum(p.count("consumer_attached").values()) for p in routers)

        def ready_now() -> bool:
            return bool(readiness.answers) and readiness.answers[-1][1] == 200

        await until(lambda: attached() and ready_now(), 60, "both routers consuming, /readyz 200")
        stream = asyncio.create_task(publisher.run(CONTACTS, STREAM_SECONDS))

        # 1. The leader of router.contacts dies: two of three nodes left.
        await until(lambda: publisher.sent >= CONTACTS * 0.25, STREAM_SECONDS * 3, "25 % of the stream")
        first = await asyncio.to_thread(leader_of, cluster, names(ROUTER_QUEUE))
        killed_1 = time.time()
        await asyncio.to_thread(cluster.kill, first)
        figures.faults.append(f"SIGKILL node {first} (leader of router.contacts) at {publisher.sent} sent")
        await until(lambda: publisher.sent >= CONTACTS * 0.5, STREAM_SECONDS * 3, "50 % of the stream")
        figures.pause_after_first_kill = longest_pause(routed_times(routers), killed_1, time.time())
        figures.ready_while_two_nodes_left = {
            str(k): v for k, v in sorted(readiness.between(killed_1, time.time()).items())
        }

        # 2. A second node dies: one left, no majority anywhere. Routing stops; /readyz must say so. Not
        # the node of router 1's consumer: that connection stays open, and only the probe can tell.
        kept = await asyncio.to_thread(node_of_consumer, cluster, names, r1)
        second = next(n.index for n in cluster.nodes if n.index not in (first, kept))
        killed_2 = time.time()
        await asyncio.to_thread(cluster.kill, second)
        figures.faults.append(
            f"SIGKILL node {second} at {publisher.sent} sent (router 1 stays on node {kept}, alone)"
        )
        await asyncio.sleep(MINORITY_SECONDS)
        back = time.time()
        # A batch committed just before the kill may be logged a moment after it.
        figures.routed_without_majority = sum(1 for t in routed_times(routers) if killed_2 + 2 < t < back)
        figures.unready_after_second_kill = readiness.first(503, killed_2)
        figures.ready_while_one_node_left = {
            str(k): v for k, v in sorted(readiness.between(killed_2 + 10, back).items())
        }

        # 3. The first node back: majorities again, routing resumes.
        await asyncio.to_thread(cluster.restart, first)
        restarted = time.time()
        figures.faults.append(f"node {first} restarted ({restarted - back:.1f} s to boot)")
        routed_before = len(routed_times(routers))
        await until(
            lambda: len(routed_times(routers)) > routed_before, 60, "routing after a majority is back"
        )
        # Counted from the node's start: its boot is part of the wait.
        figures.resumed_after_majority_back = next(t for t in routed_times(routers) if t > back) - back
        await until(ready_now, RESUME_WITHIN, "/readyz 200 with a majority back")
        figures.ready_after_majority_back = readiness.first(200, back)

        # 4. The second node back.
        await asyncio.to_thread(cluster.restart, second)
        await asyncio.to_thread(cluster.await_running, 3)
        figures.faults.append(f"node {second} restarted")
        await stream

        store = aioredis.Redis.from_url(private_redis.url)
        keys = Keys(namespace)

        async def all_routed() -> int:
            pipe = store.pipeline(transaction=False)
            for cid in publisher.expected:
                pipe.hget(keys.contact(cid), "status")
            return sum(1 for s in await pipe.execute() if s != b"routed")

        for _ in range(120):
            if not (left := await all_routed()):
                break
            await asyncio.sleep(1)
        figures.state_not_routed = left
        await until(ready_now, 30, "/readyz 200 at the end")
        figures.ready_at_end = readiness.answers[-1][1]
        figures.node_memory_mb = cluster.memory_mb()

        for proc in routers:
            proc.stop()
        await asyncio.to_thread(await_queues_online, cluster, namespace)
        watcher = await amqp_connect.connect(cluster.url)
        seen: Counter[bytes | None] = Counter()
        for queue in team_queues(names, tenants):
            waiting = await depth(watcher, queue)
            taken = await take_all(watcher, queue)
            figures.team_queues[queue.removeprefix(namespace)] = f"{len(taken)} taken, {waiting} counted"
            seen.update(taken)
        routed_ids = {k.decode() for k in seen if k is not None}
        figures.contacts_sent = len(publisher.expected)
        figures.messages_published = publisher.published
        figures.publish_retries = publisher.retries
        figures.publish_failures = dict(publisher.failures)
        figures.routed = len(routed_ids & publisher.expected)
        lost = publisher.expected - routed_ids
        figures.lost = len(lost)
        if lost:
            # Where Redis says the lost ones went, and from which batch (ids only).
            pipe = store.pipeline(transaction=False)
            for cid in lost:
                pipe.hmget(keys.contact(cid), ["tenant", "team", "batch"])
            where = Counter(b"/".join(v or b"?" for v in row).decode() for row in await pipe.execute())
            status = await asyncio.to_thread(quorum_status, cluster, namespace, figures.team_queues)
            write_diagnosis(tmp_path / "lost.json", {"lost_by_queue_and_batch": dict(where), **status})
        # Routed twice: recorded in the store by two committed batches (a contact_routed line each).
        # Delivered twice: in a team queue twice, by the same message_id, which publisher confirms allow
        # for the contacts of a batch that failed before its commit marker was confirmed (DESIGN.md,
        # "Commit modes"): never more than the routers gave back as uncommitted.
        routed_lines = Counter(
            e.get("contact_id")
            for proc in routers
            for e in proc.events()
            if e.get("event") == "contact_routed"
        )
        figures.routed_twice = sum(1 for n in routed_lines.values() if n > 1)
        figures.delivered_twice = sum(n - 1 for k, n in seen.items() if k is not None and n > 1)
        figures.without_message_id = seen.get(None, 0)
        figures.released_uncommitted = sum(
            int(e.get("size", 0))
            for proc in routers
            for e in proc.events()
            if e.get("event") == "claims_released"
        )
        figures.dead_letters = await depth(watcher, names(DEAD))
        figures.unroutable = await depth(watcher, names(UNROUTABLE))
        figures.left_in_router_queue = await depth(watcher, names(ROUTER_QUEUE))
        await watcher.close()
        await store.aclose()
    finally:
        poller.cancel()
        if stream is not None and not stream.done():
            stream.cancel()
        for proc in routers:
            proc.stop()
        figures.seconds = time.monotonic() - began
        write_report(figures)
        with capsys.disabled():
            print("\n" + figures.render())

    assert figures.lost == 0, f"{figures.lost} contacts lost"
    assert figures.routed_twice == 0, f"{figures.routed_twice} contacts routed twice"
    assert figures.without_message_id == 0
    assert figures.delivered_twice <= figures.released_uncommitted, "a copy not from an uncommitted batch"
    assert figures.state_not_routed == 0
    assert figures.dead_letters == figures.unroutable == figures.left_in_router_queue == 0
    assert figures.pause_after_first_kill <= RESUME_WITHIN
    assert figures.routed_without_majority == 0, "routed without a majority"
    assert figures.ready_while_one_node_left.get("200", 0) == 0, "/readyz said ready without a majority"
    assert figures.resumed_after_majority_back <= RESUME_WITHIN
    assert figures.ready_at_end == 200
