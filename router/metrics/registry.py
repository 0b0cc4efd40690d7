"""One process's metrics on prometheus-client: the families of `router.core.metrics`, the probes read
on each scrape, and the text exposition."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from router import __version__, logs
from router.core.metrics import FAMILIES, INFO, Bounds, Family, Probe, Recorder, Sample
from router.core.topology import Names

log = logs.get("router.metrics")

# How long one probe may take on a scrape; a slower one is left out of that scrape (and logged).
PROBE_TIMEOUT = 3.0


class PrometheusSink:
    """The core's `Sink`, kept in plain dicts and handed to prometheus-client as families on a scrape
    (a collector). On the router's path a count is a dict update: prometheus-client's own counters take a
    lock and check the metric on every `inc` (a routed contact's counts took 20 µs with them, 7 µs so).
    One process, one event loop: nothing here is shared between threads."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[tuple[str, ...], float]] = {}
        # Per label set: the count in each bucket (not cumulative; the last one is +Inf), the sum.
        self._histograms: dict[str, dict[tuple[str, ...], tuple[list[int], list[float]]]] = {}
        self._families = [f for f in FAMILIES if not f.sampled]
        for f in self._families:
            if f.kind == "counter":
                self._counts[f.name] = {}
            elif f.kind == "histogram":
                self._histograms[f.name] = {}

    def inc(self, family: Family, labels: tuple[str, ...], amount: float = 1.0) -> None:
        counts = self._counts[family.name]
        counts[labels] = counts.get(labels, 0.0) + amount

    def observe(self, family: Family, labels: tuple[str, ...], value: float) -> None:
        series = self._histograms[family.name]
        kept = series.get(labels)
        if kept is None:
            kept = series[labels] = ([0] * (len(family.buckets) + 1), [0.0])
        # `le` is inclusive: the first bound not below the value.
        kept[0][bisect.bisect_left(family.buckets, value)] += 1
        kept[1][0] += value

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        for f in self._families:
            if f.kind == "counter":
                counter = CounterMetricFamily(f.name, f.help, labels=f.labels)
                for labels, value in self._counts[f.name].items():
                    counter.add_metric(list(labels), value)
                yield counter
            elif f.kind == "histogram":
                histogram = HistogramMetricFamily(f.name, f.help, labels=f.labels)
                bounds = [*(repr(float(b)) for b in f.buckets), "+Inf"]  # as prometheus-client writes `le`
                for labels, (buckets, total) in self._histograms[f.name].items():
                    cumulative = list(itertools.accumulate(buckets))
                    histogram.add_metric(list(labels), list(zip(bounds, cumulative, strict=True)), total[0])
                yield histogram


class _Sampled:
    """A collector of the probes' latest samples, as prometheus-client families."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        by_family: dict[str, tuple[Family, list[Sample]]] = {}
        for s in self.samples:
            by_family.setdefault(s.family.name, (s.family, []))[1].append(s)
        for f, samples in by_family.values():
            family: Metric
            if f.kind == "counter":
                family = CounterMetricFamily(f.name, f.help, labels=f.labels)
            else:
                family = GaugeMetricFamily(f.name, f.help, labels=f.labels)
            for s in samples:
                family.add_metric(list(s.labels), s.value)
            yield family


@dataclass
class _Cached:
    probe: Probe
    samples: list[Sample] = field(default_factory=list)
    at: float = float("-inf")


class InfoProbe:
    """`contact_router_info{role, version} 1`: what this process is."""

    ttl = float("inf")

    def __init__(self, role: str):
        self.role = role

    async def sample(self) -> list[Sample]:
        return [Sample(INFO, (self.role, __version__), 1.0)]


class MetricsRegistry:
    """The metrics of one process (`role`: serve, router, api, scheduler, history)."""

    def __init__(self, bounds: Bounds, names: Names, role: str):
        self.bounds = bounds
        self.role = role
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.sink = PrometheusSink()
        self.registry.register(self.sink)
        self.recorder = Recorder(self.sink, bounds, names)
        self._sampled = _Sampled()
        self.registry.register(self._sampled)
        self._probes: list[_Cached] = []
        self._lock = asyncio.Lock()
        self.add_probe(InfoProbe(role))

    def add_probe(self, probe: Probe) -> None:
        self._probes.append(_Cached(probe))

    async def refresh(self) -> None:
        """Read the probes whose samples are older than their `ttl`; concurrent scrapes share a round."""
        async with self._lock:
            now = time.monotonic()
            due = [c for c in self._probes if now - c.at >= c.probe.ttl]
            results = await asyncio.gather(
                *(asyncio.wait_for(c.probe.sample(), PROBE_TIMEOUT) for c in due), return_exceptions=True
            )
            for cached, result in zip(due, results, strict=True):
                cached.at = now
                if isinstance(result, BaseException):
                    # Stale values would mislead: a probe that fails shows nothing until it answers.
                    log.warning(
                        "metrics_probe_failed", probe=type(cached.probe).__name__, error=type(result).__name__
                    )
                    cached.samples = []
                else:
                    cached.samples = result
            self._sampled.samples = [s for c in self._probes for s in c.samples]

    async def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The text exposition (in the format `accept` asks for) and its content type."""
        await self.refresh()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    async def close(self) -> None:
        for cached in self._probes:
            close = getattr(cached.probe, "close", None)
            if close is not None:
                await close()
