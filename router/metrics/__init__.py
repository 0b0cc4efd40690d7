"""Prometheus metrics: the only package that touches prometheus-client.

`MetricsRegistry` holds one process's registry: the counters and histograms of `router.core.metrics`
(counted through its `recorder`, the core's `Metrics` port), the values read on each scrape from the
probes it was given, and the process collectors. `exposition()` renders the text format for `/metrics`
(the API app, `router/http/metrics.py`, or the small listener of `router/metrics/listener.py` in the
processes without an API).
"""

from router.metrics.counting import CountingOutbound, counting_publisher
from router.metrics.registry import MetricsRegistry

__all__ = ["CountingOutbound", "MetricsRegistry", "counting_publisher"]
