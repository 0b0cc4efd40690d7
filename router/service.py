"""Wiring: builds the router, the API and their resources from the settings.

`serve` runs router and API in one process; `router` and `api` run them apart. When neither RabbitMQ
nor Redis is reachable and the embedded mode is allowed, everything runs in-process (and says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
from aiohttp import web
from redis.exceptions import RedisError

from adapters.kit.acks import MailNotifier, SmtpAckSender
from adapters.kit.context import AdapterContext, StatusLinks
from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.publisher import ContactPublisher
from adapters.kit.ratelimit import MemoryRateLimiter, RateLimiter
from adapters.kit.registry import list_adapters
from adapters.kit.settings import AdapterSettings
from adapters.kit.wiring import build_context, readiness_checks
from router import logs
from router.amqp import connect as amqp_connect
from router.amqp import declare as amqp_declare
from router.amqp.consumer import AmqpRouter
from router.amqp.live import LiveEvents
from router.amqp.outbound import AmqpOutbound
from router.amqp.probes import QueueProbe, router_queues
from router.amqp.publisher import AmqpContactPublisher
from router.amqp.scrub import QueuePersonalData
from router.core import routing, topology
from router.core.casework_service import Casework
from router.core.clock import Clock, SystemClock
from router.core.contact import Contact
from router.core.erasure import PeriodicPurge, Privacy
from router.core.metrics import Bounds, Probe
from router.core.pipeline import RoutingCore
from router.core.ports import Outbound, PersonalData, Store, StoreUnavailable
from router.core.retention import RetentionPolicy
from router.core.status import status_token, status_url
from router.core.tenants import Tenant
from router.core.tenants import load as load_tenants
from router.core.topology import Names
from router.embedded.broker import BANNER, MemoryBroker, MemoryContactPublisher, MemoryOutbound, MemoryRouter
from router.embedded.store import memory_redis
from router.history import open_store
from router.history.privacy import HistoryPersonalData
from router.http.app import ApiContext, create_app
from router.http.workspace import (
    LiveHub,
    WorkspaceConfig,
    dev_signin_refused,
    session_secret,
    setup_workspace,
)
from router.http.workspace.oidc import configured_tenants, oidc_routes
from router.metrics import CountingOutbound, MetricsRegistry, counting_publisher
from router.metrics.probes import ConsumerProbe, IgnoredMailProbe
from router.redis.casestore import RedisCaseStore
from router.redis.client import RedisClient, config_per_primary, redis_client
from router.redis.keys import DEVELOPMENT_SECRET, Keys
from router.redis.privacy import RedisPersonalData, RedisRunLock
from router.redis.probes import RedisProbe
from router.redis.ratelimit import RedisRateLimiter
from router.redis.scheduler import Scheduler
from router.redis.store import RedisStore
from router.settings import Settings, seed_address
from router.tcp import reachable_at

log = logs.get("router.service")


def teams_by_tenant(tenants: dict[str, Tenant]) -> dict[str, list[str]]:
    return {t: tenant.loaded.rules.team_ids() for t, tenant in tenants.items()}


async def declare_topology(settings: Settings, tenants: dict[str, Tenant]) -> None:
    connection = await amqp_connect.connect(
        settings.amqp_url, client_properties={"connection_name": "topology"}
    )
    async with connection:
        channel = await connection.channel()
        await amqp_declare.declare(
            channel, Names(settings.namespace), teams_by_tenant(tenants), settings.delivery_limit
        )


async def _until_reachable(what: str, attempt: Callable[[], Awaitable[None]], within: float) -> None:
    """Retry `attempt` with back-off for up to `within` seconds (compose starts everything at once),
    saying what is awaited; then give up with a message that says what to start."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.5
    while True:
        try:
            await attempt()
            return
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            # Reachable, but a queue exists with other arguments: waiting will not change that.
            raise RuntimeError(
                f"the broker refused the topology: {exc.args[0] if exc.args else exc}. A queue exists "
                "with other arguments than this version declares; DELIVERY_LIMIT became 20 (it was 5): "
                "set DELIVERY_LIMIT to the queue's value, or re-create the queue (CHANGELOG.md)"
            ) from exc
        except (OSError, aio_pika.exceptions.AMQPException, ConnectionError, RedisError) as exc:
            left = deadline - loop.time()
            if left <= 0:
                raise RuntimeError(
                    f"{what} not reachable at start-up after {within:g} s ({type(exc).__name__}); "
                    f"start it, or raise STARTUP_TIMEOUT"
                ) from exc
            log.warning("waiting_for_" + what.lower(), error=type(exc).__name__, retry_in=min(delay, left))
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)


async def _declare_when_reachable(settings: Settings, tenants: dict[str, Tenant]) -> None:
    """Declare the topology, waiting for the broker during start-up."""
    await _until_reachable("RabbitMQ", lambda: declare_topology(settings, tenants), settings.startup_timeout)


async def _redis_when_reachable(settings: Settings) -> RedisClient:
    """A Redis client once the server answers; a Redis that keeps nothing on disk is reported loudly."""
    client = redis_client(settings.redis_url)

    async def ping() -> None:
        await client.ping()

    try:
        await _until_reachable("Redis", ping, settings.startup_timeout)
    except RuntimeError:
        await client.aclose()
        raise
    await _report_durability(client)
    return client


async def _report_durability(client: RedisClient) -> None:
    """Warn when Redis keeps nothing on disk: on a cluster, when any primary keeps nothing (its slots'
    contacts go when it restarts), naming those primaries by host:port."""
    try:
        aof = await config_per_primary(client, "appendonly")
        save = await config_per_primary(client, "save")
    except RedisError:  # CONFIG is often disabled on managed Redis: nothing to report
        return
    bare = sorted(n for n, v in aof.items() if v in ("no", b"no") and save.get(n) in ("", b""))
    if not bare:
        return
    on_cluster = {"nodes": bare} if bare != [""] else {}  # a single server is named "" (not logged)
    log.warning(
        "redis_keeps_nothing_on_disk",
        message="Redis has neither AOF nor RDB snapshots: if it restarts, the state of every contact "
        "routed so far, its deadline timers and the team work lists are lost (RELIABILITY.md). "
        "Production runs Redis with appendonly yes.",
        **on_cluster,
    )


@dataclass
class Runtime:
    settings: Settings
    tenants: dict[str, Tenant]
    store: Store
    publisher: ContactPublisher
    clock: Clock
    embedded: bool
    outbound: Outbound
    casework: Casework
    router: AmqpRouter | MemoryRouter | None = None
    scheduler: Scheduler | None = None
    broker: MemoryBroker | None = None
    # Retention and erasure over Redis and the queues (not in the embedded mode), and its periodic run
    # in a router process.
    privacy: Privacy | None = None
    purge: PeriodicPurge | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # This process's Prometheus metrics (GET /metrics); `metrics.recorder` is what everything counts into.
    metrics: MetricsRegistry | None = None

    @property
    def names(self) -> Names:
        return Names(self.settings.namespace)

    def api_context(self) -> ApiContext:
        checks: dict[str, Callable[[], Awaitable[str | None]]] = {"store": self._store_check}
        if self.router is not None:
            checks["consumer"] = self._consumer_check
        if isinstance(self.publisher, AmqpContactPublisher):
            checks["broker"] = self._broker_check
        return ApiContext(
            tenants=self.tenants,
            store=self.store,
            publisher=self.entry_publisher(),
            clock=self.clock,
            credentials=self.settings.credentials(),
            readiness=checks,
            embedded=self.embedded,
            casework=self.casework,
            metrics=self.metrics.exposition if self.metrics is not None else None,
        )

    def entry_publisher(self) -> ContactPublisher:
        """The publisher of the entry points (the API, the channel adapters): counted as received."""
        if self.metrics is None:
            return self.publisher
        return counting_publisher(self.publisher, self.metrics.recorder)

    async def _store_check(self) -> str | None:
        try:
            await asyncio.wait_for(self.store.ping(), 2)
        except (TimeoutError, StoreUnavailable) as exc:
            return f"store unreachable: {type(exc).__name__}"
        return None

    async def _consumer_check(self) -> str | None:
        assert self.router is not None
        if self.router.ready:
            return None
        last = getattr(self.router, "last_error", None)
        return f"router consumer not attached ({last})" if last else "router consumer not attached"

    async def _broker_check(self) -> str | None:
        ok = await amqp_connect.reachable(self.settings.amqp_url)
        return None if ok else "broker unreachable"

    async def close(self) -> None:
        if self.router is not None:
            self.router.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.purge is not None:
            self.purge.stop()
        for task in self.tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
        await self.publisher.close()
        await self.outbound.close()
        if self.privacy is not None:
            await self.privacy.close()
        if self.metrics is not None:
            await self.metrics.close()
        await self.store.close()


async def build(
    settings: Settings,
    *,
    with_router: bool,
    with_scheduler: bool = False,
    embedded: str = "never",
    clock: Clock | None = None,
    tenants: dict[str, Tenant] | None = None,
    role: str | None = None,
) -> Runtime:
    """embedded: 'never' (wait up to STARTUP_TIMEOUT for each of RabbitMQ and Redis, then fail),
    'always', or 'auto': embedded only when neither server is reachable right now. Only the quick
    start (`serve --demo`) asks for 'auto'; a production process never pretends. `role` names the
    process in its metrics (default: from the parts it runs)."""
    tenants = tenants if tenants is not None else load_tenants(settings.rules_dir)
    clock = clock or SystemClock()
    names = Names(settings.namespace)
    metrics = metrics_for(tenants, names, role or role_of(with_router, with_scheduler))
    counted = metrics.recorder
    teams = teams_by_tenant(tenants)
    use_embedded = embedded == "always"
    if embedded == "auto":
        amqp_ok = await amqp_connect.reachable(settings.amqp_url)
        redis_ok = await reachable_at(*seed_address(settings.redis_url))
        use_embedded = not amqp_ok and not redis_ok
    keys = keys_for(settings, embedded=use_embedded)
    if use_embedded:
        log.warning("embedded_mode", message=BANNER)
        broker = MemoryBroker()
        fake = memory_redis()
        store: Store = RedisStore(fake, keys)
        outbound: Outbound = CountingOutbound(MemoryOutbound(broker), counted)
        casework = Casework(RedisCaseStore(fake, keys), names, tenants, clock, outbound)
        runtime = Runtime(
            settings,
            tenants,
            store,
            MemoryContactPublisher(broker, names),
            clock,
            True,
            outbound=outbound,
            casework=casework,
            broker=broker,
            metrics=metrics,
        )
        if with_router:
            runtime.router = MemoryRouter(
                broker, RoutingCore(tenants, store, names, clock, settings.claim_lease_ms, counted)
            )
        if with_scheduler:
            runtime.scheduler = Scheduler(fake, keys, names, casework, outbound, clock)
        watch(runtime, RedisProbe(fake, keys, teams, clock))
        return runtime

    client = await _redis_when_reachable(settings)
    try:
        await _declare_when_reachable(settings, tenants)
    except RuntimeError:
        await client.aclose()
        raise
    store = RedisStore(client, keys)
    publisher = AmqpContactPublisher(settings.amqp_url, names)
    outbound = CountingOutbound(AmqpOutbound(settings.amqp_url), counted)
    casework = Casework(RedisCaseStore(client, keys), names, tenants, clock, outbound)
    runtime = Runtime(
        settings,
        tenants,
        store,
        publisher,
        clock,
        False,
        outbound=outbound,
        casework=casework,
        metrics=metrics,
    )
    runtime.privacy = privacy_for(settings, tenants, client, keys, clock)
    if with_router:
        runtime.purge = PeriodicPurge(runtime.privacy, RedisRunLock(client, keys.purge_lock()))
    if with_scheduler:
        runtime.scheduler = Scheduler(client, keys, names, casework, outbound, clock)
    if with_router:
        core = RoutingCore(tenants, store, names, clock, settings.claim_lease_ms, counted)

        async def declare(channel: aio_pika.abc.AbstractChannel) -> None:
            await amqp_declare.declare(channel, names, teams_by_tenant(tenants), settings.delivery_limit)

        runtime.router = AmqpRouter(
            settings.amqp_url,
            names,
            core,
            declare,
            batch_size=settings.router_batch_size,
            prefetch=settings.router_prefetch,
            linger=settings.router_linger_ms / 1000,
            repair=store,
            lease_ms=settings.claim_lease_ms,
            confirms=settings.router_confirms,
        )
    watch(
        runtime,
        RedisProbe(client, keys, teams, clock),
        QueueProbe(settings.amqp_url, router_queues(names, teams)),
    )
    return runtime


def role_of(with_router: bool, with_scheduler: bool) -> str:
    """The process's role in its metrics, from the parts it runs (`serve` runs them all)."""
    if with_router:
        return "serve" if with_scheduler else "router"
    return "scheduler" if with_scheduler else "api"


def metrics_for(tenants: dict[str, Tenant], names: Names, role: str) -> MetricsRegistry:
    """A process's metrics, its label values bounded by the rules and the installed adapters' channels."""
    channels = [info.channel for info in list_adapters() if info.channel]
    return MetricsRegistry(Bounds.of(tenants, channels), names, role)


def watch(runtime: Runtime, *probes: Probe) -> None:
    """What the runtime's metrics read on each scrape: `probes`, and the router's consumer."""
    assert runtime.metrics is not None
    for probe in probes:
        runtime.metrics.add_probe(probe)
    if (router := runtime.router) is not None:
        runtime.metrics.add_probe(ConsumerProbe("router", lambda: router.ready))


def privacy_for(
    settings: Settings, tenants: dict[str, Tenant], client: RedisClient, keys: Keys, clock: Clock
) -> Privacy:
    """Retention and erasure over every store of this deployment that keeps residents' data, the state
    store first (once its timers and outbox are gone nothing publishes about a contact), then the queues.
    A store added later (a PostgreSQL history) joins by implementing `PersonalData` and being listed here."""
    teams = teams_by_tenant(tenants)
    policy = RetentionPolicy({t: tenant.loaded.rules.retention for t, tenant in tenants.items()})
    stores: list[PersonalData] = [
        RedisPersonalData(client, keys, teams),
        QueuePersonalData(settings.amqp_url, Names(settings.namespace), teams),
    ]
    if history_url := settings.history_url.get_secret_value():
        stores.append(HistoryPersonalData(history_url, tenants))
    return Privacy(stores, policy, clock)


def status_secret(settings: Settings) -> bytes:
    """The key the status links' tokens are derived with: KEY_SECRET (or the development secret), as the
    Redis key names use it; every process of a deployment derives the same tokens."""
    return settings.key_secret_bytes() or DEVELOPMENT_SECRET


def status_links(settings: Settings) -> StatusLinks:
    """The link to a contact's status page, for acknowledgements and the web form's answer."""
    base, secret = settings.status_base_url(), status_secret(settings)
    return lambda contact: status_url(base, contact.reference, status_token(secret, contact.cid))


def keys_for(settings: Settings, *, embedded: bool, warn: bool = True) -> Keys:
    """The Redis key names of this deployment, hashing with its KEY_SECRET."""
    secret = settings.key_secret_bytes()
    if secret is None:
        if warn and not embedded:
            # Key names then hash with a secret anyone can read in this source: no better than none.
            log.warning("key_secret_unset", setting="KEY_SECRET", using="the development secret")
        return Keys(settings.namespace)
    return Keys(settings.namespace, secret)


class StoreThreads:
    """The adapters' `ThreadLookup` on the state store: the router's own test (`Pipeline._joins`)."""

    def __init__(self, store: Store):
        self.store = store

    async def joins(self, contact: Contact) -> bool:
        references, message_ids = routing.thread_hints(contact)
        if not references and not message_ids:
            return False
        [found] = await self.store.find_threads([(contact.tenant, references, message_ids)])
        return found is not None and found["id"] != contact.cid


async def context_for_runtime(runtime: Runtime, settings: AdapterSettings | None = None) -> AdapterContext:
    """The adapters' context for this runtime: its publisher, a Redis rate limiter (in memory when
    embedded), and SMTP acknowledgements when a sender address is configured."""
    settings = settings or AdapterSettings()
    limiter: RateLimiter | None = None
    client: RedisClient | None = None
    if not runtime.embedded:
        client = redis_client(runtime.settings.redis_url)
        limiter = RedisRateLimiter(
            client,
            keys_for(runtime.settings, embedded=False, warn=False),
            settings.webform_rate_limit,
            settings.webform_rate_window_seconds,
        )
    ctx = build_context(
        publisher=runtime.entry_publisher(),
        tenants=runtime.tenants,
        clock=runtime.clock,
        settings=settings,
        rate_limiter=limiter,
        acks=SmtpAckSender(settings) if settings.ack_senders else None,
    )
    if client is not None:
        ctx.closers.append(client.aclose)
    ctx.threads = StoreThreads(runtime.store)
    ctx.status_links = status_links(runtime.settings)
    if not runtime.settings.public_url and not runtime.embedded:
        log.warning(
            "public_url_unset",
            setting="PUBLIC_URL",
            message="status links in acknowledgements point to this machine's own address",
            using=runtime.settings.status_base_url(),
        )
    if runtime.metrics is not None:
        runtime.metrics.add_probe(IgnoredMailProbe(ctx.adapters, runtime.metrics.bounds))
    if ctx.acks is not None:
        # Notices to residents (an extended term, a callback that could not reach them) go out the way
        # the acknowledgements do; without a sender the team gets them as work items.
        runtime.casework.notifier = MailNotifier(ctx)
    return ctx


async def start(runtime: Runtime) -> None:
    if runtime.router is not None:
        runtime.tasks.append(asyncio.create_task(runtime.router.run(), name="router"))
    if runtime.scheduler is not None:
        runtime.tasks.append(asyncio.create_task(runtime.scheduler.run(), name="scheduler"))
    if runtime.purge is not None:
        runtime.tasks.append(asyncio.create_task(runtime.purge.run(), name="purge"))


def dev_signin_of(settings: Settings, *, embedded: bool) -> bool:
    """WORKSPACE_DEV_SIGNIN, by default on in the embedded mode only."""
    return settings.workspace_dev_signin if settings.workspace_dev_signin is not None else embedded


def oidc_tenants_of(settings: Settings, tenants: Mapping[str, Tenant] | None = None) -> frozenset[str]:
    """The tenants with an OpenID provider (OIDC_<TENANT>_*). The variables write a tenant's '-' as
    '_': with `tenants` given, each is named by its own id (`den-haag`, not `den_haag`)."""
    configured = configured_tenants(settings)
    if tenants is None:
        return configured
    by_variable = {t.replace("-", "_"): t for t in tenants}
    return frozenset(by_variable.get(t, t) for t in configured)


def workspace_refusal(settings: Settings, *, embedded: bool) -> str | None:
    """Why the workspace must not start: see `dev_signin_refused`."""
    return dev_signin_refused(dev_signin_of(settings, embedded=embedded), oidc_tenants_of(settings))


async def workspace_for(runtime: Runtime) -> tuple[WorkspaceConfig, list[Callable[[], Awaitable[None]]]]:
    """The workspace's parts for this runtime: its session secret, the history store (audit, norm
    compliance) when HISTORY_URL is set, and the live feed of `events` (an exclusive queue on RabbitMQ,
    the embedded broker's record otherwise); with what to close when the API stops."""
    settings = runtime.settings
    closers: list[Callable[[], Awaitable[None]]] = []
    hub = LiveHub()
    history = None
    if url := settings.history_url.get_secret_value():
        history = await open_store(url, runtime.tenants)
        closers.append(history.close)
    if runtime.broker is not None:
        events = runtime.names(topology.EVENTS)
        runtime.broker.listeners.append(lambda p: hub.deliver(p.body) if p.exchange == events else None)
    else:
        feed = LiveEvents(settings.amqp_url, runtime.names, runtime.tenants, hub.deliver)
        await feed.start()
        closers.append(feed.close)
    limiter: RateLimiter
    if runtime.embedded:
        limiter = MemoryRateLimiter(settings.status_rate_limit, settings.status_rate_window_seconds)
    else:
        client = redis_client(settings.redis_url)
        closers.append(client.aclose)
        limiter = RedisRateLimiter(
            client,
            keys_for(settings, embedded=False, warn=False),
            settings.status_rate_limit,
            settings.status_rate_window_seconds,
        )
    config = WorkspaceConfig(
        secret=session_secret(settings.session_secret.get_secret_value(), embedded=runtime.embedded),
        status_secret=status_secret(settings),
        status_limiter=limiter,
        dev_signin=dev_signin_of(settings, embedded=runtime.embedded),
        oidc_tenants=oidc_tenants_of(settings, runtime.tenants),
        oidc_routes=oidc_routes(settings, runtime.tenants),
        history=history,
        live=hub,
    )
    return config, closers


async def run_http(runtime: Runtime, stop: asyncio.Event, adapters: AdapterContext | None = None) -> None:
    api_ctx = runtime.api_context()
    if adapters is not None:
        api_ctx.readiness.update(readiness_checks(adapters))
    app = create_app(api_ctx)
    if adapters is not None:
        # The channel routes share the API's app: phone notes use its API keys.
        app[ADAPTERS] = adapters
        add_routes(app)
    workspace, closers = await workspace_for(runtime)
    setup_workspace(app, workspace)
    runner = web.AppRunner(app, access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, runtime.settings.http_host, runtime.settings.http_port)
        await site.start()
        log.info("http_listening", host=runtime.settings.http_host, port=runtime.settings.http_port)
        await stop.wait()
    finally:
        await runner.cleanup()
        for close in closers:
            with contextlib.suppress(Exception):
                await close()


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
