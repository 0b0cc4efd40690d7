"""The HTTP client of one tenant's Open Klant.

Every request is retried until it succeeds, Open Klant refuses it, or the exporter stops:
- 5xx, 429, timeouts and connection errors: again after an exponential backoff with full jitter (so a
  restarted Open Klant is not hit by every exporter at once), capped at `max_delay`;
- 401 and 403 as well: a wrong or missing token is the operator's to fix, and nothing is lost meanwhile;
- any other 4xx: `Refused`, with a reason naming the fields of Open Klant's `invalidParams` and their
  codes, never its texts (which can quote the value sent).

At most `concurrency` requests of a tenant are in flight; the rest wait for a slot.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import aiohttp
import orjson

from router import logs

log = logs.get("router.export.openklant")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_RETRIED = {401, 403, 408, 425, 429}
MAX_REASON = 500


class Refused(Exception):
    """Open Klant refused a request (a 4xx other than auth and rate limits): the event goes to the
    export's dead-letter queue with `reason`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Stopped(Exception):
    """The exporter stops while a request waits for its next try: the event stays unacknowledged."""


def path_template(path: str) -> str:
    """`/internetaken/<uuid>` → `/internetaken/{uuid}`: what logs and reasons name."""
    return _UUID.sub("{uuid}", path)


def refusal_reason(method: str, path: str, status: int, body: bytes) -> str:
    """`openklant 400 on POST /klantcontacten: klantcontact.inhoud (max_length)` — names and codes only."""
    where = f"openklant {status} on {method} {path_template(path)}"
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return where
    params = doc.get("invalidParams") if isinstance(doc, dict) else None
    if not isinstance(params, list) or not params:
        code = doc.get("code") if isinstance(doc, dict) else None
        return f"{where}: {code}" if isinstance(code, str) and len(code) <= 60 else where
    named = []
    for p in params[:10]:
        if isinstance(p, dict):
            name = str(p.get("name", "?"))[:100]
            code = str(p.get("code", "?"))[:60]
            named.append(f"{name} ({code})")
    return f"{where}: {'; '.join(named)}"[:MAX_REASON]


class OpenKlantClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        tenant: str,
        base_url: str,
        token: str,
        *,
        concurrency: int = 8,
        timeout: float = 10.0,
        stop: asyncio.Event | None = None,
        first_delay: float = 0.2,
        max_delay: float = 15.0,
    ):
        self.session = session
        self.tenant = tenant
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._stop = stop or asyncio.Event()
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.requests = 0
        self.retries = 0

    async def get(self, path: str, params: dict[str, str]) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        return await self.request("POST", path, body=body)

    async def patch(self, path: str, body: dict[str, Any]) -> Any:
        return await self.request("PATCH", path, body=body)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def list_all(self, path: str, params: dict[str, str], *, pages: int = 20) -> list[dict[str, Any]]:
        """Every result of a list query (following `page`), each uuid once: Open Klant can return an
        object more than once for one query."""
        out: dict[str, dict[str, Any]] = {}
        for page in range(1, pages + 1):
            doc = await self.get(path, {**params, "page": str(page)} if page > 1 else params)
            for item in doc.get("results", []):
                out.setdefault(str(item.get("uuid")), item)
            if not doc.get("next"):
                break
        return list(out.values())

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        attempt = 0
        while True:
            if self._stop.is_set():
                raise Stopped()
            try:
                status, payload = await self._once(method, path, body, params)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                status, payload, error = 0, b"", type(exc).__name__
            else:
                error = ""
                if status < 400:
                    return orjson.loads(payload) if payload else None
                if status < 500 and status not in _RETRIED:
                    raise Refused(refusal_reason(method, path, status, payload))
            attempt += 1
            self.retries += 1
            delay = random.uniform(0, min(self.max_delay, self.first_delay * 2 ** min(attempt, 16)))
            log.warning(
                "openklant_retry",
                tenant=self.tenant,
                method=method,
                path=path_template(path),
                status=status or None,
                error=error or None,
                attempt=attempt,
                delay=round(delay, 2),
            )
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass

    async def _once(
        self, method: str, path: str, body: dict[str, Any] | None, params: dict[str, str] | None
    ) -> tuple[int, bytes]:
        async with self._slots:
            self.requests += 1
            async with self.session.request(
                method,
                self.base_url + path,
                params=params,
                data=orjson.dumps(body) if body is not None else None,
                headers={**self._headers, "Content-Type": "application/json"}
                if body is not None
                else self._headers,
                timeout=self._timeout,
            ) as resp:
                return resp.status, await resp.read()
