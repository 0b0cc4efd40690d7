"""OpenTelemetry (issue 17, item 2): one trace follows a contact from the adapter's publish through the
router to the team publish, its context carried in the AMQP headers, on the real broker. Spans carry
ids, never the contact's content."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from router import tracing
from tests.harness import Harness

BODY = "Mijn paspoort is verlopen, groet Fenna Oosterhuis"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.off()
        provider.shutdown()


async def test_a_contact_is_one_trace_from_the_adapter_to_the_team_queue(
    h: Harness, spans: InMemorySpanExporter
) -> None:
    cid = await h.route("ommen", "mail", BODY)
    items = await h.team_queue("ommen", "burgerzaken")
    assert [m.message_id for m in items] == [cid]

    ours = [s for s in spans.get_finished_spans() if (s.attributes or {}).get("contact.id") == cid]
    finished = {s.name: s for s in ours}
    assert set(finished) == {"contact publish", "route contact", "team publish"}
    publish, route, team = finished["contact publish"], finished["route contact"], finished["team publish"]
    assert publish.kind == SpanKind.PRODUCER and route.kind == SpanKind.CONSUMER
    # One trace, each step the child of the one before.
    assert publish.context.trace_id == route.context.trace_id == team.context.trace_id
    assert route.parent is not None and route.parent.span_id == publish.context.span_id
    assert team.parent is not None and team.parent.span_id == route.context.span_id
    # The team item carries the team publish's context: a back-office consumer continues the trace.
    traceparent = items[0].headers["traceparent"]  # type: ignore[attr-defined]
    assert isinstance(traceparent, str)
    assert traceparent.split("-")[1:3] == [f"{team.context.trace_id:032x}", f"{team.context.span_id:016x}"]
    assert route.attributes is not None and route.attributes["team"] == "burgerzaken"
    recorded = json.dumps([dict(s.attributes or {}) for s in finished.values()])
    assert "Fenna" not in recorded and "verlopen" not in recorded


async def test_without_tracing_nothing_is_added_to_the_headers(h: Harness) -> None:
    cid = await h.route("ommen", "mail", BODY)
    items = await h.team_queue("ommen", "burgerzaken")
    assert [m.message_id for m in items] == [cid]
    assert "traceparent" not in (items[0].headers or {})  # type: ignore[attr-defined]
