"""HTTP routes of the enabled adapters, on the service's aiohttp app.

    app[ADAPTERS] = adapter_context     # built by adapters.wiring
    add_routes(app)

Add them to the app made by `router.api.create_app`: adapters that need an API key (phone notes) use its
credentials, and its middleware turns unexpected errors into JSON.
"""

from __future__ import annotations

from aiohttp import web

from adapters.httpkit import ADAPTERS

__all__ = ["ADAPTERS", "add_routes"]


def add_routes(app: web.Application) -> None:
    if ADAPTERS not in app:
        raise RuntimeError("set app[adapters.http.ADAPTERS] to the AdapterContext before add_routes(app)")
    for adapter in app[ADAPTERS].adapters.values():
        app.router.add_routes(adapter.routes())
