"""What the HTTP handlers share: the service's parts, on the app under CTX."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from adapters.kit.publisher import ContactPublisher
from router.core.casework_service import Casework
from router.core.clock import Clock
from router.core.ports import Store
from router.core.tenants import Tenant
from router.settings import Credential


@dataclass
class ApiContext:
    tenants: dict[str, Tenant]
    store: Store
    publisher: ContactPublisher
    clock: Clock
    credentials: dict[str, Credential]
    # name -> async check returning None when fine, or a reason; used by /readyz.
    readiness: dict[str, Callable[[], Awaitable[str | None]]] = field(default_factory=dict)
    embedded: bool = False
    casework: Casework | None = None
    # The process's Prometheus exposition for GET /metrics: (Accept header) -> (body, content type).
    metrics: Callable[[str | None], Awaitable[tuple[bytes, str]]] | None = None


CTX = web.AppKey("ctx", ApiContext)
