"""Routing throughput, latency, memory and rule cost, against the broker's own ceiling, in one run.

`python -m bench` (or `contact-router bench`) runs, against the RabbitMQ and Redis of the settings
(AMQP_URL, REDIS_URL) and in a namespace of its own that it deletes afterwards:

1. throughput: N contacts pre-loaded into `router.contacts`, then a consumer process is started and
   the drain is timed by polling the team queues. Consumers: the ceiling (bench/ceiling.py: a bare
   aio-pika pass-through with confirms, and one with AMQP transactions) and the router itself
   (`contact-router router`, real rules, Redis, deadlines, timers). Rate = contacts between 10 % and
   90 % of the expected arrivals / time between those moments (start-up and tail excluded);
2. latency at fixed offered rates: a paced publisher stamps each contact, a consumer on the team
   queues takes the difference (one process, one monotonic clock);
3. memory: a router process fed a steady stream; VmRSS at 10,000 contacts and at the end;
4. rule cost: a tenant with 10 routes against one with 500 (generated, bench/workload.py);
5. one table with router/ceiling ratios; JSON in bench/results/ (timestamped and latest.json).

`--scale-out` (phase scale_out, not in the default run) drains the same number of contacts through 1
and then 2 router processes on the same queue, broker and Redis, and prints contacts/s, the routers'
CPU seconds per 1,000 contacts (summed over the processes), RabbitMQ's and Redis's CPU per contact
(beam.smp and redis-server from /proc), Redis memory per open item, and whether each contact arrived
exactly once (by id); the inputs of docs/capacity.md.

Contacts answered on the phone are closed at once and publish no team item: the drain counts the
contacts that do (the mix is known) and scales by the mix, see docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import redis.asyncio as aioredis

from bench.workload import ROOT, RULES, make_contacts, write_rules
from router.amqp import declare as amqp_declare
from router.core import topology
from router.core.contact import reference_for
from router.core.tenants import Tenant
from router.core.tenants import load as load_tenants
from router.core.topology import Names
from router.redis.keys import Keys
from router.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = ("ceiling_confirm", "ceiling_tx", "router")
PHASES = ("throughput", "latency", "memory", "rules")
ALL_PHASES = (*PHASES, "scale_out")  # scale_out only when asked for (--scale-out or --phases)
Contact = tuple[str, str, bytes]  # routing key, contact id, body


@dataclass(frozen=True)
class Params:
    mode: str = "default"
    throughput_n: int = 20_000
    repeats: int = 3
    rates: tuple[int, ...] = (100, 500, 1000)
    latency_seconds: float = 10.0
    latency_warmup: float = 1.0
    memory_n: int = 50_000
    memory_first: int = 10_000
    rules_n: int = 10_000
    rules_repeats: int = 2
    core_rounds: int = 5
    rule_counts: tuple[int, int] = (10, 500)
    # Scale-out: contacts per drain (~20 s or more at one router's rate), router processes per drain.
    scale_out_n: int = 60_000
    scale_out_routers: tuple[int, ...] = (1, 2)
    scale_out_repeats: int = 1
    batch_size: int = 100
    prefetch: int = 300
    linger_ms: float = 0.0
    phases: tuple[str, ...] = PHASES
    systems: tuple[str, ...] = SYSTEMS
    # How the router is started (followed by `router --embedded never`); e.g. another checkout's Python.
    router_cmd: tuple[str, ...] = (sys.executable, "-m", "router.cli")

    @classmethod
    def for_mode(cls, mode: str) -> Params:
        if mode == "quick":
            return cls(
                mode="quick", throughput_n=1000, repeats=1, latency_seconds=0.3, latency_warmup=0.05,
                memory_n=300, memory_first=100, rules_n=100, rules_repeats=1, core_rounds=2,
                scale_out_n=600,
            )  # fmt: skip
        if mode == "full":
            # Issue 21, item 4: the four goals and the 1-vs-2-router table from one run; RSS up to 1M.
            return cls(
                mode="full", throughput_n=50_000, memory_n=1_000_000, rules_n=20_000,
                phases=ALL_PHASES,
            )  # fmt: skip
        return cls()


# --------------------------------------------------------------------------------------------- helpers


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def spread(values: Sequence[float]) -> dict[str, Any]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"runs": list(values), "median": None, "min": None, "max": None}
    return {
        "runs": [round(v, 1) for v in values],
        "median": round(statistics.median(vals), 1),
        "min": round(min(vals), 1),
        "max": round(max(vals), 1),
    }


def crossing(samples: Sequence[tuple[float, int]], target: float) -> float | None:
    """Interpolated moment the polled count reached `target`."""
    prev_t, prev_n = samples[0]
    for t, n in samples:
        if n >= target:
            if n == prev_n:
                return t
            return prev_t + (t - prev_t) * (target - prev_n) / (n - prev_n)
        prev_t, prev_n = t, n
    return None


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def redis_key_kind(name: str) -> str:
    """The kind of a router key (router/redis/keys.py), without the namespace: what the memory is spent on."""
    if name.startswith("contact:"):
        rest = name.split("}", 1)[1]
        return "contact" if not rest else "contact_" + rest.lstrip(":").split(":", 1)[0]
    if name.startswith("team:"):
        return "team_" + name.rsplit(":", 1)[1]
    return name.split(":", 1)[0].strip("{}")


# Kept after a contact is closed, until the tenant's retention term (rules: closed_contacts) has passed:
# its own keys and the look-up keys naming it. The team lists, their heads and the timers are for open ones.
KEPT_AFTER_CLOSE = ("contact", "contact_history", "contact_callback", "ref", "thread", "resident")


def message_contact_id(msg: aio_pika.abc.AbstractIncomingMessage) -> str:
    raw = (msg.headers or {}).get(topology.H_CONTACT_ID)
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def find_pid(comm: str) -> int | None:
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if (d / "comm").read_text().strip() == comm:
                    return int(d.name)
    return None


def listener_pid(port: int) -> int | None:
    """The local process listening on TCP `port` (from /proc/net/tcp*, then the owner of that socket):
    the broker or Redis the bench talks to, when other RabbitMQ nodes or Redis servers run beside it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in inodes for fd in (d / "fd").iterdir()):
                    return int(d.name)
    return None


def server_pid(url: str, default_port: int, comm: str) -> int | None:
    """The pid of the server at `url` if it runs on this machine, else the first process named `comm`."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.split(",", 1)[0])
    if parts.hostname in ("127.0.0.1", "localhost", "::1"):
        pid = listener_pid(parts.port or default_port)
        if pid is not None:
            return pid
    return find_pid(comm)


def arrives(body: bytes) -> bool:
    """Whether the router publishes a team item for this contact (an answered phone note: no)."""
    return b'"phone.outcome":"answered"' not in body


# ----------------------------------------------------------------------------------------------- bench


@contextlib.contextmanager
def no_collector_pauses() -> Iterator[None]:
    """While latency is measured, the measuring process must not pause either: a full collection of its
    heap (the loads, the samples) stops its loop for tens of ms, and every contact in flight then looks
    that much slower, a router's more often than a ceiling's since more of its contacts are in flight.
    What exists is frozen and the collector is off until the load is through (seconds of garbage that
    reference counting does not free is a few MB)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


class Bench:
    def __init__(
        self,
        params: Params,
        settings: Settings,
        rules_dir: Path,
        log_dir: Path,
        echo: bool = True,
        profile: Path | None = None,
    ):
        self.p = params
        self.profile = profile
        self.settings = settings
        self.rules_dir = rules_dir
        self.log_dir = log_dir
        self.echo = echo
        self.ns = f"bench{uuid.uuid4().hex[:8]}."
        self.names = Names(self.ns)
        self.keys = Keys(self.ns)
        self.tenants: dict[str, Tenant] = load_tenants(rules_dir)
        self.team_queues = [
            self.names.team_queue(t, team) for t in sorted(self.tenants) for team in self._teams(t)
        ]
        self.conn: aio_pika.abc.AbstractConnection | None = None
        self.redis: aioredis.Redis | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self._poll: aio_pika.abc.AbstractChannel | None = None
        self.broker_pid = server_pid(settings.amqp_url, 5672, "beam.smp")
        self.redis_pid = server_pid(settings.redis_url, 6379, "redis-server")

    def say(self, text: str) -> None:
        if self.echo:
            print(text, file=sys.stderr, flush=True)

    def _teams(self, tenant: str) -> list[str]:
        return self.tenants[tenant].loaded.rules.team_ids()

    # ---------------------------------------------------------------- broker and store plumbing

    async def __aenter__(self) -> Bench:
        self.conn = await aio_pika.connect(
            self.settings.amqp_url, client_properties={"connection_name": f"bench:{self.ns}"}
        )
        self.redis = aioredis.Redis.from_url(self.settings.redis_url)
        channel = await self.conn.channel()
        await amqp_declare.declare(
            channel, self.names, {t: self._teams(t) for t in self.tenants}, self.settings.delivery_limit
        )
        await channel.close()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            self.stop(proc)
        assert self.conn is not None and self.redis is not None
        queues = [topology.ROUTER_QUEUE, topology.DEAD, topology.UNROUTABLE]
        queues += [f"escalations.{t}" for t in self.tenants]
        channel = await self.conn.channel()
        for q in [self.names(q) for q in queues] + self.team_queues:
            try:
                await channel.queue_delete(q)
            except Exception:
                channel = await self.conn.channel()
        for x in (topology.CONTACTS, topology.DEAD, topology.UNROUTABLE, topology.TEAMS, topology.EVENTS,
                  topology.ESCALATIONS):  # fmt: skip
            try:
                await channel.exchange_delete(self.names(x))
            except Exception:
                channel = await self.conn.channel()
        await self.conn.close()
        await self.wipe_redis()
        await self.redis.aclose()

    async def wipe_redis(self) -> None:
        """Delete every key of the namespace (no router may be running: as before its first start)."""
        assert self.redis is not None
        batch = []
        async for key in self.redis.scan_iter(match=f"{self.ns}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await self.redis.unlink(*batch)
                batch = []
        if batch:
            await self.redis.unlink(*batch)

    async def redis_memory(self) -> tuple[int, dict[str, int], int]:
        """used_memory of the whole server, MEMORY USAGE of the namespace's keys summed by kind of key
        (bytes), and the number of those keys: the first sees every client of a shared Redis, the others
        only this run. A shared sorted set or hash (team lists, timers) is counted whole (SAMPLES 0)."""
        assert self.redis is not None
        used = int((await self.redis.info("memory"))["used_memory"])
        keys: list[bytes] = [k async for k in self.redis.scan_iter(match=f"{self.ns}*", count=1000)]
        by_kind: dict[str, int] = {}
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            pipe = self.redis.pipeline(transaction=False)
            for key in chunk:
                pipe.memory_usage(key, samples=0)
            for key, size in zip(chunk, await pipe.execute(), strict=True):
                kind = redis_key_kind(key.decode()[len(self.ns) :])
                by_kind[kind] = by_kind.get(kind, 0) + (size or 0)
        return used, by_kind, len(keys)

    async def counts(self, queues: Iterable[str]) -> int:
        """Ready messages in `queues` (passive declares on one polling channel)."""
        assert self.conn is not None
        if self._poll is None or self._poll.is_closed:
            self._poll = await self.conn.channel()
        total = 0
        for q in queues:
            declared = await self._poll.declare_queue(q, passive=True)
            total += declared.declaration_result.message_count or 0
        return total

    async def consumers(self, queue: str) -> int:
        assert self.conn is not None
        channel = await self.conn.channel()
        declared = await channel.declare_queue(queue, passive=True)
        await channel.close()
        return declared.declaration_result.consumer_count or 0

    async def purge(self, queues: Iterable[str]) -> int:
        assert self.conn is not None
        channel = await self.conn.channel()
        total = 0
        for q in queues:
            queue = await channel.get_queue(q, ensure=False)
            res = await queue.purge()
            total += res.message_count or 0
        await channel.close()
        return total

    async def forget(self, contacts: Sequence[Contact], *, lists: bool = True) -> None:
        """Delete the Redis state of these contacts (and the team lists and timers): keeps the shared
        Redis small in long runs; the router never reads it back."""
        assert self.redis is not None
        keys: list[str] = []
        for _key, cid, body in contacts:
            tenant = body[11 : body.index(b'"', 11)].decode()  # bodies start with {"tenant":"…"
            keys += [self.keys.contact(cid), self.keys.history(cid), self.keys.callback(cid, 1)]
            keys.append(self.keys.reference(reference_for(tenant, cid)))
            start = body.find(b'"thread.message_id":"')
            if start >= 0:
                start += len(b'"thread.message_id":"')
                keys.append(self.keys.thread(tenant, body[start : body.index(b'"', start)].decode()))
        if lists:
            keys.append(self.keys.timers())
            keys += [self.keys.team_items(t, team) for t in self.tenants for team in self._teams(t)]
        for i in range(0, len(keys), 2000):
            await self.redis.unlink(*keys[i : i + 2000])

    async def publish(self, contacts: Sequence[Contact], window: int = 500) -> None:
        """Publish with confirms, `window` in flight at a time (as an adapter would, only faster)."""
        assert self.conn is not None
        channel = await self.conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(self.names(topology.CONTACTS), ensure=False)

        async def one(key: str, cid: str, body: bytes) -> None:
            await exchange.publish(self._message(cid, body), routing_key=key, timeout=30)

        for i in range(0, len(contacts), window):
            await asyncio.gather(*(one(*c) for c in contacts[i : i + window]))
        await channel.close()

    @staticmethod
    def _message(cid: str, body: bytes) -> aio_pika.Message:
        return aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(uuid.uuid4()),
            # x-contact-id: the router sets it on the team item, the ceiling copies it; the latency key.
            headers={topology.H_CONTACT_ID: cid, "x-bench-sent-ns": time.monotonic_ns()},
        )

    # ------------------------------------------------------------------------------ processes

    def start(self, system: str, rules_dir: Path | None = None) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "AMQP_URL": self.settings.amqp_url,
            "REDIS_URL": self.settings.redis_url,
            "NAMESPACE": self.ns,
            "RULES_DIR": str(rules_dir or self.rules_dir),
            "ROUTER_BATCH_SIZE": str(self.p.batch_size),
            "ROUTER_PREFETCH": str(self.p.prefetch),
            "ROUTER_LINGER_MS": str(self.p.linger_ms),
        }
        if system == "router":
            cmd = [*self.p.router_cmd, "router", "--embedded", "never"]
        else:
            mode = system.removeprefix("ceiling_")
            cmd = [sys.executable, "-m", "bench.ceiling", "--mode", mode, "--namespace", self.ns,
                   "--amqp-url", self.settings.amqp_url, "--prefetch", str(self.p.prefetch),
                   "--batch-size", str(self.p.batch_size),
                   "--linger", str(self.p.linger_ms / 1000)]  # fmt: skip
        log = (self.log_dir / f"{system}.log").open("ab")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        log.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    async def wait_ready(self, *procs: subprocess.Popen[bytes], within: float = 60) -> None:
        """Until each of `procs` (one consumer each) has attached its consumer to router.contacts."""
        end = time.monotonic() + within
        while await self.consumers(self.names(topology.ROUTER_QUEUE)) < len(procs):
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}; see {self.log_dir}")
            if time.monotonic() > end:
                raise RuntimeError(f"{procs[0].args!r} ×{len(procs)}: no consumers within {within} s")
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------------------ measurements

    async def drain(
        self, system: str, contacts: Sequence[Contact], rules_dir: Path | None = None, processes: int = 1
    ) -> tuple[list[subprocess.Popen[bytes]], dict[str, Any]]:
        """Pre-load `contacts`, start `processes` of `system` on the same queue and time the drain. Returns
        the still running processes; CPU per contact is summed over them."""
        await self.purge(self.team_queues)
        broker_before = self._cpu(self.broker_pid)
        await self.publish(contacts)
        # The broker's CPU for taking the contacts in (publish with confirms into the quorum queue).
        broker_ingress = self._cpu(self.broker_pid) - broker_before
        assert await self.counts([self.names(topology.ROUTER_QUEUE)]) == len(contacts)
        expected = len(contacts) if system != "router" else sum(arrives(b) for _k, _c, b in contacts)
        launched = (time.monotonic(), 0, 0.0, self._cpu(self.broker_pid), self._cpu(self.redis_pid),
                    *host_jiffies())  # fmt: skip
        procs = [self.start(system, rules_dir) for _ in range(processes)]
        proc = procs[0]
        await self.wait_ready(*procs)  # start-up is not drain time (and the 10-90 % window excludes it too)
        spy = None
        if self.profile is not None and system == "router":
            # Collapsed stacks of the router process during its first drain (py-spy must be installed).
            self.profile.parent.mkdir(parents=True, exist_ok=True)
            exe = Path(sys.executable).with_name("py-spy")
            cmd = [str(exe) if exe.exists() else "py-spy", "record", "-p", str(proc.pid), "-f", "raw"]
            cmd += ["-r", "200", "-o", str(self.profile)]
            spy = subprocess.Popen(  # noqa: ASYNC220 - starts at once, no waiting
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self.profile = None
        t_start = time.monotonic()
        samples: list[tuple[float, int]] = []
        # t, arrived, the processes, broker, redis; busy and all clock ticks of the host
        cpu: list[tuple[float, int, float, float, float, int, int]] = []
        deadline = t_start + 120 + len(contacts) / 100
        while True:
            n = await self.counts(self.team_queues)
            t = time.monotonic()
            samples.append((t, n))
            mine = sum(cpu_seconds(p.pid) for p in procs)
            cpu.append((t, n, mine, self._cpu(self.broker_pid), self._cpu(self.redis_pid), *host_jiffies()))
            if n >= expected:
                break
            if any(p.poll() is not None for p in procs) or t > deadline:
                for p in procs:
                    self.stop(p)
                raise RuntimeError(f"{system}: {n} of {expected} arrived; see {self.log_dir}")
            await asyncio.sleep(0.05)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        t10, t90 = crossing(samples, 0.1 * expected), crossing(samples, 0.9 * expected)
        assert t10 is not None and t90 is not None
        # CPU over the same window, from the samples around it.
        c0 = max((c for c in cpu if c[0] <= t10), key=lambda c: c[0], default=cpu[0])
        c1 = min((c for c in cpu if c[0] >= t90), key=lambda c: c[0], default=cpu[-1])
        if t90 > t10 and c1[1] > c0[1]:
            rate, basis = 0.8 * len(contacts) / (t90 - t10), "10-90 %"
        else:
            # The drain was over before the polls could see it (a small --quick drain on a fast
            # consumer, which may start before its consumer shows): rate and CPU from the launch of
            # the process, start-up included, are a lower and an upper bound.
            c0, c1 = launched, cpu[-1]
            rate, basis = len(contacts) / (c1[0] - c0[0]), "from launch"
        wall = c1[0] - c0[0] or float("nan")
        window = (c1[1] - c0[1]) * len(contacts) / expected or float("nan")  # contacts in the CPU window
        ticks = c1[6] - c0[6]
        # What arrived in the end (more than expected: a contact routed twice) and what is left unrouted.
        await asyncio.sleep(0.5)
        dead = await self.counts([self.names(topology.DEAD), self.names(topology.UNROUTABLE)])
        arrived = await self.counts(self.team_queues)
        left = await self.counts([self.names(topology.ROUTER_QUEUE)])
        result = {
            "contacts": len(contacts),
            "arrivals": expected,
            "arrived": arrived,
            "left_in_input": left,
            "rate": rate,
            "rate_basis": basis,
            "first_arrival_s": round((crossing(samples, 1) or t_start) - t_start, 2),
            "drain_s": round(samples[-1][0] - t_start, 2),
            # Share of one core while draining (10-90 %), and the consumer's CPU per contact: less noisy
            # than the rate when other work shares the machine.
            "cpu_pct": {
                "process": round(100 * (c1[2] - c0[2]) / wall, 1),
                "rabbitmq": round(100 * (c1[3] - c0[3]) / wall, 1),
                "redis": round(100 * (c1[4] - c0[4]) / wall, 1),
                # The whole machine, all cores (100 % = every core busy): what else ran meanwhile.
                "host_all_cores": round(100 * (c1[5] - c0[5]) / ticks, 1) if ticks else float("nan"),
            },
            "processes": processes,
            "cpu_us_per_contact": round(1e6 * (c1[2] - c0[2]) / window, 1),
            # What the broker and Redis spent per contact in the same window (routing: deliver, ack,
            # the router's publishes and commits; Redis: the router's claims, index and commits), and
            # the broker per contact taken in while the bench pre-loaded them.
            "rabbitmq_us_per_contact": round(1e6 * (c1[3] - c0[3]) / window, 1),
            "redis_us_per_contact": round(1e6 * (c1[4] - c0[4]) / window, 1),
            "rabbitmq_ingress_us_per_contact": round(1e6 * broker_ingress / len(contacts), 1),
            "dead_or_unroutable": dead,
            "rss_kb": rss_kb(proc.pid),
        }
        return procs, result

    @staticmethod
    def _cpu(pid: int | None) -> float:
        return cpu_seconds(pid) if pid else float("nan")

    async def latency(self, system: str, loads: Mapping[int, Sequence[Contact]]) -> dict[str, dict[str, Any]]:
        """Offer each load at its rate (contacts/s) to a running consumer, one after the other; latency
        from the publish call to the delivery from a team queue, one monotonic clock."""
        assert self.conn is not None
        sent: dict[str, int] = {}
        got: list[tuple[int, int]] = []  # (sent ns, latency ns)
        want = [0]
        done = asyncio.Event()
        seen: set[str] = set()
        twice = [0]  # deliveries of a contact that had arrived already

        async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            now = time.monotonic_ns()
            cid = message_contact_id(msg)
            if cid in seen:
                twice[0] += 1
                return
            seen.add(cid)
            t0 = sent.pop(cid, None)
            if t0 is not None:
                got.append((t0, now - t0))
                if len(got) >= want[0]:
                    done.set()

        await self.purge(self.team_queues)  # what a drain left behind
        sub = await self.conn.channel()
        await sub.set_qos(prefetch_count=1000)
        tags = []
        for q in self.team_queues:
            queue = await sub.get_queue(q, ensure=False)
            tags.append((queue, await queue.consume(on_message, no_ack=True)))
        pub = await self.conn.channel(publisher_confirms=True)
        exchange = await pub.get_exchange(self.names(topology.CONTACTS), ensure=False)
        out: dict[str, dict[str, Any]] = {}
        for rate, contacts in loads.items():
            sent.clear()
            got.clear()
            done.clear()
            twice[0] = 0
            want[0] = len(contacts) if system != "router" else sum(arrives(b) for _k, _c, b in contacts)
            pending: set[asyncio.Task[Any]] = set()
            with no_collector_pauses():
                t_begin = time.monotonic()
                i = 0
                while i < len(contacts):
                    due = min(len(contacts), int((time.monotonic() - t_begin) * rate) + 1)
                    while i < due:
                        key, cid, body = contacts[i]
                        sent[cid] = time.monotonic_ns()
                        task = asyncio.create_task(
                            exchange.publish(self._message(cid, body), routing_key=key, timeout=30)
                        )
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                        i += 1
                    await asyncio.sleep(0.001)
                offered = len(contacts) / (time.monotonic() - t_begin)
                if pending:
                    await asyncio.gather(*pending)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 30 + len(contacts) / max(rate, 1))
            out[str(rate)] = {**self._latency_figures(list(got), want[0], offered), "twice": twice[0]}
            self.say(f"  latency {system:<16} @{rate}/s: {out[str(rate)]}")
        for queue, tag in tags:
            await queue.cancel(tag)
        await sub.close()
        await pub.close()
        return out

    def _latency_figures(self, got: list[tuple[int, int]], expected: int, offered: float) -> dict[str, Any]:
        warm = int(self.p.latency_warmup * 1e9)
        first = min((s for s, _ in got), default=0)
        lat = sorted(ns / 1e6 for s, ns in got if s - first >= warm)
        # Kept up: everything arrived, and the last contact came out soon after the last went in (a
        # consumer slower than the offered rate ends the run with a backlog of seconds).
        last_in = max((s for s, _ in got), default=first)
        lag_s = (max(s + ns for s, ns in got) - last_in) / 1e9 if got else float("inf")
        run_s = (last_in - first) / 1e9
        return {
            "offered_per_s": round(offered, 1),
            "samples": len(lat),
            "arrived": len(got),
            "expected": expected,
            "kept_up": len(got) >= expected and lag_s < max(0.5, 0.05 * run_s),
            "lag_at_end_s": round(lag_s, 3),
            "p50_ms": round(percentile(lat, 50), 2),
            "p95_ms": round(percentile(lat, 95), 2),
            "p99_ms": round(percentile(lat, 99), 2),
            "max_ms": round(lat[-1], 2) if lat else None,
        }

    async def memory(self, proc: subprocess.Popen[bytes] | None = None) -> dict[str, Any]:
        """A router fed a steady stream (backlog <= 2 chunks), RSS at checkpoints. Team queues are purged
        and Redis state deleted as it goes, so that the shared servers stay small."""
        total, first = self.p.memory_n, self.p.memory_first
        steps = (25_000, 50_000, 100_000, 150_000, 250_000, 500_000)
        checkpoints = sorted({first, *(c for c in steps if first < c < total), total})
        chunk = min(5_000, max(100, first // 2))
        if proc is None:
            proc = self.start("router")
            await self.wait_ready(proc)
        purged = sent = expected_cum = next_cp = 0
        expected_at: dict[int, int] = {}
        # Published chunks not yet forgotten: (contacts, expected arrivals up to and including the chunk).
        chunks: list[tuple[list[Contact], int]] = []
        points: list[dict[str, Any]] = []
        t0 = time.monotonic()
        while next_cp < len(checkpoints):
            arrived = purged + await self.counts(self.team_queues)
            if sent < total and expected_cum - arrived < 2 * chunk:
                batch = make_contacts(min(chunk, total - sent), seed=sent, run=f"m{sent}{self.ns}")
                await self.publish(batch)
                for _key, _cid, body in batch:
                    sent += 1
                    expected_cum += arrives(body)
                    if sent in checkpoints:
                        expected_at[sent] = expected_cum
                chunks.append((batch, expected_cum))
                continue
            cp = checkpoints[next_cp]
            if cp in expected_at and arrived >= expected_at[cp]:
                points.append(
                    {"contacts": cp, "rss_kb": rss_kb(proc.pid), "seconds": round(time.monotonic() - t0, 1)}
                )
                self.say(f"  memory: {cp:,} contacts, RSS {points[-1]['rss_kb'] / 1024:.1f} MB")
                next_cp += 1
            if arrived - purged > 20_000:
                purged += await self.purge(self.team_queues)
            # A chunk is surely done once the next one has arrived too: forget it.
            while len(chunks) >= 2 and arrived >= chunks[1][1]:
                await self.forget(chunks.pop(0)[0])
            if proc.poll() is not None:
                raise RuntimeError(f"router exited with {proc.returncode}; see {self.log_dir}")
            await asyncio.sleep(0.05)
        wall = time.monotonic() - t0
        self.stop(proc)
        await self.purge(self.team_queues)
        for batch, _ in chunks:
            await self.forget(batch)
        base, last = points[0]["rss_kb"], points[-1]["rss_kb"]
        return {
            "checkpoints": points,
            "rss_first_kb": base,
            "rss_last_kb": last,
            "first_contacts": points[0]["contacts"],
            "last_contacts": points[-1]["contacts"],
            "growth_pct": round(100 * (last - base) / base, 1),
            "stream_rate": round(total / wall, 1),
        }

    async def take_arrivals(self) -> list[str]:
        """Consume every message waiting in the team queues (they are gone afterwards): their contact ids."""
        assert self.conn is not None
        total = await self.counts(self.team_queues)
        ids: list[str] = []
        done = asyncio.Event()
        if total == 0:
            done.set()

        async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            ids.append(message_contact_id(msg))
            if len(ids) >= total:
                done.set()

        channel = await self.conn.channel()
        for q in self.team_queues:
            await (await channel.get_queue(q, ensure=False)).consume(on_message, no_ack=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 60 + total / 1000)
        await channel.close()
        return ids

    async def scale_out(self) -> dict[str, Any]:
        """The same number of contacts through 1, then 2 (…) router processes on the same queue; Redis wiped
        of the namespace before each drain, so that its memory afterwards is this drain's open items."""
        rows: list[dict[str, Any]] = []
        counts = self.p.scale_out_routers
        for rep in range(self.p.scale_out_repeats):
            # Every other repeat in reverse order, so that a drift in the machine's load favours no one.
            for k in counts[:: 1 if rep % 2 == 0 else -1]:
                await self.purge(self.team_queues)
                await self.wipe_redis()
                used0, kinds0, _ = await self.redis_memory()
                load0 = os.getloadavg()[0]
                contacts = make_contacts(self.p.scale_out_n, seed=300 + rep, run=f"s{rep}x{k}{self.ns}")
                procs, res = await self.drain("router", contacts, processes=k)
                for proc in procs:
                    self.stop(proc)  # a quiet Redis for the memory figures; the routers' CPU was counted
                used1, kinds1, n_keys = await self.redis_memory()
                kinds = {k: kinds1.get(k, 0) - kinds0.get(k, 0) for k in sorted(set(kinds0) | set(kinds1))}
                kept = sum(v for k, v in kinds.items() if k in KEPT_AFTER_CLOSE)
                ids = await self.take_arrivals()
                want = {cid for _k, cid, body in contacts if arrives(body)}
                got = set(ids)
                row = {
                    "routers": k,
                    "repeat": rep + 1,
                    "contacts": len(contacts),
                    "rate": round(res["rate"], 1),
                    "router_cpu_s_per_1000": round(res["cpu_us_per_contact"] / 1000, 3),
                    "rabbitmq_us_per_contact": res["rabbitmq_us_per_contact"],
                    "rabbitmq_ingress_us_per_contact": res["rabbitmq_ingress_us_per_contact"],
                    "redis_us_per_contact": res["redis_us_per_contact"],
                    "cpu_pct": res["cpu_pct"],
                    # Open items: contacts with a team item (an answered phone note is closed at once).
                    "open_items": len(want),
                    "redis_used_memory_delta": used1 - used0,
                    "redis_bytes_per_open_item": round((used1 - used0) / max(1, len(want))),
                    "redis_key_bytes_per_open_item": round(sum(kinds.values()) / max(1, len(want))),
                    # Of those, what stays after the contact is closed (per contact routed).
                    "redis_kept_bytes_per_contact": round(kept / len(contacts)),
                    "redis_key_bytes_by_kind": kinds,
                    "redis_keys_per_contact": round(n_keys / len(contacts), 2),
                    # Exactly once, by id: every expected team item there, none twice, none unexpected.
                    "team_items": len(ids),
                    "routed_twice": len(ids) - len(got),
                    "missing": len(want - got),
                    "unexpected": len(got - want),
                    "left_in_input": res["left_in_input"],
                    "dead_or_unroutable": res["dead_or_unroutable"],
                    "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
                    "drain": res,
                }
                row["exactly_once"] = (
                    row["routed_twice"] == row["missing"] == row["unexpected"] == row["left_in_input"] == 0
                    and row["dead_or_unroutable"] == 0
                )
                rows.append(row)
                self.say(
                    f"  scale-out {k} router(s): {row['rate']:,.0f}/s, router CPU "
                    f"{row['router_cpu_s_per_1000']:.3f} s/1,000, broker "
                    f"{row['rabbitmq_us_per_contact']:.0f} µs/contact, Redis "
                    f"{row['redis_bytes_per_open_item']:,} B/open item, "
                    f"exactly once: {row['exactly_once']}"
                )
                await self.forget(contacts)
        await self.wipe_redis()
        by = {k: [r for r in rows if r["routers"] == k] for k in counts}
        figures = ("rate", "router_cpu_s_per_1000", "rabbitmq_us_per_contact",
                   "rabbitmq_ingress_us_per_contact", "redis_us_per_contact",
                   "redis_bytes_per_open_item", "redis_key_bytes_per_open_item",
                   "redis_kept_bytes_per_contact")  # fmt: skip
        summary: dict[str, Any] = {
            str(k): {key: statistics.median(r[key] for r in rs) for key in figures} for k, rs in by.items()
        }
        if len(counts) > 1:
            first, last = str(counts[0]), str(counts[-1])
            summary["speedup"] = round(summary[last]["rate"] / summary[first]["rate"], 2)
        return {"runs": rows, "median": summary, "exactly_once": all(r["exactly_once"] for r in rows)}

    def core_cost(
        self, tenants: dict[int, Tenant], contacts: Sequence[Contact], rounds: int = 5
    ) -> dict[int, float]:
        """Microseconds of parse + prepare (classify, deadlines, state, messages) per contact, in this
        process, per rule set; the rule sets take turns and the fastest round counts."""
        from router.core.clock import SystemClock
        from router.core.pipeline import RoutingCore
        from router.core.ports import Delivery

        deliveries = [Delivery(b, str(uuid.uuid4()), k, {}, False) for k, _c, b in contacts]
        best = {n: float("inf") for n in tenants}
        for _ in range(rounds):
            for n, tenant in tenants.items():
                core = RoutingCore({tenant.id: tenant}, None, self.names, SystemClock(), 15_000)  # type: ignore[arg-type]
                t0 = time.perf_counter()
                for d in deliveries:
                    parsed = core.parse(d)
                    assert isinstance(parsed, tuple)
                    core.prepare(d, *parsed)
                best[n] = min(best[n], time.perf_counter() - t0)
        return {n: round(1e6 * t / len(deliveries), 1) for n, t in best.items()}


# ----------------------------------------------------------------------------------------------- run


async def run(
    params: Params, settings: Settings, rules_dir: Path, echo: bool = True, profile: Path | None = None
) -> dict[str, Any]:
    started = datetime.now(UTC)
    log_dir = Path(tempfile.mkdtemp(prefix="contact-router-bench-"))
    out: dict[str, Any] = {
        "version": 1,
        "started_at": started.isoformat(timespec="seconds"),
        "params": asdict(params),
        "host": host_info(),
        "logs": str(log_dir),
    }
    phases, systems = set(params.phases), params.systems
    quick_memory = params.mode == "quick" and "memory" in phases
    warm: subprocess.Popen[bytes] | None = None
    async with Bench(params, settings, rules_dir, log_dir, echo, profile) as b:
        out["namespace"] = b.ns
        out["host"]["server_pids"] = {"rabbitmq": b.broker_pid, "redis": b.redis_pid}
        # 1. throughput: ceiling and router interleaved, so that the ratio of each repeat is fair.
        rates: dict[str, list[float]] = {s: [] for s in systems}
        details: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
        latency_runs: dict[str, dict[str, list[dict[str, Any]]]] = {str(r): {} for r in params.rates}
        drains = params.repeats if "throughput" in phases else 1 if "latency" in phases else 0
        for rep in range(drains):
            # Every other repeat in reverse order, so that a drift in the machine's load favours no one.
            for system in systems[:: 1 if rep % 2 == 0 else -1]:
                contacts = make_contacts(params.throughput_n, seed=rep, run=f"t{rep}{system}{b.ns}")
                [proc], res = await b.drain(system, contacts)
                rates[system].append(res["rate"])
                details[system].append(res)
                b.say(
                    f"  throughput {system:<16} run {rep + 1}: {res['rate']:6.0f}/s, "
                    f"{res['cpu_us_per_contact']:5.0f} µs CPU/contact, CPU % {res['cpu_pct']}"
                )
                if "latency" in phases:
                    # 2. latency, on the same (warm) process, after every drain: one run's p99 moves
                    # with whatever else the two cores do at that moment.
                    loads = {
                        rate: make_contacts(
                            max(10, int(rate * params.latency_seconds)),
                            seed=100 + rate,
                            run=f"l{rate}{system}{rep}{b.ns}",
                        )
                        for rate in params.rates
                    }
                    for rate_s, figures in (await b.latency(system, loads)).items():
                        latency_runs[rate_s].setdefault(system, []).append(figures)
                    if system == "router":
                        for load in loads.values():
                            await b.forget(load)
                if system == "router":
                    await b.forget(contacts)
                    if quick_memory and warm is None:
                        warm = proc  # --quick: the memory phase goes on with this process (one start less)
                        continue
                b.stop(proc)
        out["throughput"] = {s: {**spread(rates[s]), "details": details[s]} for s in systems if rates[s]}
        for ceiling in ("ceiling_confirm", "ceiling_tx"):
            if rates.get("router") and rates.get(ceiling):
                out["throughput"][f"ratio_router_{ceiling}_pct"] = spread(
                    [100 * r / c for r, c in zip(rates["router"], rates[ceiling], strict=True)]
                )
        if "latency" in phases:
            out["latency"] = {
                rate_s: {system: median_latency(runs) for system, runs in by.items()}
                for rate_s, by in latency_runs.items()
            }
        await b.purge(b.team_queues)

        # 3. memory
        if "memory" in phases:
            b.say(f"memory: a router fed {params.memory_n:,} contacts")
            out["memory"] = await b.memory(warm)

        # 4. rule cost: same contacts (tenant ommen), same decisions; only the number of routes differs.
        if "rules" in phases:
            lo, hi = params.rule_counts
            b.say(f"rule cost: {lo} against {hi} routes")
            tmp = Path(tempfile.mkdtemp(prefix="contact-router-bench-rules-"))
            dirs = {n: write_rules(tmp / f"routes{n}", n) for n in params.rule_counts}
            rule_rates: dict[int, list[float]] = {n: [] for n in params.rule_counts}
            for rep in range(params.rules_repeats):
                # Alternate which goes first: a machine that gets busier or quieter favours neither.
                for n, d in list(dirs.items())[:: 1 if rep % 2 == 0 else -1]:
                    contacts = make_contacts(
                        params.rules_n, seed=50 + rep, tenants=("ommen",), run=f"r{rep}{n}{b.ns}"
                    )
                    [proc], res = await b.drain("router", contacts, d)
                    b.stop(proc)
                    await b.forget(contacts)
                    rule_rates[n].append(res["rate"])
                    b.say(f"  rules {n:>4} routes run {rep + 1}: {res['rate']:8.0f} contacts/s")
            sample = make_contacts(min(2_000, params.rules_n), seed=99, tenants=("ommen",))
            tenants = {n: load_tenants(d)["ommen"] for n, d in dirs.items()}
            core_us = b.core_cost(tenants, sample, params.core_rounds)
            out["rules"] = {
                str(n): {**spread(rule_rates[n]), "core_us_per_contact": core_us[n]} for n in dirs
            }
            out["rules"]["ratio_pct"] = spread(
                [100 * h / low for h, low in zip(rule_rates[hi], rule_rates[lo], strict=True)]
            )

        # 5. scale-out: 1 and 2 router processes, same broker and Redis (docs/capacity.md).
        if "scale_out" in phases:
            counts = ", ".join(map(str, params.scale_out_routers))
            b.say(f"scale-out: {params.scale_out_n:,} contacts per drain through {counts} router(s)")
            out["scale_out"] = await b.scale_out()
    out["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    out["goals"] = goals(out)
    return out


def goals(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's goals, from what this run measured (absent when the run skipped the phase)."""
    g: dict[str, dict[str, Any]] = {}
    ratio = r.get("throughput", {}).get("ratio_router_ceiling_confirm_pct")
    if ratio and ratio["median"] is not None:
        g["throughput_ratio_pct"] = {
            "value": ratio["median"],
            "target": ">= 70",
            "met": ratio["median"] >= 70,
        }
    at500 = r.get("latency", {}).get("500", {})
    # Against ceiling_tx: the pass-through that does on the broker what the router does (issue 21).
    if at500.get("router") and at500.get("ceiling_tx"):
        value = round(at500["router"]["p99_ms"] / at500["ceiling_tx"]["p99_ms"], 2)
        g["p99_ratio_at_500"] = {
            "value": value, "target": "<= 2.0", "met": value <= 2.0, "of": "ceiling_tx",
            "of_medians_over_runs": len(at500["router"].get("runs", [])),
            "per_run": p99_ratios(at500, "ceiling_tx"),
        }  # fmt: skip
    if "memory" in r:
        m = r["memory"]
        g["rss_growth_pct"] = {
            "value": m["growth_pct"], "target": "<= 10", "met": m["growth_pct"] <= 10,
            "between_contacts": [m["first_contacts"], m["last_contacts"]],
        }  # fmt: skip
    if "rules" in r:
        value = r["rules"]["ratio_pct"]["median"]
        g["rules_ratio_pct"] = {"value": value, "target": ">= 80", "met": value >= 80}
    return g


def host_info() -> dict[str, Any]:
    import aio_pika as ap
    import redis as rp

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aio_pika": getattr(ap, "__version__", "?"),
        "redis_py": rp.__version__,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    return info


# --------------------------------------------------------------------------------------------- output


def scale_out_table(r: dict[str, Any]) -> str:
    p, s = r["params"], r["scale_out"]
    head = ("routers", "contacts/s", "router CPU s/1,000", "broker µs/contact", "broker in µs",
            "Redis µs/contact", "Redis B/open item", "host CPU %", "exactly once")  # fmt: skip
    widths = (8, 11, 19, 18, 13, 17, 18, 11, 13)

    def line(cells: Sequence[str]) -> str:
        return "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))

    lines = [
        f"contact-router bench --scale-out: {p['scale_out_n']:,} contacts per drain through "
        f"{', '.join(map(str, p['scale_out_routers']))} router process(es), {p['scale_out_repeats']} "
        f"round(s); {r['host']['cpus']} CPUs; {r['started_at']}",
        "",
        line(head),
    ]
    for row in s["runs"]:
        lines.append(
            line(
                [
                    str(row["routers"]),
                    f"{row['rate']:,.0f}",
                    f"{row['router_cpu_s_per_1000']:.3f}",
                    f"{row['rabbitmq_us_per_contact']:,.0f}",
                    f"{row['rabbitmq_ingress_us_per_contact']:,.0f}",
                    f"{row['redis_us_per_contact']:,.0f}",
                    f"{row['redis_bytes_per_open_item']:,}",
                    f"{row['cpu_pct']['host_all_cores']:.0f}",
                    "yes" if row["exactly_once"] else "NO",
                ]
            )
        )
    lines.append("")
    for k, m in ((k, v) for k, v in s["median"].items() if k != "speedup"):
        lines.append(
            f"{k} router(s), Redis by MEMORY USAGE of the run's keys: "
            f"{m['redis_key_bytes_per_open_item']:,.0f} B per open item, of which kept after close "
            f"{m['redis_kept_bytes_per_contact']:,.0f} B per contact"
        )
    if "speedup" in s["median"]:
        lines.append(f"contacts/s, last over first router count (medians): {s['median']['speedup']:.2f}×")
    lines += [
        "",
        "CPU: /proc over the 10-90 % window of each drain; router CPU summed over the processes; broker =",
        "beam.smp while routing, 'in' while the bench published the contacts; Redis B/open item: used_memory",
        "after the drain minus before (namespace wiped first) / contacts left open; host CPU % of all cores.",
    ]
    if p["mode"] == "quick":
        lines += ["--quick: too few contacts for these figures to mean anything (run without it)."]
    return "\n".join(lines)


def table(r: dict[str, Any]) -> str:
    p, g = r["params"], r["goals"]
    if tuple(p["phases"]) == ("scale_out",):
        return scale_out_table(r)
    t = r.get("throughput", {})
    systems = [s for s in SYSTEMS if s in t]
    w, first = 24, 34

    def ok(name: str) -> str:
        return ("met" if g[name]["met"] else "NOT met") if name in g else "-"

    def row(label: str, cells: Sequence[str], note: str = "") -> str:
        return f"{label:<{first}}" + "".join(f"{c:>{w}}" for c in cells) + (f"  {note}" if note else "")

    def rate(s: dict[str, Any]) -> str:
        return f"{s['median']:,.0f} ({s['min']:,.0f}–{s['max']:,.0f})" if s["median"] is not None else "-"

    lines = [
        f"contact-router bench ({p['mode']}): {p['throughput_n']:,} contacts per drain, "
        f"{p['repeats']} run(s) each; {r['host']['cpus']} CPUs; {r['started_at']}; {r['seconds']:.0f} s",
        "",
        row("", [s.replace("_", " ") for s in systems], "router / ceiling (goal)"),
    ]
    if t:
        note = ""
        x = t.get("ratio_router_ceiling_confirm_pct")
        if x and x["median"] is not None:
            note = (
                f"{x['median']:.0f} % ({x['min']:.0f}–{x['max']:.0f}) (≥ 70 %: {ok('throughput_ratio_pct')})"
            )
        if "ratio_router_ceiling_tx_pct" in t:
            note += f"; of ceiling tx {t['ratio_router_ceiling_tx_pct']['median']:.0f} %"
        lines.append(row("throughput /s median (min–max)", [rate(t[s]) for s in systems], note))
        lines.append(row("  consumer CPU µs per contact", [f"{_median_cpu(t[s]):,.0f}" for s in systems]))
    for rate_s, by in r.get("latency", {}).items():
        cells = [_percentiles(by[s]) if s in by else "-" for s in systems]
        note = ""
        if by.get("router") and (ceiling := _latency_ceiling(by)):
            note = f"p99 {by['router']['p99_ms'] / by[ceiling]['p99_ms']:.2f}× of {ceiling.replace('_', ' ')}"
            if len(per_run := p99_ratios(by, ceiling)) > 1:
                note += f" (runs {min(per_run):.1f}–{max(per_run):.1f})"
            if rate_s == "500" and ceiling == "ceiling_tx":
                note += f" (≤ 2×: {ok('p99_ratio_at_500')})"
        lines.append(row(f"latency @{rate_s}/s ms p50/p95/p99", cells, note))
    blank = [""] * (len(systems) - 1)
    if "memory" in r:
        m = r["memory"]
        lines.append(
            row(
                f"router RSS MB @{m['first_contacts']:,} → {m['last_contacts']:,}",
                [*blank, f"{m['rss_first_kb'] / 1024:.1f} → {m['rss_last_kb'] / 1024:.1f}"],
                f"{m['growth_pct']:+.1f} % (≤ 10 %: {ok('rss_growth_pct')})",
            )
        )
    if "rules" in r:
        rules, (lo, hi) = r["rules"], p["rule_counts"]
        x = rules["ratio_pct"]
        lines.append(
            row(
                f"router /s, {lo} → {hi} routes",
                [*blank, f"{rules[str(lo)]['median']:,.0f} → {rules[str(hi)]['median']:,.0f}"],
                f"{x['median']:.0f} % ({x['min']:.0f}–{x['max']:.0f}) (≥ 80 %: {ok('rules_ratio_pct')})",
            )
        )
        lines.append(
            row(
                "  parse+prepare µs per contact",
                [*blank, " → ".join(f"{rules[str(n)]['core_us_per_contact']:.0f}" for n in (lo, hi))],
            )
        )
    if p["mode"] == "quick":
        lines += ["", "--quick: too few contacts for these figures to mean anything (run without it)."]
    lines += [
        "",
        "ceiling: bare aio-pika pass-through (consume → publish → ack) on the same quorum queues, with",
        "confirms or with AMQP transactions; ! = fell behind the offered rate; ranges: min–max of the runs.",
    ]
    if "scale_out" in r:
        lines += ["", scale_out_table(r)]
    return "\n".join(lines)


def _latency_ceiling(by: dict[str, Any]) -> str | None:
    """The ceiling a router's latency is held against: ceiling_tx (the goal's), else ceiling_confirm."""
    return next((c for c in ("ceiling_tx", "ceiling_confirm") if by.get(c)), None)


def p99_ratios(by: dict[str, Any], ceiling: str) -> list[float]:
    """Router p99 over the ceiling's p99 of each run (each pair measured after the same repeat)."""
    pairs = zip(by["router"].get("runs", []), by[ceiling].get("runs", []), strict=False)
    return [round(r["p99_ms"] / c["p99_ms"], 2) for r, c in pairs]


def median_latency(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Latency figures of several runs at one rate: the median of each percentile, kept up only if
    every run kept up; the runs themselves under "runs"."""
    merged: dict[str, Any] = {
        key: round(statistics.median(r[key] for r in runs), 2) for key in ("p50_ms", "p95_ms", "p99_ms")
    }
    merged["kept_up"] = all(r["kept_up"] for r in runs)
    merged["runs"] = list(runs)
    return merged


def _percentiles(x: dict[str, Any]) -> str:
    return f"{x['p50_ms']:.1f}/{x['p95_ms']:.1f}/{x['p99_ms']:.1f}{'' if x['kept_up'] else '!'}"


def _median_cpu(s: dict[str, Any]) -> float:
    values = [d["cpu_us_per_contact"] for d in s["details"] if not math.isnan(d["cpu_us_per_contact"])]
    return statistics.median(values) if values else float("nan")


def _finite(value: Any) -> Any:
    """NaN (a figure that could not be measured) as null: the file stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write(r: dict[str, Any], results_dir: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = r["started_at"].replace(":", "-").replace("+00-00", "Z")
    suffix = "-scale-out" if tuple(r["params"]["phases"]) == ("scale_out",) else ""
    path = results_dir / f"{stamp}-{r['params']['mode']}{suffix}.json"
    text = json.dumps(_finite(r), indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n"
    path.write_text(text, encoding="utf-8")
    (results_dir / "latest.json").write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ cli


def add_arguments(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few hundred contacts: does it run (seconds)")
    mode.add_argument(
        "--full", action="store_true", help="memory up to 1,000,000 contacts, 50,000 per drain, scale-out"
    )
    p.add_argument(
        "--scale-out",
        action="store_true",
        help="only the scale-out phase: the same contacts through 1, then 2 routers (docs/capacity.md)",
    )
    p.add_argument("--n", type=int, help="contacts per throughput drain (with --scale-out: per drain of it)")
    p.add_argument("--repeats", type=int, help="throughput runs per system (with --scale-out: rounds)")
    p.add_argument("--routers", help="router processes per scale-out drain, comma-separated (default 1,2)")
    p.add_argument("--memory-n", type=int, help="contacts fed to the memory run")
    p.add_argument("--rates", help="offered rates for latency, comma-separated (default 100,500,1000)")
    p.add_argument("--latency-seconds", type=float, help="seconds of load per offered rate")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON goes (bench/results)")
    p.add_argument(
        "--profile", type=Path, help="py-spy the router's first drain into this file (collapsed stacks)"
    )
    p.add_argument(
        "--phases", help=f"comma-separated subset of {','.join(ALL_PHASES)} (default: all but scale_out)"
    )
    p.add_argument("--systems", help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all)")
    p.add_argument(
        "--router-cmd",
        help="command that starts the router, without its arguments (default: this Python -m router.cli)",
    )


def params_from(args: argparse.Namespace) -> Params:
    p = Params.for_mode("quick" if args.quick else "full" if args.full else "default")
    changes: dict[str, Any] = {}
    if args.scale_out:
        if args.phases:
            raise SystemExit("--scale-out runs the scale-out phase only: give it or --phases, not both")
        changes["phases"] = ("scale_out",)
        changes["systems"] = ("router",)
    if args.n:
        changes["scale_out_n" if args.scale_out else "throughput_n"] = args.n
    if args.repeats:
        changes["scale_out_repeats" if args.scale_out else "repeats"] = args.repeats
    if args.routers:
        routers = tuple(int(x) for x in args.routers.split(","))
        if not routers or min(routers) < 1:
            raise SystemExit("--routers: one or more counts of at least 1, e.g. 1,2")
        changes["scale_out_routers"] = routers
    if args.memory_n:
        changes["memory_n"] = args.memory_n
    if args.rates:
        changes["rates"] = tuple(int(x) for x in args.rates.split(","))
    if args.latency_seconds:
        changes["latency_seconds"] = args.latency_seconds
    if args.router_cmd:
        changes["router_cmd"] = tuple(shlex.split(args.router_cmd))
    for name, allowed in (("phases", ALL_PHASES), ("systems", SYSTEMS)):
        if getattr(args, name):
            chosen = tuple(x.strip() for x in getattr(args, name).split(","))
            if unknown := set(chosen) - set(allowed):
                raise SystemExit(f"--{name}: unknown {', '.join(sorted(unknown))}")
            changes[name] = tuple(x for x in allowed if x in chosen)
    settings = Settings()
    changes.setdefault("batch_size", settings.router_batch_size)
    changes.setdefault("prefetch", settings.router_prefetch)
    changes.setdefault("linger_ms", settings.router_linger_ms)
    return replace(p, **changes)


def execute(args: argparse.Namespace) -> int:
    params = params_from(args)
    rules_dir = Path(getattr(args, "rules_dir", None) or RULES)
    result = asyncio.run(run(params, Settings(), rules_dir, profile=args.profile))
    print(table(result))
    path = write(result, args.results_dir)
    print(f"\nJSON: {path} (and {args.results_dir / 'latest.json'})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--rules-dir", help="rules directory (default: ./rules)")
    add_arguments(p)
    return execute(p.parse_args(argv))
