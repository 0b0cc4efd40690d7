"""`GET /metrics` on the API app: the process's Prometheus metrics (router/metrics/), no API key.

The metrics hold no personal data (ids of tenants, teams and channels, fixed classes, counts), so a
scraper needs no key; they are served only where `ApiContext.metrics` is wired (router/service.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from router.http.body import error
from router.http.context import CTX

PATH = "/metrics"

# The route in the OpenAPI document (router/http/openapi.py).
OPENAPI_PATHS: dict[str, Any] = {
    PATH: {
        "get": {
            "summary": "Prometheus metrics of this process (text exposition format)",
            "operationId": "metrics",
            "security": [],
            "responses": {
                "200": {
                    "description": "Counts, gauges and histograms; labels are tenant, team and channel ids "
                    "and fixed classes, never personal data",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "404": {
                    "description": "This app has no metrics wired",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            },
        }
    }
}


async def metrics(request: web.Request) -> web.Response:
    exposition = request.app[CTX].metrics
    if exposition is None:
        return error(404, "no metrics in this process")
    body, content_type = await exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})
