"""The router's consumer on RabbitMQ: batches from `router.contacts` in AMQP transactions (or, on a
cluster, with publisher confirms: AmqpConfirms).

Deliberately not a robust (auto-reconnecting) channel: a channel restored by the client library would
come back without `tx.select`, and a consumer may silently not come back at all. This loop owns
reconnection instead: on any connection error it drops the batch (the broker requeues every unacked
delivery), reconnects with back-off, and re-attaches the consumer.

`ready` tells the truth: it is computed from the live connection, channel and consumer tag, not from a
flag set once at start-up. A consumer the broker cancels while the channel stays open (its queue was
deleted, a quorum-queue leader moved away) is the classic silent failure: nothing errors, nothing
arrives. A cancel notification ends the session at once, and a watchdog checks the same facts every
`watchdog_interval` seconds in case a notification never comes; either way the session is rebuilt
(topology declared again, consumer re-attached) without a restart of the process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import ChannelFrame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from router import logs, tracing
from router.amqp import connect as amqp_connect
from router.core import topology
from router.core.pipeline import BatchResult, RoutingCore
from router.core.ports import Delivery, Repair, StoreUnavailable
from router.core.topology import Names

log = logs.get("router.amqp")

# The router's heartbeat in the store: renewed every HEARTBEAT_INTERVAL seconds, gone after TTL. A router
# whose heartbeat expired is taken for gone and its claims are settled by others, so a router that has
# not renewed its own for HEARTBEAT_STALE seconds commits nothing more.
HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TTL_MS = 10_000
HEARTBEAT_STALE = 5.0
# Longest wait for one store call of a batch (stage, record): a call that hangs (seen in redis-py's cluster
# client while a master restarts) is taken for "store unavailable" and made again: both are idempotent.
STORE_CALL_TIMEOUT = 15.0
# On a cluster a consumer of a quorum queue that lost its majority stays attached and receives nothing,
# and the router's publishes go unconfirmed: `ready` is false once a probe waits for its confirm longer
# than this (AmqpRouter._probe).
PROBE_PATIENCE = 5.0
# The start of `last_error` while that is so: cleared by the probe that is confirmed again.
UNCONFIRMED = "the broker confirms nothing"

_CONNECTION_ERRORS = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    # A RuntimeError, not an AMQPError: publishing on a channel the broker (or the network) just closed.
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


class AmqpTx:
    """One AMQP transaction per batch, written to the connection in one piece.

    Publishes and acks are collected and marshalled into a single write right before `tx.commit`,
    instead of aio-pika's publish per message, which waits for its frame to be flushed (an event-loop
    round trip), sets a timer and takes the channel lock: together about a quarter of the router's CPU
    per contact. In a transaction nothing needs any of that: the broker takes the frames in order, the
    commit-ok confirms them all, and a lost connection rolls them all back."""

    def __init__(
        self,
        channel: aio_pika.abc.AbstractChannel,
        underlay: aiormq.abc.AbstractChannel,
        marker_queue: str,
        in_doubt: list[tuple[str, BatchResult]],
    ):
        self.channel = channel
        # The concrete aiormq channel under `channel`: the frames go to its connection's write queue.
        self.underlay = cast(aiormq.Channel, underlay)
        # Body bytes per frame: fixed for the connection (its negotiated frame_max).
        self._body_step = self.underlay.max_content_size
        self.marker_queue = marker_queue
        self.in_doubt = in_doubt
        self._frames: list[Any] = []
        self.spans: tracing.RouteSpans | None = None  # the batch's route spans while tracing is on

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str, headers: dict[str, Any]
    ) -> None:
        if self.spans is not None:
            headers = self.spans.headers_for(headers.get(topology.H_CONTACT_ID), headers, routing_key)
        self._add_publish(
            exchange,
            routing_key,
            body,
            aiormq.spec.Basic.Properties(
                content_type="application/json",
                delivery_mode=2,  # persistent
                message_id=message_id,
                headers=headers,
                # When it was published: `contact-router dlq list` shows the age of a dead letter from it.
                timestamp=datetime.now(UTC),
            ),
        )

    async def ack(self, delivery: Delivery) -> None:
        self._frames.append(aiormq.spec.Basic.Ack(delivery_tag=delivery.handle.delivery_tag))

    def _add_publish(
        self, exchange: str, routing_key: str, body: bytes, properties: aiormq.spec.Basic.Properties
    ) -> None:
        # Not mandatory: team queues are covered by the alternate exchange, and events may have no
        # subscriber.
        self._frames.append(aiormq.spec.Basic.Publish(exchange=exchange, routing_key=routing_key))
        self._frames.append(ContentHeader(properties=properties, body_size=len(body)))
        step = self._body_step
        self._frames.extend(ContentBody(body[i : i + step]) for i in range(0, len(body), step))

    async def commit(self, result: BatchResult) -> None:
        # A marker in the same transaction: after a connection loss during the commit, its presence in
        # the router's marker queue tells whether the commit happened (see AmqpRouter._resolve_in_doubt).
        batch_id = result.token
        persistent = aiormq.spec.Basic.Properties(delivery_mode=2)
        self._add_publish("", self.marker_queue, marker_body(result), persistent)
        frames, self._frames = self._frames, []
        # One write of the whole batch, queued before the commit's own frame, so the broker takes them
        # in order. The put waits only while aiormq's frame buffer is full; a connection that dies
        # meanwhile ends the batch through `lost` (AmqpRouter._settle).
        await self._write(frames)
        try:
            await self._commit()
        except BaseException:
            # Sent but not heard back: the broker may or may not have committed.
            self.in_doubt.append((batch_id, result))
            raise

    async def _commit(self) -> None:
        await self.channel.transaction().commit(timeout=30)

    def _open_underlay(self) -> aiormq.Channel:
        if self.underlay.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError("channel closed")
        return self.underlay

    async def _write(self, frames: list[Any]) -> None:
        underlay = self._open_underlay()
        await underlay.write_queue.put(ChannelFrame.marshall(channel_number=underlay.number, frames=frames))


class PublishNacked(aiormq.exceptions.AMQPError):
    """The broker refused a publish of the batch (a quorum queue without a leader it can reach)."""


class AmqpConfirms(AmqpTx):
    """A batch published with publisher confirms instead of a transaction: for a RabbitMQ cluster, where a
    transaction can be committed with some of its quorum-queue publishes silently dropped
    (rabbitmq/rabbitmq-server#8966, RELIABILITY.md), while a confirm is only sent for a publish a majority
    of the queue's nodes has written, and a refused one is nacked.

    There is no rollback: the team items and events are published and confirmed first, then the commit
    marker, and only once the marker is confirmed are the inputs acked. A marker in the queue therefore
    still means "all of the batch is there". A batch that fails before its marker is confirmed (a nack,
    a lost connection) may have left some of its items in their queues; its inputs come back and are
    routed again, so such an item can be in its queue twice, with the same message_id (the contact id).
    At least once per item, not exactly once: docs/architecture.md, "Commit modes"."""

    async def commit(self, result: BatchResult) -> None:
        # The acks wait until the batch is confirmed; the rest goes out now.
        frames, self._frames = self._frames, []
        acks = [f for f in frames if isinstance(f, aiormq.spec.Basic.Ack)]
        await self._send_confirmed([f for f in frames if not isinstance(f, aiormq.spec.Basic.Ack)])
        self._add_publish(
            "", self.marker_queue, marker_body(result), aiormq.spec.Basic.Properties(delivery_mode=2)
        )
        marker, self._frames = self._frames, []
        try:
            await self._send_confirmed(marker)
        except BaseException:
            # Sent but not confirmed: the marker may or may not be in its queue.
            self.in_doubt.append((result.token, result))
            raise
        # Committed: the acks need no answer. Lost with the connection, the inputs come back and are
        # found routed once the store has recorded the batch (AmqpRouter._record).
        if acks:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await self._write(acks)

    async def _send_confirmed(self, frames: list[Any]) -> None:
        underlay = self._open_underlay()  # before any confirm is waited for
        # Our frames bypass aiormq's publish, so its confirm bookkeeping is done here: one future per
        # delivery tag (one per publish, in order), which aiormq resolves from the broker's acks and
        # nacks (and fails when the channel closes).
        confirms = []
        for _ in range(sum(1 for f in frames if isinstance(f, aiormq.spec.Basic.Publish))):
            underlay.delivery_tag += 1
            confirm = underlay.create_future()
            underlay.confirmations[underlay.delivery_tag] = confirm
            confirms.append(confirm)
        if frames:
            await self._write(frames)
        await self._confirmed(confirms)

    async def _confirmed(self, confirms: list[asyncio.Future[Any]]) -> None:
        try:
            async with asyncio.timeout(30):
                await asyncio.gather(*confirms)
        except aiormq.exceptions.DeliveryError as exc:
            raise PublishNacked("the broker refused a publish of the batch") from exc


def marker_body(result: BatchResult) -> bytes:
    """A commit marker: the batch's token, then the ids of the contacts it claimed, a line each. With the
    ids, a repair can mark a committed batch's contacts routed even where the store lost its list of
    pending claims (a Redis Cluster master that restarted)."""
    return "\n".join([result.token, *(p.staged.cid for p in result.routed)]).encode()


def parse_marker(body: bytes) -> tuple[str, list[str]]:
    """(token, contact ids) of a commit marker; a marker of an older router holds the token only."""
    token, *cids = body.decode().split("\n")
    return token, cids


def marker_queue(names: Names, router_id: str) -> str:
    """The queue of a router's commit markers: one message per committed batch, its token."""
    return names(f"router.commits.{router_id}")


def default_connection_name(names: Names) -> str:
    """Unique per process and namespace, so an operator (or a test) can find and close exactly this one."""
    return f"contact-router {names.prefix or '-'} {socket.gethostname()}:{os.getpid()}"


@dataclass
class _Attachment:
    """The live facts behind `ready`: one connection, one channel, one consumer tag."""

    connection: aio_pika.abc.AbstractConnection
    channel: aio_pika.abc.AbstractChannel
    underlay: Any  # aiormq channel: its `consumers` loses the tag when the broker cancels the consumer
    tag: str
    # Since when the broker has not confirmed this session's latest probe; None while it has.
    unconfirmed_since: float | None = None
    probe_channel: aio_pika.abc.AbstractChannel | None = None

    def unconfirmed(self) -> str | None:
        if self.unconfirmed_since is not None and time.monotonic() - self.unconfirmed_since > PROBE_PATIENCE:
            return f"{UNCONFIRMED} for {PROBE_PATIENCE:g} s: its queues have no majority?"
        return None

    def problem(self) -> str | None:
        if self.connection.is_closed:
            return "connection closed"
        if self.channel.is_closed:
            return "channel closed"
        if self.tag not in self.underlay.consumers:
            return "consumer cancelled by the broker"
        return None


class AmqpRouter:
    def __init__(
        self,
        url: str,
        names: Names,
        core: RoutingCore,
        declare: Callable[[aio_pika.abc.AbstractChannel], Awaitable[None]],
        *,
        batch_size: int = 100,
        prefetch: int = 300,
        linger: float = 0.0,
        connection_name: str | None = None,
        watchdog_interval: float = 1.0,
        repair: Repair | None = None,
        lease_ms: int = 15_000,
        confirms: bool = False,
    ):
        self.url = url
        # Publisher confirms instead of transactions (AmqpConfirms): on a RabbitMQ cluster.
        self.confirms = confirms
        self.names = names
        self.core = core
        self.declare = declare
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.linger = linger
        self.connection_name = connection_name or default_connection_name(names)
        self.watchdog_interval = watchdog_interval
        self.last_error: str | None = None
        self.routed = 0
        # How often a consumer was attached: 1 after start, +1 for every re-attachment.
        self.attachments = 0
        self._stop = asyncio.Event()
        self._attached: _Attachment | None = None
        # Batches whose commit was sent but not confirmed before the connection went.
        self._in_doubt: list[tuple[str, BatchResult]] = []
        # Batches staged (claimed) that the broker did not commit: their claims are to be given up.
        self._to_release: list[BatchResult] = []
        # Tokens of batches whose staging was given up half-way (the connection went while the store was
        # down): which claims they took is not known, and no attempt of theirs was published, so the
        # repair releases whatever claim still holds one of them (AmqpRouter.reconcile).
        self._abandoned: set[str] = set()
        self.router_id = uuid.uuid4().hex[:12]
        self.marker_queue = marker_queue(names, self.router_id)
        self._batches = 0
        self.repair = repair
        self.lease_ms = lease_ms
        self._heartbeat_ok = 0.0  # monotonic time of the last heartbeat Redis took
        self._registered: str | None = None  # the id that the store knows this router by

    @property
    def consumer_attached(self) -> bool:
        return self.ready

    @property
    def ready(self) -> bool:
        """True only while the connection and channel are open, the broker still has our consumer and
        (on a cluster) confirms what it is sent."""
        attached = self._attached
        return attached is not None and attached.problem() is None and attached.unconfirmed() is None

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        upkeep = asyncio.create_task(self._upkeep(), name="router-upkeep")
        try:
            await self._run_sessions()
        finally:
            upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upkeep

    async def _run_sessions(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            attachments = self.attachments
            error: BaseException | None = None
            try:
                await self._session()
            except Exception as exc:
                error = exc
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if self._stop.is_set() or (task is not None and task.cancelling()):
                    raise
                error = exc  # not ours (a task of the session's, cancelled): never end the router on it
            finally:
                self._attached = None
            if self._stop.is_set():
                break
            if self.attachments != attachments:
                # The session got as far as consuming: this is a new outage, start the back-off afresh.
                backoff = 0.2
            if isinstance(error, _CONNECTION_ERRORS):
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("amqp_session_lost", error=type(error).__name__, retry_in=round(backoff, 2))
            elif error is not None:
                # Never let the consumer die quietly while the process lives on: log it, stay unready,
                # and rebuild the session. Unacked deliveries return to the queue when it closes.
                self.last_error = f"unexpected {type(error).__name__}"
                log.error(
                    "router_session_failed",
                    error=type(error).__name__,
                    retry_in=round(backoff, 2),
                    exc_info=error,
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)

    async def _session(self) -> None:
        connection = await amqp_connect.connect(
            self.url, client_properties={"connection_name": self.connection_name}
        )
        try:
            channel = await connection.channel(publisher_confirms=self.confirms)
            await self.declare(channel)
            await channel.set_qos(prefetch_count=self.prefetch)
            if not self.confirms:
                await channel.transaction().select(timeout=10)
            markers = await channel.declare_queue(
                self.marker_queue,
                durable=True,
                # Only the latest markers matter (at most two batches are ever unrecorded); the queue
                # disappears a day after its router is gone, long after others settled its claims. On a
                # cluster (confirms) a quorum queue, which outlives the node it was declared on.
                arguments={
                    "x-queue-type": "quorum" if self.confirms else "classic",
                    "x-max-length": 1000,
                    "x-expires": 86_400_000,
                },
            )
            await self._resolve_in_doubt(markers)
            await self._beat()
            await self._release_claims()
            queue = await channel.get_queue(self.names(topology.ROUTER_QUEUE), ensure=False)
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            lost = asyncio.Event()
            channel.close_callbacks.add(lambda *_: lost.set())
            connection.close_callbacks.add(lambda *_: lost.set())
            underlay: Any = await channel.get_underlay_channel()

            def cancelled(*_: Any) -> None:
                self.last_error = "consumer cancelled by the broker"
                log.warning("consumer_cancelled_by_broker", queue=self.names(topology.ROUTER_QUEUE))
                lost.set()

            underlay.on_consumer_cancel_callbacks.add(cancelled)
            tag = await queue.consume(inbox.put, no_ack=False)
            self._attached = _Attachment(connection, channel, underlay, tag)
            self.attachments += 1
            self.last_error = None
            log.info(
                "consumer_attached",
                queue=self.names(topology.ROUTER_QUEUE),
                attachments=self.attachments,
                connection_name=self.connection_name,
            )
            tx = (AmqpConfirms if self.confirms else AmqpTx)(
                channel, underlay, self.marker_queue, self._in_doubt
            )
            held: list[tuple[float, Delivery]] = []
            watchdog = asyncio.create_task(self._watchdog(self._attached, lost), name="router-watchdog")
            try:
                await self._loop(inbox, lost, tx, held)
            finally:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
                self._attached = None
                if not channel.is_closed and tag in underlay.consumers:
                    # Stop taking new work; whatever is still unacked goes back to the queue on close.
                    with contextlib.suppress(*_CONNECTION_ERRORS):
                        await queue.cancel(tag, timeout=5)
        finally:
            if self._stop.is_set() and not self._in_doubt and not connection.is_closed:
                # A clean stop: nothing left to resolve, so the marker queue can go now.
                with contextlib.suppress(Exception):
                    await self._release_claims()
                    cleanup = await connection.channel()
                    await cleanup.queue_delete(self.marker_queue)
                    if self.repair is not None and not self._to_release:
                        await self.repair.forget_router(self.router_id)
            with contextlib.suppress(Exception):
                await connection.close()

    async def _resolve_in_doubt(self, markers: aio_pika.abc.AbstractQueue) -> None:
        """After a reconnect: a batch whose marker arrived was committed, so the store must learn it
        (else the contacts stay 'routing' for good); one without was rolled back and its deliveries are
        back in the queue."""
        if not self._in_doubt:
            return
        committed: set[str] = set()
        last: AbstractIncomingMessage | None = None
        # Unacked until the store has learnt them: killed meanwhile, this router leaves the markers to
        # the repair of whoever takes its claims over (AmqpRouter.reconcile).
        while (msg := await markers.get(no_ack=False, fail=False)) is not None:
            committed.add(parse_marker(msg.body)[0])
            last = msg
        for batch_id, result in self._in_doubt:
            if batch_id not in committed:
                log.info("in_doubt_batch_rolled_back", batch=batch_id, size=len(result.routed))
                self._to_release.append(result)
                continue
            log.info("in_doubt_batch_committed", batch=batch_id, size=len(result.routed))
            await self._record(result)
        self._in_doubt.clear()
        if last is not None:
            await last.ack(multiple=True)

    # -- claims that no attempt will settle by itself -----------------------------------------------

    async def _upkeep(self) -> None:
        """Every couple of seconds: the heartbeat, the claims of batches the broker did not commit, and
        the repair of what routers that are gone left in doubt."""
        while not self._stop.is_set():
            await self._beat()
            try:
                await self._release_claims()
                attached = self._attached
                if attached is not None and self.repair is not None:
                    await self.reconcile(attached.connection)
            except (StoreUnavailable, *_CONNECTION_ERRORS) as exc:
                log.warning("reconcile_failed", error=type(exc).__name__)
            except Exception as exc:
                # The heartbeat must go on whatever happens here: a router whose heartbeat stops is taken
                # for gone while it still routes.
                log.error("reconcile_failed", error=type(exc).__name__, exc_info=exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), HEARTBEAT_INTERVAL)

    async def _beat(self) -> None:
        if self.repair is None:
            return
        try:
            if not await self.repair.heartbeat(self.router_id, HEARTBEAT_TTL_MS):
                self._renew_identity()
                await self.repair.heartbeat(self.router_id, HEARTBEAT_TTL_MS)
            self._heartbeat_ok = time.monotonic()
            if self._registered != self.router_id:
                # After the heartbeat: a router known and without one is taken for gone.
                await self.repair.register_router(self.router_id)
                self._registered = self.router_id
        except StoreUnavailable:
            pass  # stale after HEARTBEAT_STALE: this router then commits nothing
        except Exception as exc:
            log.error("heartbeat_failed", error=type(exc).__name__)

    def _renew_identity(self) -> None:
        """Our heartbeat expired (the store was away) and another router has begun to settle our claims
        from our marker queue, which it then deletes: this id is finished. Its batches in doubt are that
        router's to settle; ours go on under a new id, with a new marker queue from the next session on
        (AmqpRouter._emit commits nothing before)."""
        old = self.router_id
        self.router_id = uuid.uuid4().hex[:12]
        self.marker_queue = marker_queue(self.names, self.router_id)
        self._in_doubt.clear()
        log.warning("router_settled_as_gone", old_router=old, router=self.router_id)

    async def _release_claims(self) -> None:
        """Give up the claims of batches the broker did not commit, so that their redelivered inputs
        (and copies) take the contacts over; kept for later while the store is away."""
        if not self._to_release or self.repair is None:
            return
        batches = list(self._to_release)
        claims = [(p.staged.cid, r.token) for r in batches for p in r.routed]
        try:
            await self.repair.release(claims)
        except StoreUnavailable:
            return
        del self._to_release[: len(batches)]  # appended to at the end only
        if claims:
            log.info("claims_released", size=len(claims))

    async def reconcile(self, connection: aio_pika.abc.AbstractConnection) -> int:
        """Settle claims whose router is gone (killed between the broker's commit and telling the store,
        or before committing): its marker queue tells which of its batches the broker committed. Those
        contacts are marked routed, the claims of the others are given up for their redeliveries.
        Returns the number of contacts settled."""
        assert self.repair is not None
        by_router: dict[str, list[tuple[str, str]]] = {}
        abandoned: list[tuple[str, str]] = []
        for cid, token in await self.repair.lapsed_claims(self.lease_ms):
            router_id, dot, _ = token.rpartition(".")
            if token in self._abandoned:
                abandoned.append((cid, token))
            elif dot and router_id != self.router_id:
                by_router.setdefault(router_id, []).append((cid, token))
        if abandoned:
            # Our own, never published: their inputs are back in the queue and wait for these claims.
            await self.repair.release(abandoned)
            log.info("abandoned_claims_released", size=len(abandoned))
        # Routers with lapsed claims, and every router that ever beat: one whose claims the store no
        # longer lists (a master that restarted) is still settled from its markers.
        known = await self.repair.known_routers() - {self.router_id}
        candidates = sorted(set(by_router) | known)
        if not candidates:
            return 0
        alive = await self.repair.alive(candidates)
        settled = 0
        for router_id in candidates:
            if router_id in alive:
                continue  # slow, not gone: it settles its own claims
            committed = await self._committed_batches_of(connection, router_id)
            if committed is None:
                continue
            if router_id in known:
                await self.repair.unregister_router(router_id)
            claims = by_router.get(router_id, [])
            if not claims:
                continue
            done = [cid for cid, token in claims if token in committed]
            await self.repair.commit_claimed(done)
            await self.repair.release([(cid, token) for cid, token in claims if token not in committed])
            log.info(
                "in_doubt_repaired",
                router=router_id,
                routed=len(done),
                released=len(claims) - len(done),
                # Ids only: which attempts were settled, and which of them the broker had committed.
                batches=dict(collections.Counter(token for _, token in claims)),
                committed=sorted(committed),
            )
            settled += len(claims)
        return settled

    async def _committed_batches_of(
        self, connection: aio_pika.abc.AbstractConnection, router_id: str
    ) -> set[str] | None:
        """The batches a router that is gone committed, from its marker queue, recorded in the store
        before the markers are removed; None while another router is finding out."""
        assert self.repair is not None
        found = await self.repair.committed_batches(router_id)
        if found is not None:
            return found
        if not await self.repair.lock_resolution(router_id, 30_000):
            return None
        name = marker_queue(self.names, router_id)
        channel = await connection.channel()
        try:
            batches: set[str] = set()
            claims: list[tuple[str, str]] = []
            try:
                markers = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                # Deleted at a clean stop (nothing was in doubt), or expired a day after its router went.
                log.warning("marker_queue_missing", router=router_id)
            else:
                # Unacked until recorded: a router killed meanwhile leaves them for the next one.
                while (msg := await markers.get(no_ack=False, fail=False)) is not None:
                    token, cids = parse_marker(msg.body)
                    batches.add(token)
                    claims.extend((cid, token) for cid in cids)
            # Every contact of a committed batch, also those the store no longer lists as pending (up to
            # 1,000 markers of 100: in parts, so that no pipeline grows without bound).
            for i in range(0, len(claims), 2000):
                await self.repair.commit_claims(claims[i : i + 2000])
            await self.repair.record_committed_batches(router_id, batches)
            if not channel.is_closed:
                await channel.queue_delete(name)
            return batches
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _watchdog(self, attached: _Attachment, lost: asyncio.Event) -> None:
        """End the session when the facts behind `ready` fail, even if no callback said so; on a
        cluster, probe meanwhile whether the broker confirms anything."""
        probe: asyncio.Task[None] | None = None
        try:
            while not lost.is_set():
                await asyncio.sleep(self.watchdog_interval)
                if self.confirms and (probe is None or probe.done()):
                    probe = asyncio.create_task(self._probe(attached), name="router-probe")
                problem = attached.problem()
                if problem is not None:
                    self.last_error = problem
                    log.warning("watchdog_consumer_lost", problem=problem)
                    lost.set()
                elif (unconfirmed := attached.unconfirmed()) is not None and self.last_error != unconfirmed:
                    self.last_error = unconfirmed
                    log.warning("broker_confirms_nothing", waited=PROBE_PATIENCE)
        finally:
            if probe is not None:
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError, *_CONNECTION_ERRORS):
                    await probe
            if attached.probe_channel is not None:
                with contextlib.suppress(Exception):  # a broker without a majority may not answer
                    await asyncio.wait_for(attached.probe_channel.close(), 5)

    async def _probe(self, attached: _Attachment) -> None:
        """A confirmed publish to the router's own marker queue (a body no batch has: parse_marker reads
        it as a token no batch has). The broker confirms it only while that quorum queue has a
        majority, as routing needs of every queue it touches; without one the session is kept (the
        consumer delivers again once a majority is back) and only `ready` says no."""
        attached.unconfirmed_since = attached.unconfirmed_since or time.monotonic()
        try:
            if attached.probe_channel is None or attached.probe_channel.is_closed:
                attached.probe_channel = await attached.connection.channel(publisher_confirms=True)
            await attached.probe_channel.default_exchange.publish(
                aio_pika.Message(b"probe"), self.marker_queue
            )
        except _CONNECTION_ERRORS:
            return  # the session ends by itself
        attached.unconfirmed_since = None
        if self.last_error is not None and self.last_error.startswith(UNCONFIRMED):
            self.last_error = None
            log.info("broker_confirms_again")

    async def _loop(
        self,
        inbox: asyncio.Queue[AbstractIncomingMessage],
        lost: asyncio.Event,
        tx: AmqpTx,
        held: list[tuple[float, Delivery]],
    ) -> None:
        # Two batches in flight: while batch N's transaction commits on the broker (an fsync on quorum
        # queues) and the store learns it, batch N+1 is parsed, classified and claimed. Publishing
        # stays one transaction after the other: N+1 is published only once N's commit is confirmed.
        outgoing: _Outgoing | None = None
        staged: BatchResult | None = None  # claimed in the store, not yet on its way to the broker
        try:
            while not self._stop.is_set():
                if lost.is_set():
                    raise ConnectionError(self.last_error or "channel closed")
                if outgoing is not None and outgoing.task.done():
                    await outgoing.task  # its error, if any, ends the session
                    outgoing = None
                batch = await self._next_batch(inbox, lost, held)
                if not batch:
                    continue
                staged = await self._stage(batch, lost)
                if staged is None:
                    return
                held.extend((time.monotonic() + 0.25, d) for d in staged.busy)
                if outgoing is not None:
                    await self._settle(outgoing, lost)
                    outgoing = None
                if lost.is_set():
                    raise ConnectionError(self.last_error or "channel closed")
                outgoing, staged = _Outgoing(staged), None
                outgoing.task = asyncio.create_task(self._emit(outgoing, tx), name="router-commit")
        finally:
            if staged is not None:
                self._to_release.append(staged)  # never published: its claims are to be given up
            if outgoing is not None:
                # A batch under way ends committed (and recorded), in doubt (resolved by its marker
                # after the reconnect) or rolled back (its claims are given up).
                with contextlib.suppress(Exception):
                    await self._settle(outgoing, lost)
                in_doubt = any(r is outgoing.result for _, r in self._in_doubt)
                if not outgoing.committed and not in_doubt:
                    self._to_release.append(outgoing.result)

    async def _settle(self, outgoing: _Outgoing, lost: asyncio.Event) -> None:
        """Wait for a batch on its way out. A publish or commit on a connection that died can wait
        long (aiormq's frame buffer is full and nothing drains it): when the connection is lost first,
        give the batch up: unconfirmed, it is rolled back or in doubt (AmqpTx.commit records that). Once
        committed it is always waited for, since only the store's record of it is left to do."""
        if not outgoing.task.done() and not outgoing.committed:
            lost_waiter = asyncio.create_task(lost.wait())
            try:
                await asyncio.wait({outgoing.task, lost_waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost_waiter.cancel()
            if not outgoing.task.done() and not outgoing.committed:
                outgoing.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, *_CONNECTION_ERRORS):
                    await outgoing.task
                raise ConnectionError(self.last_error or "connection lost while committing")
        if outgoing.task.cancelled():
            # Given up above on an earlier call (the session's end settles the batch again): still the
            # connection's loss, never a cancellation of the router itself, which would end it silently.
            raise ConnectionError(self.last_error or "connection lost while committing")
        await outgoing.task

    async def _stage(self, batch: list[Delivery], lost: asyncio.Event) -> BatchResult | None:
        """The batch staged in the store, waiting for the store while it is down; None when the router
        stops meanwhile (nothing of the batch was published or acked: it all returns to the queue)."""
        token = f"{self.router_id}.{self._batches}"
        self._batches += 1
        while True:
            try:
                return await asyncio.wait_for(self.core.stage(batch, token), STORE_CALL_TIMEOUT)
            except (StoreUnavailable, TimeoutError) as exc:
                # Keep the deliveries (unacked, so not counted as redeliveries) and wait for the store.
                self.last_error = f"store unavailable: {exc}"
                log.warning("store_unavailable_batch_held", size=len(batch))
                await asyncio.sleep(0.5)
                if lost.is_set():
                    self._abandoned.add(token)
                    raise ConnectionError("channel closed while the store was down") from exc
                if self._stop.is_set():
                    self._abandoned.add(token)
                    log.info("stopping_with_store_down", requeued=len(batch))
                    return None
            except BaseException:
                # Anything else ends the session with the batch unpublished, and may leave this attempt's
                # claims on the keys it reached (a Redis Cluster node failing mid-pipeline, a client bug):
                # given up, so that reconcile releases them for the redelivered inputs.
                self._abandoned.add(token)
                raise

    async def _emit(self, outgoing: _Outgoing, tx: AmqpTx) -> None:
        result = outgoing.result
        if self.repair is not None and time.monotonic() - self._heartbeat_ok > HEARTBEAT_STALE:
            # Others take a router whose heartbeat has expired for gone and settle its claims: one that
            # cannot renew it must not commit any more (the batch is rolled back and redelivered).
            raise ConnectionError("heartbeat to the store is stale: not committing")
        if tx.marker_queue != self.marker_queue:
            raise ConnectionError("router id renewed: not committing before a new session")
        if tracing.enabled():
            await self._emit_traced(result, tx)
        else:
            await self.core.emit(result, tx)
        outgoing.committed = True
        await self._record(result)

    async def _emit_traced(self, result: BatchResult, tx: AmqpTx) -> None:
        spans = tx.spans = tracing.RouteSpans()
        for p in result.routed:
            spans.start(p.staged.cid, p.delivery.headers, tenant=p.staged.tenant, team=p.staged.team)
        try:
            await self.core.emit(result, tx)
        except BaseException as exc:
            spans.end(exc)
            raise
        finally:
            tx.spans = None
        spans.end()

    async def _record(self, result: BatchResult) -> None:
        """Tell the store that a batch the broker committed is routed, waiting for the store while it
        is down: the broker has the messages, and the store must learn it before the next batch goes
        out."""
        self.routed += len(result.routed)
        while True:
            try:
                await asyncio.wait_for(self.core.after_commit(result), STORE_CALL_TIMEOUT)
                return
            except (StoreUnavailable, TimeoutError):
                log.warning("store_unavailable_after_commit", batch=result.token, size=len(result.routed))
            except Exception as exc:
                # Anything else too (redis-py's cluster client raised AttributeError while a master
                # restarted): given up, the batch would stay unrecorded for good, since this router is
                # alive and no repair settles a live router's claims. The record is idempotent.
                log.error(
                    "record_failed_after_commit",
                    batch=result.token,
                    size=len(result.routed),
                    error=type(exc).__name__,
                    exc_info=exc,
                )
            await asyncio.sleep(0.5)

    async def _next_batch(
        self,
        inbox: asyncio.Queue[AbstractIncomingMessage],
        lost: asyncio.Event,
        held: list[tuple[float, Delivery]],
    ) -> list[Delivery]:
        batch: list[Delivery] = []
        now = time.monotonic()
        due = [d for t, d in held if t <= now]
        held[:] = [(t, d) for t, d in held if t > now]
        batch.extend(due)
        if not batch:
            try:
                first = await asyncio.wait_for(inbox.get(), timeout=0.2)
            except TimeoutError:
                return []
            batch.append(_delivery(first))
        deadline = time.monotonic() + self.linger
        while len(batch) < self.batch_size:
            try:
                batch.append(_delivery(inbox.get_nowait()))
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(_delivery(await asyncio.wait_for(inbox.get(), timeout=remaining)))
            except TimeoutError:
                break
        return batch


@dataclass
class _Outgoing:
    """A staged batch being published and committed, then recorded in the store, in a task of its own."""

    result: BatchResult
    committed: bool = False
    task: asyncio.Task[None] = field(init=False)


def _delivery(message: AbstractIncomingMessage) -> Delivery:
    return Delivery(
        body=message.body,
        message_id=message.message_id,
        routing_key=message.routing_key or "",
        headers=dict(message.headers or {}),
        redelivered=bool(message.redelivered),
        handle=message,
    )
