"""Optional OpenTelemetry tracing (the extra `tracing`): one trace follows a contact from the adapter's
publish through the router to the team publish, its W3C trace context (`traceparent`, `tracestate`)
carried in the AMQP headers, so a back-office consumer of a team queue can continue it.

Off unless `TRACING=true`, which needs the OpenTelemetry API and SDK installed
(`pip install 'contact-router[tracing]'`); spans go to the OTLP exporter the standard `OTEL_*`
environment configures (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, ...). Spans carry ids only —
contact id, tenant, channel, team — never personal data. When off, every function here is a no-op that
costs one attribute check on the router's hot path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

log = structlog.get_logger()

TRACE_HEADERS = ("traceparent", "tracestate")


class _State:
    tracer: Any = None  # an opentelemetry Tracer once enabled


_state = _State()


class TracingUnavailable(RuntimeError):
    pass


def enabled() -> bool:
    return _state.tracer is not None


def configure(on: bool, service: str) -> None:
    """Turn tracing on for this process (TRACING=true) with an OTLP exporter, or leave it off."""
    if not on:
        return
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise TracingUnavailable(
            "TRACING=true needs OpenTelemetry: pip install 'contact-router[tracing]'"
        ) from exc
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise TracingUnavailable(
            "TRACING=true needs the OTLP exporter: pip install 'contact-router[tracing]'"
        ) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": f"contact-router-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    use(provider)
    log.info("tracing_on", service=service)


def use(provider: Any) -> None:
    """Trace with this TracerProvider (configure's, or a test's with an in-memory exporter)."""
    _state.tracer = provider.get_tracer("contact-router")


def off() -> None:
    _state.tracer = None


@contextmanager
def publish_span(name: str, headers: MutableMapping[str, Any], **attributes: str) -> Iterator[None]:
    """A producer span around a publish, its context written into the message's `headers`; the span
    continues the trace of the headers already there (the router's, for a team publish)."""
    tracer = _state.tracer
    if tracer is None:
        yield
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    parent = propagate.extract(_trace_only(headers))
    with tracer.start_as_current_span(name, context=parent, kind=SpanKind.PRODUCER, attributes=attributes):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        headers.update(carrier)
        yield


class RouteSpans:
    """The router's consumer spans of one batch, one per contact, each a child of the context its
    delivery carried; ended once the batch is committed. Team messages published for a contact get a
    producer span under its route span (`headers_for`)."""

    def __init__(self) -> None:
        self._spans: dict[str, Any] = {}

    def start(self, cid: str, delivery_headers: Mapping[str, Any], **attributes: str) -> None:
        tracer = _state.tracer
        if tracer is None:
            return
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        parent = propagate.extract(_trace_only(delivery_headers))
        attributes["contact.id"] = cid
        self._spans[cid] = tracer.start_span(
            "route contact", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )

    def headers_for(self, cid: str | None, headers: dict[str, Any], routing_key: str) -> dict[str, Any]:
        """`headers` with the trace context of a team publish span under `cid`'s route span."""
        span = self._spans.get(cid) if cid is not None else None
        if span is None:
            return headers
        from opentelemetry import propagate, trace
        from opentelemetry.trace import SpanKind

        parent = trace.set_span_in_context(span)
        carrier: dict[str, str] = {}
        with _state.tracer.start_as_current_span(
            "team publish",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={"contact.id": cid, "messaging.destination.routing_key": routing_key},
        ):
            propagate.inject(carrier)
        return {**headers, **carrier}

    def end(self, error: BaseException | None = None) -> None:
        spans, self._spans = self._spans, {}
        for span in spans.values():
            if error is not None:
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()


def _trace_only(headers: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in TRACE_HEADERS:
        value = headers.get(key)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if isinstance(value, str):
            out[key] = value
    return out
