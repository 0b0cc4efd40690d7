"""Fixtures for tests against the real RabbitMQ and Redis, and for behaviour tests that run twice.

Every test gets its own namespace (a prefix for exchanges, queues and Redis keys), removed afterwards,
so tests never see each other's messages. A missing server fails the run, with instructions: the test
command (scripts/test) starts local servers when it can; nothing is skipped silently.

`backend`: a behaviour test that takes it runs once on the embedded implementation and once on the real
RabbitMQ and Redis, from one body (tests/backends.py); `h` is the real one alone, for tests of what only
the real one has.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import redis
import redis.asyncio as aioredis
import structlog

from router import service as router_service
from router.core.clock import ManualClock
from router.core.tenants import Tenant
from router.core.tenants import load as load_tenants
from router.settings import Settings
from tests.backends import BACKENDS, BackendChoice, open_harness
from tests.backends import drain as drain  # re-exported: tests take queues with it
from tests.harness import AMS, Harness
from tests.redis_cluster import RedisClusterNodes

# Logs to stderr, as in production (router/logs.py): a command's stdout under test holds only its own
# output, even while a router in the same process logs. Not cached, so structlog.testing.capture_logs
# still works.
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# A test's namespace: `t`, this test session's tag (four hex digits) and ten more. The tag lets a session
# delete what its own tests left on the broker without touching another session's (a CI run beside a
# developer's run, on one broker).
SESSION_TAG = uuid.uuid4().hex[:4]
TEST_NAMESPACE = re.compile(r"^t([0-9a-f]{4})[0-9a-f]{10}\.")
# One file per running session, named by its tag and holding its process id: what a session finds there
# for a tag whose process is gone was left by a session that was killed.
SESSIONS = Path(tempfile.gettempdir()) / "contact-router-test-sessions"


# Every namespace handed out in this session: the sweep between modules deletes only theirs, so that it
# can run beside the next module's tests, whose namespaces are not among them yet.
_HANDED_OUT: set[str] = set()


def new_namespace() -> str:
    namespace = f"t{SESSION_TAG}{uuid.uuid4().hex[:10]}."
    _HANDED_OUT.add(namespace)
    return namespace


def _listed(kind: str, tags: Callable[[str], bool], only: frozenset[str] | None = None) -> list[str]:
    done = subprocess.run(
        ["rabbitmqctl", f"list_{kind}", "name", "--quiet", "--no-table-headers", "--silent"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl list_{kind} failed: {done.stderr.strip()[-300:]}")
    return [n for n in done.stdout.split() if _left_by(n, tags, only)]


def _alive(tag: str) -> bool:
    try:
        pid = int((SESSIONS / tag).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def sweep_test_namespaces(
    tags: Callable[[str], bool], *, exchanges_too: bool = True, only: frozenset[str] | None = None
) -> int:
    """Delete the queues and exchanges left on the broker under the namespaces of the sessions `tags`
    picks.

    Each quorum queue holds three file descriptors of the broker's ~930 (Debian's RabbitMQ, ulimit
    1024): a few hundred leftover queues exhaust them, and from then on every test that touches the
    broker hangs. `delete_namespace` knows only the topology's own names; subprocess tests, the
    history, the exports and the workspace declare more. Run between test modules, when none of this
    session's tests runs, or, limited to the namespaces `only`, beside them. Exchanges hold no file
    descriptors: `exchanges_too=False` leaves them for the session's end (each listing costs ~0.8 s, and
    there are a hundred modules)."""
    if shutil.which("rabbitmqctl") is None or not _port_open(5672):
        return 0
    queues = _listed("queues", tags, only)
    exchanges = _listed("exchanges", tags, only) if exchanges_too else []
    if not queues and not exchanges:
        return 0

    async def delete() -> None:
        conn = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": "test:sweep"})
        async with conn:
            channel = await conn.channel()
            for name in queues:
                try:
                    await channel.queue_delete(name)
                except aio_pika.exceptions.ChannelClosed:  # an exclusive queue of a live connection
                    channel = await conn.channel()
            for name in exchanges:
                await channel.exchange_delete(name)

    # Its own thread and loop: fixtures' teardown may run while pytest-asyncio's loop is current.
    failure: list[BaseException] = []
    worker = threading.Thread(target=lambda: _run_catching(delete, failure))
    worker.start()
    worker.join(120)
    if failure:
        raise failure[0]
    return len(queues)


def _run_catching(work: Any, failure: list[BaseException]) -> None:
    try:
        asyncio.run(work())
    except BaseException as exc:  # handed to the test thread
        failure.append(exc)


def pytest_sessionstart(session: pytest.Session) -> None:
    SESSIONS.mkdir(exist_ok=True)
    (SESSIONS / SESSION_TAG).write_text(str(os.getpid()))
    # What sessions that were killed left behind (never a running session's).
    sweep_test_namespaces(lambda tag: tag != SESSION_TAG and not _alive(tag))
    sweep_test_keys(lambda tag: tag != SESSION_TAG and not _alive(tag))


def sweep_test_keys(tags: Callable[[str], bool]) -> int:
    """Delete the Redis keys left under the namespaces of the sessions `tags` picks (a killed session, a
    test without the `redis_client` fixture): every test's clean-up scans the whole keyspace, so what is
    left makes every later session slower."""
    if not _port_open(6379):
        return 0
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = client.scan_iter(match="t*", count=1000)
        left = [k for k in keys if _left_by(k.decode(errors="replace"), tags)]
        for i in range(0, len(left), 1000):
            client.delete(*left[i : i + 1000])
        return len(left)
    finally:
        client.close()


def _left_by(name: str, tags: Callable[[str], bool], only: frozenset[str] | None = None) -> bool:
    """Whether a queue, exchange or key name lies in a test namespace of a session `tags` picks (and,
    with `only`, in one of those namespaces)."""
    m = TEST_NAMESPACE.match(name)
    return m is not None and tags(m.group(1)) and (only is None or m.group(0) in only)


def pytest_sessionfinish(session: pytest.Session) -> None:
    with contextlib.suppress(Exception):
        _previous_sweep()
    with contextlib.suppress(Exception):
        sweep_test_namespaces(lambda tag: tag == SESSION_TAG)
    with contextlib.suppress(OSError):
        (SESSIONS / SESSION_TAG).unlink()


class _Sweep(threading.Thread):
    """The sweep of the namespaces of the modules that have finished, beside the next module's tests:
    listing the queues costs ~0.5 s of rabbitmqctl per module, most of a minute in all if it waits."""

    def __init__(self, finished: frozenset[str]):
        super().__init__(name="test-namespace-sweep", daemon=True)
        self.finished = finished
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            sweep_test_namespaces(lambda tag: tag == SESSION_TAG, exchanges_too=False, only=self.finished)
        except BaseException as exc:
            self.failure = exc


_sweeps: list[_Sweep] = []


def _previous_sweep() -> None:
    """Wait for the sweep under way, if any; its failure is this teardown's (leftover queues exhaust the
    broker's file descriptors, and every later test would hang)."""
    if _sweeps:
        sweep = _sweeps.pop()
        sweep.join(180)
        if sweep.failure is not None:
            raise sweep.failure


_LOADED: dict[tuple[str, str], dict[str, Tenant]] = {}


def _loaded_once(rules_dir: Path) -> dict[str, Tenant]:
    """`router.service`'s rule loading for tests: a rules directory is parsed and compiled once a session
    (~45 ms each time, and nearly every test builds a runtime), keyed by its path and the digest of its
    files, so a test that writes or changes rules gets them loaded afresh. A new dict each time; the
    tenants in it are shared (nothing changes a loaded tenant)."""
    root = Path(rules_dir).resolve()
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    key = (str(root), digest.hexdigest())
    if key not in _LOADED:
        _LOADED[key] = load_tenants(root)
    return dict(_LOADED[key])


@pytest.fixture(scope="session", autouse=True)
def _rules_loaded_once() -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    patch.setattr(router_service, "load_tenants", _loaded_once)
    yield
    patch.undo()


@pytest.fixture(scope="module", autouse=True)
def _sweep_after_module() -> Any:
    yield
    _previous_sweep()
    sweep = _Sweep(frozenset(_HANDED_OUT))
    _sweeps.append(sweep)
    sweep.start()


@pytest.fixture(scope="session")
def servers() -> None:
    missing = [name for name, port in (("RabbitMQ", 5672), ("Redis", 6379)) if not _port_open(port)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not reachable on 127.0.0.1. "
            "Run the tests with scripts/test, which starts "
            "local servers, or start them: `rabbitmq-server -detached`, "
            "`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no`, "
            "or `docker compose up -d rabbitmq redis`.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """Three masters on free loopback ports, started once per session (tests/redis_cluster.py)."""
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield nodes.start()
    finally:
        nodes.stop()


@pytest.fixture(scope="session")
def tenants() -> dict[str, Tenant]:
    return load_tenants(RULES)


@pytest.fixture
def namespace() -> str:
    return new_namespace()


@pytest.fixture
def settings(namespace: str) -> Settings:
    return Settings(
        amqp_url=AMQP_URL,
        redis_url=REDIS_URL,
        rules_dir=RULES,
        namespace=namespace,
        api_keys="integrator:secret-key,ommen-kcc:ommen-key:ommen",  # type: ignore[arg-type]
        claim_lease_ms=3000,
    )


@pytest.fixture
async def redis_client(servers: None, namespace: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    async for key in client.scan_iter(match=f"{namespace}*", count=1000):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
async def amqp(
    servers: None, namespace: str, request: pytest.FixtureRequest
) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    conn = await aio_pika.connect(
        AMQP_URL, client_properties={"connection_name": f"test:{request.node.name}"}
    )
    yield conn
    await delete_namespace(conn, namespace)
    await conn.close()


@functools.cache
def _topology_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The queues and exchanges of the topology (without a namespace): the rules are loaded once a
    session for it, not once a test (~45 ms each time)."""
    from router.core.topology import CONTACTS, DEAD, ESCALATIONS, EVENTS, ROUTER_QUEUE, TEAMS, UNROUTABLE

    queues = [ROUTER_QUEUE, DEAD, UNROUTABLE]
    for t, tenant in load_tenants(RULES).items():
        queues += [f"team.{t}.{team}" for team in tenant.loaded.rules.team_ids()]
        queues.append(f"escalations.{t}")
    return tuple(queues), (CONTACTS, DEAD, UNROUTABLE, TEAMS, EVENTS, ESCALATIONS)


async def delete_namespace(conn: aio_pika.abc.AbstractConnection, namespace: str) -> None:
    """Delete every queue and exchange the test declared (names are known from the topology)."""
    queues, exchanges = _topology_names()
    channel = await conn.channel()
    try:
        # Without waiting for each answer: the broker takes a channel's commands in order, so the last
        # delete's answer comes after all of them. A refusal closes the channel: then one by one.
        for q in queues[:-1]:
            await channel.queue_delete(namespace + q, nowait=True)
        await channel.queue_delete(namespace + queues[-1])
    except Exception:
        channel = await conn.channel()
        for q in queues:
            try:
                await channel.queue_delete(namespace + q)
            except Exception:
                channel = await conn.channel()
    for x in exchanges:
        try:
            await channel.exchange_delete(namespace + x)
        except Exception:
            channel = await conn.channel()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 5, 13, 10, 0, tzinfo=AMS))


@pytest.fixture
async def h(
    settings: Settings, amqp: aio_pika.abc.AbstractConnection, redis_client: Any, clock: ManualClock
) -> AsyncIterator[Harness]:
    """The real backend alone: for tests of what only RabbitMQ and Redis have."""
    async with open_harness("real", settings, clock, amqp) as harness:
        yield harness


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> BackendChoice:
    """Which backend, with the real one's server fixtures (they clean the namespace afterwards). A sync
    fixture, so it can ask for those async fixtures only when the real backend is chosen: the embedded
    run needs no server at all."""
    if request.param == "real":
        request.getfixturevalue("redis_client")
        return BackendChoice("real", request.getfixturevalue("amqp"))
    if request.param == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        return BackendChoice("cluster", request.getfixturevalue("amqp"), cluster.url)
    return BackendChoice("embedded")


@pytest.fixture
async def backend(
    backend_kind: BackendChoice, settings: Settings, clock: ManualClock
) -> AsyncIterator[Harness]:
    """A running router + API (+ scheduler, ticked by the test) on each backend in turn."""
    kind, amqp, _ = backend_kind
    async with open_harness(kind, backend_kind.settings(settings), clock, amqp) as harness:
        yield harness
