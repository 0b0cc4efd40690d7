"""The metrics listener of a process without the HTTP API (`router`, `scheduler`, `history consume`):
`GET /metrics` on METRICS_PORT, nothing else, no API key (the metrics hold no personal data)."""

from __future__ import annotations

from aiohttp import web

from router import logs
from router.metrics.registry import MetricsRegistry

log = logs.get("router.metrics.listener")

METRICS = web.AppKey("metrics", MetricsRegistry)


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = await request.app[METRICS].exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _no_server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.popall("Server", None)


async def start_listener(metrics: MetricsRegistry, host: str, port: int) -> web.AppRunner:
    """Listening once it returns (OSError when the port is taken); `cleanup()` the runner to stop."""
    app = web.Application()
    app[METRICS] = metrics
    app.router.add_get("/metrics", _metrics)
    app.on_response_prepare.append(_no_server_header)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("metrics_listening", host=host, port=port)
    return runner
