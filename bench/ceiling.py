"""The ceiling: a bare aio-pika pass-through on the router's own queues, run as its own process.

`python -m bench.ceiling --mode confirm|tx --namespace NS` consumes `router.contacts` with the router's
prefetch and forwards every message unchanged (body, headers, message id) to the `teams` exchange with
key `<tenant>.kcc`, so it lands in a quorum team queue like a routed contact. No Redis, no parsing.

- confirm: one channel with publisher confirms; every delivery is its own task (aiormq runs consumer
  callbacks concurrently), so confirms are in flight together and each input is acked after its own
  confirm (STYLE.md: awaiting confirms in turn caps at ~1,000/s).
- tx: what the router does instead of confirms: batches (same size and linger as the router) published
  and acked inside one AMQP transaction, then committed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from router import heap
from router.core import topology
from router.core.topology import Names


def _forward(msg: AbstractIncomingMessage) -> tuple[aio_pika.Message, str]:
    tenant = (msg.routing_key or "x").split(".", 1)[0]
    out = aio_pika.Message(
        msg.body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=msg.message_id,
        headers=dict(msg.headers or {}),
    )
    return out, f"{tenant}.kcc"


async def run_confirm(url: str, names: Names, prefetch: int, stop: asyncio.Event) -> None:
    conn = await aio_pika.connect(url, client_properties={"connection_name": "bench-ceiling-confirm"})
    async with conn:
        channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=prefetch)
        teams = await channel.get_exchange(names(topology.TEAMS), ensure=False)
        queue = await channel.get_queue(names(topology.ROUTER_QUEUE), ensure=False)

        async def on_message(msg: AbstractIncomingMessage) -> None:
            out, key = _forward(msg)
            await teams.publish(out, routing_key=key, mandatory=False, timeout=10)
            await msg.ack()

        await queue.consume(on_message, no_ack=False)
        await stop.wait()


async def run_tx(
    url: str, names: Names, prefetch: int, batch_size: int, linger: float, stop: asyncio.Event
) -> None:
    conn = await aio_pika.connect(url, client_properties={"connection_name": "bench-ceiling-tx"})
    async with conn:
        channel = await conn.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        await channel.transaction().select(timeout=10)
        teams = await channel.get_exchange(names(topology.TEAMS), ensure=False)
        queue = await channel.get_queue(names(topology.ROUTER_QUEUE), ensure=False)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        await queue.consume(inbox.put, no_ack=False)
        tx = channel.transaction()
        while not stop.is_set():
            try:
                first = await asyncio.wait_for(inbox.get(), timeout=0.2)
            except TimeoutError:
                continue
            batch = [first]
            deadline = time.monotonic() + linger
            while len(batch) < batch_size:
                try:
                    batch.append(inbox.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(inbox.get(), timeout=remaining))
                except TimeoutError:
                    break
            for msg in batch:
                out, key = _forward(msg)
                await teams.publish(out, routing_key=key, mandatory=False, timeout=10)
                await msg.ack()
            await tx.commit(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mode", choices=["confirm", "tx"], required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--prefetch", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--linger", type=float, default=0.0, help="a batch waits for more (s)")
    args = p.parse_args()

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        names = Names(args.namespace)
        heap.settle()  # as the router does (router/heap.py): the comparison is of the work, not the GC
        if args.mode == "confirm":
            await run_confirm(args.amqp_url, names, args.prefetch, stop)
        else:
            await run_tx(args.amqp_url, names, args.prefetch, args.batch_size, args.linger, stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run())


if __name__ == "__main__":
    main()
